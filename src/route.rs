//! Step 3 of a request, and everything else that is per route: the
//! route's configuration (built by [`ElevateLayer`](crate::ElevateLayer)),
//! its rules (policy, rate limit) checked on every verified caller, cached
//! or not, its rejections (response, log line, metrics, audit), and the
//! scope its handlers' [`WixApi`](crate::WixApi) acts within.

use std::{sync::Arc, time::Duration};
use tokio::time::Instant;

use bytes::Bytes;
use http::{Extensions, Response};

use crate::{
    Elevator,
    audit::{self, CleanText, MAX_FIELD, MAX_TEXT, Scope, clean_str},
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

    /// Log `rejection`, count it, audit a denial, and build its response,
    /// with the rejection in the response's extensions.
    pub(crate) fn reject(&self, rejection: Rejection) -> Response<Bytes> {
        let rejection = match rejection.kind() {
            RejectionKind::PlanRequired => rejection.with_app_id(self.elevator.app_id_arc()),
            _ => rejection,
        };
        self.metrics.rejected(rejection.kind());
        let outcome = match rejection.kind() {
            RejectionKind::Forbidden => Some("policy_denied"),
            RejectionKind::PlanRequired => Some("plan_required"),
            _ => None,
        };
        if let Some(outcome) = outcome {
            audit::denied(self.audit_scope(), rejection.caller(), None, outcome);
        }
        self.log(&rejection);
        let mut response = self.on_rejection.response(&rejection);
        self.protect_referrer(response.headers_mut());
        response.extensions_mut().insert(rejection);
        response
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

    /// A handler answered with a [`Rejection`] of its own (such as
    /// [`Caller::require_subject_id`]'s): audit it under this route.
    pub(crate) fn audit_handler_rejection(&self, extensions: &Extensions) {
        if let Some(rejection) = extensions.get::<Rejection>()
            && rejection.kind() == RejectionKind::Forbidden
        {
            audit::denied(
                self.audit_scope(),
                rejection.caller(),
                None,
                "caller_mismatch",
            );
        }
    }

    /// One event per rejection on target `wix_elevate::rejection`: `debug`
    /// for a refused caller, `warn` with the cause when Wix failed. A
    /// failure that never reached Wix (circuit open, overloaded, budget
    /// spent) writes at most one line per kind every ten seconds, with the
    /// count held back (`suppressed`). Never a token; text from outside
    /// (the cause, Wix's request id) is escaped.
    fn log(&self, rejection: &Rejection) {
        let (route, policy) = (&*self.route_name, self.policy.name());
        let (code, status) = (rejection.kind().code(), rejection.status().as_u16());
        match rejection.upstream_error() {
            Some(error) => {
                let Some(suppressed) = self.elevator.log_throttle().admit(error.kind()) else {
                    return;
                };
                tracing::warn!(
                    target: "wix_elevate::rejection",
                    route,
                    policy,
                    code,
                    status,
                    endpoint = error.endpoint().as_str(),
                    wix_status = error.status().map(|s| s.as_u16()),
                    wix_request_id = error.request_id().map(|id| clean_str(id, MAX_FIELD)).as_deref(),
                    error = %CleanText(error),
                    cause = error_chain(error).as_deref().map(|cause| clean_str(cause, MAX_TEXT)).as_deref(),
                    suppressed = (suppressed > 0).then_some(suppressed),
                    "request rejected: Wix failed"
                )
            }
            None => {
                tracing::debug!(target: "wix_elevate::rejection", route, policy, code, status, "request rejected")
            }
        }
    }
}

/// The sources below `error`, joined: "connection refused", "timed out".
/// reqwest's text names the URL, never a header or a body.
fn error_chain(error: &dyn std::error::Error) -> Option<String> {
    let mut chain = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push(cause.to_string());
        source = cause.source();
    }
    (!chain.is_empty()).then(|| chain.join(": "))
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
