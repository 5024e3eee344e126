//! The crate's one clock is tokio's (`tokio::time::Instant`): TTLs,
//! renewals, breakers and deadlines follow it, and so, through
//! [`TokioClock`], do the `governor` rate limits. Under a paused tokio
//! clock (tests) they all move together.

use governor::{
    RateLimiter,
    clock::Clock,
    state::{InMemoryState, NotKeyed},
};

/// `governor`'s clock on tokio's.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A rate limiter without keys, on tokio's clock.
pub(crate) type DirectLimiter = RateLimiter<NotKeyed, InMemoryState, TokioClock>;
