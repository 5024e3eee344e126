//! Forgetting that holds: what [`Elevator::forget_instance`](crate::Elevator::forget_instance)
//! and [`Elevator::forget_token`](crate::Elevator::forget_token) leave
//! behind in this process, so that neither a cached entry nor a Wix answer
//! that was in flight when they ran is ever served afterwards.
//!
//! One counter orders every forget. A fetch (of an identity or an app
//! token) notes the counter when it starts ([`Forgetting::now`]); what it
//! caches carries a [`Stamp`]: the instance's [`InstanceMark`] and that
//! start. Forgetting an instance bumps the counter and writes it into the
//! instance's mark, so every entry of that instance, cached or still in
//! flight, stops [holding](Stamp::holds) at once: O(1) whatever the cache
//! holds, and one atomic load on the warm path.
//!
//! A token is forgotten the other way round (its entry is keyed by the
//! token, so it is removed), plus a short-lived note that a fetch ending
//! after the forget checks once it has stored its answer
//! ([`Forgetting::token_forgotten_since`]).

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use crate::token::TokenDigest;

/// How long a forgotten token's note is kept at least. It is kept longer
/// when the configured deadlines let a fetch last longer: see
/// [`Forgetting::outliving`].
const TOKEN_NOTE_LIFETIME: Duration = Duration::from_secs(600);

/// What a note outlives the longest fetch by: the time a fetch's answer
/// takes from Wix's reply to the cache.
const NOTE_MARGIN: Duration = Duration::from_secs(60);

/// Forget order for one instance: the sequence number of its last forget.
#[derive(Default)]
pub(crate) struct InstanceMark {
    forgotten_at: AtomicU64,
}

/// What a cached entry carries: whose mark, and when its fetch started.
#[derive(Clone)]
pub(crate) struct Stamp {
    mark: Arc<InstanceMark>,
    started: u64,
}

impl Stamp {
    /// Whether the instance has not been forgotten since the fetch began.
    pub(crate) fn holds(&self) -> bool {
        self.mark.forgotten_at.load(Ordering::Acquire) <= self.started
    }
}

impl fmt::Debug for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stamp")
            .field("started", &self.started)
            .field("holds", &self.holds())
            .finish()
    }
}

/// The process's record of forgets.
pub(crate) struct Forgetting {
    sequence: AtomicU64,
    /// One mark per instance seen or forgotten (the app's installations),
    /// pruned of unreferenced marks when it grows past `soft_cap`.
    instances: RwLock<Marks>,
    soft_cap: usize,
    /// How long a forgotten token's note is kept.
    note_lifetime: Duration,
    /// Tokens forgotten lately, with the sequence of their forget.
    tokens: Mutex<HashMap<TokenDigest, (u64, Instant)>>,
    /// The sequence of the latest token forget: a fetch that began after
    /// it need not look at `tokens` (no lock on the miss path).
    latest_token_forget: AtomicU64,
}

struct Marks {
    by_instance: HashMap<Arc<str>, Arc<InstanceMark>>,
    /// Marks made after a prune start here: the latest forget among the
    /// pruned marks, so that a fetch in flight across the prune still
    /// sees that forget.
    floor: u64,
}

impl Forgetting {
    /// A record that prunes its marks beyond `soft_cap` instances.
    pub(crate) fn new(soft_cap: usize) -> Self {
        Self {
            sequence: AtomicU64::new(0),
            instances: RwLock::new(Marks {
                by_instance: HashMap::new(),
                floor: 0,
            }),
            soft_cap: soft_cap.max(1024),
            note_lifetime: TOKEN_NOTE_LIFETIME,
            tokens: Mutex::new(HashMap::new()),
            latest_token_forget: AtomicU64::new(0),
        }
    }

    /// Keep each forgotten token's note longer than `longest_fetch` (the
    /// request deadline that bounds every identity fetch): an answer in
    /// flight when the token was forgotten lands while its note still
    /// says so, however long the deadlines are.
    pub(crate) fn outliving(mut self, longest_fetch: Duration) -> Self {
        self.note_lifetime = TOKEN_NOTE_LIFETIME.max(longest_fetch.saturating_add(NOTE_MARGIN));
        self
    }

    /// The sequence now: a fetch notes it before it asks anyone.
    pub(crate) fn now(&self) -> u64 {
        self.sequence.load(Ordering::Acquire)
    }

    fn next(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The stamp of an entry for `instance` whose fetch began at `started`
    /// (from [`now`](Self::now)). If the instance was forgotten since, the
    /// stamp already does not hold: the answer serves the request that
    /// asked, and nobody after it.
    pub(crate) fn stamp(&self, instance: &str, started: u64) -> Stamp {
        Stamp {
            mark: self.mark(instance),
            started,
        }
    }

    fn mark(&self, instance: &str) -> Arc<InstanceMark> {
        if let Some(mark) = read(&self.instances).by_instance.get(instance) {
            return mark.clone();
        }
        let mut marks = write(&self.instances);
        if marks.by_instance.len() >= self.soft_cap {
            marks.prune();
        }
        let floor = marks.floor;
        marks
            .by_instance
            .entry(Arc::from(instance))
            .or_insert_with(|| {
                Arc::new(InstanceMark {
                    forgotten_at: AtomicU64::new(floor),
                })
            })
            .clone()
    }

    /// Forget `instance`: every stamp of it, cached or in flight, stops
    /// holding.
    pub(crate) fn forget_instance(&self, instance: &str) {
        let mark = self.mark(instance);
        let at = self.next();
        mark.forgotten_at.fetch_max(at, Ordering::AcqRel);
    }

    /// Note that the token with `digest` is forgotten (its cache entry is
    /// removed by the caller, after this).
    pub(crate) fn forget_token(&self, digest: TokenDigest) {
        let at = self.next();
        let now = Instant::now();
        let mut tokens = lock(&self.tokens);
        let lifetime = self.note_lifetime;
        tokens.retain(|_, (_, when)| now.duration_since(*when) < lifetime);
        tokens.insert(digest, (at, now));
        self.latest_token_forget.fetch_max(at, Ordering::SeqCst);
    }

    /// Whether the token was forgotten after a fetch that began at
    /// `started`: then what that fetch stored must go.
    pub(crate) fn token_forgotten_since(&self, digest: TokenDigest, started: u64) -> bool {
        // The forget writes its note, then this, then removes the entry; a
        // fetch stores its entry, then reads this. With both orders
        // sequentially consistent, either the forget removes the stored
        // entry or the fetch sees the forget (and removes it itself).
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.latest_token_forget.load(Ordering::SeqCst) <= started {
            return false;
        }
        lock(&self.tokens)
            .get(&digest)
            .is_some_and(|(at, _)| *at > started)
    }

    /// Forget everything: every instance's stamps stop holding (the fleet
    /// listener does this when it may have missed invalidations).
    pub(crate) fn forget_all(&self) {
        let at = self.next();
        let mut marks = write(&self.instances);
        for mark in marks.by_instance.values() {
            mark.forgotten_at.fetch_max(at, Ordering::AcqRel);
        }
        marks.floor = marks.floor.max(at);
    }

    #[cfg(test)]
    fn marks(&self) -> usize {
        read(&self.instances).by_instance.len()
    }

    #[cfg(test)]
    fn token_notes(&self) -> usize {
        lock(&self.tokens).len()
    }
}

impl Marks {
    /// Drop the marks no cached entry refers to; later marks start at the
    /// latest forget among them.
    fn prune(&mut self) {
        let mut floor = self.floor;
        self.by_instance.retain(|_, mark| {
            let referenced = Arc::strong_count(mark) > 1;
            if !referenced {
                floor = floor.max(mark.forgotten_at.load(Ordering::Acquire));
            }
            referenced
        });
        self.floor = floor;
    }
}

// A poisoned lock only means another thread panicked mid-update of plain
// integers and maps: the data is still usable, and forgetting must not fail.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl fmt::Debug for Forgetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forgetting")
            .field("sequence", &self.now())
            .finish_non_exhaustive()
    }
}

/// [`Elevator::forget_instance`](crate::Elevator::forget_instance) or
/// [`forget_token`](crate::Elevator::forget_token) could not confirm the
/// forget fleet-wide: Redis could not be reached, or a replica listening
/// did not confirm within a second that it dropped its local copies. What
/// was named is forgotten on this replica (and in Redis, if it was
/// reached); other replicas drop it when the invalidation reaches them, or
/// their whole local caches when their connection to Redis comes back, and
/// serve nothing past their TTLs meanwhile. Retry to confirm it.
///
/// ```
/// # use wix_elevate::ForgetError;
/// fn on_uninstall(result: Result<(), ForgetError>) -> u16 {
///     match result {
///         Ok(()) => 200,
///         // Answer Wix's webhook with 503: Wix retries it.
///         Err(_) => 503,
///     }
/// }
/// # assert_eq!(on_uninstall(Ok(())), 200);
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "not confirmed fleet-wide: Redis could not be reached, or a replica did not confirm in time"
)]
pub struct ForgetError {
    _private: (),
}

impl ForgetError {
    pub(crate) fn fleet() -> Self {
        Self { _private: () }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn token_notes_last_their_lifetime_and_not_an_instant_more() {
        let forgetting = Forgetting::new(16);
        let hasher = crate::token::TokenHasher::random().unwrap();
        forgetting.forget_token(hasher.digest(b"first"));
        tokio::time::advance(TOKEN_NOTE_LIFETIME - Duration::from_millis(1)).await;
        forgetting.forget_token(hasher.digest(b"second"));
        assert_eq!(forgetting.token_notes(), 2, "within its lifetime");
        tokio::time::advance(Duration::from_millis(1)).await;
        forgetting.forget_token(hasher.digest(b"third"));
        assert_eq!(
            forgetting.token_notes(),
            2,
            "the first note is gone at its lifetime"
        );
    }

    /// A Token Info answer in flight as long as the deadline allows still
    /// finds the note of a token forgotten when it began: with a 2-hour
    /// request deadline the note outlives 2 hours (600 s before, whatever
    /// the deadline).
    #[tokio::test(start_paused = true)]
    async fn token_notes_outlive_the_longest_fetch_the_deadlines_allow() {
        let deadline = Duration::from_secs(2 * 3600);
        let forgetting = Forgetting::new(16).outliving(deadline);
        let hasher = crate::token::TokenHasher::random().unwrap();
        let token = hasher.digest(b"slow");
        let began = forgetting.now();
        forgetting.forget_token(token);
        tokio::time::advance(deadline).await;
        forgetting.forget_token(hasher.digest(b"later"));
        assert!(
            forgetting.token_forgotten_since(token, began),
            "the answer landing at the deadline finds the note"
        );
        tokio::time::advance(NOTE_MARGIN).await;
        forgetting.forget_token(hasher.digest(b"last"));
        assert!(
            !forgetting.token_forgotten_since(token, began),
            "then it goes"
        );
        // Short deadlines keep the 600 s floor.
        let short = Forgetting::new(16).outliving(Duration::from_secs(10));
        assert_eq!(short.note_lifetime, TOKEN_NOTE_LIFETIME);
    }

    #[test]
    fn a_forget_ends_every_stamp_of_its_instance_and_no_other() {
        let forgetting = Forgetting::new(16);
        let started = forgetting.now();
        let cached = forgetting.stamp("i", started);
        let other = forgetting.stamp("j", started);
        assert!(cached.holds() && other.holds());
        forgetting.forget_instance("i");
        assert!(!cached.holds(), "a cached entry of i");
        assert!(other.holds(), "j is untouched");
        // A fetch that began before the forget and ends after it.
        assert!(!forgetting.stamp("i", started).holds(), "in flight");
        // A fetch that began after it.
        assert!(forgetting.stamp("i", forgetting.now()).holds());
    }

    #[test]
    fn a_forget_before_the_first_entry_still_catches_a_fetch_in_flight() {
        let forgetting = Forgetting::new(16);
        let started = forgetting.now();
        forgetting.forget_instance("new");
        assert!(!forgetting.stamp("new", started).holds());
    }

    #[test]
    fn pruned_marks_leave_a_floor_for_fetches_in_flight() {
        let forgetting = Forgetting::new(0); // soft cap 1024
        let started = forgetting.now();
        forgetting.forget_instance("gone");
        for i in 0..2_000 {
            let _ = forgetting.stamp(&format!("i-{i}"), forgetting.now());
        }
        assert!(forgetting.marks() <= 1_025, "{}", forgetting.marks());
        // The mark of "gone" may have been pruned: the fetch is still caught.
        assert!(!forgetting.stamp("gone", started).holds());
        // A referenced mark survives a prune.
        let held = forgetting.stamp("held", forgetting.now());
        for i in 0..2_000 {
            let _ = forgetting.stamp(&format!("k-{i}"), forgetting.now());
        }
        forgetting.forget_instance("held");
        assert!(!held.holds());
    }

    #[test]
    fn a_forgotten_token_is_reported_to_fetches_that_began_before() {
        let forgetting = Forgetting::new(16);
        let digest = TokenDigest::from_hex("0123456789abcdef0123456789abcdef").unwrap();
        let before = forgetting.now();
        forgetting.forget_token(digest);
        assert!(forgetting.token_forgotten_since(digest, before));
        assert!(!forgetting.token_forgotten_since(digest, forgetting.now()));
    }

    #[test]
    fn a_second_forgotten_token_keeps_the_first_ones_note() {
        let forgetting = Forgetting::new(16);
        let a = TokenDigest::from_hex("0123456789abcdef0123456789abcdef").unwrap();
        let b = TokenDigest::from_hex("fedcba9876543210fedcba9876543210").unwrap();
        let before = forgetting.now();
        forgetting.forget_token(a);
        // A fetch of `a` that began after its forget, then `b` forgotten.
        let after_a = forgetting.now();
        forgetting.forget_token(b);
        assert!(
            forgetting.token_forgotten_since(a, before),
            "a's note survives b's"
        );
        assert!(
            !forgetting.token_forgotten_since(a, after_a),
            "a fetch after a's forget keeps its answer"
        );
        assert!(forgetting.token_forgotten_since(b, after_a));
    }

    #[test]
    fn marks_are_kept_until_the_soft_cap() {
        let forgetting = Forgetting::new(0); // soft cap 1024
        for i in 0..1_000 {
            let _ = forgetting.stamp(&format!("i-{i}"), forgetting.now());
        }
        assert_eq!(forgetting.marks(), 1_000, "no prune below the cap");
    }

    #[test]
    fn forget_all_ends_every_stamp() {
        let forgetting = Forgetting::new(16);
        let a = forgetting.stamp("a", forgetting.now());
        forgetting.forget_all();
        assert!(!a.holds());
        assert!(
            !forgetting.stamp("b", 0).holds(),
            "new marks start at the floor"
        );
    }
}
