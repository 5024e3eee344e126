//! Step 3 of a request, and what else is per route: the route's
//! configuration (built by [`ElevateLayer`](crate::ElevateLayer)), its
//! rules (policy, rate limit) checked on every verified caller, cached or
//! not, and the scope its handlers' [`WixApi`](crate::WixApi) acts within.
//! How it answers a refusal is [`reject`](crate::reject)'s job.

use std::{sync::Arc, time::Duration};
use tokio::time::Instant;

use http::Extensions;

use crate::{
    Elevator,
    audit::Scope,
    caller::Caller,
    elevated_token::ElevatedToken,
    error::{Rejection, RejectionKind},
    metrics::RouteMetrics,
    operation::Operation,
    policy::Policy,
    rate_limit::RouteRateLimit,
    response::OnRejection,
    verdict::Verdict,
};

/// What one route's service shares between its clones (and, through
/// [`RouteScope`], with its handlers). [`ElevateLayer`](crate::ElevateLayer)
/// is its builder.
#[derive(Clone)]
pub(crate) struct RouteConfig {
    pub(crate) elevator: Elevator,
    pub(crate) policy: Arc<dyn Policy>,
    pub(crate) route_name: Arc<str>,
    pub(crate) operations: Arc<[Operation]>,
    pub(crate) rate_limits: Arc<[Arc<RouteRateLimit>]>,
    /// The oldest verified identity this route accepts; `None`: the
    /// elevator's TTL alone.
    pub(crate) max_identity_age: Option<Duration>,
    /// Whether handlers may hold the raw app token
    /// ([`ElevateLayer::expose_app_token`](crate::ElevateLayer::expose_app_token)).
    pub(crate) expose_app_token: bool,
    /// A query parameter that may carry the caller's credential instead of
    /// `Authorization` ([`ElevateLayer::credential_from_query`](crate::ElevateLayer::credential_from_query)).
    pub(crate) credential_query: Option<Box<str>>,
    /// Whether every answer carries `Referrer-Policy: no-referrer` (routes
    /// that read a credential from the URL, unless they opt out).
    pub(crate) referrer_policy: bool,
    pub(crate) metrics: Arc<RouteMetrics>,
    pub(crate) on_rejection: Arc<dyn OnRejection>,
}

/// The route's configuration and, where the layer elevated, the app token:
/// one request extension for [`WixApi`](crate::WixApi), the
/// [`ElevatedToken`] extractor and on-demand elevation. (One extension, not
/// two: with axum's own and the [`Caller`], the request's extension table
/// then never grows past its first allocation on the warm path.)
#[derive(Clone)]
pub(crate) struct RouteScope {
    pub(crate) route: Arc<RouteConfig>,
    pub(crate) token: Option<ElevatedToken>,
}

impl RouteConfig {
    /// Whether the layer elevates every request: only routes that declare
    /// Wix operations do. Elsewhere the [`ElevatedToken`] extractor fetches
    /// one on demand, so a route that never uses the app identity never
    /// mints an app token.
    pub(crate) fn elevates(&self) -> bool {
        !self.operations.is_empty()
    }

    /// Step 1: the request's bare credential, from where this route reads
    /// it. Malformed or conflicting input is refused here, before any
    /// lookup or network call.
    pub(crate) fn caller_token<'r>(
        &self,
        headers: &'r http::HeaderMap,
        uri: &'r http::Uri,
    ) -> Result<std::borrow::Cow<'r, [u8]>, RejectionKind> {
        crate::token::request_token(
            headers,
            uri,
            self.credential_query.as_deref(),
            self.elevator.identities().max_token_len(),
        )
    }

    /// Step 3: a verdict, checked against the clock, the policy and the
    /// rate limit.
    pub(crate) fn admit(&self, verdict: Verdict, now: Instant) -> Result<Caller, Rejection> {
        let caller = match verdict {
            Verdict::Valid(caller) if !caller.is_live(now) => {
                return Err(RejectionKind::ExpiredToken.into());
            }
            Verdict::Valid(caller) => caller,
            Verdict::Refused(kind) => return Err(kind.into()),
        };
        if !self.policy.allows(&caller) {
            let denial = self.policy.denial(&caller);
            return Err(Rejection::denied(caller, denial));
        }
        if self.shares_limits() {
            // Checked fleet-wide by `check_shared_limits`, asynchronously.
            return Ok(caller);
        }
        for limit in self.rate_limits.iter() {
            if let Err(wait) = limit.check(&caller) {
                return Err(Rejection::rate_limited(caller, wait));
            }
        }
        Ok(caller)
    }

    /// Whether this route's rate limits hold fleet-wide (fleet mode): then
    /// they cost one Redis round trip per request, off the warm path.
    pub(crate) fn shares_limits(&self) -> bool {
        self.elevator.fleet().is_some() && !self.rate_limits.is_empty()
    }

    /// Step 3, fleet mode: the rate limits, checked across replicas.
    pub(crate) async fn check_shared_limits(&self, caller: &Caller) -> Result<(), Rejection> {
        let Some(fleet) = self.elevator.fleet() else {
            return Ok(());
        };
        for limit in self.rate_limits.iter() {
            if let Err(wait) = limit.check_fleet(fleet, &self.route_name, caller).await {
                return Err(Rejection::rate_limited(caller.clone(), wait));
            }
        }
        Ok(())
    }

    /// Step 5: put the verified caller, and the route's scope with the app
    /// token (when there is one), into the request's extensions.
    pub(crate) fn attach(
        self: &Arc<Self>,
        extensions: &mut Extensions,
        caller: Caller,
        token: Option<ElevatedToken>,
    ) {
        self.metrics.granted();
        extensions.insert(caller);
        extensions.insert(RouteScope {
            route: self.clone(),
            token,
        });
    }

    /// Elevate a request the layer did not (see [`elevates`](Self::elevates)):
    /// the app token for `caller`'s instance, through the same cache and
    /// single flight, within the request deadline.
    pub(crate) async fn elevate_on_demand(
        &self,
        caller: &Caller,
    ) -> Result<ElevatedToken, Rejection> {
        let timing = self.elevator.auth_timing(Instant::now());
        let elevation = self
            .elevator
            .app_tokens()
            .get(caller.instance_key(), timing);
        match tokio::time::timeout_at(timing.deadline, elevation).await {
            Ok(outcome) => outcome,
            Err(_) => Err(RejectionKind::UpstreamTimeout.into()),
        }
    }

    /// Where audit events from this route come from.
    pub(crate) fn audit_scope(&self) -> Scope<'_> {
        Scope {
            route: Some(&self.route_name),
            policy: Some(self.policy.name()),
            request_id: None,
        }
    }

    /// On routes that read a credential from the URL: `Referrer-Policy:
    /// no-referrer`, unless the answer set its own.
    pub(crate) fn protect_referrer(&self, headers: &mut http::HeaderMap) {
        if self.referrer_policy {
            headers
                .entry(http::header::REFERRER_POLICY)
                .or_insert(http::HeaderValue::from_static("no-referrer"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;
    use tokio::time::Instant;

    use super::*;
    use crate::{Plan, SubjectType};

    fn caller(live_until: Instant) -> Caller {
        Caller::from_parts(
            SubjectType::Member,
            "m".into(),
            "i".into(),
            None,
            live_until,
            Plan::Free,
        )
    }

    #[test]
    fn admission_refuses_an_expired_caller_whatever_served_it() {
        let elevator = Elevator::builder("app", "secret").build().unwrap();
        let route = elevator.layer().route_config();
        let now = Instant::now();
        let refused = route.admit(Verdict::Valid(caller(now)), now).unwrap_err();
        assert_eq!(refused.kind(), RejectionKind::ExpiredToken);
        let live = caller(now + Duration::from_secs(60));
        assert!(route.admit(Verdict::Valid(live), now).is_ok());
        let refusal = route.admit(Verdict::Refused(RejectionKind::ForeignToken), now);
        assert_eq!(refusal.unwrap_err().kind(), RejectionKind::ForeignToken);
    }
}
