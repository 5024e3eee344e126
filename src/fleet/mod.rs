//! Fleet mode (feature `redis`): many replicas, and every restart, share one
//! Wix budget through Redis or Valkey.
//!
//! The in-process caches stay the first level and the warm path never
//! waits on Redis. On a local miss, a replica looks in Redis before asking
//! Wix, and writes back what Wix answered:
//!
//! * **Shared answers.** Identities (refusals included, for their short
//!   TTL) and app tokens, under the same expiry rules as in process.
//! * **Cross-replica single flight.** The replica that misses Redis takes a
//!   short lease (`SET NX PX`) and asks Wix; the others poll for the value
//!   it writes. A replica that dies holding the lease delays the others by
//!   at most the lease, then they ask Wix themselves.
//! * **Secrecy** ([`seal`]): keys are keyed MACs under keys derived from the
//!   app secret, values authenticated encryption bound to their key.
//! * **Fleet-wide rate limits**: one atomic GCRA script per check.
//! * **Invalidation**: dropped in Redis and, through pub/sub, from every
//!   replica's local cache.
//! * **Never a single point of failure** ([`store`]): tight timeouts, a
//!   circuit breaker that skips Redis while it is down, reconnection by
//!   itself; without Redis each replica works exactly as alone.
//!
//! Without the feature, [`Fleet`] is an empty type: an elevator never has
//! one, and the code that consults it is never reached.

#[cfg(feature = "redis")]
mod seal;
#[cfg(feature = "redis")]
mod store;

#[cfg(not(feature = "redis"))]
pub(crate) use disabled::*;
#[cfg(feature = "redis")]
pub(crate) use enabled::*;

/// Now on the wall clock, in Unix milliseconds: what replicas agree on
/// (they share no monotonic clock).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A message every replica acts on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Invalidation {
    /// Drop this instance's app token (only the one whose token digest is
    /// `stale`, when given) and, without `stale`, its cached identities.
    Instance {
        instance: String,
        stale: Option<String>,
    },
    /// Drop the identity cached under this token digest (hex).
    Token { digest: String },
}

#[cfg(feature = "redis")]
mod enabled {
    use std::{
        fmt,
        future::Future,
        sync::{
            Arc, OnceLock,
            atomic::{AtomicBool, Ordering},
        },
        time::{Duration, Instant},
    };

    use futures_util::StreamExt;

    use super::{
        Invalidation,
        seal::{Sealer, derive},
        store::RedisStore,
    };
    use crate::{error::ConfigError, token::TokenHasher};

    /// How often a replica waiting on another's lease looks for the value.
    const POLL: Duration = Duration::from_millis(10);

    /// Fleet settings from the builder.
    #[derive(Clone)]
    pub(crate) struct FleetSettings {
        pub(crate) url: String,
        pub(crate) prefix: Option<String>,
        pub(crate) timeout: Duration,
        pub(crate) lease: Duration,
    }

    type Handler = Box<dyn Fn(Invalidation) + Send + Sync>;

    pub(crate) struct Fleet {
        store: Arc<RedisStore>,
        sealer: Arc<Sealer>,
        /// Keys instance ids (and route limits) the same way on every replica.
        hasher: TokenHasher,
        prefix: Box<str>,
        channel: Arc<str>,
        lease: Duration,
        handler: Arc<OnceLock<Handler>>,
        listening: AtomicBool,
    }

    /// The token digest's keys, derived from the app secret so that every
    /// replica computes the same identity keys.
    pub(crate) fn token_hasher(app_secret: &[u8]) -> Result<TokenHasher, ConfigError> {
        let h = derive::<16>(app_secret, b"token digest H");
        let k = derive::<16>(app_secret, b"token digest K");
        TokenHasher::from_keys(h, k)
    }

    impl Fleet {
        pub(crate) fn new(
            settings: FleetSettings,
            app_id: &str,
            app_secret: &[u8],
        ) -> Result<Self, ConfigError> {
            let client = redis::Client::open(settings.url.as_str())
                .map_err(|_| ConfigError::InvalidRedisUrl)?;
            let prefix = settings
                .prefix
                .unwrap_or_else(|| format!("wix-elevate:{app_id}"));
            if prefix.is_empty() || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError::InvalidRedisUrl);
            }
            let hasher = TokenHasher::from_keys(
                derive::<16>(app_secret, b"redis instance key H"),
                derive::<16>(app_secret, b"redis instance key K"),
            )?;
            Ok(Self {
                store: Arc::new(RedisStore::new(client, settings.timeout)),
                sealer: Arc::new(Sealer::from_secret(app_secret)),
                hasher,
                channel: format!("{prefix}:invalidate").into(),
                prefix: prefix.into(),
                lease: settings.lease,
                handler: Arc::new(OnceLock::new()),
                listening: AtomicBool::new(false),
            })
        }

        /// The Redis key of the identity cached under this token digest.
        pub(crate) fn identity_key(&self, digest_hex: &str) -> String {
            format!("{}:id:{digest_hex}", self.prefix)
        }

        /// The Redis key of an instance's app token.
        pub(crate) fn app_key(&self, instance: &str) -> String {
            let digest = self.hasher.digest(format!("app\0{instance}").as_bytes());
            format!("{}:app:{}", self.prefix, digest.hex())
        }

        /// What every replica does with an invalidation (set once).
        pub(crate) fn on_invalidation(
            &self,
            handler: impl Fn(Invalidation) + Send + Sync + 'static,
        ) {
            let _ = self.handler.set(Box::new(handler));
        }

        /// Whether Redis is in use now (its circuit closed).
        pub(crate) fn is_available(&self) -> bool {
            self.store.is_available()
        }

        /// The value under `key`, else `fetch`'s, which is written back: a
        /// cross-replica single flight. `open` turns a stored plaintext into
        /// a value, or `None` if it will not do (expired, due). `fetch`
        /// yields the value, its plaintext and its TTL in Redis.
        pub(crate) async fn shared<T, E, Fut>(
            &self,
            key: &str,
            aad: &[u8],
            open: impl Fn(&[u8]) -> Option<T>,
            fetch: Fut,
        ) -> Result<T, E>
        where
            Fut: Future<Output = Result<(T, Vec<u8>, Duration), E>>,
        {
            self.ensure_listening();
            if let Some(value) = self.read(key, aad, &open).await {
                return Ok(value);
            }
            let lock = format!("{key}:lease");
            match self.store.lease(&lock, self.lease).await {
                // Another replica is asking Wix: take what it writes.
                Some(false) => {
                    let until = Instant::now() + self.lease;
                    while Instant::now() < until {
                        tokio::time::sleep(POLL).await;
                        if let Some(value) = self.read(key, aad, &open).await {
                            return Ok(value);
                        }
                        if !self.store.is_available() {
                            break;
                        }
                    }
                }
                // This replica holds the lease. The holder before it may
                // have written and released between the read and the lease.
                Some(true) => {
                    if let Some(value) = self.read(key, aad, &open).await {
                        self.store.delete(&[&lock]).await;
                        return Ok(value);
                    }
                }
                // Redis is unavailable: this replica asks Wix alone.
                None => {}
            }
            let fetched = fetch.await.map(|(value, plaintext, ttl)| {
                // It may hold an app token: wiped once sealed.
                (value, zeroize::Zeroizing::new(plaintext), ttl)
            });
            if let Ok((_, plaintext, ttl)) = &fetched
                && let Some(sealed) = self.sealer.seal(plaintext, aad)
            {
                self.store.put(key, &sealed, *ttl).await;
            }
            // Released whatever Wix said: a failure is never shared, so the
            // next replica asks Wix at once instead of waiting out the lease.
            self.store.delete(&[&lock]).await;
            fetched.map(|(value, _, _)| value)
        }

        async fn read<T>(
            &self,
            key: &str,
            aad: &[u8],
            open: impl Fn(&[u8]) -> Option<T>,
        ) -> Option<T> {
            let sealed = self.store.get(key).await.flatten()?;
            match self.sealer.open(&sealed, aad) {
                Some(plaintext) => open(&plaintext),
                None => {
                    self.store.undecryptable();
                    tracing::warn!(target: "wix_elevate::fleet", "a Redis value did not decrypt: ignored (another app's, altered or moved)");
                    None
                }
            }
        }

        /// Drop `keys` in Redis and tell every replica (this one included).
        pub(crate) async fn forget(&self, keys: &[&str], invalidation: Invalidation) {
            self.ensure_listening();
            if !keys.is_empty() {
                self.store.delete(keys).await;
            }
            let sealed = serde_json::to_vec(&invalidation)
                .ok()
                .and_then(|json| self.sealer.seal(&json, self.channel.as_bytes()));
            if let Some(sealed) = sealed {
                self.store.publish(&self.channel, &sealed).await;
            }
        }

        /// A fleet-wide GCRA check of `per_minute` for `parts` (route,
        /// scope, caller): `None` when Redis is unavailable.
        pub(crate) async fn rate(
            &self,
            parts: &[&str],
            per_minute: u32,
        ) -> Option<Result<(), Duration>> {
            let digest = self.hasher.digest(parts.join("\0").as_bytes());
            let key = format!("{}:rate:{}", self.prefix, digest.hex());
            self.store.rate(&key, per_minute).await
        }

        /// Start the pub/sub listener once, on the runtime in use.
        fn ensure_listening(&self) {
            if self.listening.swap(true, Ordering::AcqRel) {
                return;
            }
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                self.listening.store(false, Ordering::Release);
                return;
            };
            let listener = Listener {
                store: self.store.clone(),
                sealer: self.sealer.clone(),
                channel: self.channel.clone(),
                handler: Arc::downgrade(&self.handler),
            };
            runtime.spawn(listener.run());
        }
    }

    /// The subscriber: reconnects by itself; stops when its elevator is gone.
    struct Listener {
        store: Arc<RedisStore>,
        sealer: Arc<Sealer>,
        channel: Arc<str>,
        handler: std::sync::Weak<OnceLock<Handler>>,
    }

    impl Listener {
        async fn run(self) {
            let mut backoff = Duration::from_millis(100);
            while self.handler.strong_count() > 0 {
                match self.subscribed().await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(()) => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }

        /// Listen until the connection ends (`Ok`) or cannot be made (`Err`).
        async fn subscribed(&self) -> Result<(), ()> {
            let client = self.store.client();
            let connect = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&*self.channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let mut pubsub = tokio::time::timeout(Duration::from_secs(2), connect)
                .await
                .map_err(|_| ())?
                .map_err(|_| ())?;
            let mut messages = pubsub.on_message();
            loop {
                let next = tokio::time::timeout(Duration::from_secs(1), messages.next()).await;
                let Some(handler) = self.handler.upgrade() else {
                    return Ok(());
                };
                match next {
                    Err(_) => continue,
                    Ok(None) => return Ok(()),
                    Ok(Some(message)) => {
                        let Some(plaintext) = self
                            .sealer
                            .open(message.get_payload_bytes(), self.channel.as_bytes())
                        else {
                            self.store.undecryptable();
                            continue;
                        };
                        if let (Ok(invalidation), Some(handle)) = (
                            serde_json::from_slice::<Invalidation>(&plaintext),
                            handler.get(),
                        ) {
                            handle(invalidation);
                        }
                    }
                }
            }
        }
    }

    impl fmt::Debug for Fleet {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Fleet")
                .field("prefix", &self.prefix)
                .finish_non_exhaustive()
        }
    }
}

#[cfg(not(feature = "redis"))]
mod disabled {
    use std::{future::Future, time::Duration};

    use super::Invalidation;

    /// Without feature `redis` there is no fleet: this type has no value.
    #[derive(Debug)]
    pub(crate) enum Fleet {}

    impl Fleet {
        pub(crate) fn identity_key(&self, _: &str) -> String {
            match *self {}
        }

        pub(crate) fn app_key(&self, _: &str) -> String {
            match *self {}
        }

        pub(crate) fn is_available(&self) -> bool {
            match *self {}
        }

        pub(crate) fn on_invalidation(&self, _: impl Fn(Invalidation) + Send + Sync + 'static) {
            match *self {}
        }

        pub(crate) async fn shared<T, E, Fut>(
            &self,
            _: &str,
            _: &[u8],
            _: impl Fn(&[u8]) -> Option<T>,
            _: Fut,
        ) -> Result<T, E>
        where
            Fut: Future<Output = Result<(T, Vec<u8>, Duration), E>>,
        {
            match *self {}
        }

        pub(crate) async fn forget(&self, _: &[&str], _: Invalidation) {
            match *self {}
        }

        pub(crate) async fn rate(&self, _: &[&str], _: u32) -> Option<Result<(), Duration>> {
            match *self {}
        }
    }
}
