//! [`RedisConfig`]: where the fleet's Redis is, and how patient to be.

use std::{fmt, time::Duration};

/// Fleet mode's settings, given to
/// [`ElevatorBuilder::redis`](crate::ElevatorBuilder::redis) as one value
/// (feature `redis`). A URL alone converts into one with the defaults.
///
/// The connection uses TLS (`rediss://`) through the crate's TLS feature:
/// `rustls` (the default) or `native-tls`.
///
/// ```
/// use std::time::Duration;
/// use wix_elevate::{Elevator, RedisConfig};
///
/// let elevator = Elevator::builder("app", "secret")
///     .redis(
///         RedisConfig::new("redis://127.0.0.1:6379")
///             .key_prefix("my-app")
///             .timeout(Duration::from_millis(100)),
///     )
///     .build()?;
/// // `Debug` never shows a password in the URL.
/// let config = RedisConfig::new("redis://user:hunter2@127.0.0.1:6379");
/// assert!(!format!("{config:?}").contains("hunter2"));
/// # Ok::<(), wix_elevate::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    pub(crate) url: String,
    pub(crate) prefix: Option<String>,
    pub(crate) timeout: Duration,
    pub(crate) lease: Duration,
    pub(crate) required: bool,
}

impl RedisConfig {
    /// Redis (or Valkey) at `url` (`redis://[user:password@]host:port`,
    /// `rediss://` for TLS), with the defaults: key prefix
    /// `{wix-elevate:<app id>}`, 50 ms per operation, 2 s leases.
    ///
    /// One node of a Redis Cluster (or Valkey cluster, 7.0 or later) is
    /// enough: the first connection asks the server whether it is a
    /// cluster node and, if it is, follows the cluster's topology from
    /// there (no other URL or switch to set).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: None,
            timeout: Duration::from_millis(50),
            lease: Duration::from_secs(2),
            required: false,
        }
    }

    /// The prefix of every Redis key and channel: one per app sharing a
    /// Redis. It is a Redis Cluster hash tag (wrapped in `{}` unless it
    /// holds one), so all of an app's keys are in one slot of a cluster:
    /// `"my-app"` becomes `{my-app}`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// The timeout of each Redis operation (default 50 ms). Past it the
    /// replica carries on alone; three failures in a row skip Redis for a
    /// second.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Require the fleet: `build()` checks, once, that Redis answers with
    /// these credentials and runs scripts and pub/sub (through the
    /// cluster's topology on a Redis Cluster node), and fails with [`ConfigError::FleetUnavailable`](crate::ConfigError::FleetUnavailable)
    /// and the cause otherwise, for operators who would rather not start
    /// than run without the fleet's guarantees. After start a degraded fleet
    /// still serves; [`Elevator::fleet_degraded`](crate::Elevator::fleet_degraded)
    /// tells a readiness check why. The check blocks for a moment (2 s at
    /// most per step).
    ///
    /// ```
    /// # use wix_elevate::{Elevator, RedisConfig};
    /// // Nothing listens on port 9: the elevator is not built.
    /// let built = Elevator::builder("app", "secret")
    ///     .redis(RedisConfig::new("redis://127.0.0.1:9").required())
    ///     .build();
    /// assert!(built.is_err());
    /// ```
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// How long a replica may hold the fleet-wide lease on one Wix call
    /// (default 2 s): a replica that dies holding it delays the others by
    /// at most this long.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
}

impl RedisConfig {
    /// The URL with its password masked, for logs:
    /// `scheme://user:password@host` reads `scheme://user:***@host`.
    ///
    /// ```
    /// # use wix_elevate::RedisConfig;
    /// let config = RedisConfig::new("rediss://app:hunter2@redis.internal:6380");
    /// assert_eq!(config.redacted_url(), "rediss://app:***@redis.internal:6380");
    /// ```
    pub fn redacted_url(&self) -> String {
        match (self.url.split_once("://"), self.url.rsplit_once('@')) {
            (Some((scheme, rest)), Some((_, host))) if rest.contains('@') => {
                let user = rest.split(['@', ':']).next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            _ => self.url.clone(),
        }
    }
}

impl From<&str> for RedisConfig {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

impl From<String> for RedisConfig {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("lease", &self.lease)
            .field("required", &self.required)
            .finish()
    }
}
