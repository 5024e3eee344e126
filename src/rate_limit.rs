//! Per-caller rate limits for a route, keyed by the caller's instance and
//! subject (never by token: visitor tokens are free to obtain, so a new
//! token must not mean a new allowance).
//!
//! A GCRA limiter from [`governor`] with its keyed (DashMap) store. Keys
//! that have refilled are dropped every [`RETAIN_EVERY`] checks, so memory
//! follows the number of callers active within one refill period.

use std::{
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use governor::{
    Quota, RateLimiter, clock::Clock, clock::DefaultClock, state::keyed::DefaultKeyedStateStore,
};

use crate::caller::Caller;

const RETAIN_EVERY: u64 = 4096;

type Key = (Arc<str>, Arc<str>);

/// A route's per-caller limit.
pub(crate) struct CallerRateLimit {
    limiter: RateLimiter<Key, DefaultKeyedStateStore<Key>, DefaultClock>,
    checks: AtomicU64,
}

impl CallerRateLimit {
    /// `per_minute` requests per caller per minute, in bursts of as many.
    pub(crate) fn per_minute(per_minute: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            checks: AtomicU64::new(0),
        }
    }

    /// `Ok` if `caller` may proceed, else how long until it may.
    pub(crate) fn check(&self, caller: &Caller) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            self.limiter.retain_recent();
        }
        let key = (caller.instance_key().clone(), caller.subject_key().clone());
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    #[cfg(test)]
    pub(crate) fn keys(&self) -> usize {
        self.limiter.len()
    }
}

impl std::fmt::Debug for CallerRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerRateLimit").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SubjectType;

    #[test]
    fn each_caller_has_its_own_allowance() {
        let limit = CallerRateLimit::per_minute(NonZeroU32::new(2).unwrap());
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
}
