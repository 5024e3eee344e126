//! In fleet mode, the endpoint's queue is the fleet's event stream: an
//! event is appended (sealed) before Wix gets its 200, so a crash, a deploy
//! or a frozen replica loses nothing; every replica consumes it in one
//! consumer group; an entry whose handler failed, panicked, ran out of time
//! or whose replica died is claimed again once it has been idle for the
//! handler's deadline plus a margin, retried with a growing delay, and
//! after its last attempt parked as a dead letter (a WARN line and
//! `wix_elevate_webhook_dead_letters_total`), to list and replay.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{sync::Semaphore, time::Instant};

use super::{
    WixEvent, event,
    worker::{Pending, Routes, run_one},
};
use crate::fleet::{EventStream, QueuedEvent};

/// How long past the handler's deadline an entry may stay unsettled
/// before another replica takes it over (its replica died, or froze).
const TAKEOVER_MARGIN: Duration = Duration::from_secs(1);

/// The longest a read of new entries waits at Redis.
const READ_WAIT: Duration = Duration::from_secs(1);

/// How long the consumer rests when Redis is away before reading again.
const AWAY_PAUSE: Duration = Duration::from_secs(1);

/// The longest delay between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What an entry holds: the event as Wix signed it (its claims' `data`)
/// and the signed times.
#[derive(Serialize, Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    data: std::borrow::Cow<'a, str>,
    iat: Option<u64>,
    exp: Option<u64>,
}

/// How failed runs are retried.
#[derive(Clone, Copy, Debug)]
pub(super) struct Retries {
    /// Runs before an event is parked as a dead letter.
    pub(super) max_attempts: u32,
    /// The delay before the second attempt; it doubles each time.
    pub(super) backoff: Duration,
}

impl Retries {
    fn delay_after(&self, attempt: u32) -> Duration {
        let doubling = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.backoff.saturating_mul(doubling).min(MAX_BACKOFF)
    }
}

/// The fleet's event queue, for one endpoint on this replica.
pub(super) struct DurableQueue {
    stream: EventStream,
    routes: Arc<Routes>,
    deadline: Duration,
    concurrency: usize,
    retries: Retries,
    bound: u64,
    /// Runs in flight on this replica.
    pub(super) pending: Arc<Pending>,
    /// Set on a graceful shutdown: take nothing more.
    stopping: std::sync::atomic::AtomicBool,
}

/// A dead letter: an event whose every attempt failed.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    id: String,
    event_type: Option<String>,
    instance_id: Option<String>,
}

impl DeadLetter {
    /// Its id in the dead-letter stream.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its event type (`None`: the entry could not be read, it was not
    /// sealed by a replica of this app).
    pub fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }

    /// The instance it is about, if any.
    pub fn instance_id(&self) -> Option<&str> {
        self.instance_id.as_deref()
    }
}

impl DurableQueue {
    pub(super) fn new(
        stream: EventStream,
        routes: Arc<Routes>,
        deadline: Duration,
        concurrency: usize,
        retries: Retries,
        bound: usize,
    ) -> Self {
        Self {
            stream,
            routes,
            deadline,
            concurrency: concurrency.max(1),
            retries,
            bound: u64::try_from(bound).unwrap_or(u64::MAX),
            pending: Arc::new(Pending::default()),
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Take nothing more from the stream (a graceful shutdown).
    pub(super) fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn stopped(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    /// How long an entry stays with the replica it was handed to before
    /// another may take it over.
    fn takeover_after(&self) -> Duration {
        self.deadline.saturating_add(TAKEOVER_MARGIN)
    }

    /// Append `event`: `Some(true)` if it is in the stream (the work is
    /// taken), `Some(false)` if the stream is full, `None` if Redis is
    /// unavailable.
    pub(super) async fn append(&self, event: &WixEvent) -> Option<bool> {
        let entry = serde_json::to_vec(&Entry {
            data: std::borrow::Cow::Borrowed(&event.data),
            iat: event.issued_at,
            exp: event.expires_at,
        })
        .ok()?;
        self.stream.append(&entry, self.bound).await
    }

    /// Whether every event appended so far was dealt with: nothing runs
    /// here and the stream is empty (or Redis cannot say).
    pub(super) async fn is_empty(&self) -> bool {
        self.pending.is_idle() && self.stream.len().await.is_none_or(|len| len == 0)
    }

    /// Consume the stream until the endpoint is gone (`alive` has no
    /// owner left): new entries as they come, and every so often the
    /// entries other runs left unsettled.
    pub(super) async fn consume(self: Arc<Self>, alive: Weak<()>) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let scan_every =
            (self.takeover_after() / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut next_scan = Instant::now();
        while alive.strong_count() > 0 && !self.stopped() {
            // Read only as many as can run now.
            let Ok(first) = slots.clone().acquire_owned().await else {
                return;
            };
            let free = slots.available_permits() + 1;
            drop(first);
            if Instant::now() >= next_scan {
                next_scan = Instant::now() + scan_every;
                if let Some(stale) = self.stream.stale(free, self.takeover_after()).await {
                    self.start(stale, &slots).await;
                    continue;
                }
            }
            let wait = next_scan
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(10), READ_WAIT);
            match self.stream.next(free, wait).await {
                Some(events) => self.start(events, &slots).await,
                None => tokio::time::sleep(AWAY_PAUSE).await,
            }
        }
    }

    /// Run each of `events` in a task of its own, within the slots.
    async fn start(self: &Arc<Self>, events: Vec<QueuedEvent>, slots: &Arc<Semaphore>) {
        for queued in events {
            if self.stopped() {
                // Left pending: another replica takes it over.
                return;
            }
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            self.pending.add();
            let queue = self.clone();
            tokio::spawn(async move {
                queue.handle(queued).await;
                drop(slot);
                queue.pending.done();
            });
        }
    }

    /// One run of one entry, and what follows from its outcome.
    async fn handle(&self, queued: QueuedEvent) {
        let Some(mut event) = queued.plaintext.as_ref().and_then(|entry| parse(entry)) else {
            // Not sealed by a replica of this app: never handled.
            metrics::counter!("wix_elevate_webhook_dead_letters_total", "reason" => "unreadable")
                .increment(1);
            tracing::warn!(target: "wix_elevate::webhook", "an unreadable entry in the webhook queue was parked as a dead letter");
            self.stream.bury(&queued).await;
            return;
        };
        event.attempt = queued.deliveries.max(1);
        let attempt = event.attempt;
        let event_type: Box<str> = event.event_type().into();
        if attempt > self.retries.max_attempts {
            self.park(&queued, &event_type, attempt - 1).await;
            return;
        }
        if run_one(&self.routes, self.deadline, event).await == "ok" {
            self.stream.settle(&queued).await;
        } else if attempt >= self.retries.max_attempts {
            self.park(&queued, &event_type, attempt).await;
        } else {
            let delay = self.retries.delay_after(attempt);
            self.stream
                .retry(&queued, delay, self.takeover_after())
                .await;
        }
    }

    async fn park(&self, queued: &QueuedEvent, event_type: &str, attempts: u32) {
        metrics::counter!("wix_elevate_webhook_dead_letters_total", "reason" => "attempts")
            .increment(1);
        tracing::warn!(
            target: "wix_elevate::webhook",
            event_type,
            attempts,
            "a webhook event failed every attempt: parked as a dead letter (WebhookEndpoint::dead_letters, replay_dead_letters)"
        );
        self.stream.bury(queued).await;
    }

    /// Up to `count` dead letters, oldest first (`None`: Redis away).
    pub(super) async fn dead_letters(&self, count: usize) -> Option<Vec<DeadLetter>> {
        let dead = self.stream.dead(count).await?;
        Some(
            dead.iter()
                .map(|queued| {
                    let event = queued.plaintext.as_ref().and_then(|entry| parse(entry));
                    DeadLetter {
                        id: queued.id.clone(),
                        event_type: event.as_ref().map(|e| e.event_type().to_owned()),
                        instance_id: event
                            .as_ref()
                            .and_then(|e| e.instance_id().map(str::to_owned)),
                    }
                })
                .collect(),
        )
    }

    /// Every dead letter (up to `count`) back in the queue: how many.
    pub(super) async fn replay(&self, count: usize) -> Option<usize> {
        let dead = self.stream.dead(count).await?;
        let mut replayed = 0;
        for queued in &dead {
            if self.stream.replay(queued).await {
                replayed += 1;
            }
        }
        Some(replayed)
    }
}

/// The event an entry holds.
fn parse(entry: &[u8]) -> Option<WixEvent> {
    let entry: Entry<'_> = serde_json::from_slice(entry).ok()?;
    event::parse(&entry.data, entry.iat, entry.exp)
}
