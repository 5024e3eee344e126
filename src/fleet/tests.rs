//! The fleet logic (lease, poll, double-check, release on failure,
//! generations and marks, budget, confirmed forgets) against the in-memory
//! store, on a paused clock: no `redis-server`. The Redis scripts
//! themselves are tested against a real one in `tests/fleet`.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::{
    Budget, Fleet, Gcra, Invalidation, Place, ToStore, memory_store::MemoryStore, notice::FRESH,
    store::FleetStore,
};

const SECRET: &[u8] = b"a test app secret, long enough for the keys";
const LEASE: Duration = Duration::from_secs(5);
const INSTANCE: &str = "inst-1";
const PREFIX: &str = "test";

/// One replica: its fleet handle and what it heard.
struct Replica {
    fleet: Fleet,
    heard: mpsc::UnboundedReceiver<Invalidation>,
}

/// A replica on `store`, subscribed to its invalidations.
async fn replica(store: &Arc<MemoryStore>) -> Replica {
    let fleet =
        Fleet::with_store(store.clone(), PREFIX.into(), SECRET, LEASE).expect("the fleet is built");
    let (tell, heard) = mpsc::unbounded_channel();
    fleet.on_invalidation(move |invalidation| {
        let _ = tell.send(invalidation);
    });
    fleet.listen_first().await;
    Replica { fleet, heard }
}

/// Why a fetch gave no value.
#[derive(Debug, PartialEq, Eq)]
enum Failed {
    Wix,
    BudgetSpent,
}

/// The budgets the fetches were told, one per fetch.
#[derive(Default)]
struct Fetches(Mutex<Vec<Budget>>);

impl Fetches {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

fn place(key: &str) -> Place<'_> {
    Place {
        key,
        marked: true,
        aad: b"test value",
        budget: None,
    }
}

/// The value at `place`, else `answer`'s (shared for a minute as
/// [`INSTANCE`]'s).
async fn shared(
    replica: &Replica,
    place: Place<'_>,
    fetches: &Fetches,
    answer: impl Future<Output = Result<&'static str, Failed>>,
) -> Result<String, Failed> {
    replica
        .fleet
        .shared(
            place,
            |plaintext| String::from_utf8(plaintext.to_vec()).ok(),
            |budget| async move {
                fetches.0.lock().unwrap().push(budget);
                let value = answer.await?;
                let to_store = ToStore {
                    plaintext: value.as_bytes().to_vec(),
                    ttl: Duration::from_secs(60),
                    instance: Some(Arc::from(INSTANCE)),
                };
                Ok((value.to_owned(), Some(to_store)))
            },
            |_| Failed::BudgetSpent,
        )
        .await
}

async fn wix(value: &'static str) -> Result<&'static str, Failed> {
    Ok(value)
}

fn forget_instance() -> Invalidation {
    Invalidation::Instance {
        instance: INSTANCE.into(),
        stale: None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_value_one_replica_fetched_is_served_to_another_in_one_round_trip() {
    let store = Arc::new(MemoryStore::default());
    let (a, b) = (replica(&store).await, replica(&store).await);
    let key = a.fleet.identity_key("d1");
    let fetches = Fetches::default();

    assert_eq!(
        shared(&a, place(&key), &fetches, wix("v1")).await,
        Ok("v1".into())
    );
    let before = store.round_trips();
    let served = shared(&b, place(&key), &fetches, wix("v2")).await;

    assert_eq!(served, Ok("v1".into()), "b is served what a fetched");
    assert_eq!(fetches.count(), 1, "only a asked Wix");
    assert_eq!(store.round_trips() - before, 1, "a hit is one lookup");
    assert!(
        !store.raw(&key).unwrap().windows(2).any(|w| w == b"v1"),
        "the stored value is sealed, never plain"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_on_two_replicas_make_one_fetch() {
    let store = Arc::new(MemoryStore::default());
    let (a, b) = (replica(&store).await, replica(&store).await);
    let key = a.fleet.identity_key("d1");
    let fetches = Fetches::default();
    let (answer, answered) = oneshot::channel::<&'static str>();

    let (got_a, got_b, ()) = tokio::join!(
        shared(&a, place(&key), &fetches, async {
            Ok(answered.await.unwrap())
        }),
        // a holds the lease by now: b polls for what a writes.
        shared(&b, place(&key), &fetches, wix("b's own")),
        async { answer.send("v1").unwrap() },
    );

    assert_eq!((got_a, got_b), (Ok("v1".into()), Ok("v1".into())));
    assert_eq!(fetches.count(), 1, "one fetch for the fleet");
    assert!(
        store.raw(&format!("{key}:lease")).is_none(),
        "lease released"
    );
}

#[tokio::test(start_paused = true)]
async fn a_holder_whose_fetch_fails_releases_the_lease_and_the_waiter_goes_ahead_at_once() {
    let store = Arc::new(MemoryStore::default());
    let (a, b) = (replica(&store).await, replica(&store).await);
    let key = a.fleet.identity_key("d1");
    let fetches = Fetches::default();
    let (fail, failed) = oneshot::channel::<()>();
    let started = Instant::now();

    let (got_a, got_b, ()) = tokio::join!(
        shared(&a, place(&key), &fetches, async {
            failed.await.unwrap();
            Err(Failed::Wix)
        }),
        async {
            let got = shared(&b, place(&key), &fetches, wix("v2")).await;
            (got, started.elapsed())
        },
        async { fail.send(()).unwrap() },
    );

    assert_eq!(got_a, Err(Failed::Wix), "a failure is the holder's own");
    assert_eq!(got_b.0, Ok("v2".into()), "the waiter asked Wix itself");
    assert_eq!(fetches.count(), 2);
    assert!(
        got_b.1 < Duration::from_millis(100),
        "the waiter did not wait out the {LEASE:?} lease: {:?}",
        got_b.1
    );
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_vanished_delays_the_others_by_its_lease_at_most() {
    let store = Arc::new(MemoryStore::default());
    let b = replica(&store).await;
    let key = b.fleet.identity_key("d1");
    // A replica took the lease and died.
    store.put_raw(&format!("{key}:lease"), "gone", Some(LEASE));
    let fetches = Fetches::default();
    let started = Instant::now();

    let got = shared(&b, place(&key), &fetches, wix("v1")).await;

    let waited = started.elapsed();
    assert_eq!(got, Ok("v1".into()));
    assert_eq!(fetches.count(), 1);
    assert!(
        waited >= LEASE && waited < LEASE + Duration::from_millis(100),
        "waited {waited:?} for a {LEASE:?} lease"
    );
}

#[tokio::test(start_paused = true)]
async fn a_value_written_between_lookup_and_claim_is_served_without_a_fetch() {
    let store = Arc::new(MemoryStore::default());
    let (a, b) = (replica(&store).await, replica(&store).await);
    let key = a.fleet.identity_key("d1");
    let (fetches_a, fetches_b) = (Fetches::default(), Fetches::default());
    let (reached, go) = store.hold_next_claim();

    let (got_b, ()) = tokio::join!(
        // b misses, then stops before its claim...
        shared(&b, place(&key), &fetches_b, wix("b's own")),
        // ...while a fetches, writes and releases.
        async {
            reached.await.unwrap();
            let got = shared(&a, place(&key), &fetches_a, wix("v1")).await;
            assert_eq!(got, Ok("v1".into()));
            go.send(()).unwrap();
        },
    );

    assert_eq!(got_b, Ok("v1".into()), "the claim's second look found it");
    assert_eq!(fetches_b.count(), 0, "b never asked Wix");
    assert!(
        store.raw(&format!("{key}:lease")).is_none(),
        "b released its lease"
    );
}

#[tokio::test(start_paused = true)]
async fn a_forget_outlives_a_fetch_that_was_in_flight() {
    let store = Arc::new(MemoryStore::default());
    let (a, b) = (replica(&store).await, replica(&store).await);
    let key = a.fleet.identity_key("d1");
    let fetches = Fetches::default();
    let (answer, answered) = oneshot::channel::<&'static str>();

    let (got_a, ()) = tokio::join!(
        shared(&a, place(&key), &fetches, async {
            Ok(answered.await.unwrap())
        }),
        async {
            assert!(b.fleet.forget(forget_instance()).await, "confirmed");
            answer.send("before the forget").unwrap();
        },
    );

    assert_eq!(got_a, Ok("before the forget".into()), "a's own caller");
    assert!(
        store.raw(&key).is_none(),
        "the verdict was not written back"
    );
    let got = shared(&b, place(&key), &fetches, wix("after")).await;
    assert_eq!(got, Ok("after".into()));
    assert_eq!(fetches.count(), 2, "Wix is asked again");
}

#[tokio::test(start_paused = true)]
async fn a_replayed_value_is_served_until_its_instance_or_key_is_forgotten_and_never_after() {
    for forget in ["instance", "token"] {
        let store = Arc::new(MemoryStore::default());
        let (a, b) = (replica(&store).await, replica(&store).await);
        let key = a.fleet.identity_key("d1");
        let fetches = Fetches::default();
        shared(&a, place(&key), &fetches, wix("v1")).await.unwrap();
        let old = store.raw(&key).unwrap();

        // Within its lifetime, a replayed value is what Redis held anyway.
        store.put_raw(&key, old.clone(), None);
        assert_eq!(
            shared(&b, place(&key), &fetches, wix("v2")).await,
            Ok("v1".into())
        );

        let invalidation = match forget {
            "instance" => forget_instance(),
            _ => Invalidation::Token {
                digest: "d1".into(),
            },
        };
        assert!(a.fleet.forget(invalidation).await);
        store.put_raw(&key, old, None);
        let got = shared(&b, place(&key), &fetches, wix("v3")).await;

        assert_eq!(got, Ok("v3".into()), "after forgetting the {forget}");
        assert_eq!(fetches.count(), 2, "after forgetting the {forget}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_value_moved_to_another_key_does_not_open() {
    let store = Arc::new(MemoryStore::default());
    let a = replica(&store).await;
    let (key, other) = (a.fleet.identity_key("d1"), a.fleet.identity_key("d2"));
    let fetches = Fetches::default();
    shared(&a, place(&key), &fetches, wix("v1")).await.unwrap();

    store.put_raw(&other, store.raw(&key).unwrap(), None);
    let got = shared(&a, place(&other), &fetches, wix("d2's own")).await;

    assert_eq!(got, Ok("d2's own".into()));
    assert_eq!(fetches.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn past_the_budget_a_never_seen_key_costs_two_round_trips_and_takes_no_lease() {
    let store = Arc::new(MemoryStore::default());
    let a = replica(&store).await;
    let budgeted = |key| Place {
        budget: Some(Gcra::per_second(1, 1)),
        ..place(key)
    };
    let fetches = Fetches::default();
    let (k1, k2, k3) = (
        a.fleet.identity_key("d1"),
        a.fleet.identity_key("d2"),
        a.fleet.identity_key("d-after"),
    );
    let keys: Vec<String> = (3..20)
        .map(|i| a.fleet.identity_key(&format!("d{i}")))
        .collect();
    assert_eq!(
        shared(&a, budgeted(&k1), &fetches, wix("v1")).await,
        Ok("v1".into())
    );

    let before = store.round_trips();
    let got = shared(&a, budgeted(&k2), &fetches, wix("v2")).await;

    assert_eq!(got, Err(Failed::BudgetSpent));
    assert_eq!(store.round_trips() - before, 2, "the lookup and the budget");
    assert_eq!(fetches.count(), 1, "Wix was not asked");
    assert!(
        store.raw(&format!("{k2}:lease")).is_none(),
        "no lease taken"
    );
    // Known spent: the next never-seen keys cost nothing at all...
    let before = store.round_trips();
    for key in &keys {
        assert_eq!(
            shared(&a, budgeted(key), &fetches, wix("v")).await,
            Err(Failed::BudgetSpent)
        );
    }
    assert_eq!(
        store.round_trips() - before,
        0,
        "no round trip while it is spent"
    );
    // ...and a key Wix once vouched for (no budget) is not held back.
    assert_eq!(
        shared(&a, place(&k1), &fetches, wix("v1")).await,
        Ok("v1".into())
    );
    // Once the budget refills, a never-seen key gets through.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        shared(&a, budgeted(&k3), &fetches, wix("v3")).await,
        Ok("v3".into())
    );
    assert_eq!(fetches.count(), 2, "Wix asked once the budget allowed");
}

#[tokio::test(start_paused = true)]
async fn while_the_store_is_down_a_replica_fetches_alone_on_its_own_budget() {
    let store = Arc::new(MemoryStore::default());
    let a = replica(&store).await;
    let key = a.fleet.identity_key("d1");
    let fetches = Fetches::default();
    store.set_down(true);

    let got = shared(&a, place(&key), &fetches, wix("v1")).await;

    assert_eq!(got, Ok("v1".into()));
    assert_eq!(*fetches.0.lock().unwrap(), [Budget::Local]);
    assert!(!a.fleet.is_available());
    store.set_down(false);
    assert!(store.raw(&key).is_none(), "nothing was shared");
}

#[tokio::test(start_paused = true)]
async fn a_forget_returns_once_every_listening_replica_dropped_its_copy() {
    let store = Arc::new(MemoryStore::default());
    let mut replicas = [
        replica(&store).await,
        replica(&store).await,
        replica(&store).await,
    ];
    let key = replicas[0].fleet.identity_key("d1");
    let fetches = Fetches::default();
    shared(&replicas[0], place(&key), &fetches, wix("v1"))
        .await
        .unwrap();

    let token = Invalidation::Token {
        digest: "d1".into(),
    };
    assert!(replicas[1].fleet.forget(token.clone()).await);

    assert!(store.raw(&key).is_none(), "dropped in the store");
    for replica in &mut replicas {
        // Heard before the forget returned: nothing to wait for.
        assert_eq!(replica.heard.try_recv(), Ok(token.clone()));
    }
}

/// A subscriber that never confirms (a frozen replica, a stray one)
/// delays a forget by [`FRESH`] at most; it cannot stall or fail it.
#[tokio::test(start_paused = true)]
async fn a_silent_listener_delays_a_forget_by_the_freshness_window_at_most() {
    let store = Arc::new(MemoryStore::default());
    let a = replica(&store).await;
    let silent = store.subscribe(&format!("{PREFIX}:invalidate")).await;
    let started = Instant::now();

    assert!(
        a.fleet.forget(forget_instance()).await,
        "done, whatever it does"
    );
    assert_eq!(started.elapsed(), FRESH);

    drop(silent);
    let started = Instant::now();
    assert!(a.fleet.forget(forget_instance()).await, "everyone confirms");
    assert!(started.elapsed() < FRESH, "at once when everyone confirms");
}

#[tokio::test(start_paused = true)]
async fn a_forget_without_the_store_is_not_confirmed() {
    let store = Arc::new(MemoryStore::default());
    let a = replica(&store).await;
    store.set_down(true);

    assert!(!a.fleet.forget(forget_instance()).await);
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_lost_its_subscription_drops_everything_once_back() {
    let store = Arc::new(MemoryStore::default());
    let mut a = replica(&store).await;
    // Subscribed (a lookup waits for that).
    let fetches = Fetches::default();
    let key = a.fleet.identity_key("d1");
    shared(&a, place(&key), &fetches, wix("v1")).await.unwrap();

    store.drop_subscriptions();

    let heard = tokio::time::timeout(Duration::from_secs(30), a.heard.recv()).await;
    assert_eq!(heard, Ok(Some(Invalidation::Everything)));
}

#[tokio::test(start_paused = true)]
async fn rate_limits_are_one_budget_for_every_replica() {
    let store = Arc::new(MemoryStore::default());
    let (a, b) = (replica(&store).await, replica(&store).await);
    let parts = ["route", "instance", "caller"];

    assert_eq!(a.fleet.rate(&parts, 2).await, Some(Ok(())));
    assert_eq!(b.fleet.rate(&parts, 2).await, Some(Ok(())));
    let third = a.fleet.rate(&parts, 2).await;

    assert!(
        matches!(third, Some(Err(wait)) if wait > Duration::ZERO),
        "{third:?}"
    );
    store.set_down(true);
    assert_eq!(
        a.fleet.rate(&parts, 2).await,
        None,
        "no store, no fleet limit"
    );
}
