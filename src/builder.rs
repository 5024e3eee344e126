//! [`ElevatorBuilder`]: every per-app setting, checked once in
//! [`build`](ElevatorBuilder::build).

use std::{fmt, num::NonZeroU32, sync::Arc, time::Duration};

use secrecy::SecretString;

use crate::{
    app_token::{AppTokenSettings, AppTokenSources, AppTokens},
    client::WixClient,
    elevator::{Elevator, Shared, WIX_API_BASE_URL},
    error::ConfigError,
    forget::Forgetting,
    identity::{Identities, IdentitySettings, IdentitySources},
    log_throttle::LogThrottle,
    metrics::WixMetrics,
    settings::{AppTokenLifetimes, WixGuards},
    token::{self, TokenHasher},
};

/// Configures an [`Elevator`]; see [`Elevator::builder`].
///
/// Every setting has a production default:
///
/// | setting | default |
/// |---|---|
/// | [`base_url`](Self::base_url) | `https://www.wixapis.com` |
/// | [`http_timeout`](Self::http_timeout) | 5 s per Wix call |
/// | [`token_info_ttl`](Self::token_info_ttl) | 60 s (never past the token's `exp`) |
/// | [`refused_token_ttl`](Self::refused_token_ttl) | 10 s |
/// | [`max_cached_identities`](Self::max_cached_identities) | 100 000 |
/// | [`max_cached_app_tokens`](Self::max_cached_app_tokens) | 10 000 |
/// | [`app_token_lifetimes`](Self::app_token_lifetimes) | renewed 5 min before expiry, never used in its last 30 s, 1 h when Wix states no usable lifetime ([`AppTokenLifetimes`]) |
/// | [`max_token_len`](Self::max_token_len) | 8 KiB |
/// | [`auth_deadline`](Self::auth_deadline) | 10 s for one request's authentication |
/// | [`api_deadline`](Self::api_deadline) | 10 s for one Wix API call through [`WixApi`](crate::WixApi), retries included |
/// | [`guards`](Self::guards) | per endpoint family: a breaker opening after 5 failures for 5 s, 64 calls in flight, 1 s of queueing ([`WixGuards`]) |
/// | [`token_info_budget_for_new_tokens`](Self::token_info_budget_for_new_tokens) | 100 per second, bursts of 1,000 |
/// | [`serve_stale_identities_for`](Self::serve_stale_identities_for) | off (degraded mode) |
/// | [`redis`][builder-redis] | off (fleet mode, feature `redis`) |
///
/// Every duration must be at most 24 hours; [`build`](Self::build) returns
/// a [`ConfigError`] otherwise.
///
/// ```
/// # use std::time::Duration;
/// # use wix_elevate::Elevator;
/// let elevator = Elevator::builder("app", "secret")
///     .base_url("http://127.0.0.1:9999")
///     .max_token_len(4096)
///     .build()
///     .unwrap();
/// assert_eq!(elevator.base_url(), "http://127.0.0.1:9999");
/// ```
#[doc = ""]
#[cfg_attr(feature = "redis", doc = "[builder-redis]: Self::redis")]
#[cfg_attr(
    not(feature = "redis"),
    doc = "[builder-redis]: crate::guide::fleet_mode"
)]
#[must_use]
pub struct ElevatorBuilder {
    app_id: String,
    app_secret: SecretString,
    base_url: String,
    http_timeout: Duration,
    token_info_ttl: Duration,
    refused_token_ttl: Duration,
    max_cached_identities: usize,
    max_cached_app_tokens: usize,
    app_token_lifetimes: AppTokenLifetimes,
    max_token_len: usize,
    auth_deadline: Duration,
    api_deadline: Duration,
    guards: WixGuards,
    stale_identity_grace: Option<Duration>,
    /// Token Info calls for never-seen tokens: per second, burst.
    new_token_budget: (NonZeroU32, NonZeroU32),
    #[cfg(feature = "redis")]
    fleet: Option<crate::RedisConfig>,
}

/// Token Info calls for never-seen tokens: 100 per second, bursts of 1,000.
const DEFAULT_NEW_TOKEN_BUDGET: (NonZeroU32, NonZeroU32) = (
    NonZeroU32::new(100).unwrap(),
    NonZeroU32::new(1_000).unwrap(),
);

/// The longest any duration setting may be: longer ones are a mistake, and
/// would overflow clock arithmetic at the extreme.
const MAX_SETTING: Duration = Duration::from_secs(24 * 3600);

impl ElevatorBuilder {
    pub(crate) fn new(app_id: String, app_secret: String) -> Self {
        Self {
            app_id,
            app_secret: SecretString::from(app_secret),
            base_url: WIX_API_BASE_URL.to_owned(),
            http_timeout: Duration::from_secs(5),
            token_info_ttl: Duration::from_secs(60),
            refused_token_ttl: Duration::from_secs(10),
            max_cached_identities: 100_000,
            max_cached_app_tokens: 10_000,
            app_token_lifetimes: AppTokenLifetimes::default(),
            max_token_len: token::DEFAULT_MAX_TOKEN_LEN,
            auth_deadline: Duration::from_secs(10),
            api_deadline: Duration::from_secs(10),
            guards: WixGuards::default(),
            stale_identity_grace: None,
            new_token_budget: DEFAULT_NEW_TOKEN_BUDGET,
            #[cfg(feature = "redis")]
            fleet: None,
        }
    }

    /// Where Wix's API lives (the mock's URL in tests).
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Timeout of each call to Wix (connect and answer). Exceeding it
    /// answers 504.
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// How long a verified identity is reused before Wix is asked again;
    /// never longer than the token's own `exp`.
    pub fn token_info_ttl(mut self, ttl: Duration) -> Self {
        self.token_info_ttl = ttl;
        self
    }

    /// How long a token Wix refused (unknown, inactive, expired, another
    /// app's) is remembered as refused. Zero disables it.
    pub fn refused_token_ttl(mut self, ttl: Duration) -> Self {
        self.refused_token_ttl = ttl;
        self
    }

    /// Bound on cached caller identities (including refused tokens).
    pub fn max_cached_identities(mut self, max: usize) -> Self {
        self.max_cached_identities = max;
        self
    }

    /// Bound on cached app tokens (one per instance).
    pub fn max_cached_app_tokens(mut self, max: usize) -> Self {
        self.max_cached_app_tokens = max;
        self
    }

    /// How long app tokens are trusted and when they are renewed (see
    /// [`AppTokenLifetimes`]).
    pub fn app_token_lifetimes(mut self, lifetimes: AppTokenLifetimes) -> Self {
        self.app_token_lifetimes = lifetimes;
        self
    }

    /// Longest caller token accepted; longer ones answer 401 without any
    /// call to Wix.
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// The overall deadline for authenticating one request, all Wix calls
    /// and retries included (each call also has
    /// [`http_timeout`](Self::http_timeout)). Past it: 504.
    pub fn auth_deadline(mut self, deadline: Duration) -> Self {
        self.auth_deadline = deadline;
        self
    }

    /// The overall deadline of one Wix API call made through
    /// [`WixApi`](crate::WixApi), retries and a token renewal included
    /// (each attempt also has [`http_timeout`](Self::http_timeout)). Past
    /// it: 504.
    pub fn api_deadline(mut self, deadline: Duration) -> Self {
        self.api_deadline = deadline;
        self
    }

    /// The breaker and the cap on calls in flight that guard every call
    /// to Wix, per endpoint family (see [`WixGuards`]).
    pub fn guards(mut self, guards: WixGuards) -> Self {
        self.guards = guards;
        self
    }

    /// Degraded mode (off by default): while Wix is failing, keep serving a
    /// verified identity whose cache TTL has passed, for at most `grace`
    /// past that TTL and never past the token's own `exp`. App tokens are
    /// never used past their expiry.
    pub fn serve_stale_identities_for(mut self, grace: Duration) -> Self {
        self.stale_identity_grace = Some(grace);
        self
    }

    /// A budget on Token Info calls for tokens this elevator has never seen
    /// (default 100 per second, in bursts of 1,000): beyond it, a request with
    /// a new token is answered 503 with `Retry-After` at once, so a flood of
    /// invented tokens cannot spend the app's Wix quota. Cached identities,
    /// and the renewal of an identity whose TTL passed, never count.
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// # use wix_elevate::Elevator;
    /// const PER_SECOND: NonZeroU32 = NonZeroU32::new(20).unwrap();
    /// const BURST: NonZeroU32 = NonZeroU32::new(100).unwrap();
    /// let elevator = Elevator::builder("app", "secret")
    ///     .token_info_budget_for_new_tokens(PER_SECOND, BURST)
    ///     .build()?;
    /// # Ok::<(), wix_elevate::ConfigError>(())
    /// ```
    pub fn token_info_budget_for_new_tokens(
        mut self,
        per_second: NonZeroU32,
        burst: NonZeroU32,
    ) -> Self {
        self.new_token_budget = (per_second, burst);
        self
    }

    /// Fleet mode (feature `redis`): share identities, app tokens, rate
    /// limits and invalidations with every replica through the Redis or
    /// Valkey at `url` (`redis://[user:password@]host:port[/db]`, `rediss://`
    /// for TLS). The in-process caches stay the first level; Redis is asked
    /// only on a local miss, with a tight timeout, and skipped while it is
    /// down. Nothing is stored readable: see the crate docs.
    ///
    /// ```
    /// # use wix_elevate::{Elevator, RedisConfig};
    /// let elevator = Elevator::builder("app", "secret")
    ///     .redis(RedisConfig::new("redis://127.0.0.1:6379").key_prefix("my-app"))
    ///     .build()?;
    /// # Ok::<(), wix_elevate::ConfigError>(())
    /// ```
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, config: impl Into<crate::RedisConfig>) -> Self {
        self.fleet = Some(config.into());
        self
    }

    /// Check the settings and build the elevator.
    ///
    /// Every duration must be at most 24 hours, and those that must be
    /// positive are; anything else is a [`ConfigError`], never a panic
    /// later.
    pub fn build(self) -> Result<Elevator, ConfigError> {
        if self.app_id.trim().is_empty() {
            return Err(ConfigError::EmptyAppId);
        }
        if secrecy::ExposeSecret::expose_secret(&self.app_secret).is_empty() {
            return Err(ConfigError::EmptyAppSecret);
        }
        for (name, zero) in [
            ("http_timeout", self.http_timeout.is_zero()),
            ("token_info_ttl", self.token_info_ttl.is_zero()),
            ("max_cached_identities", self.max_cached_identities == 0),
            ("max_cached_app_tokens", self.max_cached_app_tokens == 0),
            ("max_token_len", self.max_token_len == 0),
            ("auth_deadline", self.auth_deadline.is_zero()),
            ("api_deadline", self.api_deadline.is_zero()),
            ("WixGuards::breaker", self.guards.breaker_threshold == 0),
            ("WixGuards::max_in_flight", self.guards.max_in_flight == 0),
            (
                "AppTokenLifetimes::fallback",
                self.app_token_lifetimes.fallback.is_zero(),
            ),
        ] {
            if zero {
                return Err(ConfigError::Zero(name));
            }
        }
        for (name, duration) in [
            ("http_timeout", self.http_timeout),
            ("token_info_ttl", self.token_info_ttl),
            ("refused_token_ttl", self.refused_token_ttl),
            (
                "AppTokenLifetimes::renew_before",
                self.app_token_lifetimes.renew_before,
            ),
            (
                "AppTokenLifetimes::expiry_margin",
                self.app_token_lifetimes.expiry_margin,
            ),
            ("auth_deadline", self.auth_deadline),
            ("api_deadline", self.api_deadline),
            ("WixGuards::breaker", self.guards.breaker_cooldown),
            ("WixGuards::max_queue_wait", self.guards.max_queue_wait),
            (
                "serve_stale_identities_for",
                self.stale_identity_grace.unwrap_or_default(),
            ),
            (
                "AppTokenLifetimes::fallback",
                self.app_token_lifetimes.fallback,
            ),
        ] {
            if duration > MAX_SETTING {
                return Err(ConfigError::TooLong(name));
            }
        }
        let client = WixClient::new(
            &self.base_url,
            self.http_timeout,
            self.guards.settings(),
            self.app_token_lifetimes.fallback,
            WixMetrics::new(),
        )?;
        #[cfg(feature = "redis")]
        let (fleet, hasher) = match self.fleet {
            Some(settings) => {
                for (name, duration) in [
                    ("redis_timeout", settings.timeout),
                    ("redis_lease", settings.lease),
                ] {
                    if duration.is_zero() {
                        return Err(ConfigError::Zero(name));
                    }
                    if duration > MAX_SETTING {
                        return Err(ConfigError::TooLong(name));
                    }
                }
                let secret = secrecy::ExposeSecret::expose_secret(&self.app_secret).as_bytes();
                let fleet = crate::fleet::Fleet::new(settings, &self.app_id, secret)?;
                // The same fleet-wide digest, for the identity cache and to
                // name a refused app token to every replica.
                let digests = (
                    crate::fleet::token_hasher(secret)?,
                    crate::fleet::token_hasher(secret)?,
                );
                (Some((Arc::new(fleet), digests.1)), digests.0)
            }
            None => (None, TokenHasher::random()?),
        };
        #[cfg(not(feature = "redis"))]
        let (fleet, hasher): (Option<(Arc<crate::fleet::Fleet>, TokenHasher)>, _) =
            (None, TokenHasher::random()?);
        // A forgotten token's note outlives any identity fetch, which the
        // request deadline bounds.
        let forgetting = Arc::new(
            Forgetting::new(
                self.max_cached_identities
                    .saturating_add(self.max_cached_app_tokens),
            )
            .outliving(self.auth_deadline),
        );
        let app_id: Arc<str> = self.app_id.into();
        let client = Arc::new(client);
        let identities = Identities::new(
            IdentitySettings {
                capacity: self.max_cached_identities,
                ttl: self.token_info_ttl,
                refused_ttl: self.refused_token_ttl,
                max_token_len: self.max_token_len,
                stale_grace: self.stale_identity_grace,
                new_token_budget: self.new_token_budget,
            },
            IdentitySources {
                hasher,
                app_id: app_id.clone(),
                client: client.clone(),
                fleet: fleet.as_ref().map(|(fleet, _)| fleet.clone()),
                forgetting: forgetting.clone(),
            },
        )?;
        let shared_fleet = fleet.as_ref().map(|(fleet, _)| fleet.clone());
        let app_tokens = AppTokens::new(
            AppTokenSettings {
                capacity: self.max_cached_app_tokens,
                renew_before: self.app_token_lifetimes.renew_before,
                expiry_margin: self.app_token_lifetimes.expiry_margin,
                auth_deadline: self.auth_deadline,
            },
            AppTokenSources {
                app_id: app_id.clone(),
                client: client.clone(),
                fleet,
                forgetting: forgetting.clone(),
                app_secret: self.app_secret,
            },
        );
        Ok(Elevator::from_shared(Shared {
            app_id,
            client,
            identities,
            app_tokens: Arc::new(app_tokens),
            forgetting,
            log_throttle: LogThrottle::new(crate::log_throttle::INTERVAL),
            auth_deadline: self.auth_deadline,
            api_deadline: self.api_deadline,
            fleet: shared_fleet,
            installed: crate::installed::Installed::default(),
        }))
    }
}

impl fmt::Debug for ElevatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElevatorBuilder")
            .field("app_id", &self.app_id)
            .field("app_secret", &"[REDACTED]")
            .field("base_url", &self.base_url)
            .field("http_timeout", &self.http_timeout)
            .field("token_info_ttl", &self.token_info_ttl)
            .field("refused_token_ttl", &self.refused_token_ttl)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_refuses_bad_settings_without_panicking() {
        assert!(matches!(
            Elevator::builder(" ", "s").build(),
            Err(ConfigError::EmptyAppId)
        ));
        assert!(matches!(
            Elevator::builder("a", "").build(),
            Err(ConfigError::EmptyAppSecret)
        ));
        assert!(matches!(
            Elevator::builder("a", "s")
                .http_timeout(Duration::ZERO)
                .build(),
            Err(ConfigError::Zero("http_timeout"))
        ));
        assert!(matches!(
            Elevator::builder("a", "s").base_url("wixapis.com").build(),
            Err(ConfigError::InvalidBaseUrl)
        ));
        let forever = Duration::MAX;
        type Setter = fn(ElevatorBuilder, Duration) -> ElevatorBuilder;
        let setters: [(&str, Setter); 11] = [
            ("http_timeout", ElevatorBuilder::http_timeout),
            ("token_info_ttl", ElevatorBuilder::token_info_ttl),
            ("refused_token_ttl", ElevatorBuilder::refused_token_ttl),
            ("AppTokenLifetimes::renew_before", |b, d| {
                b.app_token_lifetimes(AppTokenLifetimes::default().renew_before(d))
            }),
            ("AppTokenLifetimes::expiry_margin", |b, d| {
                b.app_token_lifetimes(AppTokenLifetimes::default().expiry_margin(d))
            }),
            ("auth_deadline", ElevatorBuilder::auth_deadline),
            ("api_deadline", ElevatorBuilder::api_deadline),
            ("WixGuards::breaker", |b, d| {
                b.guards(WixGuards::default().breaker(5, d))
            }),
            ("WixGuards::max_queue_wait", |b, d| {
                b.guards(WixGuards::default().max_queue_wait(d))
            }),
            (
                "serve_stale_identities_for",
                ElevatorBuilder::serve_stale_identities_for,
            ),
            ("AppTokenLifetimes::fallback", |b, d| {
                b.app_token_lifetimes(AppTokenLifetimes::default().fallback(d))
            }),
        ];
        for (name, set) in setters {
            match set(Elevator::builder("a", "s"), forever).build() {
                Err(ConfigError::TooLong(got)) => assert_eq!(got, name),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(matches!(
            Elevator::builder("a", "s")
                .app_token_lifetimes(AppTokenLifetimes::default().fallback(Duration::ZERO))
                .build(),
            Err(ConfigError::Zero("AppTokenLifetimes::fallback"))
        ));
        for (name, guards) in [
            (
                "WixGuards::breaker",
                WixGuards::default().breaker(0, Duration::from_secs(1)),
            ),
            (
                "WixGuards::max_in_flight",
                WixGuards::default().max_in_flight(0),
            ),
        ] {
            match Elevator::builder("a", "s").guards(guards).build() {
                Err(ConfigError::Zero(got)) => assert_eq!(got, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let builder = Elevator::builder("app", "top-secret-value");
        assert!(!format!("{builder:?}").contains("top-secret-value"));
        let elevator = builder.build().unwrap();
        assert!(!format!("{elevator:?}").contains("top-secret-value"));
    }
}
