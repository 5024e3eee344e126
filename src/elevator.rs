//! [`Elevator`]: the expensive, shared half of the middleware (HTTP client,
//! both caches, app credentials), built once and shared by every route's
//! [`ElevateLayer`].
//!
//! One request goes through four steps, each owned by one module:
//! [`token`](crate::token) reads the caller token, the identity cache (or
//! Wix Token Info) says who it is, the route's [`Policy`] decides, and the
//! app-token cache (or Wix Create Access Token) elevates.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use http::HeaderMap;
use secrecy::SecretString;

use crate::{
    cache::{AppTokenCache, CachedVerdict, IdentityCache, Verdict},
    caller::{Caller, ElevatedToken, SubjectType},
    client::{TokenInfoAnswer, WixClient},
    error::{ConfigError, Rejection, RejectionKind, UpstreamError},
    layer::ElevateLayer,
    metrics::{CacheMetrics, WixMetrics},
    policy::Policy,
    rate_limit::CallerRateLimit,
    token::{self, TokenDigest, TokenHasher},
    upstream::GuardSettings,
    wire::TokenInfo,
};

/// How long a failed background renewal waits before another may start.
const RENEWAL_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Wix's production API.
pub const WIX_API_BASE_URL: &str = "https://www.wixapis.com";

/// The shared state of the middleware: app credentials, the HTTP client to
/// Wix and both caches. Cheap to clone (one `Arc`); build one per app and
/// derive a layer per route with [`layer`](Self::layer).
///
/// `Debug` shows the app id and base URL, never the secret.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use wix_elevate::{Elevator, SubjectTypes};
///
/// # fn main() -> Result<(), wix_elevate::ConfigError> {
/// let elevator = Elevator::builder("my-app-id", "my-app-secret")
///     .http_timeout(Duration::from_secs(3))
///     .token_info_ttl(Duration::from_secs(30))
///     .build()?;
/// let members_only = elevator.layer().policy(SubjectTypes::members());
/// assert!(!format!("{elevator:?}").contains("my-app-secret"));
/// # let _ = members_only;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Elevator {
    shared: Arc<Shared>,
}

struct Shared {
    app_id: Box<str>,
    app_secret: SecretString,
    client: WixClient,
    /// Keys the identity cache: tokens are looked up by their keyed digest.
    token_hasher: TokenHasher,
    identities: IdentityCache,
    app_tokens: AppTokenCache,
    identity_ttl: Duration,
    refused_ttl: Duration,
    max_token_len: usize,
    renew_before: Duration,
    expiry_margin: Duration,
    auth_deadline: Duration,
    stale_identity_grace: Option<Duration>,
}

impl Elevator {
    /// Start configuring an elevator for this app.
    pub fn builder(app_id: impl Into<String>, app_secret: impl Into<String>) -> ElevatorBuilder {
        ElevatorBuilder {
            app_id: app_id.into(),
            app_secret: SecretString::from(app_secret.into()),
            base_url: WIX_API_BASE_URL.to_owned(),
            http_timeout: Duration::from_secs(5),
            token_info_ttl: Duration::from_secs(60),
            refused_token_ttl: Duration::from_secs(10),
            max_cached_identities: 100_000,
            max_cached_app_tokens: 10_000,
            renew_before: Duration::from_secs(5 * 60),
            expiry_margin: Duration::from_secs(30),
            max_token_len: token::DEFAULT_MAX_TOKEN_LEN,
            auth_deadline: Duration::from_secs(10),
            guard: GuardSettings {
                breaker_threshold: 5,
                breaker_cooldown: Duration::from_secs(5),
                max_in_flight: 64,
                max_queue_wait: Duration::from_secs(1),
            },
            stale_identity_grace: None,
            fallback_lifetime: Duration::from_secs(3600),
        }
    }

    /// A layer on this elevator with the default policy
    /// ([`SubjectTypes::default()`](crate::SubjectTypes)).
    pub fn layer(&self) -> ElevateLayer {
        ElevateLayer::new(self.clone())
    }

    /// The app id this elevator accepts tokens for.
    pub fn app_id(&self) -> &str {
        &self.shared.app_id
    }

    /// The Wix API base URL, without a trailing slash; handlers call Wix
    /// APIs under it with the [`ElevatedToken`].
    pub fn base_url(&self) -> &str {
        self.shared.client.base_url()
    }

    /// The HTTP client used for Wix, with the configured timeouts and no
    /// redirects. Prefer [`WixApi`](crate::WixApi), which calls only what a
    /// route declared and audits every call.
    pub fn http_client(&self) -> &reqwest::Client {
        self.shared.client.http()
    }

    pub(crate) fn client(&self) -> &WixClient {
        &self.shared.client
    }

    /// Decide from the caches alone, without waiting or allocating: the
    /// warm path. [`Decision::NeedsWix`] says where [`authorize`](Self::authorize)
    /// must carry on.
    pub(crate) fn decide(
        &self,
        headers: &HeaderMap,
        rules: RouteRules<'_>,
        now: Instant,
    ) -> Decision {
        let shared = &*self.shared;
        let token = match token::bare_token(headers, shared.max_token_len) {
            Ok(token) => token,
            Err(kind) => return Decision::Rejected(kind.into()),
        };
        let digest = shared.token_hasher.digest(token);
        let Some(cached) = shared.identities.get(&digest, now) else {
            return Decision::NeedsWix(Resume::Identify(digest));
        };
        let caller = match rules.check(cached.verdict, now) {
            Ok(caller) => caller,
            Err(rejection) => return Decision::Rejected(rejection),
        };
        match self.cached_app_token(caller.instance_key(), now) {
            Some(token) => Decision::Granted(caller, token),
            None => Decision::NeedsWix(Resume::Elevate(caller)),
        }
    }

    /// Finish what [`decide`](Self::decide) could not: ask Wix, through the
    /// caches' single flight. `started` is when the request arrived.
    pub(crate) async fn authorize(
        &self,
        headers: &HeaderMap,
        rules: RouteRules<'_>,
        resume: Resume,
        started: Instant,
    ) -> Result<(Caller, ElevatedToken), Rejection> {
        let deadline = started + self.shared.auth_deadline;
        let authorization = self.authorize_until(headers, rules, resume, started, deadline);
        match tokio::time::timeout_at(deadline.into(), authorization).await {
            Ok(outcome) => outcome,
            // Waiting on another request's call counts against this deadline too.
            Err(_) => Err(RejectionKind::UpstreamTimeout.into()),
        }
    }

    async fn authorize_until(
        &self,
        headers: &HeaderMap,
        rules: RouteRules<'_>,
        resume: Resume,
        started: Instant,
        deadline: Instant,
    ) -> Result<(Caller, ElevatedToken), Rejection> {
        let shared = &*self.shared;
        let caller = match resume {
            Resume::Elevate(caller) => caller,
            Resume::Identify(digest) => {
                // Checked in full before anything leaves the process.
                let token = token::caller_token(headers, shared.max_token_len)?;
                let grace = shared.stale_identity_grace;
                let cached = shared
                    .identities
                    .get_or_fetch(
                        &digest,
                        started,
                        || self.ask_token_info(token, deadline),
                        |stale, now| grace.is_some_and(|grace| stale.is_servable_stale(now, grace)),
                    )
                    .await
                    .map_err(Rejection::upstream)?;
                rules.check(cached.verdict, Instant::now())?
            }
        };
        let instance = caller.instance_key();
        let app_token = match self.cached_app_token(instance, Instant::now()) {
            Some(token) => token,
            None => shared
                .app_tokens
                .get_or_fetch(
                    instance,
                    started,
                    || self.fetch_app_token(instance, deadline),
                    // Never an app token past its expiry, degraded or not.
                    |_, _| false,
                )
                .await
                .map_err(Rejection::upstream)?,
        };
        Ok((caller, app_token))
    }

    /// Ask Wix who `token` is, and for how long to believe the answer.
    async fn ask_token_info(
        &self,
        token: &str,
        deadline: Instant,
    ) -> Result<CachedVerdict, UpstreamError> {
        let shared = &*self.shared;
        let unix_now = unix_now();
        let now = Instant::now();
        let verdict = match shared.client.token_info(token, deadline).await? {
            TokenInfoAnswer::Refused(status) => {
                tracing::debug!(target: "wix_elevate", status = status.as_u16(), "Wix Token Info refused the token");
                return Ok(CachedVerdict::new(
                    Verdict::Refused(RejectionKind::InvalidToken),
                    now,
                    shared.refused_ttl,
                ));
            }
            TokenInfoAnswer::Info(info) => verify(info, &shared.app_id, unix_now, now),
        };
        let ttl = match &verdict {
            Verdict::Valid(caller) => shared.identity_ttl.min(caller.time_left(now)),
            Verdict::Refused(_) => shared.refused_ttl,
        };
        Ok(CachedVerdict::new(verdict, now, ttl))
    }

    /// A cached app token usable at `now`; starts its background renewal
    /// when it is due.
    fn cached_app_token(&self, instance: &Arc<str>, now: Instant) -> Option<ElevatedToken> {
        let token = self.shared.app_tokens.get(instance, now)?;
        if token.is_due_for_renewal(now) && token.claim_renewal() {
            self.renew_in_background(instance, token.clone());
        }
        Some(token)
    }

    async fn fetch_app_token(
        &self,
        instance: &Arc<str>,
        deadline: Instant,
    ) -> Result<ElevatedToken, UpstreamError> {
        let shared = &*self.shared;
        let grant = shared
            .client
            .create_access_token(&shared.app_id, &shared.app_secret, instance, deadline)
            .await?;
        Ok(ElevatedToken::issued(
            grant.access_token,
            instance.clone(),
            grant.expires_in,
            shared.renew_before,
            shared.expiry_margin,
        ))
    }

    /// Renew `current` while requests keep using it. Outside a tokio runtime
    /// nothing is spawned; the token is then renewed when it expires.
    fn renew_in_background(&self, instance: &Arc<str>, current: ElevatedToken) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            current.release_renewal();
            return;
        };
        let this = self.clone();
        let instance = instance.clone();
        runtime.spawn(async move {
            let deadline = Instant::now() + this.shared.auth_deadline;
            match this.fetch_app_token(&instance, deadline).await {
                Ok(fresh) => this.shared.app_tokens.insert(instance, fresh),
                Err(error) => {
                    tracing::warn!(target: "wix_elevate", %error, "app token renewal failed; will retry");
                    // At most one attempt per second per instance while Wix fails;
                    // the current token stays in use until it is no longer usable.
                    let pause = error.retry_after().unwrap_or(RENEWAL_RETRY_PAUSE).min(RENEWAL_RETRY_PAUSE * 10);
                    tokio::time::sleep(pause).await;
                    current.release_renewal();
                }
            }
        });
    }

    #[cfg(test)]
    pub(crate) fn identity_cache(&self) -> &IdentityCache {
        &self.shared.identities
    }

    #[cfg(test)]
    pub(crate) fn app_token_cache(&self) -> &AppTokenCache {
        &self.shared.app_tokens
    }
}

/// What the caches could not settle, and where to carry on.
#[derive(Debug)]
pub(crate) enum Resume {
    /// Nothing cached for this token (digest).
    Identify(TokenDigest),
    /// The caller is known and allowed; its instance has no app token.
    Elevate(Caller),
}

/// The outcome of [`Elevator::decide`].
#[derive(Debug)]
pub(crate) enum Decision {
    Granted(Caller, ElevatedToken),
    Rejected(Rejection),
    NeedsWix(Resume),
}

/// What a route checks about every verified caller, cached or not.
#[derive(Clone, Copy)]
pub(crate) struct RouteRules<'a> {
    pub(crate) policy: &'a dyn Policy,
    pub(crate) rate_limit: Option<&'a CallerRateLimit>,
}

impl RouteRules<'_> {
    /// A verdict, checked against the clock, the policy and the rate limit.
    fn check(self, verdict: Verdict, now: Instant) -> Result<Caller, Rejection> {
        let caller = match verdict {
            Verdict::Valid(caller) if !caller.is_live(now) => {
                return Err(RejectionKind::ExpiredToken.into());
            }
            Verdict::Valid(caller) => caller,
            Verdict::Refused(kind) => return Err(kind.into()),
        };
        if !self.policy.allows(&caller) {
            return Err(Rejection::forbidden(caller));
        }
        if let Some(limit) = self.rate_limit
            && let Err(wait) = limit.check(&caller)
        {
            return Err(Rejection::rate_limited(caller, wait));
        }
        Ok(caller)
    }
}

/// Check Token Info's answer the way the SDK does (`clientId`, `instanceId`)
/// plus what it skips (`active`, `exp`). `unix_now` and `now` are the same
/// moment on the wall and monotonic clocks.
fn verify(info: TokenInfo, app_id: &str, unix_now: u64, now: Instant) -> Verdict {
    let refused = Verdict::Refused;
    if info.active != Some(true) {
        return refused(RejectionKind::InvalidToken);
    }
    let exp = match info.exp {
        Some(exp) if exp > 0 => exp.unsigned_abs(),
        _ => return refused(RejectionKind::InvalidToken),
    };
    if exp <= unix_now {
        return refused(RejectionKind::ExpiredToken);
    }
    if info.client_id.as_deref() != Some(app_id) {
        return refused(RejectionKind::ForeignToken);
    }
    let instance_id = match info.instance_id {
        Some(id) if !id.is_empty() => id,
        _ => return refused(RejectionKind::NoInstance),
    };
    let subject_id = match info.subject_id {
        Some(id) if !id.is_empty() => id,
        _ => return refused(RejectionKind::NoSubject),
    };
    let live_until = now
        .checked_add(Duration::from_secs(exp - unix_now))
        .unwrap_or(now);
    Verdict::Valid(Caller::from_parts(
        info.subject_type.unwrap_or(SubjectType::Unknown),
        subject_id.into(),
        instance_id.into(),
        info.site_id.map(Into::into),
        exp,
        live_until,
    ))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl fmt::Debug for Elevator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elevator")
            .field("app_id", &self.shared.app_id)
            .field("app_secret", &"[REDACTED]")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

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
/// | [`app_token_renew_before`](Self::app_token_renew_before) | 5 min before expiry |
/// | [`app_token_expiry_margin`](Self::app_token_expiry_margin) | 30 s |
/// | [`max_token_len`](Self::max_token_len) | 8 KiB |
/// | [`app_token_fallback_lifetime`](Self::app_token_fallback_lifetime) | 1 h (when Wix's `expires_in` is unusable) |
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
    renew_before: Duration,
    expiry_margin: Duration,
    max_token_len: usize,
    auth_deadline: Duration,
    guard: GuardSettings,
    stale_identity_grace: Option<Duration>,
    fallback_lifetime: Duration,
}

/// The longest any duration setting may be: longer ones are a mistake, and
/// would overflow clock arithmetic at the extreme.
const MAX_SETTING: Duration = Duration::from_secs(24 * 3600);

impl ElevatorBuilder {
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

    /// Renew an app token this long before it expires, in the background,
    /// while requests keep using the current one.
    pub fn app_token_renew_before(mut self, before: Duration) -> Self {
        self.renew_before = before;
        self
    }

    /// Never hand out an app token in its last `margin`, so it cannot
    /// expire on the way to Wix.
    pub fn app_token_expiry_margin(mut self, margin: Duration) -> Self {
        self.expiry_margin = margin;
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

    /// Open the circuit after this many consecutive failed Wix calls.
    pub fn breaker_threshold(mut self, failures: u32) -> Self {
        self.guard.breaker_threshold = failures;
        self
    }

    /// How long an open circuit refuses calls (503 at once) before one probe.
    pub fn breaker_cooldown(mut self, cooldown: Duration) -> Self {
        self.guard.breaker_cooldown = cooldown;
        self
    }

    /// At most this many calls to Wix in flight at once.
    pub fn max_concurrent_wix_calls(mut self, max: usize) -> Self {
        self.guard.max_in_flight = max;
        self
    }

    /// How long a call waits for a free slot (never past its deadline)
    /// before the request is answered 503.
    pub fn max_queue_wait(mut self, wait: Duration) -> Self {
        self.guard.max_queue_wait = wait;
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

    /// The app-token lifetime to assume when Wix's Create Access Token
    /// answer has no usable `expires_in` (missing, zero, negative, or
    /// Duration-style like `"14400s"`); warned about once. Default 1 hour,
    /// well under Wix's documented 4. Lifetimes Wix states are believed up
    /// to 24 hours.
    pub fn app_token_fallback_lifetime(mut self, lifetime: Duration) -> Self {
        self.fallback_lifetime = lifetime;
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
            ("breaker_threshold", self.guard.breaker_threshold == 0),
            ("max_concurrent_wix_calls", self.guard.max_in_flight == 0),
            (
                "app_token_fallback_lifetime",
                self.fallback_lifetime.is_zero(),
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
            ("app_token_renew_before", self.renew_before),
            ("app_token_expiry_margin", self.expiry_margin),
            ("auth_deadline", self.auth_deadline),
            ("breaker_cooldown", self.guard.breaker_cooldown),
            ("max_queue_wait", self.guard.max_queue_wait),
            (
                "serve_stale_identities_for",
                self.stale_identity_grace.unwrap_or_default(),
            ),
            ("app_token_fallback_lifetime", self.fallback_lifetime),
        ] {
            if duration > MAX_SETTING {
                return Err(ConfigError::TooLong(name));
            }
        }
        let client = WixClient::new(
            &self.base_url,
            self.http_timeout,
            self.guard,
            self.fallback_lifetime,
            WixMetrics::new(),
        )?;
        Ok(Elevator {
            shared: Arc::new(Shared {
                app_id: self.app_id.into(),
                app_secret: self.app_secret,
                client,
                token_hasher: TokenHasher::random()?,
                identities: IdentityCache::new(
                    self.max_cached_identities,
                    CacheMetrics::new("identity"),
                ),
                app_tokens: AppTokenCache::new(
                    self.max_cached_app_tokens,
                    CacheMetrics::new("app_token"),
                ),
                identity_ttl: self.token_info_ttl,
                refused_ttl: self.refused_token_ttl,
                max_token_len: self.max_token_len,
                renew_before: self.renew_before,
                expiry_margin: self.expiry_margin,
                auth_deadline: self.auth_deadline,
                stale_identity_grace: self.stale_identity_grace,
            }),
        })
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

    fn info(json: &str) -> TokenInfo {
        serde_json::from_str(json).unwrap()
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn verify_accepts_a_good_token() {
        let now = Instant::now();
        let json = r#"{"active":true,"exp":1800000100,"clientId":"app","instanceId":"i","subjectType":"MEMBER","subjectId":"m"}"#;
        let Verdict::Valid(caller) = verify(info(json), "app", NOW, now) else {
            panic!("refused")
        };
        assert_eq!(caller.time_left(now), Duration::from_secs(100));
        assert!(caller.is_live(now + Duration::from_secs(99)));
        assert!(!caller.is_live(now + Duration::from_secs(100)));
        assert_eq!(caller.subject_type(), SubjectType::Member);
        assert_eq!(caller.instance_id(), "i");
    }

    #[test]
    fn verify_refuses_each_broken_rule() {
        let cases = [
            (
                r#"{"active":false,"exp":1800000100,"clientId":"app","instanceId":"i"}"#,
                RejectionKind::InvalidToken,
            ),
            (
                r#"{"exp":1800000100,"clientId":"app","instanceId":"i"}"#,
                RejectionKind::InvalidToken,
            ),
            (
                r#"{"active":true,"clientId":"app","instanceId":"i"}"#,
                RejectionKind::InvalidToken,
            ),
            (
                r#"{"active":true,"exp":1800000000,"clientId":"app","instanceId":"i"}"#,
                RejectionKind::ExpiredToken,
            ),
            (
                r#"{"active":true,"exp":1800000100,"clientId":"other","instanceId":"i"}"#,
                RejectionKind::ForeignToken,
            ),
            (
                r#"{"active":true,"exp":1800000100,"instanceId":"i"}"#,
                RejectionKind::ForeignToken,
            ),
            (
                r#"{"active":true,"exp":1800000100,"clientId":"app"}"#,
                RejectionKind::NoInstance,
            ),
            (
                r#"{"active":true,"exp":1800000100,"clientId":"app","instanceId":""}"#,
                RejectionKind::NoInstance,
            ),
            (
                r#"{"active":true,"exp":1800000100,"clientId":"app","instanceId":"i"}"#,
                RejectionKind::NoSubject,
            ),
            (
                r#"{"active":true,"exp":1800000100,"clientId":"app","instanceId":"i","subjectId":""}"#,
                RejectionKind::NoSubject,
            ),
        ];
        for (json, want) in cases {
            match verify(info(json), "app", NOW, Instant::now()) {
                Verdict::Refused(kind) => assert_eq!(kind, want, "{json}"),
                Verdict::Valid(_) => panic!("accepted {json}"),
            }
        }
    }

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
        let setters: [(&str, Setter); 10] = [
            ("http_timeout", ElevatorBuilder::http_timeout),
            ("token_info_ttl", ElevatorBuilder::token_info_ttl),
            ("refused_token_ttl", ElevatorBuilder::refused_token_ttl),
            (
                "app_token_renew_before",
                ElevatorBuilder::app_token_renew_before,
            ),
            (
                "app_token_expiry_margin",
                ElevatorBuilder::app_token_expiry_margin,
            ),
            ("auth_deadline", ElevatorBuilder::auth_deadline),
            ("breaker_cooldown", ElevatorBuilder::breaker_cooldown),
            ("max_queue_wait", ElevatorBuilder::max_queue_wait),
            (
                "serve_stale_identities_for",
                ElevatorBuilder::serve_stale_identities_for,
            ),
            (
                "app_token_fallback_lifetime",
                ElevatorBuilder::app_token_fallback_lifetime,
            ),
        ];
        for (name, set) in setters {
            match set(Elevator::builder("a", "s"), forever).build() {
                Err(ConfigError::TooLong(got)) => assert_eq!(got, name),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(matches!(
            Elevator::builder("a", "s")
                .app_token_fallback_lifetime(Duration::ZERO)
                .build(),
            Err(ConfigError::Zero("app_token_fallback_lifetime"))
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let builder = Elevator::builder("app", "top-secret-value");
        assert!(!format!("{builder:?}").contains("top-secret-value"));
        let elevator = builder.build().unwrap();
        assert!(!format!("{elevator:?}").contains("top-secret-value"));
    }
}
