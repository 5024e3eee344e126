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

use std::{future::Future, time::Duration};
use tokio::time::Instant;

use futures_util::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use metrics::{Counter, Gauge, counter, gauge};
use redis::{
    AsyncCommands, Cmd, Pipeline, PushKind, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr},
};
use tokio::sync::OnceCell;

#[cfg(feature = "webhooks")]
use super::store::{StreamEntry, StreamRead};
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

/// The longest a read waits at Redis for new entries.
#[cfg(feature = "webhooks")]
const LONGEST_WAIT: Duration = Duration::from_secs(5);

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

    /// The shared connection, made on first use (and again after a failed
    /// first attempt); it reconnects by itself afterwards. A Redis Cluster
    /// node makes it a cluster connection, which follows the topology.
    async fn connection(&self) -> RedisResult<Connection> {
        self.connection
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let mut single =
                    ConnectionManager::new_with_config(self.client.clone(), config).await?;
                // A server that refuses `INFO` (an ACL, a proxy) is taken
                // for one Redis: a cluster then says so by its redirections.
                let info: String = redis::cmd("INFO")
                    .arg("cluster")
                    .query_async(&mut single)
                    .await
                    .unwrap_or_default();
                if !info.contains("cluster_enabled:1") {
                    return Ok(Connection::Single(single));
                }
                let cluster = self.cluster(None)?.get_async_connection().await?;
                Ok(Connection::Cluster(cluster))
            })
            .await
            .cloned()
    }

    /// A cluster client seeded with the configured node (its credentials
    /// and TLS for every node), pushing to `pushes` if given (RESP3).
    fn cluster(
        &self,
        pushes: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
    ) -> RedisResult<ClusterClient> {
        let builder = ClusterClientBuilder::new([self.client.get_connection_info().clone()])
            .connection_timeout(self.timeout)
            .response_timeout(self.timeout)
            .retries(2);
        match pushes {
            Some(pushes) => builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(pushes),
            None => builder,
        }
        .build()
    }

    /// The connection for waiting reads, made on first use, whose answers
    /// may take [`LONGEST_WAIT`] more than the store's timeout.
    #[cfg(feature = "webhooks")]
    async fn waiting_connection(&self) -> RedisResult<Connection> {
        let cluster = self.connection().await?.is_cluster();
        self.waiting
            .get_or_try_init(|| async {
                let timeout = self.timeout + LONGEST_WAIT;
                if cluster {
                    let client =
                        ClusterClientBuilder::new([self.client.get_connection_info().clone()])
                            .connection_timeout(self.timeout)
                            .response_timeout(timeout)
                            .retries(2)
                            .build()?;
                    return Ok(Connection::Cluster(client.get_async_connection().await?));
                }
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                Ok(Connection::Single(
                    ConnectionManager::new_with_config(self.client.clone(), config).await?,
                ))
            })
            .await
            .cloned()
    }

    /// Run `script` for what it does: whether it went through.
    async fn effect(&self, script: redis::ScriptInvocation<'static>) -> bool {
        self.run(|mut c| async move { script.invoke_async::<Value>(&mut c).await })
            .await
            .is_some()
    }

    /// `key`, or the unused key for an empty one.
    fn key<'a>(&'a self, key: &'a str) -> &'a str {
        if key.is_empty() { &self.unused } else { key }
    }

    /// The cluster's sharded messages on `channel` (its slot's primary):
    /// the stream ends when any connection of the cluster client is lost
    /// (the client would resubscribe by itself, but what was published in
    /// between is lost, and the listener must know).
    async fn cluster_subscription(
        &self,
        channel: &str,
    ) -> RedisResult<BoxStream<'static, Vec<u8>>> {
        let (pushes, received) = tokio::sync::mpsc::unbounded_channel();
        let mut connection = self.cluster(Some(pushes))?.get_async_connection().await?;
        connection.ssubscribe(channel).await?;
        let messages = futures_util::stream::unfold(
            (received, connection),
            |(mut received, connection)| async move {
                loop {
                    let push = received.recv().await?;
                    match (push.kind, push.data.get(1)) {
                        (PushKind::SMessage, Some(Value::BulkString(payload))) => {
                            return Some((payload.clone(), (received, connection)));
                        }
                        (PushKind::Disconnection, _) => return None,
                        _ => {}
                    }
                }
            },
        );
        Ok(messages.boxed())
    }

    /// Run `op` within the timeout, unless the circuit is open.
    async fn run<T, Fut>(&self, op: impl FnOnce(Connection) -> Fut) -> Option<T>
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
        async move {
            let script = &scripts().append;
            let appended: i64 = self
                .run(|mut c| async move {
                    script
                        .key(stream)
                        .arg(value)
                        .arg(bound)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            Some(appended == 1)
        }
        .boxed()
    }

    /// Outside the breaker, on a connection of its own: a read that waits
    /// is not an operation that failed.
    #[cfg(feature = "webhooks")]
    fn read_new<'a>(&'a self, read: StreamRead<'a>) -> BoxFuture<'a, Option<Vec<StreamEntry>>> {
        let block = read.block.min(LONGEST_WAIT);
        async move {
            let attempt = async {
                let mut c = self.waiting_connection().await?;
                let reply: RedisResult<Value> = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(read.group)
                    .arg(read.consumer)
                    .arg("COUNT")
                    .arg(read.count.max(1))
                    .arg("BLOCK")
                    .arg(millis(block))
                    .arg("STREAMS")
                    .arg(read.stream)
                    .arg(">")
                    .query_async(&mut c)
                    .await;
                match reply {
                    Err(error) if error.code() == Some("NOGROUP") => {
                        let created: RedisResult<()> = redis::cmd("XGROUP")
                            .arg("CREATE")
                            .arg(read.stream)
                            .arg(read.group)
                            .arg("0")
                            .arg("MKSTREAM")
                            .query_async(&mut c)
                            .await;
                        match created {
                            Err(error) if error.code() != Some("BUSYGROUP") => Err(error),
                            _ => Ok(Vec::new()),
                        }
                    }
                    reply => Ok(read_reply(&reply?)),
                }
            };
            let outcome = tokio::time::timeout(self.timeout + block + self.timeout, attempt).await;
            match outcome {
                Ok(Ok(entries)) => Some(entries),
                Ok(Err(error)) => {
                    self.health.failed(cause_of(&error));
                    None
                }
                Err(_) => {
                    self.health.failed(cause::TIMEOUT);
                    None
                }
            }
        }
        .boxed()
    }

    #[cfg(feature = "webhooks")]
    fn claim_stale<'a>(
        &'a self,
        read: StreamRead<'a>,
        idle: Duration,
    ) -> BoxFuture<'a, Option<Vec<StreamEntry>>> {
        async move {
            let script = &scripts().claim_stale;
            let reply: Vec<Value> = self
                .run(|mut c| async move {
                    script
                        .key(read.stream)
                        .arg(read.group)
                        .arg(read.consumer)
                        .arg(millis(idle))
                        .arg(read.count.max(1))
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            Some(
                reply
                    .chunks_exact(3)
                    .filter_map(|entry| match entry {
                        [
                            Value::BulkString(id),
                            Value::BulkString(value),
                            Value::Int(deliveries),
                        ] => Some(StreamEntry {
                            id: String::from_utf8(id.clone()).ok()?,
                            value: value.clone(),
                            deliveries: u32::try_from(*deliveries).unwrap_or(u32::MAX),
                        }),
                        _ => None,
                    })
                    .collect(),
            )
        }
        .boxed()
    }

    #[cfg(feature = "webhooks")]
    fn settle<'a>(&'a self, stream: &'a str, group: &'a str, id: &'a str) -> BoxFuture<'a, bool> {
        let mut settle = scripts().settle.key(stream);
        settle.arg(group).arg(id);
        self.effect(settle).boxed()
    }

    #[cfg(feature = "webhooks")]
    fn idle_for<'a>(
        &'a self,
        read: StreamRead<'a>,
        id: &'a str,
        idle: Duration,
    ) -> BoxFuture<'a, bool> {
        async move {
            self.run(|mut c| async move {
                redis::cmd("XCLAIM")
                    .arg(read.stream)
                    .arg(read.group)
                    .arg(read.consumer)
                    .arg(0)
                    .arg(id)
                    .arg("IDLE")
                    .arg(millis(idle))
                    .arg("JUSTID")
                    .query_async::<Value>(&mut c)
                    .await
            })
            .await
            .is_some()
        }
        .boxed()
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
        let mut move_entry = scripts().move_entry.key(from);
        move_entry.key(to).arg(group).arg(id).arg(value);
        self.effect(move_entry).boxed()
    }

    #[cfg(feature = "webhooks")]
    fn entries<'a>(
        &'a self,
        stream: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Option<Vec<StreamEntry>>> {
        async move {
            let reply: Value = self
                .run(|mut c| async move {
                    redis::cmd("XRANGE")
                        .arg(stream)
                        .arg("-")
                        .arg("+")
                        .arg("COUNT")
                        .arg(count.max(1))
                        .query_async(&mut c)
                        .await
                })
                .await?;
            Some(stream_entries(&reply))
        }
        .boxed()
    }

    #[cfg(feature = "webhooks")]
    fn length<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Option<u64>> {
        async move {
            self.run(|mut c| async move {
                redis::cmd("XLEN")
                    .arg(stream)
                    .query_async::<u64>(&mut c)
                    .await
            })
            .await
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

impl RedisStore {
    /// `script` with a slot's keys, in the order the slot scripts read
    /// them: value, mark, sequence, lease.
    fn keys_of(
        &self,
        script: &'static redis::Script,
        slot: SlotKeys<'_>,
    ) -> redis::ScriptInvocation<'static> {
        let mut invocation = script.key(self.key(slot.value));
        invocation
            .key(self.key(slot.mark))
            .key(self.key(slot.sequence))
            .key(self.key(slot.lease));
        invocation
    }
}

/// The one connection a store shares: to one Redis, or to a cluster.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// `WAIT 1 wait_ms` on the primary that holds `key` (on a cluster,
    /// its slot's): how many replicas acknowledged the writes before it.
    async fn wait_for_a_replica(&mut self, key: &str, wait_ms: u64) -> RedisResult<u64> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(1).arg(wait_ms);
        match self {
            Self::Single(c) => wait.query_async(c).await,
            Self::Cluster(c) => {
                let primary = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_key(key, SlotAddr::Master),
                ));
                Ok(redis::from_redis_value(
                    c.route_command(wait, primary).await?,
                )?)
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The entries of an `XREADGROUP` reply for one stream (RESP2 or RESP3).
#[cfg(feature = "webhooks")]
fn read_reply(reply: &Value) -> Vec<StreamEntry> {
    match reply {
        Value::Array(streams) => match streams.first() {
            Some(Value::Array(stream)) => stream.get(1).map(stream_entries).unwrap_or_default(),
            _ => Vec::new(),
        },
        Value::Map(streams) => streams
            .first()
            .map(|(_, entries)| stream_entries(entries))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// `[[id, [field, value, ...]], ...]`: each entry's `v`, handed out once.
#[cfg(feature = "webhooks")]
fn stream_entries(entries: &Value) -> Vec<StreamEntry> {
    let Value::Array(entries) = entries else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let Value::Array(entry) = entry else {
                return None;
            };
            let [Value::BulkString(id), Value::Array(fields), ..] = entry.as_slice() else {
                return None;
            };
            let value = fields.chunks_exact(2).find_map(|pair| match pair {
                [Value::BulkString(name), Value::BulkString(value)] if name == b"v" => {
                    Some(value.clone())
                }
                _ => None,
            })?;
            Some(StreamEntry {
                id: String::from_utf8(id.clone()).ok()?,
                value,
                deliveries: 1,
            })
        })
        .collect()
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
