//! The fleet store on Redis (or Valkey): each operation one round trip
//! (the compound ones as Lua scripts, atomic in Redis) with a tight
//! timeout; a circuit breaker skips Redis while it is down or slow, and the
//! connection re-establishes itself. A failed or skipped operation is
//! `None`: the caller carries on as a replica alone.

use std::{future::Future, time::Duration};
use tokio::time::Instant;

use futures_util::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use metrics::{Counter, Gauge, counter, gauge};
use redis::{AsyncCommands, RedisResult, aio::ConnectionManager};
use tokio::sync::OnceCell;

use super::{
    Gcra,
    health::{Health, cause, cause_of},
    scripts::scripts,
    store::{Claim, FleetStore, Lookup, SlotKeys},
};
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
    health: Health,
}

impl RedisStore {
    pub(crate) fn new(client: redis::Client, timeout: Duration) -> Self {
        Self {
            client,
            connection: OnceCell::new(),
            timeout,
            breaker: Breaker::new("Redis", BREAKER_THRESHOLD, BREAKER_COOLDOWN),
            metrics: RedisMetrics::new(),
            health: Health::new(),
        }
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
    async fn run<T, Fut>(&self, op: impl FnOnce(ConnectionManager) -> Fut) -> Option<T>
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
            Ok(Ok(value)) => {
                self.health.ok();
                Some(value)
            }
            failed => {
                self.health.failed(match &failed {
                    Ok(Err(error)) => cause_of(error),
                    _ => cause::TIMEOUT,
                });
                self.metrics.error.increment(1);
                None
            }
        }
    }
}

impl FleetStore for RedisStore {
    fn lookup<'a>(&'a self, slot: SlotKeys<'a>, waiting: bool) -> BoxFuture<'a, Option<Lookup>> {
        async move {
            let mut lookup = keys_of(&scripts().lookup, slot);
            lookup.arg(if waiting { "1" } else { "0" });
            let reply: Vec<redis::Value> = self
                .run(|mut c| async move { lookup.invoke_async(&mut c).await })
                .await?;
            let lookup = lookup_from_reply(&reply)?;
            match &lookup.value {
                Some(_) => self.metrics.hit.increment(1),
                None => self.metrics.miss.increment(1),
            }
            Some(lookup)
        }
        .boxed()
    }

    fn claim<'a>(
        &'a self,
        slot: SlotKeys<'a>,
        owner: &'a str,
        lease: Duration,
        budget: Option<(&'a str, Gcra)>,
    ) -> BoxFuture<'a, Option<Claim>> {
        async move {
            let (budget_key, rate) = budget.unwrap_or(("", Gcra::NONE));
            let mut claim = keys_of(&scripts().claim, slot);
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
                2 => Some(Claim::Taken(lookup_from_reply(reply.get(1..)?)?)),
                _ => None,
            }
        }
        .boxed()
    }

    fn write<'a>(
        &'a self,
        slot: SlotKeys<'a>,
        generation: &'a str,
        stored: &'a [u8],
        ttl: Duration,
        started: u64,
        owner: &'a str,
    ) -> BoxFuture<'a, Option<bool>> {
        async move {
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
        .boxed()
    }

    fn release<'a>(&'a self, lease: &'a str, owner: &'a str) -> BoxFuture<'a, bool> {
        async move {
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
        .boxed()
    }

    fn forget<'a>(
        &'a self,
        sequence: &'a str,
        mark: &'a str,
        mark_ttl: Duration,
        values: &'a [&'a str],
    ) -> BoxFuture<'a, Option<u64>> {
        async move {
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
        .boxed()
    }

    fn publish<'a>(&'a self, channel: &'a str, message: &'a [u8]) -> BoxFuture<'a, Option<u64>> {
        self.run(move |mut c| async move { c.publish::<_, _, u64>(channel, message).await })
            .boxed()
    }

    /// A connection of its own (pub/sub takes one over), outside the
    /// breaker: the listener retries by itself.
    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Option<BoxStream<'static, Vec<u8>>>> {
        async move {
            let subscribed = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = match subscribed.await {
                Ok(pubsub) => pubsub,
                Err(error) => {
                    self.health.failed(cause_of(&error));
                    return None;
                }
            };
            let messages = pubsub
                .into_on_message()
                .map(|message| message.get_payload_bytes().to_vec());
            Some(messages.boxed())
        }
        .boxed()
    }

    fn confirm<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, bool> {
        async move {
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
        .boxed()
    }

    fn confirmations<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<u64>> {
        async move {
            self.run(|mut c| async move { c.get::<_, Option<u64>>(key).await })
                .await
                .map(Option::unwrap_or_default)
        }
        .boxed()
    }

    /// GCRA on Redis's clock (see the rate script).
    fn rate<'a>(&'a self, key: &'a str, rate: Gcra) -> BoxFuture<'a, Option<Result<(), Duration>>> {
        async move {
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
        .boxed()
    }

    #[cfg(feature = "webhooks")]
    fn mark<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> BoxFuture<'a, Option<bool>> {
        async move {
            self.run(|mut c| async move {
                let mut set = redis::cmd("SET");
                set.arg(key).arg(value).arg("PX").arg(millis(ttl));
                if only_if_absent {
                    set.arg("NX");
                }
                set.query_async::<Option<String>>(&mut c).await
            })
            .await
            .map(|set| set.is_some())
        }
        .boxed()
    }

    #[cfg(feature = "webhooks")]
    fn read<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Option<String>>> {
        async move {
            self.run(|mut c| async move { c.get::<_, Option<String>>(key).await })
                .await
        }
        .boxed()
    }

    #[cfg(feature = "webhooks")]
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, bool> {
        async move {
            self.run(|mut c| async move { c.del::<_, ()>(key).await })
                .await
                .is_some()
        }
        .boxed()
    }

    fn is_available(&self) -> bool {
        !self.breaker.is_open(Instant::now())
    }

    fn degraded(&self) -> Option<&'static str> {
        self.health.cause()
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

/// `script` with a slot's keys, in the order the slot scripts read them:
/// value, mark, sequence, lease.
fn keys_of(script: &'static redis::Script, slot: SlotKeys<'_>) -> redis::ScriptInvocation<'static> {
    let mut invocation = script.key(slot.value);
    invocation.key(slot.mark).key(slot.sequence).key(slot.lease);
    invocation
}

/// A lookup's reply: value, generation, mark, sequence, leased.
fn lookup_from_reply(reply: &[redis::Value]) -> Option<Lookup> {
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
    Some(Lookup {
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
