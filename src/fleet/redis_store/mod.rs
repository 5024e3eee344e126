//! The fleet store on Redis (or Valkey): each operation one round trip
//! (the compound ones as Lua scripts, atomic in Redis) with a tight
//! timeout; a circuit breaker skips Redis while it is down or slow, and the
//! connection re-establishes itself. A failed or skipped operation is
//! `None`: the caller carries on as a replica alone.
//!
//! The same store runs on one Redis and on a Redis Cluster (or Valkey
//! cluster): the first connection asks the server (`INFO cluster`) and,
//! on a cluster node, follows the cluster's topology from there. Every key
//! of a fleet shares one hash tag, so every script's keys are in one slot;
//! notices go through sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`, Redis 7)
//! to that slot's primary, where every replica of the fleet listens.

use std::time::Duration;
use tokio::time::Instant;

use futures_util::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use redis::AsyncCommands;
use tokio::sync::OnceCell;

#[cfg(feature = "webhooks")]
use super::store::{StreamEntry, StreamRead};
use super::{
    Gcra,
    health::{Health, cause, cause_of},
    scripts::scripts,
    store::{Claim, FleetStore, Lookup, SlotKeys},
};
use crate::upstream::Breaker;

mod connection;
mod guarded;
mod slots;
#[cfg(feature = "webhooks")]
mod streams;

use connection::Connection;
use guarded::RedisMetrics;
use slots::lookup_from_reply;

/// How many consecutive failed operations open the circuit, and for how
/// long it then skips Redis before one probe.
const BREAKER_THRESHOLD: u32 = 3;
const BREAKER_COOLDOWN: Duration = Duration::from_secs(1);

pub(crate) struct RedisStore {
    client: redis::Client,
    connection: OnceCell<Connection>,
    /// A connection of its own for reads that wait (`XREADGROUP BLOCK`):
    /// on the shared one they would hold up every other operation.
    #[cfg(feature = "webhooks")]
    waiting: OnceCell<Connection>,
    /// A key in the fleet's hash slot that nothing writes: it stands in
    /// for an unused key of a script (an empty key would be in another
    /// slot of a cluster).
    unused: String,
    timeout: Duration,
    breaker: Breaker,
    metrics: RedisMetrics,
    health: Health,
}

impl RedisStore {
    /// The store on the Redis `client` names; `unused` is a key of the
    /// fleet's hash slot that nothing writes.
    pub(crate) fn new(client: redis::Client, timeout: Duration, unused: String) -> Self {
        Self {
            client,
            connection: OnceCell::new(),
            #[cfg(feature = "webhooks")]
            waiting: OnceCell::new(),
            unused,
            timeout,
            breaker: Breaker::new("Redis", BREAKER_THRESHOLD, BREAKER_COOLDOWN),
            metrics: RedisMetrics::new(),
            health: Health::new(),
        }
    }
}

impl FleetStore for RedisStore {
    fn lookup<'a>(&'a self, slot: SlotKeys<'a>, waiting: bool) -> BoxFuture<'a, Option<Lookup>> {
        async move {
            let mut lookup = self.keys_of(&scripts().lookup, slot);
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
            let mut claim = self.keys_of(&scripts().claim, slot);
            claim
                .key(self.key(budget_key))
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
                        .key(self.key(slot.value))
                        .key(self.key(slot.mark))
                        .key(self.key(generation))
                        .key(self.key(slot.lease))
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
        let mut release = scripts().release.key(self.key(lease));
        release.arg(owner);
        self.effect(release).boxed()
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
            let wait = millis(self.timeout / 2);
            let (forgotten, replicas, acknowledged) = self
                .run(|mut c| async move {
                    let mut invocation = script.key(self.key(sequence));
                    invocation.key(self.key(mark));
                    for value in values {
                        invocation.key(self.key(value));
                    }
                    let (forgotten, replicas): (u64, u64) = invocation
                        .arg(millis(mark_ttl))
                        .invoke_async(&mut c)
                        .await?;
                    // Where the primary has replicas, the forget counts
                    // once one holds it: a failover that promotes it
                    // keeps it (the cluster promotes the most up to date).
                    let acknowledged = if replicas == 0 {
                        0
                    } else {
                        c.wait_for_a_replica(sequence, wait).await?
                    };
                    Ok((forgotten, replicas, acknowledged))
                })
                .await?;
            if replicas > 0 && acknowledged == 0 {
                self.health.failed(cause::UNREPLICATED);
                return None;
            }
            Some(forgotten)
        }
        .boxed()
    }

    fn publish<'a>(&'a self, channel: &'a str, message: &'a [u8]) -> BoxFuture<'a, Option<u64>> {
        self.run(move |mut c| async move {
            // Sharded on a cluster: to the channel's slot primary, where
            // every subscriber is, so the count is the fleet's.
            let publish = if c.is_cluster() {
                "SPUBLISH"
            } else {
                "PUBLISH"
            };
            redis::cmd(publish)
                .arg(channel)
                .arg(message)
                .query_async::<u64>(&mut c)
                .await
        })
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
                if self.connection().await?.is_cluster() {
                    return self.cluster_subscription(channel).await;
                }
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(channel).await?;
                let messages = pubsub
                    .into_on_message()
                    .map(|message| message.get_payload_bytes().to_vec());
                Ok(messages.boxed())
            };
            match subscribed.await {
                Ok(messages) => Some(messages),
                Err(error) => {
                    self.health.failed(cause_of(&error));
                    None
                }
            }
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

    fn hash_put<'a>(
        &'a self,
        key: &'a str,
        field: &'a str,
        value: &'a [u8],
    ) -> BoxFuture<'a, bool> {
        async move {
            self.run(|mut c| async move { c.hset::<_, _, _, ()>(key, field, value).await })
                .await
                .is_some()
        }
        .boxed()
    }

    #[cfg(feature = "webhooks")]
    fn hash_remove<'a>(&'a self, key: &'a str, field: &'a str) -> BoxFuture<'a, bool> {
        async move {
            self.run(|mut c| async move { c.hdel::<_, _, ()>(key, field).await })
                .await
                .is_some()
        }
        .boxed()
    }

    fn hash_values<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<Vec<u8>>>> {
        async move {
            self.run(|mut c| async move { c.hvals::<_, Vec<Vec<u8>>>(key).await })
                .await
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

    #[cfg(feature = "webhooks")]
    fn append<'a>(
        &'a self,
        stream: &'a str,
        value: &'a [u8],
        bound: u64,
    ) -> BoxFuture<'a, Option<bool>> {
        self.stream_append(stream, value, bound)
    }

    #[cfg(feature = "webhooks")]
    fn read_new<'a>(&'a self, read: StreamRead<'a>) -> BoxFuture<'a, Option<Vec<StreamEntry>>> {
        self.stream_read_new(read)
    }

    #[cfg(feature = "webhooks")]
    fn claim_stale<'a>(
        &'a self,
        read: StreamRead<'a>,
        idle: Duration,
    ) -> BoxFuture<'a, Option<Vec<StreamEntry>>> {
        self.stream_claim_stale(read, idle)
    }

    #[cfg(feature = "webhooks")]
    fn settle<'a>(&'a self, stream: &'a str, group: &'a str, id: &'a str) -> BoxFuture<'a, bool> {
        self.stream_settle(stream, group, id)
    }

    #[cfg(feature = "webhooks")]
    fn idle_for<'a>(
        &'a self,
        read: StreamRead<'a>,
        id: &'a str,
        idle: Duration,
    ) -> BoxFuture<'a, bool> {
        self.stream_idle_for(read, id, idle)
    }

    #[cfg(feature = "webhooks")]
    fn move_entry<'a>(
        &'a self,
        from: &'a str,
        group: &'a str,
        id: &'a str,
        to: &'a str,
        value: &'a [u8],
    ) -> BoxFuture<'a, bool> {
        self.stream_move_entry(from, group, id, to, value)
    }

    #[cfg(feature = "webhooks")]
    fn entries<'a>(
        &'a self,
        stream: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Option<Vec<StreamEntry>>> {
        self.stream_entries(stream, count)
    }

    #[cfg(feature = "webhooks")]
    fn length<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Option<u64>> {
        self.stream_length(stream)
    }

    fn is_available(&self) -> bool {
        !self.breaker.is_open(Instant::now())
    }

    fn degraded(&self) -> Option<&'static str> {
        self.health.cause()
    }
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
