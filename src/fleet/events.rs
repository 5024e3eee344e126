//! The fleet's durable webhook queue: each verified event, sealed, is an
//! entry of a Redis Stream before Wix gets its 200, and a consumer group
//! hands the entries out across the replicas (`XREADGROUP`); an entry
//! stays pending until its handler succeeded (`XACK` and `XDEL`), so one
//! whose run failed, or whose replica died, is claimed again
//! (`XAUTOCLAIM`) by a replica. After its last attempt it moves to a
//! dead-letter stream, where an operator can list and replay it.
//!
//! Entries are sealed like every value the fleet stores (bound to the
//! stream's key): one written by anyone without the app secret opens to
//! nothing and is dropped, counted, never handled.

use std::{sync::Arc, time::Duration};

use zeroize::Zeroizing;

use super::{
    enabled::Fleet,
    store::{StreamEntry, StreamRead},
};

/// The consumer group every replica of an app reads in.
const GROUP: &str = "handlers";

/// The fleet's webhook event stream, as one replica sees it.
#[derive(Clone)]
pub(crate) struct EventStream {
    fleet: Arc<Fleet>,
    events: Arc<str>,
    dead: Arc<str>,
}

/// One entry handed to this replica.
pub(crate) struct QueuedEvent {
    pub(crate) id: String,
    /// What was appended, if it opens (sealed by a replica of this app).
    pub(crate) plaintext: Option<Zeroizing<Vec<u8>>>,
    sealed: Vec<u8>,
    /// How many times it was handed out: the attempt this run is.
    pub(crate) deliveries: u32,
}

impl EventStream {
    pub(crate) fn new(fleet: Arc<Fleet>) -> Self {
        Self {
            events: format!("{}:queue:webhook", fleet.prefix).into(),
            dead: format!("{}:queue:webhook-dead", fleet.prefix).into(),
            fleet,
        }
    }

    /// Append an event, unless `bound` events wait already: `Some(true)`
    /// appended, `Some(false)` full, `None` Redis unavailable.
    pub(crate) async fn append(&self, plaintext: &[u8], bound: u64) -> Option<bool> {
        let sealed = self.fleet.sealer.seal(plaintext, self.events.as_bytes())?;
        self.fleet.store.append(&self.events, &sealed, bound).await
    }

    fn read(&self, count: usize, block: Duration) -> StreamRead<'_> {
        StreamRead {
            stream: &self.events,
            group: GROUP,
            consumer: &self.fleet.listening_state.replica,
            count,
            block,
        }
    }

    /// Up to `count` events no replica has had yet, waiting up to `block`.
    pub(crate) async fn next(&self, count: usize, block: Duration) -> Option<Vec<QueuedEvent>> {
        let entries = self.fleet.store.read_new(self.read(count, block)).await?;
        Some(self.opened(entries))
    }

    /// Up to `count` events handed out at least `idle` ago and never
    /// settled (their run failed, or their replica died), now this
    /// replica's.
    pub(crate) async fn stale(&self, count: usize, idle: Duration) -> Option<Vec<QueuedEvent>> {
        let entries = self
            .fleet
            .store
            .claim_stale(self.read(count, Duration::ZERO), idle)
            .await?;
        Some(self.opened(entries))
    }

    /// Its handler succeeded: gone from the stream.
    pub(crate) async fn settle(&self, event: &QueuedEvent) -> bool {
        self.fleet
            .store
            .settle(&self.events, GROUP, &event.id)
            .await
    }

    /// Its run failed: claimable again `after` from now, once stale
    /// entries are claimed after `idle`.
    pub(crate) async fn retry(&self, event: &QueuedEvent, after: Duration, idle: Duration) -> bool {
        let idle_already = idle.saturating_sub(after);
        self.fleet
            .store
            .idle_for(self.read(1, Duration::ZERO), &event.id, idle_already)
            .await
    }

    /// Out of attempts (or unreadable): parked in the dead-letter stream.
    pub(crate) async fn bury(&self, event: &QueuedEvent) -> bool {
        self.fleet
            .store
            .move_entry(&self.events, GROUP, &event.id, &self.dead, &event.sealed)
            .await
    }

    /// Up to `count` dead letters, oldest first.
    pub(crate) async fn dead(&self, count: usize) -> Option<Vec<QueuedEvent>> {
        let entries = self.fleet.store.entries(&self.dead, count).await?;
        Some(self.opened(entries))
    }

    /// A dead letter back in the queue, for a fresh set of attempts.
    pub(crate) async fn replay(&self, event: &QueuedEvent) -> bool {
        self.fleet
            .store
            .move_entry(&self.dead, "", &event.id, &self.events, &event.sealed)
            .await
    }

    /// How many events wait in the queue (pending ones included).
    pub(crate) async fn len(&self) -> Option<u64> {
        self.fleet.store.length(&self.events).await
    }

    fn opened(&self, entries: Vec<StreamEntry>) -> Vec<QueuedEvent> {
        entries
            .into_iter()
            .map(|entry| QueuedEvent {
                plaintext: self.fleet.sealer.open(&entry.value, self.events.as_bytes()),
                id: entry.id,
                sealed: entry.value,
                deliveries: entry.deliveries,
            })
            .collect()
    }
}
