//! [`Elevator`]: the expensive, shared, per-app half of the middleware (app
//! credentials, the one Wix client, both caches), built once by
//! [`ElevatorBuilder`](crate::ElevatorBuilder) and shared by every route's
//! [`ElevateLayer`](crate::ElevateLayer).
//!
//! It answers questions (who is this token, what is this instance's app
//! token) and knows nothing about routes: the request path lives in
//! [`Elevate`](crate::Elevate), each step in the module that owns it.

use std::{fmt, sync::Arc, time::Duration};
use tokio::time::Instant;

use crate::{
    app_token::AppTokens,
    cache::Timing,
    client::WixClient,
    error::Endpoint,
    fleet::{Fleet, Invalidation},
    forget::{ForgetError, Forgetting},
    identity::Identities,
    log_throttle::LogThrottle,
    token,
};

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

pub(crate) struct Shared {
    pub(crate) app_id: Arc<str>,
    pub(crate) client: Arc<WixClient>,
    pub(crate) identities: Identities,
    pub(crate) app_tokens: Arc<AppTokens>,
    /// What forgetting leaves behind, shared by both caches.
    pub(crate) forgetting: Arc<Forgetting>,
    /// Holds back repeated WARN lines for rejections that never reached Wix.
    pub(crate) log_throttle: LogThrottle,
    pub(crate) auth_deadline: Duration,
    pub(crate) api_deadline: Duration,
    /// Fleet mode: Redis as the second level (feature `redis`).
    pub(crate) fleet: Option<Arc<Fleet>>,
    /// The instances the app is known to be installed on.
    pub(crate) installed: crate::installed::Installed,
}

impl Elevator {
    /// Start configuring an elevator for this app.
    pub fn builder(
        app_id: impl Into<String>,
        app_secret: impl Into<String>,
    ) -> crate::ElevatorBuilder {
        crate::ElevatorBuilder::new(app_id.into(), app_secret.into())
    }

    pub(crate) fn from_shared(shared: Shared) -> Self {
        let shared = Arc::new(shared);
        if let Some(fleet) = &shared.fleet {
            // What another replica (or this one) says to forget. The fleet
            // lives inside `shared`, so it holds it weakly.
            let weak = Arc::downgrade(&shared);
            fleet.on_invalidation(move |invalidation| {
                if let Some(shared) = weak.upgrade() {
                    Elevator { shared }.forget_locally(&invalidation);
                }
            });
        }
        Self { shared }
    }

    pub(crate) fn fleet(&self) -> Option<&Fleet> {
        self.shared.fleet.as_deref()
    }

    /// Forget everything cached about `instance`: its app token and its
    /// callers' identities, here and (in fleet mode) in Redis and on every
    /// replica. Call it when the app is removed from a site, reinstalled
    /// (Wix keeps the instance id) or its plan changes.
    ///
    /// Once it returns `Ok`, no replica admits a request for that instance
    /// on the strength of anything cached before, nor of a Wix answer that
    /// was in flight while it ran: the next request asks Wix again. In
    /// fleet mode every replica listening to Redis's pub/sub confirms it
    /// dropped its local copies before this returns. It costs the same
    /// whatever the caches hold (no scan). It fails if Redis could not be
    /// reached or a listening replica did not confirm within a second:
    /// the instance is then forgotten here and in whatever Redis took;
    /// retry, or let the webhook's retry do it.
    ///
    /// ```
    /// # use wix_elevate::Elevator;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), wix_elevate::ForgetError> {
    /// let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// elevator.forget_instance("instance-1").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn forget_instance(&self, instance: &str) -> Result<(), ForgetError> {
        let invalidation = Invalidation::Instance {
            instance: instance.to_owned(),
            stale: None,
        };
        self.forget_locally(&invalidation);
        self.tell_fleet(invalidation).await
    }

    /// Forget a caller token (raw or `Bearer`, as the layer reads it): the
    /// next request with it asks Wix again, here and (in fleet mode) on
    /// every replica, with the same guarantees as
    /// [`forget_instance`](Self::forget_instance).
    ///
    /// ```
    /// # use wix_elevate::Elevator;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), wix_elevate::ForgetError> {
    /// let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// elevator.forget_token("Bearer some-caller-token").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn forget_token(&self, token: &str) -> Result<(), ForgetError> {
        // Anything the layer would not read was never cached.
        let Ok(bare) = token::split_authorization(token.as_bytes(), usize::MAX) else {
            return Ok(());
        };
        let digest = self.identities().digest(bare);
        self.identities().forget_digest(digest);
        self.tell_fleet(Invalidation::Token {
            digest: digest.hex(),
        })
        .await
    }

    /// Fleet mode: forget in Redis and on every replica.
    async fn tell_fleet(&self, invalidation: Invalidation) -> Result<(), ForgetError> {
        match self.fleet() {
            Some(fleet) if !fleet.forget(invalidation).await => Err(ForgetError::fleet()),
            _ => Ok(()),
        }
    }

    /// Apply an invalidation (this replica's own, or another's) to this
    /// replica's caches.
    pub(crate) fn forget_locally(&self, invalidation: &Invalidation) {
        match invalidation {
            Invalidation::Instance {
                instance,
                stale: None,
            } => {
                self.shared.forgetting.forget_instance(instance);
                self.app_tokens().forget_instance(instance);
            }
            Invalidation::Instance {
                instance,
                stale: Some(stale),
            } => {
                let identities = self.identities();
                self.app_tokens().forget(instance, |token| {
                    identities.digest(token.expose_secret().as_bytes()).hex() == *stale
                });
            }
            Invalidation::Token { digest } => self.identities().forget_hex(digest),
            Invalidation::Everything => self.shared.forgetting.forget_all(),
            Invalidation::Heartbeat { .. } => {}
        }
    }

    /// The app id this elevator accepts tokens for.
    pub fn app_id(&self) -> &str {
        &self.shared.app_id
    }

    pub(crate) fn app_id_arc(&self) -> Arc<str> {
        self.shared.app_id.clone()
    }

    /// The Wix API base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.shared.client.base_url()
    }

    /// Whether each endpoint's circuit breaker lets calls through (closed,
    /// or ready for its probe), for readiness checks: Token Info, Create
    /// Access Token and Wix APIs each have their own.
    ///
    /// ```
    /// # use wix_elevate::Elevator;
    /// let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// assert!(elevator.circuits().iter().all(|(_, closed)| *closed));
    /// ```
    pub fn circuits(&self) -> [(Endpoint, bool); 3] {
        self.shared.client.circuits_closed()
    }

    /// Fleet mode: whether Redis is in use (its circuit closed). `None`
    /// without fleet mode. Not a readiness signal: without Redis each
    /// replica carries on alone.
    pub fn redis_available(&self) -> Option<bool> {
        self.fleet().map(Fleet::is_available)
    }

    /// Fleet mode: why it does not give its guarantees now (Redis could
    /// not be reached, refused the credentials, answered a cluster
    /// redirection, refused scripts or pub/sub, ...), in words; `None` while it
    /// does, and without fleet mode. Each change is also a WARN line on
    /// target `wix_elevate::fleet` and the gauge `wix_elevate_fleet_up`. A
    /// degraded fleet still serves: each replica works alone.
    ///
    /// ```
    /// # use wix_elevate::Elevator;
    /// let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// assert_eq!(elevator.fleet_degraded(), None, "no fleet mode");
    /// ```
    pub fn fleet_degraded(&self) -> Option<&'static str> {
        self.fleet().and_then(Fleet::degraded)
    }

    /// The instances this app is known to be installed on: those named by
    /// a verified `AppInstalled` webhook ([`WebhookEndpoint`]) or by a
    /// caller's verified token, less those a verified `AppRemoved` named;
    /// in fleet mode, every replica's (kept in Redis, each id sealed), and
    /// this replica's alone while Redis is away. What it cannot know: an
    /// instance installed before the app's backend received webhooks and
    /// never seen since, or removed while no replica received the
    /// webhook. Scheduled jobs ([`Jobs`](crate::Jobs)) run over it.
    ///
    /// [`WebhookEndpoint`]: https://docs.rs/wix-elevate/latest/wix_elevate/webhook/struct.WebhookEndpoint.html
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use wix_elevate::Elevator;
    /// let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// assert!(elevator.installed_instances().await.is_empty());
    /// # }
    /// ```
    pub async fn installed_instances(&self) -> Vec<String> {
        let fleet = match self.fleet() {
            Some(fleet) => fleet.installed().await,
            None => None,
        };
        self.shared.installed.with(fleet)
    }

    /// A caller's verified token named `instance`: remember it (fleet-wide
    /// in the background, the first time this replica sees it).
    pub(crate) fn saw_instance(&self, instance: &str) {
        if !self.shared.installed.note(instance) || self.shared.fleet.is_none() {
            return;
        }
        let (elevator, instance) = (self.clone(), instance.to_owned());
        tokio::spawn(async move {
            if let Some(fleet) = elevator.fleet() {
                fleet.remember_installed(&instance).await;
            }
        });
    }

    /// Whether this replica runs `job` for `instance` in `period` (a lease
    /// for `lasts` in fleet mode; always without it): `None` while Redis
    /// is away, when nobody can tell.
    pub(crate) async fn take_job_run(
        &self,
        job: &str,
        instance: &str,
        period: u64,
        lasts: Duration,
    ) -> Option<bool> {
        match self.fleet() {
            Some(fleet) => fleet.job_lease(job, instance, period, lasts).await,
            None => Some(true),
        }
    }

    /// A verified lifecycle event: `instance` is installed (or not).
    #[cfg(feature = "webhooks")]
    pub(crate) async fn lifecycle(&self, instance: &str, installed: bool) {
        if installed {
            self.shared.installed.note(instance);
        } else {
            self.shared.installed.remove(instance);
        }
        if let Some(fleet) = self.fleet() {
            if installed {
                fleet.remember_installed(instance).await;
            } else {
                fleet.forget_installed(instance).await;
            }
        }
    }

    /// Whether a readiness check should pass as far as fleet mode goes:
    /// `false` only while a fleet configured
    /// `required` (`RedisConfig::required`, feature `redis`) is degraded (an operator
    /// who would rather take the replica out of rotation than let it serve
    /// alone). A fleet not required still serves when degraded, and stays
    /// ready; without fleet mode, always `true`.
    ///
    /// ```
    /// # use wix_elevate::Elevator;
    /// let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// assert!(elevator.fleet_ready());
    /// ```
    pub fn fleet_ready(&self) -> bool {
        self.fleet()
            .is_none_or(|fleet| !fleet.is_required() || fleet.degraded().is_none())
    }

    /// A layer on this elevator with the default policy
    /// ([`SubjectTypes::default()`](crate::SubjectTypes::default)): the one
    /// way to configure a route.
    ///
    /// ```
    /// # use wix_elevate::Elevator;
    /// let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// let layer = elevator.layer().route_name("whoami");
    /// # let _ = layer;
    /// ```
    pub fn layer(&self) -> crate::ElevateLayer {
        crate::ElevateLayer::on(self.clone())
    }

    /// A client for calls to Wix outside any request, as `actor` (a job,
    /// a webhook handler: the name its audit events give), limited to the
    /// operations it declares. See [`AppClient`](crate::AppClient).
    ///
    /// ```
    /// # use wix_elevate::Elevator;
    /// # fn main() -> Result<(), wix_elevate::ConfigError> {
    /// let elevator = Elevator::builder("app", "secret").build()?;
    /// let nightly = elevator.app_client("job:nightly").allow("GET /apps/v1/instance").build()?;
    /// assert_eq!(nightly.actor(), "job:nightly");
    /// assert!(elevator.app_client("job:bad").allow("GET apps").build().is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn app_client(&self, actor: &str) -> crate::AppClientBuilder {
        crate::AppClientBuilder::new(self.clone(), actor)
    }

    /// Whether this replica's local cache holds an app token for
    /// `instance` (for [`test_util::CacheProbe`](crate::test_util::CacheProbe)).
    #[cfg(feature = "test-util")]
    pub(crate) fn caches_app_token(&self, instance: &str) -> bool {
        self.app_tokens().contains(instance)
    }

    /// Whether this replica's local cache holds an identity for `token`
    /// (for [`test_util::CacheProbe`](crate::test_util::CacheProbe)).
    #[cfg(feature = "test-util")]
    pub(crate) fn caches_identity(&self, token: &str) -> bool {
        token::split_authorization(token.as_bytes(), usize::MAX)
            .is_ok_and(|bare| self.identities().contains(self.identities().digest(bare)))
    }

    /// The key a webhook delivery is remembered by: a keyed digest (under
    /// this app's secret-derived key) of what identifies it.
    #[cfg(feature = "webhooks")]
    pub(crate) fn delivery_key(&self, identity: &[u8]) -> crate::token::TokenDigest {
        self.identities().digest(identity)
    }

    /// Fleet mode: mark the delivery `key` `state` for `ttl` (only if it
    /// has no mark, with `only_if_absent`): whether it was marked, `None`
    /// without fleet mode or while Redis is away (this replica decides
    /// alone).
    #[cfg(feature = "webhooks")]
    pub(crate) async fn mark_delivery_in_fleet(
        &self,
        key: crate::token::TokenDigest,
        state: &str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> Option<bool> {
        self.fleet()?
            .mark_delivery(&key.hex(), state, ttl, only_if_absent)
            .await
    }

    /// Fleet mode: the fleet's durable webhook queue (`None` without fleet
    /// mode).
    #[cfg(all(feature = "webhooks", feature = "redis"))]
    pub(crate) fn event_stream(&self) -> Option<crate::fleet::EventStream> {
        self.shared
            .fleet
            .clone()
            .map(crate::fleet::EventStream::new)
    }

    /// Fleet mode: the delivery `key`'s mark (`Some(None)`: none), `None`
    /// without fleet mode or while Redis is away.
    #[cfg(feature = "webhooks")]
    pub(crate) async fn delivery_mark_in_fleet(
        &self,
        key: crate::token::TokenDigest,
    ) -> Option<Option<String>> {
        self.fleet()?.delivery_mark(&key.hex()).await
    }

    /// Fleet mode: forget that the delivery `key` was seen (its work could
    /// not be taken; Wix will retry it).
    #[cfg(feature = "webhooks")]
    pub(crate) async fn release_delivery_in_fleet(&self, key: crate::token::TokenDigest) {
        if let Some(fleet) = self.fleet() {
            fleet.forget_delivery(&key.hex()).await;
        }
    }

    pub(crate) fn log_throttle(&self) -> &LogThrottle {
        &self.shared.log_throttle
    }

    pub(crate) fn client(&self) -> &WixClient {
        &self.shared.client
    }

    pub(crate) fn identities(&self) -> &Identities {
        &self.shared.identities
    }

    pub(crate) fn app_tokens(&self) -> &Arc<AppTokens> {
        &self.shared.app_tokens
    }

    /// The timing of a request's authentication that began at `started`.
    pub(crate) fn auth_timing(&self, started: Instant) -> Timing {
        Timing {
            started,
            deadline: started
                .checked_add(self.shared.auth_deadline)
                .unwrap_or(started),
        }
    }

    /// The deadline of a Wix API call that began at `started`.
    pub(crate) fn api_deadline_from(&self, started: Instant) -> Instant {
        started
            .checked_add(self.shared.api_deadline)
            .unwrap_or(started)
    }
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
