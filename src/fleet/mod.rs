//! Fleet mode (feature `redis`): many replicas, and every restart, share one
//! Wix budget through Redis or Valkey.
//!
//! The in-process caches stay the first level and the warm path never
//! waits on Redis. On a local miss, a replica looks in Redis before asking
//! Wix, and writes back what Wix answered:
//!
//! * **Shared answers.** Identities (refusals included, for their short
//!   TTL) and app tokens, under the same expiry rules as in process.
//! * **Cross-replica single flight.** The replica that misses Redis takes a
//!   short lease (`SET NX PX`) and asks Wix; the others poll for the value
//!   it writes. A replica that dies holding the lease delays the others by
//!   at most the lease, then they ask Wix themselves.
//! * **Secrecy** ([`seal`]): keys are keyed MACs under keys derived from the
//!   app secret, values authenticated encryption bound to their key.
//! * **Fleet-wide rate limits**: one atomic GCRA script per check.
//! * **Invalidation**: dropped in Redis and, through pub/sub, from every
//!   replica's local cache; each replica confirms, and a forget returns
//!   once every replica listening has.
//! * **One small store trait** ([`store`]): the logic above asks a few
//!   atomic operations of a `FleetStore`, Redis's in production
//!   ([`redis_store`]), an in-memory one in its unit tests.
//! * **Never a single point of failure** ([`redis_store`]): tight timeouts, a
//!   circuit breaker that skips Redis while it is down, reconnection by
//!   itself; without Redis each replica works exactly as alone.
//!
//! Without the feature, [`Fleet`] is an empty type: an elevator never has
//! one, and the code that consults it is never reached.

#[cfg(feature = "redis")]
mod config;
#[cfg(all(test, feature = "redis"))]
mod memory_store;
#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "redis")]
mod scripts;
#[cfg(feature = "redis")]
mod seal;
#[cfg(feature = "redis")]
mod store;
#[cfg(all(test, feature = "redis"))]
mod tests;

use std::time::Duration;

#[cfg(all(feature = "redis", feature = "webhooks"))]
mod deliveries;
#[cfg(all(feature = "redis", feature = "webhooks"))]
mod events;
#[cfg(all(feature = "redis", feature = "webhooks"))]
pub(crate) use events::{EventStream, QueuedEvent};
#[cfg(not(feature = "redis"))]
mod disabled;
#[cfg(feature = "redis")]
mod enabled;
#[cfg(feature = "redis")]
mod forgetting;
#[cfg(feature = "redis")]
mod health;
#[cfg(feature = "redis")]
mod installed;
#[cfg(feature = "redis")]
mod listener;
#[cfg(feature = "redis")]
mod notice;

#[cfg(feature = "redis")]
pub use config::RedisConfig;
#[cfg(not(feature = "redis"))]
pub(crate) use disabled::*;
#[cfg(feature = "redis")]
pub(crate) use enabled::*;

/// Whether a replica may serve what its local caches hold at `now`:
/// always without fleet mode; in fleet mode while it hears the fleet
/// ([`Fleet::trusts_local`]). The identity and app-token caches ask it on
/// the warm path.
pub(crate) fn local_is_trusted(fleet: Option<&Fleet>, now: tokio::time::Instant) -> bool {
    fleet.is_none_or(|fleet| fleet.trusts_local(now))
}

/// Now on the wall clock, in Unix milliseconds: what replicas agree on
/// (they share no monotonic clock).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// Without feature `redis` the fleet is never built, nor are these.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
/// A GCRA rate: one admission per `interval_ms`, bursts of `burst`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gcra {
    pub(crate) interval_ms: f64,
    pub(crate) burst: u32,
}

// Without feature `redis` the fleet is never built, nor are these.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl Gcra {
    /// No limit (the claim script then skips its budget).
    pub(crate) const NONE: Gcra = Gcra {
        interval_ms: 0.0,
        burst: 0,
    };

    /// `per_minute`, in bursts of as many.
    pub(crate) fn per_minute(per_minute: u32) -> Self {
        Self {
            interval_ms: 60_000.0 / f64::from(per_minute.max(1)),
            burst: per_minute.max(1),
        }
    }

    /// `per_second`, in bursts of `burst`.
    pub(crate) fn per_second(per_second: u32, burst: u32) -> Self {
        Self {
            interval_ms: 1_000.0 / f64::from(per_second.max(1)),
            burst: burst.max(1),
        }
    }
}

// Without feature `redis` the fleet is never built, nor are these.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
/// Where one shared value lives, and what guards its fetch.
pub(crate) struct Place<'a> {
    /// Its Redis key.
    pub(crate) key: &'a str,
    /// Whether it has a forget mark of its own (identities: forgetting
    /// the token).
    pub(crate) marked: bool,
    /// What it is bound to besides its key and generation.
    pub(crate) aad: &'a [u8],
    /// The fleet-wide budget its fetch spends (never-vouched tokens).
    pub(crate) budget: Option<Gcra>,
}

// Without feature `redis` the fleet is never built, nor are these.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
/// How a fetch's budget stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Budget {
    /// Spent fleet-wide already (or none applies).
    Spent,
    /// Redis is unavailable: the fetch spends this replica's own.
    Local,
}

// Without feature `redis` the fleet is never built, nor are these.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
/// What a fetch hands back to share.
pub(crate) struct ToStore {
    pub(crate) plaintext: Vec<u8>,
    pub(crate) ttl: Duration,
    /// The instance it belongs to: forgetting it forgets the value.
    pub(crate) instance: Option<std::sync::Arc<str>>,
}

/// An invalidation as published: with the id under which every replica
/// that acted on it confirms so (for a forget, whose caller waits for them).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Notice {
    pub(crate) invalidation: Invalidation,
    pub(crate) confirm: Option<String>,
}

/// A message every replica acts on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Invalidation {
    /// Drop this instance's app token (only the one whose token digest is
    /// `stale`, when given) and, without `stale`, its cached identities.
    Instance {
        instance: String,
        stale: Option<String>,
    },
    /// Drop the identity cached under this token digest (hex).
    Token { digest: String },
    /// Drop everything cached locally (a replica that may have missed
    /// invalidations).
    Everything,
    /// Not an invalidation: a replica's own heartbeat, sent at `sent_ms`
    /// (its clock), which it hears back in order with every invalidation
    /// published before it. Older builds ignore it.
    Heartbeat { replica: String, sent_ms: u64 },
}
