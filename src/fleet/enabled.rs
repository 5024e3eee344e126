//! This replica's handle on the fleet (feature `redis`): lookups with a
//! cross-replica single flight and rate limits; forgetting, webhook
//! deliveries and events, and installed instances live beside it
//! (`forgetting`, `deliveries`, `events`, `installed`).

use std::{
    fmt,
    future::Future,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;

use super::{
    Budget, Gcra, Invalidation, Place, RedisConfig, ToStore,
    listener::{Listener, ListeningState},
    notice::{Handler, SUBSCRIBE_TIMEOUT, random_id},
    redis_store::RedisStore,
    seal::{Sealer, derive},
    store::{Claim, FleetStore, Lookup, SlotKeys},
};
use crate::{error::ConfigError, token::TokenHasher};

/// How long the start-up check of a required fleet waits for Redis.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a replica waiting on another's lease looks for the value.
const POLL: Duration = Duration::from_millis(10);

/// How long an instance's generation and a token's forget mark stay in
/// Redis: longer than any value they govern can be served (app tokens
/// are clamped to 24 hours, identities to the identity TTL).
pub(super) const MARK_LIFETIME: Duration = Duration::from_secs(25 * 3600);

/// The forget mark of the value under `key`.
/// `prefix` with a Redis Cluster hash tag: every key of the fleet is then
/// in one slot, so each script's keys are too (a script reads the forget
/// sequence, shared by the whole fleet, beside a token's or an instance's
/// keys). A prefix that already holds a tag (`{...}`, not empty) is kept.
fn hash_tagged(prefix: String) -> String {
    let tagged = prefix
        .find('{')
        .and_then(|open| prefix[open + 1..].find('}'))
        .is_some_and(|len| len > 0);
    if tagged {
        prefix
    } else {
        format!("{{{prefix}}}")
    }
}

pub(super) fn mark_key(key: &str) -> String {
    format!("{key}:forgotten")
}

/// The associated data of a sealed value: its key, what its place binds
/// it to, and its generation key (so that no value can be made to answer
/// to another key, instance or generation).
fn bound_aad(key: &str, aad: &[u8], generation: &str) -> Vec<u8> {
    [key.as_bytes(), b"\0", aad, b"\0", generation.as_bytes()].concat()
}

/// A lease owner: random, so that only its holder releases a lease.
fn lease_owner() -> String {
    // Without randomness, a constant owner still releases correctly
    // except against a concurrent holder: the lease's expiry bounds that.
    random_id()
}

pub(crate) struct Fleet {
    pub(super) store: Arc<dyn FleetStore>,
    pub(super) sealer: Arc<Sealer>,
    /// Keys instance ids (and route limits) the same way on every replica.
    pub(super) hasher: TokenHasher,
    pub(super) prefix: Box<str>,
    pub(super) channel: Arc<str>,
    /// The fleet's forget sequence.
    pub(super) sequence_key: String,
    /// The fleet-wide budget of Token Info calls for new tokens.
    budget_key: String,
    lease: Duration,
    handler: Arc<OnceLock<Handler>>,
    listening: AtomicBool,
    pub(super) listening_state: Arc<ListeningState>,
    /// Values and notices that did not open (another app's, altered, moved).
    undecryptable: metrics::Counter,
    /// Until when the fleet-wide budget for new tokens is known to be
    /// spent: until then a token it would govern is refused here, at no
    /// Redis command.
    budget_spent_until: std::sync::Mutex<Option<Instant>>,
    /// [`RedisConfig::required`]: the replica would rather not serve than
    /// serve without the fleet's guarantees.
    ///
    /// [`RedisConfig::required`]: super::RedisConfig::required
    required: bool,
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
        settings: RedisConfig,
        app_id: &str,
        app_secret: &[u8],
    ) -> Result<Self, ConfigError> {
        let client =
            redis::Client::open(settings.url.as_str()).map_err(|_| ConfigError::InvalidRedisUrl)?;
        let prefix = settings
            .prefix
            .unwrap_or_else(|| format!("wix-elevate:{app_id}"));
        if prefix.is_empty() || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::InvalidRedisUrl);
        }
        let prefix = hash_tagged(prefix);
        if settings.required {
            // Checked once, now: the replica would rather not start than
            // run without the fleet's guarantees.
            super::health::probe(&client, &prefix, settings.timeout.max(PROBE_TIMEOUT))
                .map_err(ConfigError::FleetUnavailable)?;
        }
        let store = Arc::new(RedisStore::new(
            client,
            settings.timeout,
            format!("{prefix}:unused"),
        ));
        let mut fleet = Self::with_store(store, prefix, app_secret, settings.lease)?;
        fleet.required = settings.required;
        Ok(fleet)
    }

    /// The fleet on any store, its keys under `prefix`.
    pub(super) fn with_store(
        store: Arc<dyn FleetStore>,
        prefix: String,
        app_secret: &[u8],
        lease: Duration,
    ) -> Result<Self, ConfigError> {
        let hasher = TokenHasher::from_keys(
            derive::<16>(app_secret, b"redis instance key H"),
            derive::<16>(app_secret, b"redis instance key K"),
        )?;
        Ok(Self {
            store,
            sealer: Arc::new(Sealer::from_secret(app_secret)),
            hasher,
            channel: format!("{prefix}:invalidate").into(),
            sequence_key: format!("{prefix}:forget-sequence"),
            budget_key: format!("{prefix}:budget:token-info"),
            prefix: prefix.into(),
            lease,
            handler: Arc::new(OnceLock::new()),
            listening: AtomicBool::new(false),
            listening_state: Arc::new(ListeningState::new()),
            undecryptable: metrics::counter!("wix_elevate_redis_total", "result" => "undecryptable"),
            budget_spent_until: std::sync::Mutex::new(None),
            required: false,
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

    /// The Redis key of an instance's generation: the fleet's forget
    /// sequence at the instance's last forget.
    pub(super) fn generation_key(&self, instance: &str) -> String {
        let digest = self.hasher.digest(format!("gen\0{instance}").as_bytes());
        format!("{}:gen:{}", self.prefix, digest.hex())
    }

    /// What every replica does with an invalidation (set once); starts
    /// listening at once when built on a tokio runtime, so that the replica
    /// is subscribed before its first request (else on first use).
    pub(crate) fn on_invalidation(&self, handler: impl Fn(Invalidation) + Send + Sync + 'static) {
        let _ = self.handler.set(Box::new(handler));
        self.ensure_listening();
    }

    /// Whether Redis is in use now (its circuit closed).
    /// Why fleet mode does not give its guarantees now, if it does not.
    pub(crate) fn degraded(&self) -> Option<&'static str> {
        self.store.degraded()
    }

    pub(crate) fn is_available(&self) -> bool {
        self.store.is_available()
    }

    /// Whether it was configured [`required`](super::RedisConfig::required).
    pub(crate) fn is_required(&self) -> bool {
        self.required
    }

    /// The value in `place`, else `fetch`'s, which is written back: a
    /// cross-replica single flight. `open` turns a stored plaintext into
    /// a value, or `None` if it will not do (expired, due). `fetch` is
    /// told how its budget stands and yields the value and what to
    /// store (nothing for a value not to share).
    ///
    /// A stored value is served only if neither its instance nor its
    /// key was forgotten after the fetch that wrote it began, and a
    /// fetch's answer is written only on the same condition, checked
    /// by Redis as it writes: so neither a replayed old value nor a
    /// verdict that was in flight during a forget outlives the forget.
    pub(crate) async fn shared<T, E, Fut>(
        &self,
        place: Place<'_>,
        open: impl Fn(&[u8]) -> Option<T>,
        fetch: impl FnOnce(Budget) -> Fut,
        spent: impl FnOnce(Duration) -> E,
    ) -> Result<T, E>
    where
        Fut: Future<Output = Result<(T, Option<ToStore>), E>>,
    {
        if place.budget.is_some()
            && let Some(wait) = self.budget_spent_for()
        {
            // Known spent: refused here, until the next refill could come.
            return Err(spent(wait));
        }
        self.listen_first().await;
        let lease = format!("{}:lease", place.key);
        let mark = if place.marked {
            mark_key(place.key)
        } else {
            String::new()
        };
        let keys = SlotKeys {
            value: place.key,
            mark: &mark,
            sequence: &self.sequence_key,
            lease: &lease,
        };
        let Some(found) = self.store.lookup(keys, false).await else {
            // Redis is unavailable: this replica asks Wix alone.
            return fetch(Budget::Local).await.map(|(value, _)| value);
        };
        if let Some(value) = self.open_found(&found, &place, &open) {
            return Ok(value);
        }
        let owner = lease_owner();
        let budget = place.budget.map(|rate| (self.budget_key.as_str(), rate));
        let give_up = Instant::now() + self.lease * 2;
        let started = 'claim: loop {
            match self.store.claim(keys, &owner, self.lease, budget).await {
                None => return fetch(Budget::Local).await.map(|(value, _)| value),
                Some(Claim::BudgetSpent(wait)) => {
                    self.budget_spent(wait);
                    return Err(spent(wait));
                }
                Some(Claim::Taken(found)) => {
                    // The holder before may have written and released
                    // between the lookup and the claim.
                    if let Some(value) = self.open_found(&found, &place, &open) {
                        self.store.release(&lease, &owner).await;
                        return Ok(value);
                    }
                    break 'claim found.sequence;
                }
                // Another replica is asking Wix: take what it writes,
                // or claim again as soon as its lease is gone.
                Some(Claim::Busy) => loop {
                    if Instant::now() >= give_up {
                        return fetch(Budget::Local).await.map(|(value, _)| value);
                    }
                    tokio::time::sleep(POLL).await;
                    let Some(found) = self.store.lookup(keys, true).await else {
                        return fetch(Budget::Local).await.map(|(value, _)| value);
                    };
                    if let Some(value) = self.open_found(&found, &place, &open) {
                        return Ok(value);
                    }
                    if !found.leased {
                        continue 'claim;
                    }
                },
            }
        };
        let fetched = fetch(Budget::Spent).await;
        let written = match &fetched {
            Ok((_, Some(to_store))) => {
                let generation = to_store
                    .instance
                    .as_deref()
                    .map(|instance| self.generation_key(instance))
                    .unwrap_or_default();
                match self.stored(&place, &generation, started, &to_store.plaintext) {
                    Some(stored) => self
                        .store
                        .write(keys, &generation, &stored, to_store.ttl, started, &owner)
                        .await
                        .is_some(),
                    None => false,
                }
            }
            _ => false,
        };
        if !written {
            // Released whatever Wix said: a failure is never shared, so
            // the next replica asks Wix at once.
            self.store.release(&lease, &owner).await;
        }
        fetched.map(|(value, _)| value)
    }

    /// How long the fleet-wide budget is still known to be spent, if it is.
    fn budget_spent_for(&self) -> Option<Duration> {
        let until = (*lock(&self.budget_spent_until))?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Redis said the budget is spent for `wait`: remember it.
    fn budget_spent(&self, wait: Duration) {
        *lock(&self.budget_spent_until) = Some(Instant::now() + wait);
    }

    /// `generation key \n sealed(sequence ‖ plaintext)`, bound to the
    /// place (its key and `aad`) and to the generation key.
    fn stored(
        &self,
        place: &Place<'_>,
        generation: &str,
        started: u64,
        plaintext: &[u8],
    ) -> Option<Vec<u8>> {
        // It may hold an app token: wiped once sealed.
        let mut message = zeroize::Zeroizing::new(Vec::with_capacity(8 + plaintext.len()));
        message.extend_from_slice(&started.to_be_bytes());
        message.extend_from_slice(plaintext);
        let sealed = self
            .sealer
            .seal(&message, &bound_aad(place.key, place.aad, generation))?;
        let mut stored = Vec::with_capacity(generation.len() + 1 + sealed.len());
        stored.extend_from_slice(generation.as_bytes());
        stored.push(b'\n');
        stored.extend_from_slice(&sealed);
        Some(stored)
    }

    /// The value a lookup found, if it decrypts, was not forgotten
    /// since it was fetched, and `open` takes it.
    fn open_found<T>(
        &self,
        found: &Lookup,
        place: &Place<'_>,
        open: impl Fn(&[u8]) -> Option<T>,
    ) -> Option<T> {
        let stored = found.value.as_deref()?;
        let newline = stored.iter().position(|b| *b == b'\n')?;
        let (generation, sealed) = (&stored[..newline], &stored[newline + 1..]);
        let generation = std::str::from_utf8(generation).ok()?;
        let aad = bound_aad(place.key, place.aad, generation);
        let Some(message) = self.sealer.open(sealed, &aad) else {
            self.undecryptable.increment(1);
            tracing::warn!(target: "wix_elevate::fleet", "a Redis value did not decrypt: ignored (another app's, altered or moved)");
            return None;
        };
        let (started, plaintext) = message.split_first_chunk::<8>()?;
        let started = u64::from_be_bytes(*started);
        // Forgotten after the fetch that wrote it began (or replayed).
        if found.generation > started || found.mark > started {
            return None;
        }
        open(plaintext)
    }

    /// Whether this replica may serve from its local caches at `now` (the
    /// request's own clock reading: the warm path reads no clock for it,
    /// and takes no lock while the replica hears the fleet): Redis is
    /// away (it works alone, as documented), or it heard back a heartbeat
    /// it sent less than [`FRESH`](super::notice::FRESH) ago, so it acted on every invalidation
    /// published before that. A replica that was frozen, partitioned or
    /// lost its subscription asks Redis (whose values know every forget)
    /// until it hears itself again.
    pub(crate) fn trusts_local(&self, now: Instant) -> bool {
        self.listening_state.is_fresh_at(now) || !self.store.is_available()
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
        self.store.rate(&key, Gcra::per_minute(per_minute)).await
    }

    /// Make sure this replica hears invalidations before it takes
    /// anything from the fleet: a value taken before it listens could
    /// miss a forget published meanwhile. The first misses wait for
    /// the listener's first attempt to subscribe (itself bounded by
    /// [`SUBSCRIBE_TIMEOUT`]); whatever is taken while it is not
    /// subscribed (that attempt failed) is dropped when it subscribes.
    pub(super) async fn listen_first(&self) {
        self.ensure_listening();
        let state = &self.listening_state;
        if !state.attempted.load(Ordering::Acquire) {
            let attempted = state.changed.notified();
            if !state.attempted.load(Ordering::Acquire) {
                let _ = tokio::time::timeout(SUBSCRIBE_TIMEOUT * 2, attempted).await;
            }
        }
        if !state.subscribed.load(Ordering::Acquire) {
            state.unheard.store(true, Ordering::Release);
        }
    }

    /// Start the pub/sub listener once, on the runtime in use.
    pub(super) fn ensure_listening(&self) {
        if self.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.listening.store(false, Ordering::Release);
            return;
        };
        let listener = Listener {
            state: self.listening_state.clone(),
            prefix: self.prefix.clone(),
            store: self.store.clone(),
            sealer: self.sealer.clone(),
            undecryptable: self.undecryptable.clone(),
            channel: self.channel.clone(),
            handler: Arc::downgrade(&self.handler),
        };
        runtime.spawn(listener.run());
    }
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The lock's value, whatever a panicking holder left.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
