//! Step 4 of a request: the app-identity token for the caller's instance.
//!
//! One token per instance, cached until shortly before it expires
//! ([`AppTokenLifetimes::expiry_margin`](crate::AppTokenLifetimes::expiry_margin)),
//! renewed in the background from
//! [`AppTokenLifetimes::renew_before`](crate::AppTokenLifetimes::renew_before)
//! its expiry while requests keep using it, and fetched from Wix's Create
//! Access Token once however many requests wait for it.
//!
//! When Wix answers 401 to a call made with a cached token (the app was
//! reinstalled, the token revoked, the secret rotated), [`AppTokens::replace`] evicts that token (only if it is still the current one) and mints one
//! new token for every request that saw the 401.

use std::{sync::Arc, time::Duration};
use tokio::time::Instant;

use secrecy::SecretString;

use crate::{
    cache::{FlightCache, Fresh, Timing},
    client::WixClient,
    elevated_token::ElevatedToken,
    error::{Rejection, UpstreamError},
    fleet::{Fleet, Invalidation, Place, ToStore, local_is_trusted},
    forget::Forgetting,
    metrics::CacheMetrics,
    token::TokenHasher,
};

/// How long a failed background renewal waits before another may start.
const RENEWAL_RETRY_PAUSE: Duration = Duration::from_secs(1);

impl Fresh for ElevatedToken {
    fn is_fresh(&self, now: Instant) -> bool {
        self.is_usable_at(now)
    }
}

/// The app-token side of an elevator: the cache, the renewal schedule, and
/// what fetching needs (the app's credentials, the Wix client, the fleet),
/// all given when the elevator is built.
pub(crate) struct AppTokens {
    cache: FlightCache<Arc<str>, ElevatedToken>,
    renew_before: Duration,
    expiry_margin: Duration,
    forgetting: Arc<Forgetting>,
    app_id: Arc<str>,
    app_secret: SecretString,
    client: Arc<WixClient>,
    fleet: Option<Arc<Fleet>>,
    /// Fleet mode: the fleet-wide token digest, naming a refused token to
    /// every replica.
    fleet_digest: Option<TokenHasher>,
    auth_deadline: Duration,
}

/// How an [`AppTokens`] is set up.
pub(crate) struct AppTokenSettings {
    pub(crate) capacity: usize,
    pub(crate) renew_before: Duration,
    pub(crate) expiry_margin: Duration,
    /// A renewal's deadline.
    pub(crate) auth_deadline: Duration,
}

/// The app's credentials and the collaborators a fetch uses.
pub(crate) struct AppTokenSources {
    pub(crate) app_id: Arc<str>,
    pub(crate) app_secret: SecretString,
    pub(crate) client: Arc<WixClient>,
    pub(crate) fleet: Option<(Arc<Fleet>, TokenHasher)>,
    pub(crate) forgetting: Arc<Forgetting>,
}

impl AppTokens {
    pub(crate) fn new(settings: AppTokenSettings, sources: AppTokenSources) -> Self {
        let (fleet, fleet_digest) = match sources.fleet {
            Some((fleet, hasher)) => (Some(fleet), Some(hasher)),
            None => (None, None),
        };
        Self {
            cache: FlightCache::new(settings.capacity, CacheMetrics::new("app_token")),
            renew_before: settings.renew_before,
            expiry_margin: settings.expiry_margin,
            forgetting: sources.forgetting,
            app_id: sources.app_id,
            app_secret: sources.app_secret,
            client: sources.client,
            fleet,
            fleet_digest,
            auth_deadline: settings.auth_deadline,
        }
    }

    /// Drop `instance`'s token (it was forgotten).
    pub(crate) fn forget_instance(&self, instance: &str) {
        self.cache.remove(&Arc::from(instance));
    }

    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn contains(&self, instance: &str) -> bool {
        self.cache
            .get(&Arc::from(instance), Instant::now())
            .is_some()
    }

    /// Drop `instance`'s token if `stale` picks it out.
    pub(crate) fn forget(&self, instance: &str, stale: impl FnOnce(&ElevatedToken) -> bool) {
        self.cache.remove_if(&Arc::from(instance), stale);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }

    /// The warm path: a usable cached token, without waiting or
    /// allocating; starts its background renewal when it is due.
    pub(crate) fn cached(
        self: &Arc<Self>,
        instance: &Arc<str>,
        now: Instant,
    ) -> Option<ElevatedToken> {
        if !local_is_trusted(self.fleet.as_deref(), now) {
            return None;
        }
        let token = self.cache.get(instance, now)?;
        if token.is_due_for_renewal(now) && token.claim_renewal() {
            self.renew_in_background(instance, token.clone());
        }
        Some(token)
    }

    /// The token for `instance`: cached, or fetched through the cache's
    /// single flight, within the request's `timing`.
    pub(crate) async fn get(
        self: &Arc<Self>,
        instance: &Arc<str>,
        timing: Timing,
    ) -> Result<ElevatedToken, Rejection> {
        if let Some(token) = self.cached(instance, Instant::now()) {
            return Ok(token);
        }
        self.cache
            .get_or_fetch(
                instance,
                timing.started,
                |token, now| token.is_fresh(now) && local_is_trusted(self.fleet.as_deref(), now),
                |_| self.fetch(instance, None, timing.deadline),
                // Never an app token past its expiry, degraded or not.
                |_, _, _| false,
            )
            .await
            .map_err(Rejection::upstream)
    }

    /// Wix refused `stale`: evict it if it is still the cached token for
    /// its instance, and return the one that replaces it (one Create
    /// Access Token call however many requests saw the refusal).
    pub(crate) async fn replace(
        &self,
        stale: &ElevatedToken,
        deadline: Instant,
    ) -> Result<ElevatedToken, Rejection> {
        let instance = stale.instance_key();
        self.cache
            .remove_if(instance, |current| current.same_as(stale));
        if let (Some(fleet), Some(hasher)) = (&self.fleet, &self.fleet_digest) {
            // Every replica drops this token (and only this one).
            let digest = hasher.digest(stale.expose_secret().as_bytes());
            let invalidation = Invalidation::Instance {
                instance: instance.to_string(),
                stale: Some(digest.hex()),
            };
            fleet.forget(invalidation).await;
        }
        self.cache
            .get_or_fetch(
                instance,
                Instant::now(),
                ElevatedToken::is_fresh,
                |_| self.fetch(instance, Some(stale), deadline),
                |_, _, _| false,
            )
            .await
            .map_err(Rejection::upstream)
    }

    /// Wix's token for `instance` (in fleet mode, another replica's if it
    /// stored one that is not due for renewal and is not `stale`).
    async fn fetch(
        &self,
        instance: &Arc<str>,
        stale: Option<&ElevatedToken>,
        deadline: Instant,
    ) -> Result<ElevatedToken, UpstreamError> {
        let begun = self.forgetting.now();
        let Some(fleet) = &self.fleet else {
            return self.grant(instance, deadline, begun).await;
        };
        let key = fleet.app_key(instance);
        let place = Place {
            key: &key,
            marked: false,
            // Bound to the instance too: never moved to another.
            aad: instance.as_bytes(),
            budget: None,
        };
        fleet
            .shared(
                place,
                |plaintext| {
                    let token = crate::elevated_token::stored::open(
                        plaintext,
                        instance,
                        self.renew_before,
                        self.expiry_margin,
                        &self.forgetting,
                        begun,
                    )?;
                    let is_stale =
                        stale.is_some_and(|s| s.expose_secret() == token.expose_secret());
                    (!is_stale).then_some(token)
                },
                |_| async {
                    let token = self.grant(instance, deadline, begun).await?;
                    let (plaintext, ttl) =
                        crate::elevated_token::stored::seal(&token, self.expiry_margin);
                    let to_store = ToStore {
                        plaintext,
                        ttl,
                        instance: Some(instance.clone()),
                    };
                    Ok((token, Some(to_store)))
                },
                // App tokens spend no budget.
                |_| UpstreamError::overloaded(crate::error::Endpoint::CreateAccessToken),
            )
            .await
    }

    /// Ask Wix's Create Access Token.
    async fn grant(
        &self,
        instance: &Arc<str>,
        deadline: Instant,
        begun: u64,
    ) -> Result<ElevatedToken, UpstreamError> {
        let grant = self
            .client
            .create_access_token(&self.app_id, &self.app_secret, instance, deadline)
            .await?;
        Ok(ElevatedToken::issued(
            grant.access_token,
            instance.clone(),
            grant.expires_in,
            self.renew_before,
            self.expiry_margin,
            Some(self.forgetting.stamp(instance, begun)),
        ))
    }

    /// Renew `current` while requests keep using it, in a task of its own
    /// that no request waits on. Outside a tokio runtime nothing is
    /// spawned; the token is then renewed when it expires.
    fn renew_in_background(self: &Arc<Self>, instance: &Arc<str>, current: ElevatedToken) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            current.release_renewal();
            return;
        };
        let this = self.clone();
        let instance = instance.clone();
        runtime.spawn(async move {
            let now = Instant::now();
            let deadline = now.checked_add(this.auth_deadline).unwrap_or(now);
            match this.fetch(&instance, None, deadline).await {
                Ok(fresh) => this.cache.insert(instance, fresh),
                Err(error) => {
                    tracing::warn!(target: "wix_elevate", %error, "app token renewal failed; will retry");
                    // At most one attempt per second per instance while Wix
                    // fails; the current token stays in use until it is no
                    // longer usable.
                    let pause = error
                        .retry_after()
                        .unwrap_or(RENEWAL_RETRY_PAUSE)
                        .min(RENEWAL_RETRY_PAUSE * 10);
                    tokio::time::sleep(pause).await;
                    current.release_renewal();
                }
            }
        });
    }
}
