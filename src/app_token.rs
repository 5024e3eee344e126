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
//! reinstalled, the token revoked, the secret rotated), [`replace`] evicts that token (only if it is still the current one) and mints one
//! new token for every request that saw the 401.

use std::{sync::Arc, time::Duration};
use tokio::time::Instant;

use secrecy::SecretString;

use crate::{
    cache::{FlightCache, Fresh},
    caller::ElevatedToken,
    client::WixClient,
    error::{Rejection, UpstreamError},
    fleet::{Fleet, Invalidation, Place, ToStore},
    forget::Forgetting,
    metrics::CacheMetrics,
    token::TokenDigest,
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
    forgetting: Arc<Forgetting>,
}

impl AppTokens {
    pub(crate) fn new(
        capacity: usize,
        renew_before: Duration,
        expiry_margin: Duration,
        forgetting: Arc<Forgetting>,
    ) -> Self {
        Self {
            cache: FlightCache::new(capacity, CacheMetrics::new("app_token")),
            renew_before,
            expiry_margin,
            forgetting,
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
}

/// What the app-token step needs from the per-app state. The elevator
/// implements it; this module never names the elevator.
pub(crate) trait AppTokenSource: Clone + Send + Sync + 'static {
    fn app_tokens(&self) -> &AppTokens;
    fn client(&self) -> &WixClient;
    fn credentials(&self) -> (&str, &SecretString);
    fn fleet(&self) -> Option<&Fleet>;
    /// The keyed digest of a token (fleet-wide in fleet mode).
    fn token_digest(&self, token: &[u8]) -> TokenDigest;
    fn auth_deadline_from(&self, started: Instant) -> Instant;
}

/// The warm path: a usable cached token, without waiting or
/// allocating; starts its background renewal when it is due.
pub(crate) fn cached<E: AppTokenSource>(
    source: &E,
    instance: &Arc<str>,
    now: Instant,
) -> Option<ElevatedToken> {
    let token = source.app_tokens().cache.get(instance, now)?;
    if token.is_due_for_renewal(now) && token.claim_renewal() {
        renew_in_background(source, instance, token.clone());
    }
    Some(token)
}

/// The token for `instance`: cached, or fetched through the cache's
/// single flight. `started` is when the request arrived.
pub(crate) async fn get<E: AppTokenSource>(
    source: &E,
    instance: &Arc<str>,
    started: Instant,
    deadline: Instant,
) -> Result<ElevatedToken, Rejection> {
    if let Some(token) = cached(source, instance, Instant::now()) {
        return Ok(token);
    }
    source
        .app_tokens()
        .cache
        .get_or_fetch(
            instance,
            started,
            ElevatedToken::is_fresh,
            |_| fetch(source, instance, deadline),
            // Never an app token past its expiry, degraded or not.
            |_, _, _| false,
        )
        .await
        .map_err(Rejection::upstream)
}

/// Wix refused `stale`: evict it if it is still the cached token for
/// its instance, and return the one that replaces it (one Create Access
/// Token call however many requests saw the refusal).
pub(crate) async fn replace<E: AppTokenSource>(
    source: &E,
    stale: &ElevatedToken,
    deadline: Instant,
) -> Result<ElevatedToken, Rejection> {
    let instance = stale.instance_key();
    let cache = &source.app_tokens().cache;
    cache.remove_if(instance, |current| current.same_as(stale));
    if let Some(fleet) = source.fleet() {
        // Every replica drops this token (and only this one).
        let digest = source.token_digest(stale.expose_secret().as_bytes());
        let invalidation = Invalidation::Instance {
            instance: instance.to_string(),
            stale: Some(digest.hex()),
        };
        fleet.forget(invalidation).await;
    }
    let started = Instant::now();
    cache
        .get_or_fetch(
            instance,
            started,
            ElevatedToken::is_fresh,
            |_| fetch_replacing(source, instance, Some(stale), deadline),
            |_, _, _| false,
        )
        .await
        .map_err(Rejection::upstream)
}

async fn fetch<E: AppTokenSource>(
    source: &E,
    instance: &Arc<str>,
    deadline: Instant,
) -> Result<ElevatedToken, UpstreamError> {
    fetch_replacing(source, instance, None, deadline).await
}

/// Wix's token for `instance` (in fleet mode, another replica's if it
/// stored one that is not due for renewal and is not `stale`).
async fn fetch_replacing<E: AppTokenSource>(
    source: &E,
    instance: &Arc<str>,
    stale: Option<&ElevatedToken>,
    deadline: Instant,
) -> Result<ElevatedToken, UpstreamError> {
    let tokens = source.app_tokens();
    let begun = tokens.forgetting.now();
    let Some(fleet) = source.fleet() else {
        return grant(source, instance, deadline, begun).await;
    };
    let key = fleet.app_key(instance);
    // Bound to the key and to the instance: never moved to another.
    let aad = [key.as_bytes(), b"\0", instance.as_bytes()].concat();
    let place = Place {
        key: &key,
        marked: false,
        aad: &aad,
        budget: None,
    };
    fleet
        .shared(
            place,
            |plaintext| {
                let token = shared::open(plaintext, instance, tokens, begun)?;
                let is_stale = stale.is_some_and(|s| s.expose_secret() == token.expose_secret());
                (!is_stale).then_some(token)
            },
            |_| async {
                let token = grant(source, instance, deadline, begun).await?;
                let (plaintext, ttl) = shared::seal(&token, tokens);
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
async fn grant<E: AppTokenSource>(
    source: &E,
    instance: &Arc<str>,
    deadline: Instant,
    begun: u64,
) -> Result<ElevatedToken, UpstreamError> {
    let (app_id, app_secret) = source.credentials();
    let grant = source
        .client()
        .create_access_token(app_id, app_secret, instance, deadline)
        .await?;
    let tokens = source.app_tokens();
    Ok(ElevatedToken::issued(
        grant.access_token,
        instance.clone(),
        grant.expires_in,
        tokens.renew_before,
        tokens.expiry_margin,
        Some(tokens.forgetting.stamp(instance, begun)),
    ))
}

/// Renew `current` while requests keep using it. Outside a tokio runtime
/// nothing is spawned; the token is then renewed when it expires.
fn renew_in_background<E: AppTokenSource>(source: &E, instance: &Arc<str>, current: ElevatedToken) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        current.release_renewal();
        return;
    };
    let this = source.clone();
    let instance = instance.clone();
    runtime.spawn(async move {
        let deadline = this.auth_deadline_from(Instant::now());
        match fetch(&this, &instance, deadline).await {
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
/// App tokens as stored in Redis (fleet mode): the token and its expiry on
/// the wall clock, since replicas share no monotonic clock.
mod shared {
    use std::{sync::Arc, time::Duration};
    use tokio::time::Instant;

    use serde::{Deserialize, Serialize};

    use super::AppTokens;
    use crate::{caller::ElevatedToken, fleet::unix_ms};

    #[derive(Deserialize)]
    struct Stored {
        token: String,
        /// Unix ms.
        expires: u64,
    }

    /// What is sealed: borrowed, so no unwiped copy of the token is made.
    #[derive(Serialize)]
    struct StoredRef<'a> {
        token: &'a str,
        expires: u64,
    }

    /// The plaintext to store, and its TTL in Redis: until the token enters
    /// its expiry margin.
    pub(super) fn seal(token: &ElevatedToken, tokens: &AppTokens) -> (Vec<u8>, Duration) {
        let left = token.expires_at().saturating_duration_since(Instant::now());
        let stored = StoredRef {
            token: token.expose_secret(),
            expires: unix_ms().saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
        };
        let ttl = left.saturating_sub(tokens.expiry_margin);
        (serde_json::to_vec(&stored).unwrap_or_default(), ttl)
    }

    /// A stored token, unless it is due for renewal (then the fleet renews
    /// it once) or inside its expiry margin.
    pub(super) fn open(
        plaintext: &[u8],
        instance: &Arc<str>,
        tokens: &AppTokens,
        begun: u64,
    ) -> Option<ElevatedToken> {
        let stored: Stored = serde_json::from_slice(plaintext).ok()?;
        let left = Duration::from_millis(stored.expires.checked_sub(unix_ms())?);
        if left <= tokens.renew_before.max(tokens.expiry_margin) {
            return None;
        }
        Some(ElevatedToken::issued(
            stored.token,
            instance.clone(),
            left,
            tokens.renew_before,
            tokens.expiry_margin,
            Some(tokens.forgetting.stamp(instance, begun)),
        ))
    }
}
