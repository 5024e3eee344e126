//! [`WebhookEndpointBuilder`]: how a [`WebhookEndpoint`] handles what it
//! accepts (handlers per type, queue, deadlines, retries).

use std::{fmt, future::Future, sync::Arc, time::Duration};

use super::{PlanEvent, WebhookEndpoint, WebhookVerifier, WixEvent, worker::Routes};
use crate::Elevator;

/// How long a handler may run before its run counts as failed, unless
/// configured: 30 s.
pub const DEFAULT_HANDLER_DEADLINE: Duration = Duration::from_secs(30);

/// How many runs an event gets in fleet mode before it is parked as a
/// dead letter, unless configured: 5.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The delay before an event's second run in fleet mode, unless
/// configured: 1 s (it doubles for each run after, up to 5 minutes).
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// Configures a [`WebhookEndpoint`].
#[must_use]
pub struct WebhookEndpointBuilder {
    pub(super) elevator: Elevator,
    pub(super) verifier: WebhookVerifier,
    pub(super) routes: Routes,
    pub(super) capacity: usize,
    pub(super) concurrency: usize,
    pub(super) handler_deadline: Duration,
    pub(super) inline: bool,
    pub(super) forget_on_lifecycle: bool,
    pub(super) max_attempts: u32,
    pub(super) retry_backoff: Duration,
}

impl WebhookEndpointBuilder {
    pub(super) fn new(elevator: &Elevator, verifier: WebhookVerifier) -> Self {
        Self {
            elevator: elevator.clone(),
            verifier,
            routes: Routes::default(),
            capacity: 1024,
            concurrency: 8,
            handler_deadline: DEFAULT_HANDLER_DEADLINE,
            inline: false,
            forget_on_lifecycle: true,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
        }
    }

    /// What to do with each verified, new event that no handler of its own
    /// takes (after the instance was forgotten, if it is an app-instance
    /// event): the catch-all. Runs off the request path; Wix has had its
    /// 200.
    pub fn on_event<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(WixEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.routes
            .fallback(Arc::new(move |event| Box::pin(handler(event))));
        self
    }

    /// The handler of every event of type `event_type` (`AppInstalled`,
    /// `wix.stores.v1.product_created`, ...), before the plan handler and
    /// the catch-all.
    pub fn on_event_type<F, Fut>(mut self, event_type: &str, handler: F) -> Self
    where
        F: Fn(WixEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.routes
            .on_type(event_type, Arc::new(move |event| Box::pin(handler(event))));
        self
    }

    /// The handler of `AppInstalled` (the instance was already forgotten:
    /// Wix keeps its id across a reinstall).
    pub fn on_app_installed<F, Fut>(self, handler: F) -> Self
    where
        F: Fn(WixEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_event_type("AppInstalled", handler)
    }

    /// The handler of `AppRemoved`.
    pub fn on_app_removed<F, Fut>(self, handler: F) -> Self
    where
        F: Fn(WixEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_event_type("AppRemoved", handler)
    }

    /// The handler of every plan event (`PaidPlanPurchased`,
    /// `PaidPlanChanged`, `PaidPlanAutoRenewalCancelled`,
    /// `PlanConvertedToPaid`, `PlanReactivated`, `PlanTransferred`), given
    /// its typed [`PlanEvent`] beside the event.
    ///
    /// ```
    /// # use wix_elevate::{Elevator, webhook::{WebhookEndpoint, WebhookKeys, WebhookVerifier}};
    /// # let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// let webhooks = WebhookEndpoint::builder(&elevator, WebhookVerifier::new(WebhookKeys::new()))
    ///     .on_app_installed(|event| async move { println!("installed on {:?}", event.instance_id()) })
    ///     .on_plan_event(|event, plan| async move {
    ///         println!("{} now on {:?}", event.event_type(), plan.vendor_product_id)
    ///     })
    ///     .on_event(|other| async move { println!("unhandled {}", other.event_type()) })
    ///     .build();
    /// # let _ = webhooks;
    /// ```
    pub fn on_plan_event<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(WixEvent, PlanEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.routes.on_plans(handler);
        self
    }

    /// How many events may wait for the handler (default 1,024); beyond,
    /// deliveries are answered 503 and Wix retries them.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// How many events the handler works on at once (default 8).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How long the handler may run on one event (default
    /// [`DEFAULT_HANDLER_DEADLINE`], 30 s); past it the run is dropped and
    /// counts as failed (logged at WARN, metric
    /// `wix_elevate_webhook_handler_runs_total{outcome="deadline"}`), as a
    /// panic does (`outcome="panicked"`). Neither stops the endpoint.
    pub fn handler_deadline(mut self, deadline: Duration) -> Self {
        self.handler_deadline = deadline;
        self
    }

    /// Run the handler before answering, instead of queueing it after the
    /// 200: a delivery is acknowledged (`"handled"`) only once its handler
    /// finished, and answered 503 (so Wix retries it) if the handler failed
    /// or ran out of time. For serverless functions without Redis (AWS
    /// Lambda may freeze the environment right after the answer, and the
    /// queued work with it): keep the handler and its
    /// [`handler_deadline`](Self::handler_deadline) well under Wix's
    /// 1,250 ms.
    pub fn handle_before_acknowledging(mut self) -> Self {
        self.inline = true;
        self
    }

    /// Fleet mode: how many runs an event gets before it is parked as a
    /// dead letter (default [`DEFAULT_MAX_ATTEMPTS`], 5; at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Fleet mode: the delay before an event's second run (default
    /// [`DEFAULT_RETRY_BACKOFF`], 1 s); it doubles for each run after, up
    /// to 5 minutes. A run that was never finished (its replica died) is
    /// taken over once the handler's deadline and a second have passed.
    pub fn retry_backoff(mut self, delay: Duration) -> Self {
        self.retry_backoff = delay;
        self
    }

    /// Whether app-instance events (install, removal, plan changes) forget
    /// the instance before the handler runs (default: yes).
    pub fn forget_on_lifecycle(mut self, forget: bool) -> Self {
        self.forget_on_lifecycle = forget;
        self
    }

    /// The endpoint.
    pub fn build(self) -> WebhookEndpoint {
        WebhookEndpoint::new(self)
    }
}

impl fmt::Debug for WebhookEndpointBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookEndpointBuilder")
            .field("capacity", &self.capacity)
            .field("concurrency", &self.concurrency)
            .field("forget_on_lifecycle", &self.forget_on_lifecycle)
            .finish_non_exhaustive()
    }
}
