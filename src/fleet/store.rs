//! What the fleet logic asks of the store every replica shares: a few
//! atomic operations, each one round trip. [`RedisStore`] is the store of
//! production (Redis or Valkey, the operations as Lua scripts); an
//! in-memory store with the same semantics runs the fleet logic's unit
//! tests without a `redis-server`.
//!
//! Every operation answers `None` (or `false`) when the store is
//! unavailable: the fleet then carries on as a replica alone.
//!
//! [`RedisStore`]: super::redis_store::RedisStore

use std::time::Duration;

use futures_util::{future::BoxFuture, stream::BoxStream};

use super::Gcra;

/// The operations of a fleet store. Futures are boxed so that the fleet
/// holds any store behind one pointer; they run on a miss only (the warm
/// path never reaches the store).
pub(crate) trait FleetStore: Send + Sync + 'static {
    /// The value under `slot.value` with what decides whether it may be
    /// served (its instance's generation, the key's forget mark) and, for
    /// a replica `waiting` on another's lease, whether the lease is still
    /// held. A miss reads nothing else.
    fn lookup<'a>(&'a self, slot: SlotKeys<'a>, waiting: bool) -> BoxFuture<'a, Option<Lookup>>;

    /// Spend `budget` (if any), then take the lease as `owner` for
    /// `lease`, then read the value and the fleet's forget sequence again:
    /// a caller past the budget never touches the lease.
    fn claim<'a>(
        &'a self,
        slot: SlotKeys<'a>,
        owner: &'a str,
        lease: Duration,
        budget: Option<(&'a str, Gcra)>,
    ) -> BoxFuture<'a, Option<Claim>>;

    /// Store `stored` under `slot.value` for `ttl` unless its instance
    /// (`generation` key) or the key itself was forgotten after
    /// `started`, and release the lease if `owner` holds it. `Some(true)`
    /// if written.
    fn write<'a>(
        &'a self,
        slot: SlotKeys<'a>,
        generation: &'a str,
        stored: &'a [u8],
        ttl: Duration,
        started: u64,
        owner: &'a str,
    ) -> BoxFuture<'a, Option<bool>>;

    /// Delete the lease if `owner` still holds it (never another's).
    fn release<'a>(&'a self, lease: &'a str, owner: &'a str) -> BoxFuture<'a, bool>;

    /// Move the fleet's forget sequence on, set `mark` (an instance's
    /// generation or a token's mark) to its new value for `mark_ttl`, and
    /// delete `values`: the new sequence.
    fn forget<'a>(
        &'a self,
        sequence: &'a str,
        mark: &'a str,
        mark_ttl: Duration,
        values: &'a [&'a str],
    ) -> BoxFuture<'a, Option<u64>>;

    /// Send `message` to every subscriber of `channel`: how many there are.
    fn publish<'a>(&'a self, channel: &'a str, message: &'a [u8]) -> BoxFuture<'a, Option<u64>>;

    /// The messages published on `channel` from now on; the stream ends
    /// when the subscription is lost.
    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Option<BoxStream<'static, Vec<u8>>>>;

    /// Count one confirmation under `key` (kept for `ttl`).
    fn confirm<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, bool>;

    /// How many confirmations `key` holds.
    fn confirmations<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<u64>>;

    /// One GCRA check under `key`, on the store's clock: `Ok` or how long
    /// to wait.
    fn rate<'a>(&'a self, key: &'a str, rate: Gcra) -> BoxFuture<'a, Option<Result<(), Duration>>>;

    /// Set `key` to `value` for `ttl` (only if it is not there, with
    /// `only_if_absent`): `Some(true)` if it was set.
    fn mark<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> BoxFuture<'a, Option<bool>>;

    /// Set `field` of the hash `key` to `value`.
    fn hash_put<'a>(
        &'a self,
        _key: &'a str,
        _field: &'a str,
        _value: &'a [u8],
    ) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    /// Delete `field` of the hash `key`.
    #[cfg(feature = "webhooks")]
    fn hash_remove<'a>(&'a self, _key: &'a str, _field: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    /// Every value of the hash `key`.
    fn hash_values<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Option<Vec<Vec<u8>>>> {
        Box::pin(async { None })
    }

    /// The value of `key`, if it is there.
    #[cfg(feature = "webhooks")]
    fn read<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Option<String>>>;

    /// Delete `key`.
    #[cfg(feature = "webhooks")]
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, bool>;

    /// Append `value` to `stream` unless `bound` entries already wait
    /// there: `Some(true)` if appended, `Some(false)` if full.
    #[cfg(feature = "webhooks")]
    fn append<'a>(
        &'a self,
        _stream: &'a str,
        _value: &'a [u8],
        _bound: u64,
    ) -> BoxFuture<'a, Option<bool>> {
        Box::pin(async { None })
    }

    /// Up to `count` entries of `stream` no consumer of `group` has had
    /// yet, for `consumer`, waiting up to `block` for one (the group is
    /// made when missing).
    #[cfg(feature = "webhooks")]
    fn read_new<'a>(&'a self, _read: StreamRead<'a>) -> BoxFuture<'a, Option<Vec<StreamEntry>>> {
        Box::pin(async { None })
    }

    /// Up to `count` entries of `stream` that a consumer of `group` has had
    /// for `idle` without settling them, now `consumer`'s, with how many
    /// times each was handed out.
    #[cfg(feature = "webhooks")]
    fn claim_stale<'a>(
        &'a self,
        _read: StreamRead<'a>,
        _idle: Duration,
    ) -> BoxFuture<'a, Option<Vec<StreamEntry>>> {
        Box::pin(async { None })
    }

    /// The entry `id` was dealt with: acknowledged and deleted.
    #[cfg(feature = "webhooks")]
    fn settle<'a>(
        &'a self,
        _stream: &'a str,
        _group: &'a str,
        _id: &'a str,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    /// Make the entry `id` count as idle for `idle` already, so that it is
    /// claimed again once it has been idle for the claim's threshold.
    #[cfg(feature = "webhooks")]
    fn idle_for<'a>(
        &'a self,
        _read: StreamRead<'a>,
        _id: &'a str,
        _idle: Duration,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    /// Move the entry `id` of `from` (settling it in `group`) to the end
    /// of `to`, as `value`: a dead letter, or one replayed (`group`
    /// empty: nothing to settle).
    #[cfg(feature = "webhooks")]
    fn move_entry<'a>(
        &'a self,
        _from: &'a str,
        _group: &'a str,
        _id: &'a str,
        _to: &'a str,
        _value: &'a [u8],
    ) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    /// Up to `count` entries of `stream`, oldest first.
    #[cfg(feature = "webhooks")]
    fn entries<'a>(
        &'a self,
        _stream: &'a str,
        _count: usize,
    ) -> BoxFuture<'a, Option<Vec<StreamEntry>>> {
        Box::pin(async { None })
    }

    /// How many entries `stream` holds.
    #[cfg(feature = "webhooks")]
    fn length<'a>(&'a self, _stream: &'a str) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async { None })
    }

    /// Whether the store is in use now (not skipped as down).
    fn is_available(&self) -> bool;

    /// Why the store does not give the fleet's guarantees now, if it does
    /// not (the last failure's cause, until an operation goes through).
    fn degraded(&self) -> Option<&'static str> {
        None
    }
}

/// The keys one shared value involves. `mark` and `lease` may be empty
/// (then unused).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotKeys<'a> {
    pub(crate) value: &'a str,
    /// The key's own forget mark (identities: [`forget_token`]).
    ///
    /// [`forget_token`]: crate::Elevator::forget_token
    pub(crate) mark: &'a str,
    /// The fleet's forget sequence.
    pub(crate) sequence: &'a str,
    pub(crate) lease: &'a str,
}

/// What one lookup found.
#[derive(Debug)]
pub(crate) struct Lookup {
    /// `generation key \n sealed value`, as stored.
    pub(crate) value: Option<Vec<u8>>,
    /// The stored value's instance generation (0: never forgotten).
    pub(crate) generation: u64,
    /// The key's forget mark (0: never forgotten).
    pub(crate) mark: u64,
    /// The fleet's forget sequence now (read by a claim only; 0 from a
    /// lookup, which has no use for it).
    pub(crate) sequence: u64,
    /// Whether some replica holds the lease.
    pub(crate) leased: bool,
}

/// What a claim found.
#[derive(Debug)]
pub(crate) enum Claim {
    /// This replica holds the lease; the value as it is now.
    Taken(Lookup),
    /// Another replica holds it.
    Busy,
    /// The budget is spent for this long (the lease was not kept).
    BudgetSpent(Duration),
}

/// Which entries of a stream a consumer reads.
#[cfg(feature = "webhooks")]
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamRead<'a> {
    pub(crate) stream: &'a str,
    pub(crate) group: &'a str,
    pub(crate) consumer: &'a str,
    pub(crate) count: usize,
    /// How long a read of new entries may wait for one.
    pub(crate) block: Duration,
}

/// One entry of a stream.
#[cfg(feature = "webhooks")]
#[derive(Debug)]
pub(crate) struct StreamEntry {
    pub(crate) id: String,
    pub(crate) value: Vec<u8>,
    /// How many times a consumer of the group was handed it (1: the first).
    pub(crate) deliveries: u32,
}
