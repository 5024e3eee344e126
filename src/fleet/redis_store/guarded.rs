//! Each Redis operation within the store's timeout, behind its circuit
//! breaker, counted, and its failure said to the fleet's health.

use std::future::Future;

use metrics::{Counter, Gauge, counter, gauge};
use redis::{RedisResult, Value};
use tokio::time::Instant;

use super::{Connection, RedisStore};
use crate::{
    fleet::health::{cause, cause_of},
    upstream::{Admission, Breaker},
};

/// Counters for Redis operations, by result.
pub(super) struct RedisMetrics {
    pub(super) hit: Counter,
    pub(super) miss: Counter,
    error: Counter,
    skipped: Counter,
    circuit_open: Gauge,
}

impl RedisMetrics {
    pub(super) fn new() -> Self {
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

impl RedisStore {
    /// Run `op` within the timeout, unless the circuit is open.
    pub(super) async fn run<T, Fut>(&self, op: impl FnOnce(Connection) -> Fut) -> Option<T>
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

    /// Run `script` for what it does: whether it went through.
    pub(super) async fn effect(&self, script: redis::ScriptInvocation<'static>) -> bool {
        self.run(|mut c| async move { script.invoke_async::<Value>(&mut c).await })
            .await
            .is_some()
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
