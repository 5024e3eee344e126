//! The two caches: who a caller token belongs to (keyed by the token's
//! SHA-256, never the token) and the app token per instance.
//!
//! Both are bounded [`moka`] caches whose entries expire on their own
//! schedule. A miss runs one upstream call per key however many requests
//! wait on it (`try_get_with` coalesces them), and a failed call is never
//! stored: only Wix's definitive answers are.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use moka::{Expiry, future::Cache};

use crate::{
    caller::{Caller, ElevatedToken},
    error::{RejectionKind, UpstreamError},
    token::TokenDigest,
};

/// What Wix said about a caller token.
#[derive(Clone, Debug)]
pub(crate) enum Verdict {
    /// Active, for this app, bound to an instance.
    Valid(Caller),
    /// Definitively refused (unknown, inactive, expired, another app's, no
    /// instance). Remembered briefly so a repeated bad token costs nothing.
    Refused(RejectionKind),
}

#[derive(Clone)]
struct CachedVerdict {
    verdict: Verdict,
    ttl: Duration,
}

struct VerdictExpiry;

impl Expiry<TokenDigest, CachedVerdict> for VerdictExpiry {
    fn expire_after_create(
        &self,
        _: &TokenDigest,
        value: &CachedVerdict,
        _: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Caller identities by token digest.
pub(crate) struct IdentityCache {
    entries: Cache<TokenDigest, CachedVerdict>,
    ttl: Duration,
    refused_ttl: Duration,
}

impl IdentityCache {
    pub(crate) fn new(capacity: u64, ttl: Duration, refused_ttl: Duration) -> Self {
        Self {
            entries: Cache::builder()
                .name("wix-elevate identities")
                .max_capacity(capacity)
                .expire_after(VerdictExpiry)
                .build(),
            ttl,
            refused_ttl,
        }
    }

    pub(crate) async fn get(&self, key: &TokenDigest) -> Option<Verdict> {
        self.entries.get(key).await.map(|cached| cached.verdict)
    }

    /// The cached verdict, or `resolve`'s, shared by every concurrent caller
    /// with the same key. `secs_left` is how long the token stays valid.
    pub(crate) async fn get_or_resolve<F>(
        &self,
        key: TokenDigest,
        resolve: F,
    ) -> Result<Verdict, Arc<UpstreamError>>
    where
        F: Future<Output = Result<(Verdict, u64), UpstreamError>>,
    {
        let cached = self
            .entries
            .try_get_with(key, async {
                let (verdict, secs_left) = resolve.await?;
                let ttl = match verdict {
                    Verdict::Valid(_) => self.ttl.min(Duration::from_secs(secs_left)),
                    Verdict::Refused(_) => self.refused_ttl,
                };
                Ok(CachedVerdict { verdict, ttl })
            })
            .await?;
        Ok(cached.verdict)
    }

    #[cfg(test)]
    pub(crate) fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    #[cfg(test)]
    pub(crate) async fn flush(&self) {
        self.entries.run_pending_tasks().await;
    }
}

struct TokenExpiry;

impl TokenExpiry {
    fn until_unusable(token: &ElevatedToken, now: Instant) -> Option<Duration> {
        Some(token.usable_until().saturating_duration_since(now))
    }
}

impl Expiry<Arc<str>, ElevatedToken> for TokenExpiry {
    fn expire_after_create(
        &self,
        _: &Arc<str>,
        token: &ElevatedToken,
        now: Instant,
    ) -> Option<Duration> {
        Self::until_unusable(token, now)
    }

    fn expire_after_update(
        &self,
        _: &Arc<str>,
        token: &ElevatedToken,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Self::until_unusable(token, now)
    }
}

/// App tokens by instance id.
pub(crate) struct AppTokenCache {
    entries: Cache<Arc<str>, ElevatedToken>,
}

impl AppTokenCache {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            entries: Cache::builder()
                .name("wix-elevate app tokens")
                .max_capacity(capacity)
                .expire_after(TokenExpiry)
                .build(),
        }
    }

    /// A token still usable at `now`, if cached.
    pub(crate) async fn get(&self, instance: &Arc<str>, now: Instant) -> Option<ElevatedToken> {
        let token = self.entries.get(instance).await?;
        if token.is_usable_at(now) {
            Some(token)
        } else {
            // moka expires it at the same instant; never hand it out meanwhile.
            self.entries.invalidate(instance).await;
            None
        }
    }

    /// The cached token, or `fetch`'s, with one fetch per instance however
    /// many requests wait.
    pub(crate) async fn get_or_fetch<F>(
        &self,
        instance: &Arc<str>,
        fetch: F,
    ) -> Result<ElevatedToken, Arc<UpstreamError>>
    where
        F: Future<Output = Result<ElevatedToken, UpstreamError>>,
    {
        self.entries.try_get_with_by_ref(instance, fetch).await
    }

    /// Replace an instance's token after a renewal.
    pub(crate) async fn insert(&self, instance: Arc<str>, token: ElevatedToken) {
        self.entries.insert(instance, token).await;
    }

    #[cfg(test)]
    pub(crate) fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }
}
