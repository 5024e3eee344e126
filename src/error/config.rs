//! [`ConfigError`]: building an elevator failed.

/// Building an [`Elevator`](crate::Elevator) failed.
///
/// # Example
///
/// ```
/// use wix_elevate::{ConfigError, Elevator};
///
/// let err = Elevator::builder("", "secret").build().unwrap_err();
/// assert!(matches!(err, ConfigError::EmptyAppId));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The app id is empty.
    #[error("the Wix app id is empty")]
    EmptyAppId,
    /// The app secret is empty.
    #[error("the Wix app secret is empty")]
    EmptyAppSecret,
    /// The Wix API base URL is not an absolute `http` or `https` URL.
    #[error("the Wix API base URL must be an absolute http(s) URL without query or fragment")]
    InvalidBaseUrl,
    /// A duration or size setting that must be positive was zero.
    #[error("the setting `{0}` must be greater than zero")]
    Zero(&'static str),
    /// A duration setting is longer than 24 hours.
    #[error("the setting `{0}` must be at most 24 hours")]
    TooLong(&'static str),
    /// The leeway of a JWT verifier (webhooks, service plugins) is longer
    /// than five minutes.
    #[error("the leeway on a signed request's exp and nbf must be at most 5 minutes")]
    LeewayTooLong,
    /// A service plugin's deadline is over a minute: Wix waits seconds.
    #[error("a service plugin's deadline must be at most a minute")]
    PluginDeadlineTooLong,
    /// A service plugin was built without any method to serve.
    #[error("a service plugin needs at least one method")]
    NoPluginMethod,
    /// A service plugin's verifier checks calls to another app than its
    /// elevator acts for.
    #[error("the service plugin's verifier is for another app id than the elevator's")]
    PluginAppMismatch,
    /// A declared operation is not `METHOD /path/template` with plain
    /// segments and `{name}` placeholders.
    #[error(
        "invalid Wix operation `{0}`: expected `METHOD /path/{{placeholder}}`, the method in capitals (`GET`, `POST`...), plain path segments and an optional `?key=value&key={{placeholder}}` query"
    )]
    InvalidOperation(String),
    /// The operating system's random number generator failed, so no secret
    /// key could be drawn for the identity cache.
    #[error("the operating system's random number generator failed")]
    Randomness(#[source] std::io::Error),
    /// The HTTP client could not be built (for example, no TLS backend).
    #[error("the HTTP client for Wix could not be built")]
    HttpClient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Fleet mode was required (`RedisConfig::required`), and Redis does not
    /// give what it needs: why, in words.
    #[error("fleet mode is required, but {0}")]
    FleetUnavailable(&'static str),
    /// The Redis URL (`ElevatorBuilder::redis`) is not a `redis://`,
    /// `rediss://` or `unix://` URL, or the key prefix is empty or has
    /// spaces.
    #[error("the Redis URL or key prefix is invalid")]
    InvalidRedisUrl,
    /// The base URL is `https`, but the crate was built without a TLS
    /// backend (features `rustls` and `native-tls` both off).
    #[error("the Wix API base URL is https, but no TLS feature (rustls, native-tls) is enabled")]
    NoTls,
}
