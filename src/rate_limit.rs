//! Rate limits for a route: per caller, and for all visitors of an
//! instance together.
//!
//! * **Per caller**, keyed by the caller's instance and subject (never by
//!   token: visitor tokens are free to obtain, so a new token must not mean
//!   a new allowance). A visitor's subject is its anonymous session, not a
//!   person: a new session is a new visitor with its own allowance.
//! * **Visitors per instance**, keyed by instance alone and applied to
//!   `VISITOR` callers only: however many sessions visitors open, together
//!   they get this many requests per minute on one site.
//!
//! A GCRA limiter from [`governor`] with its keyed (DashMap) store. Keys
//! that have refilled are dropped every [`RETAIN_EVERY`] checks, so memory
//! follows the number of keys active within one refill period. A limit
//! belongs to the layer value it was set on: clones of that value, on
//! other routes, share it.

use std::{
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use governor::{Quota, RateLimiter, clock::Clock, state::keyed::DefaultKeyedStateStore};

use crate::{
    caller::{Caller, SubjectType},
    clock::TokioClock,
    fleet::Fleet,
};

const RETAIN_EVERY: u64 = 4096;

/// Instance, and subject unless the limit is per instance.
type Key = (Arc<str>, Option<Arc<str>>);

/// Which callers share one allowance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// One allowance per caller (instance and subject).
    PerCaller,
    /// One allowance for all visitors of an instance; others unaffected.
    VisitorsPerInstance,
}

/// One of a route's limits.
pub(crate) struct RouteRateLimit {
    scope: Scope,
    per_minute: NonZeroU32,
    limiter: RateLimiter<Key, DefaultKeyedStateStore<Key>, TokioClock>,
    checks: AtomicU64,
}

impl RouteRateLimit {
    /// `per_minute` requests per minute per key, in bursts of as many.
    pub(crate) fn per_minute(scope: Scope, per_minute: NonZeroU32) -> Self {
        Self {
            scope,
            per_minute,
            limiter: RateLimiter::new(
                Quota::per_minute(per_minute),
                DefaultKeyedStateStore::default(),
                TokioClock,
            ),
            checks: AtomicU64::new(0),
        }
    }

    /// `Ok` if `caller` may proceed, else how long until it may.
    pub(crate) fn check(&self, caller: &Caller) -> Result<(), Duration> {
        let key = match self.scope {
            Scope::PerCaller => (
                caller.instance_key().clone(),
                Some(caller.subject_key().clone()),
            ),
            Scope::VisitorsPerInstance if caller.subject_type() == SubjectType::Visitor => {
                (caller.instance_key().clone(), None)
            }
            Scope::VisitorsPerInstance => return Ok(()),
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Fleet mode: the same limit for the whole fleet, as one atomic check
    /// in Redis keyed by route, scope, quota and caller; the local limiter
    /// when Redis is unavailable. `None` when the limit does not apply.
    pub(crate) async fn check_fleet(
        &self,
        fleet: &Fleet,
        route: &str,
        caller: &Caller,
    ) -> Result<(), Duration> {
        let (scope, subject) = match self.scope {
            Scope::PerCaller => ("caller", caller.subject_id()),
            Scope::VisitorsPerInstance if caller.subject_type() == SubjectType::Visitor => {
                ("visitors", "")
            }
            Scope::VisitorsPerInstance => return Ok(()),
        };
        let per_minute = self.per_minute.get();
        let quota = per_minute.to_string();
        let parts = [route, scope, quota.as_str(), caller.instance_id(), subject];
        match fleet.rate(&parts, per_minute).await {
            Some(verdict) => verdict,
            None => self.check(caller),
        }
    }

    #[cfg(test)]
    pub(crate) fn keys(&self) -> usize {
        self.limiter.len()
    }
}

impl std::fmt::Debug for RouteRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteRateLimit")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_has_its_own_allowance() {
        let limit = RouteRateLimit::per_minute(Scope::PerCaller, NonZeroU32::new(2).unwrap());
        let a = Caller::new(SubjectType::Visitor, "v-1", "i");
        let a_new_token = Caller::new(SubjectType::Visitor, "v-1", "i");
        let b = Caller::new(SubjectType::Visitor, "v-2", "i");
        assert!(limit.check(&a).is_ok());
        assert!(limit.check(&a_new_token).is_ok());
        let wait = limit.check(&a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(limit.check(&b).is_ok(), "another caller is unaffected");
        assert_eq!(limit.keys(), 2);
    }

    #[test]
    fn visitors_of_one_instance_share_one_allowance_and_others_are_unaffected() {
        let limit =
            RouteRateLimit::per_minute(Scope::VisitorsPerInstance, NonZeroU32::new(3).unwrap());
        // Twelve sessions, twelve visitor ids: three requests in all.
        let admitted = (0..12)
            .filter(|i| {
                let visitor = Caller::new(SubjectType::Visitor, format!("v-{i}"), "site-a");
                limit.check(&visitor).is_ok()
            })
            .count();
        assert_eq!(admitted, 3);
        let elsewhere = Caller::new(SubjectType::Visitor, "v-0", "site-b");
        assert!(limit.check(&elsewhere).is_ok(), "another instance");
        for _ in 0..10 {
            let member = Caller::new(SubjectType::Member, "m-1", "site-a");
            assert!(limit.check(&member).is_ok(), "members are not visitors");
        }
    }
}
