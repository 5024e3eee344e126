//! The Redis (or Valkey) connection: every operation has a tight timeout,
//! a circuit breaker skips Redis while it is down or slow, and the
//! connection re-establishes itself. A failed or skipped operation is
//! `None`: the caller carries on as a replica alone.

use std::{future::Future, time::Duration};
use tokio::time::Instant;

use metrics::{Counter, Gauge, counter, gauge};
use redis::{AsyncCommands, RedisResult, aio::ConnectionManager};
use tokio::sync::OnceCell;

use super::{Gcra, scripts::scripts};
use crate::upstream::{Admission, Breaker};

/// How many consecutive failed operations open the circuit, and for how
/// long it then skips Redis before one probe.
const BREAKER_THRESHOLD: u32 = 3;
const BREAKER_COOLDOWN: Duration = Duration::from_secs(1);

/// Counters for Redis operations, by result.
struct RedisMetrics {
    hit: Counter,
    miss: Counter,
    error: Counter,
    skipped: Counter,
    undecryptable: Counter,
    circuit_open: Gauge,
}

impl RedisMetrics {
    fn new() -> Self {
        let result = |r: &'static str| counter!("wix_elevate_redis_total", "result" => r);
        Self {
            hit: result("hit"),
            miss: result("miss"),
            error: result("error"),
            skipped: result("skipped"),
            undecryptable: result("undecryptable"),
            circuit_open: gauge!("wix_elevate_redis_circuit_open"),
        }
    }
}

pub(crate) struct RedisStore {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    timeout: Duration,
    breaker: Breaker,
    metrics: RedisMetrics,
}

impl RedisStore {
    pub(crate) fn new(client: redis::Client, timeout: Duration) -> Self {
        Self {
            client,
            connection: OnceCell::new(),
            timeout,
            breaker: Breaker::new("Redis", BREAKER_THRESHOLD, BREAKER_COOLDOWN),
            metrics: RedisMetrics::new(),
        }
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The shared connection, made on first use (and again after a failed
    /// first attempt); it reconnects by itself afterwards.
    async fn connection(&self) -> RedisResult<ConnectionManager> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        self.connection
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .cloned()
    }

    /// Run `op` within the timeout, unless the circuit is open.
    pub(crate) async fn run<T, Fut>(&self, op: impl FnOnce(ConnectionManager) -> Fut) -> Option<T>
    where
        Fut: Future<Output = RedisResult<T>>,
    {
        let Ok(admission) = self.breaker.admit(Instant::now()) else {
            self.metrics.skipped.increment(1);
            return None;
        };
        // If this future is dropped mid-probe, the half-open slot is freed.
        let mut probe = Probe {
            breaker: &self.breaker,
            pending: admission == Admission::Probe,
        };
        let attempt = async {
            let connection = self.connection().await?;
            op(connection).await
        };
        let outcome = tokio::time::timeout(self.timeout, attempt).await;
        let ok = matches!(outcome, Ok(Ok(_)));
        probe.pending = false;
        self.breaker.record(ok, Instant::now());
        self.metrics
            .circuit_open
            .set(if self.breaker.is_open(Instant::now()) {
                1.0
            } else {
                0.0
            });
        match outcome {
            Ok(Ok(value)) => Some(value),
            _ => {
                self.metrics.error.increment(1);
                None
            }
        }
    }

    /// `SET key 1 NX PX ttl`: `Some(true)` if the key was not there.
    #[cfg(feature = "webhooks")]
    pub(crate) async fn set_once(&self, key: &str, ttl: Duration) -> Option<bool> {
        self.run(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl))
                .query_async::<Option<String>>(&mut c)
                .await
        })
        .await
        .map(|set| set.is_some())
    }

    /// `DEL key`.
    #[cfg(feature = "webhooks")]
    pub(crate) async fn delete(&self, key: &str) -> bool {
        self.run(|mut c| async move { c.del::<_, ()>(key).await })
            .await
            .is_some()
    }

    /// `PUBLISH channel message`: how many subscribers received it, `None`
    /// if Redis could not be reached.
    pub(crate) async fn publish(&self, channel: &str, message: &[u8]) -> Option<u64> {
        self.run(|mut c| async move { c.publish::<_, _, u64>(channel, message).await })
            .await
    }

    /// Count one confirmation under `key` (kept for `ttl`).
    pub(crate) async fn confirm(&self, key: &str, ttl: Duration) -> bool {
        self.run(|mut c| async move {
            redis::pipe()
                .atomic()
                .incr(key, 1)
                .ignore()
                .pexpire(key, i64::try_from(millis(ttl)).unwrap_or(i64::MAX))
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await
        .is_some()
    }

    /// How many confirmations `key` holds.
    pub(crate) async fn confirmations(&self, key: &str) -> Option<u64> {
        self.run(|mut c| async move { c.get::<_, Option<u64>>(key).await })
            .await
            .map(Option::unwrap_or_default)
    }

    /// One GCRA check, atomically in Redis (see [`RATE_SCRIPT`]): `None`
    /// if Redis is unavailable, else `Ok` or how long to wait.
    pub(crate) async fn rate(&self, key: &str, rate: Gcra) -> Option<Result<(), Duration>> {
        let script = &scripts().rate;
        let (allowed, wait_ms): (i64, i64) = self
            .run(|mut c| async move {
                script
                    .key(key)
                    .arg(rate.interval_ms)
                    .arg(rate.burst)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Some(if allowed == 1 {
            Ok(())
        } else {
            Err(wait(wait_ms))
        })
    }

    /// The value under `slot.value` with what decides whether it may be
    /// served (its instance's generation, the key's forget mark) and, for
    /// a replica `waiting` on another's lease, whether the lease is still
    /// held: one round trip.
    pub(crate) async fn lookup(&self, slot: &SlotKeys<'_>, waiting: bool) -> Option<Lookup> {
        let mut lookup = slot.keys_of(&scripts().lookup);
        lookup.arg(if waiting { "1" } else { "0" });
        let reply: Vec<redis::Value> = self
            .run(|mut c| async move { lookup.invoke_async(&mut c).await })
            .await?;
        let lookup = Lookup::from_reply(&reply)?;
        match &lookup.value {
            Some(_) => self.metrics.hit.increment(1),
            None => self.metrics.miss.increment(1),
        }
        Some(lookup)
    }

    /// Spend the budget (if any), then take the lease as `owner`, then
    /// read the value and the fleet's forget sequence again, in one round
    /// trip: a token past the budget never touches the lease.
    pub(crate) async fn claim(
        &self,
        slot: &SlotKeys<'_>,
        owner: &str,
        lease: Duration,
        budget: Option<(&str, Gcra)>,
    ) -> Option<Claim> {
        let (budget_key, rate) = budget.unwrap_or(("", Gcra::NONE));
        let mut claim = slot.keys_of(&scripts().claim);
        claim
            .key(budget_key)
            .arg(owner)
            .arg(millis(lease))
            .arg(rate.interval_ms)
            .arg(rate.burst);
        let reply: Vec<redis::Value> = self
            .run(|mut c| async move { claim.invoke_async(&mut c).await })
            .await?;
        let integer = |value: Option<&redis::Value>| match value {
            Some(redis::Value::Int(n)) => Some(*n),
            _ => None,
        };
        match integer(reply.first())? {
            0 => Some(Claim::BudgetSpent(wait(integer(reply.get(1))?))),
            1 => Some(Claim::Busy),
            2 => Some(Claim::Taken(Lookup::from_reply(reply.get(1..)?)?)),
            _ => None,
        }
    }

    /// Store `stored` under `slot.value` unless its instance (`generation`
    /// key) or the key itself was forgotten after `started`, and release
    /// the lease if `owner` holds it: one round trip. `Some(true)` if
    /// written.
    pub(crate) async fn write(
        &self,
        slot: &SlotKeys<'_>,
        generation: &str,
        stored: &[u8],
        ttl: Duration,
        started: u64,
        owner: &str,
    ) -> Option<bool> {
        let script = &scripts().write;
        let written: i64 = self
            .run(|mut c| async move {
                script
                    .key(slot.value)
                    .key(slot.mark)
                    .key(generation)
                    .key(slot.lease)
                    .arg(stored)
                    .arg(millis(ttl))
                    .arg(started)
                    .arg(owner)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Some(written == 1)
    }

    /// Delete the lease if `owner` still holds it (never another's).
    pub(crate) async fn release(&self, lease: &str, owner: &str) -> bool {
        let script = &scripts().release;
        self.run(|mut c| async move {
            script
                .key(lease)
                .arg(owner)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .is_some()
    }

    /// Forget: the fleet's sequence moves on and `mark` (an instance's
    /// generation or a token's mark) takes its new value for `mark_ttl`;
    /// `value` (if any) is deleted. `None` if Redis is unavailable.
    pub(crate) async fn forget(
        &self,
        sequence: &str,
        mark: &str,
        mark_ttl: Duration,
        values: &[&str],
    ) -> Option<u64> {
        let script = &scripts().forget;
        self.run(|mut c| async move {
            let mut invocation = script.key(sequence);
            invocation.key(mark);
            for value in values {
                invocation.key(*value);
            }
            invocation
                .arg(millis(mark_ttl))
                .invoke_async::<u64>(&mut c)
                .await
        })
        .await
    }

    pub(crate) fn undecryptable(&self) {
        self.metrics.undecryptable.increment(1);
    }

    pub(crate) fn is_available(&self) -> bool {
        !self.breaker.is_open(Instant::now())
    }
}

/// Frees the breaker's half-open slot if a probe ends without an outcome.
struct Probe<'a> {
    breaker: &'a Breaker,
    pending: bool,
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if self.pending {
            self.breaker.abandon_probe();
        }
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

impl SlotKeys<'_> {
    /// `script` with this slot's keys, in the order the slot scripts read
    /// them: value, mark, sequence, lease.
    fn keys_of(&self, script: &'static redis::Script) -> redis::ScriptInvocation<'static> {
        let mut invocation = script.key(self.value);
        invocation.key(self.mark).key(self.sequence).key(self.lease);
        invocation
    }
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

impl Lookup {
    fn from_reply(reply: &[redis::Value]) -> Option<Self> {
        let number = |value: &redis::Value| -> Option<u64> {
            match value {
                redis::Value::Nil => Some(0),
                redis::Value::Int(n) => u64::try_from(*n).ok(),
                redis::Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
                _ => None,
            }
        };
        let [value, generation, mark, sequence, leased, ..] = reply else {
            return None;
        };
        Some(Self {
            value: match value {
                redis::Value::BulkString(bytes) => Some(bytes.clone()),
                _ => None,
            },
            generation: number(generation)?,
            mark: number(mark)?,
            sequence: number(sequence)?,
            leased: number(leased)? == 1,
        })
    }
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

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn wait(wait_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0).max(1))
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
