//! The pub/sub listener: every replica acts on each invalidation, and
//! confirms a forget it was asked to.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::{StreamExt, stream::BoxStream};

use super::{
    Invalidation, Notice,
    notice::{CONFIRM_LIFETIME, Handler, SUBSCRIBE_TIMEOUT, confirm_key},
    seal::Sealer,
    store::FleetStore,
};

/// Whether this replica's listener is subscribed now.
#[derive(Default)]
pub(super) struct ListeningState {
    pub(super) subscribed: AtomicBool,
    /// The first attempt to subscribe is over (whatever its outcome).
    pub(super) attempted: AtomicBool,
    /// Woken when the first attempt is over.
    pub(super) changed: tokio::sync::Notify,
    /// Something was taken from the fleet while not subscribed.
    pub(super) unheard: AtomicBool,
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
