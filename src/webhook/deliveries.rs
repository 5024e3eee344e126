//! [`Deliveries`]: which webhook deliveries were taken, so that a retry or
//! a copy is handled once, and only deliveries whose work was durably
//! taken count as taken.
//!
//! A delivery is first *taking* (its forget and its enqueue are under way,
//! for a few seconds at most), then *taken* (remembered for its window) or
//! released (its work could not be taken: Wix's retry must find nothing).
//! A copy that arrives while it is taking waits for the outcome, within
//! Wix's deadline, or is answered 503; it is never told "duplicate" for
//! work nobody took. In process the check and the mark are one step under
//! a lock; in fleet mode Redis holds the same two marks (`SET NX PX`), and
//! while Redis is away each replica decides alone.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::{sync::Notify, time::Instant};

use crate::{Elevator, token::TokenDigest};

/// How long a delivery may stay *taking* before its mark lapses (a replica
/// that died mid-delivery): longer than any forget and enqueue take.
const TAKING: Duration = Duration::from_secs(5);

/// How long a copy waits for the first delivery's outcome: within Wix's
/// 1,250 ms, with room for the answer.
const WAIT_FOR_FIRST: Duration = Duration::from_millis(1_000);

/// How often a copy looks at the fleet's mark while it waits.
const POLL: Duration = Duration::from_millis(20);

/// What the marks say of a delivery.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Claim {
    /// This request takes it.
    Mine,
    /// It was taken: answer 200, do nothing.
    Duplicate,
    /// Another request is taking it and has not finished: answer 503.
    Busy,
}

#[derive(Clone, Copy)]
enum Mark {
    Taking(Instant),
    Taken(Instant),
}

impl Mark {
    fn lapsed(self, now: Instant) -> bool {
        match self {
            Mark::Taking(until) | Mark::Taken(until) => until <= now,
        }
    }
}

pub(super) struct Deliveries {
    elevator: Elevator,
    marks: Mutex<HashMap<TokenDigest, Mark>>,
    /// Woken whenever a mark changes.
    changed: Notify,
    /// The most marks kept; past it, lapsed ones are dropped, then the
    /// oldest taken ones.
    capacity: usize,
}

impl Deliveries {
    pub(super) fn new(elevator: Elevator, capacity: usize) -> Self {
        Self {
            elevator,
            marks: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    /// Claim the delivery `key`.
    pub(super) async fn claim(&self, key: TokenDigest) -> Claim {
        let deadline = Instant::now() + WAIT_FOR_FIRST;
        // In process: one step under the lock; a copy waits for the first.
        loop {
            let changed = self.changed.notified();
            match self.claim_here(key) {
                Some(Mark::Taken(_)) => return Claim::Duplicate,
                Some(Mark::Taking(_)) => {
                    if tokio::time::timeout_at(deadline, changed).await.is_err() {
                        return Claim::Busy;
                    }
                }
                None => break,
            }
        }
        // Fleet-wide: the same marks in Redis.
        loop {
            match self
                .elevator
                .mark_delivery_in_fleet(key, "taking", TAKING, true)
                .await
            {
                None | Some(true) => return Claim::Mine,
                Some(false) => {}
            }
            match self.elevator.delivery_mark_in_fleet(key).await {
                // Taken by another replica: remembered here too.
                Some(Some(mark)) if mark == "taken" => {
                    self.set(key, None);
                    return Claim::Duplicate;
                }
                // Released or lapsed since: try again at once.
                Some(None) => continue,
                // Redis went away: this replica decides alone.
                None => return Claim::Mine,
                Some(Some(_)) if Instant::now() + POLL >= deadline => {
                    self.set(key, None);
                    return Claim::Busy;
                }
                Some(Some(_)) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// The delivery's work was durably taken: remember it for `window`.
    pub(super) async fn taken(&self, key: TokenDigest, window: Duration) {
        self.set(key, Some(Mark::Taken(Instant::now() + window)));
        self.elevator
            .mark_delivery_in_fleet(key, "taken", window, false)
            .await;
    }

    /// Its work could not be taken: forget it, so Wix's retry is new.
    pub(super) async fn release(&self, key: TokenDigest) {
        self.set(key, None);
        self.elevator.release_delivery_in_fleet(key).await;
    }

    /// In process, atomically: the live mark of `key`, or, if it has none,
    /// `None` after marking it taking.
    fn claim_here(&self, key: TokenDigest) -> Option<Mark> {
        let now = Instant::now();
        let mut marks = self.lock();
        match marks.get(&key) {
            Some(mark) if !mark.lapsed(now) => return Some(*mark),
            _ => {}
        }
        if marks.len() >= self.capacity {
            marks.retain(|_, mark| !mark.lapsed(now));
        }
        if marks.len() >= self.capacity {
            // Still full of live marks: drop the taken one that lapses first.
            let oldest = marks
                .iter()
                .filter_map(|(key, mark)| match mark {
                    Mark::Taken(until) => Some((*until, *key)),
                    Mark::Taking(_) => None,
                })
                .min_by_key(|(until, _)| *until);
            if let Some((_, oldest)) = oldest {
                marks.remove(&oldest);
            }
        }
        marks.insert(key, Mark::Taking(now + TAKING));
        None
    }

    fn set(&self, key: TokenDigest, mark: Option<Mark>) {
        {
            let mut marks = self.lock();
            match mark {
                Some(mark) => marks.insert(key, mark),
                None => marks.remove(&key),
            };
        }
        self.changed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenDigest, Mark>> {
        match self.marks.lock() {
            Ok(marks) => marks,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn deliveries(capacity: usize) -> Arc<Deliveries> {
        let elevator = Elevator::builder("app", "secret").build().unwrap();
        Arc::new(Deliveries::new(elevator, capacity))
    }

    fn key(deliveries: &Deliveries, name: &str) -> TokenDigest {
        deliveries.elevator.delivery_key(name.as_bytes())
    }

    #[tokio::test(start_paused = true)]
    async fn a_copy_waits_for_the_first_and_gets_its_outcome() {
        let d = deliveries(16);
        let k = key(&d, "a");
        assert_eq!(d.claim(k).await, Claim::Mine);
        // Taken: the copy, waiting meanwhile, is a duplicate.
        let copy = tokio::spawn({
            let d = d.clone();
            async move { d.claim(k).await }
        });
        tokio::task::yield_now().await;
        d.taken(k, Duration::from_secs(60)).await;
        assert_eq!(copy.await.unwrap(), Claim::Duplicate);
        // Released: the copy takes it itself.
        let k = key(&d, "b");
        assert_eq!(d.claim(k).await, Claim::Mine);
        let copy = tokio::spawn({
            let d = d.clone();
            async move { d.claim(k).await }
        });
        tokio::task::yield_now().await;
        d.release(k).await;
        assert_eq!(copy.await.unwrap(), Claim::Mine);
        // Never finished: the copy gives up within Wix's deadline.
        let k = key(&d, "c");
        assert_eq!(d.claim(k).await, Claim::Mine);
        let started = Instant::now();
        assert_eq!(d.claim(k).await, Claim::Busy);
        assert_eq!(started.elapsed(), WAIT_FOR_FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn only_one_of_simultaneous_copies_takes_a_delivery() {
        let d = deliveries(16);
        let k = key(&d, "same");
        let claims: Vec<_> = (0..8)
            .map(|_| {
                let d = d.clone();
                tokio::spawn(async move { d.claim(k).await })
            })
            .collect();
        tokio::task::yield_now().await;
        d.taken(k, Duration::from_secs(60)).await;
        let mut mine = 0;
        for claim in claims {
            match claim.await.unwrap() {
                Claim::Mine => mine += 1,
                Claim::Duplicate => {}
                Claim::Busy => panic!("a copy gave up"),
            }
        }
        assert_eq!(mine, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn marks_are_bounded_by_their_window_and_by_count() {
        let d = deliveries(3);
        let k = key(&d, "window");
        assert_eq!(d.claim(k).await, Claim::Mine);
        d.taken(k, Duration::from_secs(10)).await;
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(d.claim(k).await, Claim::Duplicate, "within its window");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(d.claim(k).await, Claim::Mine, "past it: a new delivery");
        d.taken(k, Duration::from_secs(10)).await;
        // A taking mark that nobody finishes lapses too.
        let stuck = key(&d, "stuck");
        assert_eq!(d.claim(stuck).await, Claim::Mine);
        tokio::time::advance(TAKING).await;
        assert_eq!(d.claim(stuck).await, Claim::Mine, "a lapsed taking mark");
        d.release(stuck).await;
        // Never more than the capacity, whatever arrives.
        for i in 0..50 {
            let k = key(&d, &format!("flood-{i}"));
            assert_eq!(d.claim(k).await, Claim::Mine);
            d.taken(k, Duration::from_secs(3600)).await;
            assert!(d.len() <= 3, "{} marks", d.len());
        }
    }
}
