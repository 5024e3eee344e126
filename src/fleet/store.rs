//! The Redis (or Valkey) connection: every operation has a tight timeout,
//! a circuit breaker skips Redis while it is down or slow, and the
//! connection re-establishes itself. A failed or skipped operation is
//! `None`: the caller carries on as a replica alone.

use std::{future::Future, time::Duration, time::Instant};

use metrics::{Counter, Gauge, counter, gauge};
use redis::{AsyncCommands, RedisResult, aio::ConnectionManager};
use tokio::sync::OnceCell;

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

    /// `GET key`: `None` if Redis is unavailable, `Some(None)` on a miss.
    pub(crate) async fn get(&self, key: &str) -> Option<Option<Vec<u8>>> {
        let value: Option<Option<Vec<u8>>> = self
            .run(|mut c| async move { c.get::<_, Option<Vec<u8>>>(key).await })
            .await;
        match &value {
            Some(Some(_)) => self.metrics.hit.increment(1),
            Some(None) => self.metrics.miss.increment(1),
            None => {}
        }
        value
    }

    /// `SET key value PX ttl`.
    pub(crate) async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> bool {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.run(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(millis)
                .query_async::<()>(&mut c)
                .await
        })
        .await
        .is_some()
    }

    /// `SET key 1 NX PX ttl`: `Some(true)` if this replica took the lease.
    pub(crate) async fn lease(&self, key: &str, ttl: Duration) -> Option<bool> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.run(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(millis)
                .query_async::<Option<String>>(&mut c)
                .await
        })
        .await
        .map(|set| set.is_some())
    }

    /// `DEL keys...`.
    pub(crate) async fn delete(&self, keys: &[&str]) -> bool {
        self.run(|mut c| async move { c.del::<_, ()>(keys).await })
            .await
            .is_some()
    }

    /// `PUBLISH channel message`.
    pub(crate) async fn publish(&self, channel: &str, message: &[u8]) -> bool {
        self.run(|mut c| async move { c.publish::<_, _, ()>(channel, message).await })
            .await
            .is_some()
    }

    /// One GCRA check, atomically in Redis (see `RATE_SCRIPT`): `None` if
    /// Redis is unavailable, else `Ok` or how long to wait.
    pub(crate) async fn rate(&self, key: &str, per_minute: u32) -> Option<Result<(), Duration>> {
        let interval_ms = 60_000.0 / f64::from(per_minute.max(1));
        let script = redis::Script::new(RATE_SCRIPT);
        let (allowed, wait_ms): (i64, i64) = self
            .run(|mut c| async move {
                script
                    .key(key)
                    .arg(interval_ms)
                    .arg(per_minute)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Some(if allowed == 1 {
            Ok(())
        } else {
            Err(Duration::from_millis(
                u64::try_from(wait_ms).unwrap_or(0).max(1),
            ))
        })
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

/// GCRA (the algorithm `governor` runs in process) as one atomic script,
/// on Redis's clock so that every replica agrees: `KEYS[1]` holds the
/// theoretical arrival time in milliseconds; `ARGV[1]` is the emission
/// interval, `ARGV[2]` the burst. Returns `{1, 0}` to admit, `{0, wait}`
/// to refuse.
const RATE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > burst * interval then
  return {0, math.ceil(new_tat - now - burst * interval)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
return {1, 0}
";

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
