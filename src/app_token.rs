//! Step 4 of a request: the app-identity token for the caller's instance.
//!
//! One token per instance, cached until shortly before it expires
//! ([`app_token_expiry_margin`](crate::ElevatorBuilder::app_token_expiry_margin)),
//! renewed in the background from
//! [`app_token_renew_before`](crate::ElevatorBuilder::app_token_renew_before)
//! its expiry while requests keep using it, and fetched from Wix's Create
//! Access Token once however many requests wait for it.
//!
//! When Wix answers 401 to a call made with a cached token (the app was
//! reinstalled, the token revoked, the secret rotated), [`Elevator::replace_app_token`]
//! evicts that token (only if it is still the current one) and mints one
//! new token for every request that saw the 401.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    Elevator,
    cache::{FlightCache, Fresh},
    caller::ElevatedToken,
    error::{Rejection, UpstreamError},
    metrics::CacheMetrics,
};

/// How long a failed background renewal waits before another may start.
const RENEWAL_RETRY_PAUSE: Duration = Duration::from_secs(1);

impl Fresh for ElevatedToken {
    fn is_fresh(&self, now: Instant) -> bool {
        self.is_usable_at(now)
    }
}

/// The app-token side of an elevator: the cache and the renewal schedule.
pub(crate) struct AppTokens {
    cache: FlightCache<Arc<str>, ElevatedToken>,
    renew_before: Duration,
    expiry_margin: Duration,
}

impl AppTokens {
    pub(crate) fn new(capacity: usize, renew_before: Duration, expiry_margin: Duration) -> Self {
        Self {
            cache: FlightCache::new(capacity, CacheMetrics::new("app_token")),
            renew_before,
            expiry_margin,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }
}

impl Elevator {
    /// The warm path: a usable cached token, without waiting or
    /// allocating; starts its background renewal when it is due.
    pub(crate) fn cached_app_token(
        &self,
        instance: &Arc<str>,
        now: Instant,
    ) -> Option<ElevatedToken> {
        let token = self.app_tokens().cache.get(instance, now)?;
        if token.is_due_for_renewal(now) && token.claim_renewal() {
            self.renew_in_background(instance, token.clone());
        }
        Some(token)
    }

    /// The token for `instance`: cached, or fetched through the cache's
    /// single flight. `started` is when the request arrived.
    pub(crate) async fn app_token(
        &self,
        instance: &Arc<str>,
        started: Instant,
        deadline: Instant,
    ) -> Result<ElevatedToken, Rejection> {
        if let Some(token) = self.cached_app_token(instance, Instant::now()) {
            return Ok(token);
        }
        self.app_tokens()
            .cache
            .get_or_fetch(
                instance,
                started,
                ElevatedToken::is_fresh,
                |_| self.fetch_app_token(instance, deadline),
                // Never an app token past its expiry, degraded or not.
                |_, _, _| false,
            )
            .await
            .map_err(Rejection::upstream)
    }

    /// Wix refused `stale`: evict it if it is still the cached token for
    /// its instance, and return the one that replaces it (one Create Access
    /// Token call however many requests saw the refusal).
    pub(crate) async fn replace_app_token(
        &self,
        stale: &ElevatedToken,
        deadline: Instant,
    ) -> Result<ElevatedToken, Rejection> {
        let instance = stale.instance_key();
        let cache = &self.app_tokens().cache;
        cache.remove_if(instance, |current| current.same_as(stale));
        let started = Instant::now();
        cache
            .get_or_fetch(
                instance,
                started,
                ElevatedToken::is_fresh,
                |_| self.fetch_app_token(instance, deadline),
                |_, _, _| false,
            )
            .await
            .map_err(Rejection::upstream)
    }

    async fn fetch_app_token(
        &self,
        instance: &Arc<str>,
        deadline: Instant,
    ) -> Result<ElevatedToken, UpstreamError> {
        let (app_id, app_secret) = self.credentials();
        let grant = self
            .client()
            .create_access_token(app_id, app_secret, instance, deadline)
            .await?;
        let tokens = self.app_tokens();
        Ok(ElevatedToken::issued(
            grant.access_token,
            instance.clone(),
            grant.expires_in,
            tokens.renew_before,
            tokens.expiry_margin,
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
            let deadline = this.auth_deadline_from(Instant::now());
            match this.fetch_app_token(&instance, deadline).await {
                Ok(fresh) => this.app_tokens().cache.insert(instance, fresh),
                Err(error) => {
                    tracing::warn!(target: "wix_elevate", %error, "app token renewal failed; will retry");
                    // At most one attempt per second per instance while Wix fails;
                    // the current token stays in use until it is no longer usable.
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
