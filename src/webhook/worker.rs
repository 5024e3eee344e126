//! The handler's side of a [`WebhookEndpoint`](super::WebhookEndpoint):
//! accepted events wait in a bounded queue and run a few at a time, each
//! in a task of its own with a deadline, so a handler that panics (in its
//! synchronous part or its future) or hangs is one failed run, never the
//! end of the worker. [`Pending`] counts what is queued or running, for
//! whoever waits for the queue to drain.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, Semaphore, mpsc};

use super::{EventPayload, PlanEvent, WixEvent};
use crate::isolated::run_isolated;

pub(super) type Handler =
    Arc<dyn Fn(WixEvent) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Which handler an event goes to: one registered for its exact type,
/// else the plan handler for a plan event, else the catch-all.
#[derive(Clone)]
pub(super) struct Routes {
    by_type: HashMap<Box<str>, Handler>,
    plans: Option<Handler>,
    fallback: Handler,
}

impl Default for Routes {
    fn default() -> Self {
        Self {
            by_type: HashMap::new(),
            plans: None,
            fallback: Arc::new(|_| Box::pin(async {})),
        }
    }
}

impl Routes {
    pub(super) fn on_type(&mut self, event_type: &str, handler: Handler) {
        self.by_type.insert(event_type.into(), handler);
    }

    pub(super) fn on_plans<F, Fut>(&mut self, handler: F)
    where
        F: Fn(WixEvent, PlanEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.plans = Some(Arc::new(move |event: WixEvent| {
            let plan = plan_of(&event).cloned().unwrap_or_default();
            Box::pin(handler(event, plan))
        }));
    }

    pub(super) fn fallback(&mut self, handler: Handler) {
        self.fallback = handler;
    }

    fn handler_for(&self, event: &WixEvent) -> &Handler {
        if let Some(handler) = self.by_type.get(event.event_type()) {
            return handler;
        }
        match (&self.plans, plan_of(event)) {
            (Some(plans), Some(_)) => plans,
            _ => &self.fallback,
        }
    }
}

/// The plan fields of a plan event.
fn plan_of(event: &WixEvent) -> Option<&PlanEvent> {
    match event.payload() {
        EventPayload::PaidPlanPurchased(plan)
        | EventPayload::PaidPlanChanged(plan)
        | EventPayload::PaidPlanAutoRenewalCancelled(plan)
        | EventPayload::PlanConvertedToPaid(plan)
        | EventPayload::PlanReactivated(plan)
        | EventPayload::PlanTransferred(plan) => Some(plan),
        _ => None,
    }
}

/// How many accepted events are queued or running.
#[derive(Default)]
pub(super) struct Pending {
    count: AtomicUsize,
    drained: Notify,
}

impl Pending {
    pub(super) fn add(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn done(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.notify_waiters();
        }
    }

    /// Whether nothing is queued or running now.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn is_idle(&self) -> bool {
        self.count.load(Ordering::Acquire) == 0
    }

    /// Resolves once nothing is queued or running.
    pub(super) async fn drained(&self) {
        loop {
            let drained = self.drained.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            drained.await;
        }
    }
}

pub(super) struct Worker {
    pub(super) events: mpsc::Receiver<WixEvent>,
    pub(super) routes: Arc<Routes>,
    pub(super) concurrency: usize,
    pub(super) deadline: Duration,
    pub(super) pending: Arc<Pending>,
}

impl Worker {
    pub(super) async fn run(mut self) {
        let slots = Arc::new(Semaphore::new(self.concurrency.max(1)));
        while let Some(event) = self.events.recv().await {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (routes, deadline, pending) =
                (self.routes.clone(), self.deadline, self.pending.clone());
            tokio::spawn(async move {
                run_one(&routes, deadline, event).await;
                drop(slot);
                pending.done();
            });
        }
    }
}

/// Run `event`'s handler in a task of its own, within `deadline`: whether
/// it finished (`"ok"`), ran out of time (`"deadline"`) or panicked
/// (`"panicked"`, in its synchronous part or its future), logged at WARN
/// when it failed and counted.
pub(super) async fn run_one(routes: &Routes, deadline: Duration, event: WixEvent) -> &'static str {
    let handler = routes.handler_for(&event).clone();
    let event_type: Box<str> = event.event_type().into();
    let outcome = run_isolated(deadline, move || handler(event)).await;
    if outcome != "ok" {
        tracing::warn!(
            target: "wix_elevate::webhook",
            event_type = &*event_type,
            outcome,
            "webhook handler failed"
        );
    }
    metrics::counter!("wix_elevate_webhook_handler_runs_total", "outcome" => outcome).increment(1);
    outcome
}
