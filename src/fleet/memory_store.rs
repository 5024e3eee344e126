//! A fleet store in memory, for the fleet logic's unit tests: the same
//! semantics as the Redis scripts, on tokio's clock (so a paused clock
//! drives lease and value expiry), with a count of round trips, a switch
//! that makes it unavailable, a way to drop every subscription, and a gate
//! that holds the next claim.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use tokio::{
    sync::{broadcast, oneshot},
    time::Instant,
};

use super::{
    Gcra,
    store::{Claim, FleetStore, Lookup, SlotKeys},
};

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    channels: HashMap<String, broadcast::Sender<Vec<u8>>>,
}

impl State {
    fn get(&mut self, key: &str) -> Option<&[u8]> {
        let now = Instant::now();
        if self
            .entries
            .get(key)
            .is_some_and(|entry| entry.expires.is_some_and(|at| at <= now))
        {
            self.entries.remove(key);
        }
        self.entries.get(key).map(|entry| entry.value.as_slice())
    }

    fn number(&mut self, key: &str) -> u64 {
        self.get(key)
            .and_then(|value| std::str::from_utf8(value).ok()?.parse().ok())
            .unwrap_or(0)
    }

    fn set(&mut self, key: &str, value: impl Into<Vec<u8>>, ttl: Option<Duration>) {
        let entry = Entry {
            value: value.into(),
            expires: ttl.map(|ttl| Instant::now() + ttl),
        };
        self.entries.insert(key.to_owned(), entry);
    }

    fn delete(&mut self, key: &str) -> bool {
        self.entries.remove(key).is_some()
    }

    /// The lookup script: the value, and only with one its generation and
    /// mark; the sequence if `sequence`; whether the lease is held if
    /// `leased`.
    fn lookup(&mut self, slot: SlotKeys<'_>, sequence: bool, leased: bool) -> Lookup {
        let value = self.get(slot.value).map(<[u8]>::to_vec);
        let (mut generation, mut mark) = (0, 0);
        if let Some(value) = &value
            && let Some(newline) = value.iter().position(|b| *b == b'\n')
            && newline > 0
        {
            let key = String::from_utf8_lossy(&value[..newline]).into_owned();
            generation = self.number(&key);
        }
        if value.is_some() && !slot.mark.is_empty() {
            mark = self.number(slot.mark);
        }
        Lookup {
            generation,
            mark,
            sequence: if sequence {
                self.number(slot.sequence)
            } else {
                0
            },
            leased: leased && !slot.lease.is_empty() && self.get(slot.lease).is_some(),
            value,
        }
    }

    /// GCRA, as the rate script runs it, on tokio's clock.
    fn rate(&mut self, key: &str, rate: Gcra, epoch: Instant) -> Result<(), Duration> {
        let now = Instant::now().duration_since(epoch).as_secs_f64() * 1000.0;
        let stored = self
            .get(key)
            .and_then(|value| std::str::from_utf8(value).ok()?.parse::<f64>().ok());
        let tat = stored.unwrap_or(now).max(now);
        let new_tat = tat + rate.interval_ms;
        let allowance = f64::from(rate.burst) * rate.interval_ms;
        if new_tat - now > allowance {
            let wait = (new_tat - now - allowance).ceil().max(1.0);
            return Err(Duration::from_secs_f64(wait / 1000.0));
        }
        let ttl = Duration::from_secs_f64((new_tat - now + 1000.0) / 1000.0);
        self.set(key, new_tat.to_string(), Some(ttl));
        Ok(())
    }
}

/// A fleet store in memory (tests only).
#[derive(Debug)]
pub(super) struct MemoryStore {
    state: Mutex<State>,
    down: AtomicBool,
    round_trips: AtomicU64,
    epoch: Instant,
    /// Held by the next claim until released: `(reached, go)`.
    claim_gate: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            down: AtomicBool::new(false),
            round_trips: AtomicU64::new(0),
            epoch: Instant::now(),
            claim_gate: Mutex::new(None),
        }
    }
}

impl MemoryStore {
    /// How many operations reached the store.
    pub(super) fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }

    /// Make the store unavailable (`true`) or available again.
    pub(super) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The raw bytes under `key` (what a party that reads the store sees).
    pub(super) fn raw(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().get(key).map(<[u8]>::to_vec)
    }

    /// Write `value` under `key` for `ttl` (or for good), as a party that
    /// writes the store would.
    pub(super) fn put_raw(&self, key: &str, value: impl Into<Vec<u8>>, ttl: Option<Duration>) {
        self.lock().set(key, value, ttl);
    }

    /// End every subscription (as a lost connection would).
    pub(super) fn drop_subscriptions(&self) {
        self.lock().channels.clear();
    }

    /// Hold the next claim: the returned receiver fires when it is
    /// reached, and the claim goes on once the sender is used or dropped.
    pub(super) fn hold_next_claim(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel();
        *self
            .claim_gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((reached_tx, go_rx));
        (reached_rx, go_tx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One round trip: `None` while down.
    fn trip<T>(&self, op: impl FnOnce(&mut State) -> T) -> Option<T> {
        if self.down.load(Ordering::SeqCst) {
            return None;
        }
        self.round_trips.fetch_add(1, Ordering::SeqCst);
        Some(op(&mut self.lock()))
    }
}

impl FleetStore for MemoryStore {
    fn lookup<'a>(&'a self, slot: SlotKeys<'a>, waiting: bool) -> BoxFuture<'a, Option<Lookup>> {
        async move { self.trip(|state| state.lookup(slot, false, waiting)) }.boxed()
    }

    fn claim<'a>(
        &'a self,
        slot: SlotKeys<'a>,
        owner: &'a str,
        lease: Duration,
        budget: Option<(&'a str, Gcra)>,
    ) -> BoxFuture<'a, Option<Claim>> {
        async move {
            let gate = self
                .claim_gate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some((reached, go)) = gate {
                let _ = reached.send(());
                let _ = go.await;
            }
            self.trip(|state| {
                if let Some((key, rate)) = budget
                    && rate.interval_ms > 0.0
                    && let Err(wait) = state.rate(key, rate, self.epoch)
                {
                    return Claim::BudgetSpent(wait);
                }
                if state.get(slot.lease).is_some() {
                    return Claim::Busy;
                }
                state.set(slot.lease, owner, Some(lease));
                Claim::Taken(state.lookup(slot, true, false))
            })
        }
        .boxed()
    }

    fn write<'a>(
        &'a self,
        slot: SlotKeys<'a>,
        generation: &'a str,
        stored: &'a [u8],
        ttl: Duration,
        started: u64,
        owner: &'a str,
    ) -> BoxFuture<'a, Option<bool>> {
        async move {
            self.trip(|state| {
                let moved =
                    |state: &mut State, key: &str| !key.is_empty() && state.number(key) > started;
                let fresh = !moved(state, generation) && !moved(state, slot.mark);
                if fresh {
                    state.set(slot.value, stored, Some(ttl));
                }
                if !slot.lease.is_empty() && state.get(slot.lease) == Some(owner.as_bytes()) {
                    state.delete(slot.lease);
                }
                fresh
            })
        }
        .boxed()
    }

    fn release<'a>(&'a self, lease: &'a str, owner: &'a str) -> BoxFuture<'a, bool> {
        async move {
            self.trip(|state| {
                if state.get(lease) == Some(owner.as_bytes()) {
                    state.delete(lease);
                }
            })
            .is_some()
        }
        .boxed()
    }

    fn forget<'a>(
        &'a self,
        sequence: &'a str,
        mark: &'a str,
        mark_ttl: Duration,
        values: &'a [&'a str],
    ) -> BoxFuture<'a, Option<u64>> {
        async move {
            self.trip(|state| {
                let next = state.number(sequence) + 1;
                state.set(sequence, next.to_string(), None);
                state.set(mark, next.to_string(), Some(mark_ttl));
                for value in values {
                    state.delete(value);
                }
                next
            })
        }
        .boxed()
    }

    fn publish<'a>(&'a self, channel: &'a str, message: &'a [u8]) -> BoxFuture<'a, Option<u64>> {
        async move {
            self.trip(|state| {
                state.channels.get(channel).map_or(0, |sender| {
                    sender.send(message.to_vec()).map_or(0, |n| n as u64)
                })
            })
        }
        .boxed()
    }

    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Option<BoxStream<'static, Vec<u8>>>> {
        async move {
            let receiver = self.trip(|state| {
                state
                    .channels
                    .entry(channel.to_owned())
                    .or_insert_with(|| broadcast::channel(64).0)
                    .subscribe()
            })?;
            let messages = futures_util::stream::unfold(receiver, |mut receiver| async move {
                loop {
                    match receiver.recv().await {
                        Ok(message) => return Some((message, receiver)),
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            });
            Some(messages.boxed())
        }
        .boxed()
    }

    fn confirm<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, bool> {
        async move {
            self.trip(|state| {
                let count = state.number(key) + 1;
                state.set(key, count.to_string(), Some(ttl));
            })
            .is_some()
        }
        .boxed()
    }

    fn confirmations<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<u64>> {
        async move { self.trip(|state| state.number(key)) }.boxed()
    }

    fn rate<'a>(&'a self, key: &'a str, rate: Gcra) -> BoxFuture<'a, Option<Result<(), Duration>>> {
        async move { self.trip(|state| state.rate(key, rate, self.epoch)) }.boxed()
    }

    fn mark<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> BoxFuture<'a, Option<bool>> {
        async move {
            self.trip(|state| {
                let set = !only_if_absent || state.get(key).is_none();
                if set {
                    state.set(key, value, Some(ttl));
                }
                set
            })
        }
        .boxed()
    }

    #[cfg(feature = "webhooks")]
    fn read<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Option<String>>> {
        async move {
            self.trip(|state| {
                state
                    .get(key)
                    .map(|value| String::from_utf8_lossy(value).into_owned())
            })
        }
        .boxed()
    }

    #[cfg(feature = "webhooks")]
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, bool> {
        async move { self.trip(|state| state.delete(key)).is_some() }.boxed()
    }

    fn is_available(&self) -> bool {
        !self.down.load(Ordering::SeqCst)
    }
}
