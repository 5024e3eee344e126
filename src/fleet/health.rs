//! Whether fleet mode gives its guarantees now, and if not why, said once
//! per change: a WARN line with the cause in words, the gauge
//! `wix_elevate_fleet_up`, and [`Health::cause`] for readiness bodies. A
//! degraded fleet still serves (each replica works alone); it must not do
//! so silently.

use std::sync::Mutex;

use metrics::{Gauge, gauge};
use redis::{ErrorKind, RedisError, RedisResult, ServerErrorKind};

/// Why the fleet is degraded, in words an operator acts on.
pub(crate) mod cause {
    pub(crate) const UNREACHABLE: &str = "Redis could not be reached";
    pub(crate) const TIMEOUT: &str = "Redis did not answer within its timeout";
    pub(crate) const CREDENTIALS: &str = "Redis refused the credentials";
    pub(crate) const CLUSTER: &str = "Redis Cluster answered a redirection or is down (a slot moving or without a primary), or a proxy hides the cluster's topology";
    pub(crate) const REFUSED: &str = "Redis refused a command fleet mode needs (an ACL, or a proxy that does not pass scripts or pub/sub)";
    pub(crate) const UNREPLICATED: &str = "no replica of the Redis primary acknowledged a forget within the timeout: a failover could lose it, so it is not acknowledged";
    pub(crate) const READ_ONLY: &str = "Redis is a read-only replica, not the primary";
    pub(crate) const ERROR: &str = "Redis answered an error";
}

/// What an error says of the fleet's health.
pub(crate) fn cause_of(error: &RedisError) -> &'static str {
    if error.is_timeout() {
        return cause::TIMEOUT;
    }
    match error.kind() {
        ErrorKind::AuthenticationFailed => cause::CREDENTIALS,
        ErrorKind::Io | ErrorKind::Client => cause::UNREACHABLE,
        ErrorKind::Server(
            ServerErrorKind::Moved
            | ServerErrorKind::Ask
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::CrossSlot
            | ServerErrorKind::TryAgain,
        ) => cause::CLUSTER,
        ErrorKind::Server(ServerErrorKind::NoPerm | ServerErrorKind::NoScript) => cause::REFUSED,
        ErrorKind::Server(ServerErrorKind::ReadOnly) => cause::READ_ONLY,
        _ => match error.code() {
            Some("NOAUTH" | "WRONGPASS") => cause::CREDENTIALS,
            Some("NOPERM" | "NOSCRIPT") => cause::REFUSED,
            _ if error.is_connection_refusal() || error.is_io_error() => cause::UNREACHABLE,
            _ if error.to_string().contains("unknown command") => cause::REFUSED,
            _ => cause::ERROR,
        },
    }
}

/// Whether Redis gives what fleet mode needs, checked once, synchronously,
/// within `timeout` per step: it answers (with these credentials), it runs
/// scripts and it takes the fleet's notices (`PUBLISH`, or `SPUBLISH` on a
/// Redis Cluster node, checked through the cluster's topology).
pub(crate) fn probe(
    client: &redis::Client,
    prefix: &str,
    timeout: std::time::Duration,
) -> Result<(), &'static str> {
    let failed = |error: RedisError| cause_of(&error);
    let mut c = client
        .get_connection_with_timeout(timeout)
        .map_err(failed)?;
    c.set_read_timeout(Some(timeout)).map_err(failed)?;
    c.set_write_timeout(Some(timeout)).map_err(failed)?;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query(&mut c)
        .unwrap_or_default();
    let channel = format!("{prefix}:probe");
    if info.contains("cluster_enabled:1") {
        let mut cluster =
            redis::cluster::ClusterClientBuilder::new([client.get_connection_info().clone()])
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .build()
                .and_then(|cluster| cluster.get_connection())
                .map_err(failed)?;
        return checked(&mut cluster, "SPUBLISH", &channel).map_err(failed);
    }
    checked(&mut c, "PUBLISH", &channel).map_err(failed)
}

/// A script runs and `publish` goes through on `c`.
fn checked(c: &mut impl redis::ConnectionLike, publish: &str, channel: &str) -> RedisResult<()> {
    let _: i64 = redis::cmd("EVAL")
        .arg("return redis.call('EXISTS', KEYS[1])")
        .arg(1)
        .arg(channel)
        .query(c)?;
    let _: i64 = redis::cmd(publish).arg(channel).arg("").query(c)?;
    Ok(())
}

pub(crate) struct Health {
    /// `None` while up (or not yet tried), else why not.
    down: Mutex<Option<&'static str>>,
    up: Gauge,
}

impl Health {
    pub(crate) fn new() -> Self {
        let up = gauge!("wix_elevate_fleet_up");
        up.set(1.0);
        Self {
            down: Mutex::new(None),
            up,
        }
    }

    /// An operation went through.
    pub(crate) fn ok(&self) {
        if self.lock().take().is_some() {
            self.up.set(1.0);
            tracing::warn!(target: "wix_elevate::fleet", "fleet mode restored: Redis answers again");
        }
    }

    /// An operation failed for `cause`: said once per change of cause.
    pub(crate) fn failed(&self, cause: &'static str) {
        let previous = self.lock().replace(cause);
        if previous != Some(cause) {
            self.up.set(0.0);
            tracing::warn!(
                target: "wix_elevate::fleet",
                cause,
                "fleet mode degraded: each replica works alone (its own Wix calls, rate limits and caches) until Redis answers"
            );
        }
    }

    /// Why the fleet is degraded, if it is.
    pub(crate) fn cause(&self) -> Option<&'static str> {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<&'static str>> {
        match self.down.lock() {
            Ok(down) => down,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_names_its_cause() {
        let server = |kind, text: &'static str| RedisError::from((kind, text));
        for (error, want) in [
            (
                server(ErrorKind::AuthenticationFailed, "WRONGPASS"),
                cause::CREDENTIALS,
            ),
            (
                server(
                    ErrorKind::Server(ServerErrorKind::Moved),
                    "MOVED 3999 127.0.0.1:6381",
                ),
                cause::CLUSTER,
            ),
            (
                server(ErrorKind::Server(ServerErrorKind::CrossSlot), "CROSSSLOT"),
                cause::CLUSTER,
            ),
            (
                server(ErrorKind::Server(ServerErrorKind::NoPerm), "NOPERM"),
                cause::REFUSED,
            ),
            (
                server(ErrorKind::Server(ServerErrorKind::ReadOnly), "READONLY"),
                cause::READ_ONLY,
            ),
            (
                RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
                cause::UNREACHABLE,
            ),
        ] {
            assert_eq!(cause_of(&error), want, "{error}");
        }
    }

    #[test]
    fn a_change_is_recorded_once_and_a_recovery_clears_it() {
        let health = Health::new();
        assert_eq!(health.cause(), None);
        health.failed(cause::CLUSTER);
        health.failed(cause::CLUSTER);
        assert_eq!(health.cause(), Some(cause::CLUSTER));
        health.ok();
        assert_eq!(health.cause(), None);
    }
}
