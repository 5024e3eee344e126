//! The pub/sub listener: every replica acts on each invalidation, and
//! confirms a forget it was asked to.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use futures_util::{StreamExt, stream::BoxStream};

use super::{
    Invalidation, Notice,
    notice::{
        CONFIRM_LIFETIME, FRESH, HEARTBEAT, Handler, SUBSCRIBE_TIMEOUT, confirm_key, random_id,
    },
    seal::Sealer,
    store::FleetStore,
};

/// Whether this replica's listener is subscribed now, and until when it
/// has heard the fleet.
pub(super) struct ListeningState {
    pub(super) subscribed: AtomicBool,
    /// This replica's heartbeat identity.
    pub(super) replica: String,
    /// The clock its heartbeats and its freshness are read on.
    base: Instant,
    /// Until when (ms on `base`) its local caches may be trusted: a
    /// heartbeat it sent at `t` and heard back makes it `t` + [`FRESH`].
    fresh_until_ms: AtomicU64,
    /// Ends the heartbeats of a subscription that ended.
    subscription: AtomicU64,
    /// The first attempt to subscribe is over (whatever its outcome).
    pub(super) attempted: AtomicBool,
    /// Woken when the first attempt is over.
    pub(super) changed: tokio::sync::Notify,
    /// Something was taken from the fleet while not subscribed.
    pub(super) unheard: AtomicBool,
}

impl ListeningState {
    pub(super) fn new() -> Self {
        Self {
            subscribed: AtomicBool::new(false),
            replica: random_id(),
            base: Instant::now(),
            fresh_until_ms: AtomicU64::new(0),
            subscription: AtomicU64::new(0),
            attempted: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
            unheard: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    fn ms_at(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether, at `now`, a heartbeat sent at most [`FRESH`] before was
    /// heard back: then every invalidation published before it was acted
    /// on.
    pub(super) fn is_fresh_at(&self, now: Instant) -> bool {
        self.ms_at(now) < self.fresh_until_ms.load(Ordering::Acquire)
    }

    #[cfg(test)]
    fn is_fresh(&self) -> bool {
        self.is_fresh_at(Instant::now())
    }

    fn heard(&self, sent_ms: u64) {
        let until = sent_ms.saturating_add(u64::try_from(FRESH.as_millis()).unwrap_or(u64::MAX));
        self.fresh_until_ms.fetch_max(until, Ordering::AcqRel);
    }
}

/// The subscriber: reconnects by itself; stops when its elevator is gone.
pub(super) struct Listener {
    pub(super) state: Arc<ListeningState>,
    pub(super) prefix: Box<str>,
    pub(super) store: Arc<dyn FleetStore>,
    pub(super) sealer: Arc<Sealer>,
    pub(super) undecryptable: metrics::Counter,
    pub(super) channel: Arc<str>,
    pub(super) handler: std::sync::Weak<OnceLock<Handler>>,
}

impl Listener {
    pub(super) async fn run(self) {
        let mut backoff = Duration::from_millis(100);
        let mut first = true;
        while self.handler.strong_count() > 0 {
            match self.subscribed(&mut first).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(()) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Listen until the connection ends (`Ok`) or cannot be made (`Err`).
    /// Every subscription but the first begins by forgetting everything
    /// cached here: invalidations published while this replica was not
    /// listening are lost, so whatever they named must not be served.
    async fn subscribed(&self, first: &mut bool) -> Result<(), ()> {
        let connect = self.store.subscribe(&self.channel);
        let connected = tokio::time::timeout(SUBSCRIBE_TIMEOUT, connect).await;
        let subscribed = matches!(connected, Ok(Some(_)));
        self.state.subscribed.store(subscribed, Ordering::Release);
        if !self.state.attempted.swap(true, Ordering::AcqRel) {
            self.state.changed.notify_waiters();
        }
        let Ok(Some(mut messages)) = connected else {
            return Err(());
        };
        self.beat();
        let missed = !std::mem::replace(first, false);
        if (self.state.unheard.swap(false, Ordering::AcqRel) || missed)
            && let Some(handler) = self.handler.upgrade()
            && let Some(handle) = handler.get()
        {
            handle(Invalidation::Everything);
        }
        let heard = self.heard(&mut messages).await;
        self.state.subscribed.store(false, Ordering::Release);
        heard
    }

    /// While this subscription lasts, send this replica a heartbeat every
    /// [`HEARTBEAT`] through the channel (sealed like every notice).
    fn beat(&self) {
        let subscription = self.state.subscription.fetch_add(1, Ordering::AcqRel) + 1;
        let (state, store, sealer, channel) = (
            self.state.clone(),
            self.store.clone(),
            self.sealer.clone(),
            self.channel.clone(),
        );
        let handler = self.handler.clone();
        tokio::spawn(async move {
            while state.subscription.load(Ordering::Acquire) == subscription
                && state.subscribed.load(Ordering::Acquire)
                && handler.strong_count() > 0
            {
                let notice = Notice {
                    invalidation: Invalidation::Heartbeat {
                        replica: state.replica.clone(),
                        sent_ms: state.now_ms(),
                    },
                    confirm: None,
                };
                if let Some(sealed) = serde_json::to_vec(&notice)
                    .ok()
                    .and_then(|json| sealer.seal(&json, channel.as_bytes()))
                {
                    store.publish(&channel, &sealed).await;
                }
                tokio::time::sleep(HEARTBEAT).await;
            }
        });
    }

    /// Act on every notice until the connection ends or the elevator is
    /// gone.
    async fn heard(&self, messages: &mut BoxStream<'static, Vec<u8>>) -> Result<(), ()> {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(1), messages.next()).await;
            let handler = self.handler.upgrade();
            let message = match next {
                Err(_) if handler.is_some() => continue,
                Ok(Some(message)) => message,
                Err(_) | Ok(None) => return Ok(()),
            };
            let Some(plaintext) = self.sealer.open(&message, self.channel.as_bytes()) else {
                self.undecryptable.increment(1);
                continue;
            };
            let Ok(notice) = serde_json::from_slice::<Notice>(&plaintext) else {
                continue;
            };
            if let Invalidation::Heartbeat { replica, sent_ms } = &notice.invalidation {
                // Its own: everything published before it was acted on.
                if *replica == self.state.replica {
                    self.state.heard(*sent_ms);
                }
                continue;
            }
            if let Some(handle) = handler.as_deref().and_then(OnceLock::get) {
                handle(notice.invalidation);
            }
            // Dropped here (or nothing left to drop: the elevator is
            // gone): say so to the replica that waits.
            if let Some(key) = notice
                .confirm
                .as_deref()
                .and_then(|id| confirm_key(&self.prefix, id))
            {
                self.store.confirm(&key, CONFIRM_LIFETIME).await;
            }
            if handler.is_none() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fresh for [`FRESH`] after the heartbeat it heard was sent, and not
    /// an instant more: a replica whose clock jumped (it was frozen) or
    /// that stopped hearing itself trusts nothing it holds.
    #[tokio::test(start_paused = true)]
    async fn freshness_lasts_from_a_heartbeats_sending_not_its_hearing() {
        let state = ListeningState::new();
        assert!(!state.is_fresh(), "nothing heard yet");
        let sent = state.now_ms();
        tokio::time::advance(Duration::from_millis(100)).await;
        state.heard(sent);
        assert!(state.is_fresh());
        tokio::time::advance(FRESH - Duration::from_millis(101)).await;
        assert!(state.is_fresh(), "within FRESH of its sending");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!state.is_fresh(), "FRESH after its sending");
        // An older heartbeat heard late does not bring it back.
        state.heard(sent);
        assert!(!state.is_fresh());
    }
}
