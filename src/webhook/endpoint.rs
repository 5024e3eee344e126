//! [`WebhookEndpoint`]: the tower service that receives Wix's webhooks:
//! verify, deduplicate, forget what an app-instance event makes stale,
//! acknowledge, and run the application's handler off the request path.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::mpsc;
use tower_service::Service;

use super::{
    WebhookErrorKind, WebhookVerifier, WixEvent,
    builder::WebhookEndpointBuilder,
    deliveries::{Claim, Deliveries},
    worker::{Pending, Routes, Worker, run_one},
};
use crate::{Elevator, response::problem};

/// The longest a delivery is remembered, to hand a retry or a duplicate to
/// the handler only once: Wix retries for up to 48 hours. A token with an
/// `exp` is remembered only while it verifies.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(48 * 3600);

/// Receives Wix's webhooks, as a tower [`Service`] (mount it with axum's
/// `post_service`):
///
/// 1. reads the raw body (413 past the verifier's limit) and verifies it
///    ([`WebhookVerifier`]: 401 for a signature, algorithm or time
///    failure, 400 for a body that is not a webhook), answering like every
///    other rejection, `application/problem+json`;
/// 2. deduplicates on what Wix signed (the event's id where it has one,
///    else the exact compact token; fleet-wide in fleet mode): a delivery
///    already taken is answered 200 and not handled again; a copy that
///    arrives while the first is being taken waits for it (up to a second)
///    and is answered with its outcome, or 503. A delivery counts as taken
///    only once its forget and its enqueue succeeded; a failure leaves no
///    mark, so Wix's retry is taken afresh. Marks last 48 hours at most,
///    and never past the time the token stops verifying (its `exp`);
/// 3. on `AppInstalled`, `AppRemoved` and every plan event, forgets the
///    instance on every replica ([`Elevator::forget_instance`]) before
///    anything else (off with
///    [`forget_on_lifecycle(false)`](WebhookEndpointBuilder::forget_on_lifecycle));
///    503 if the fleet could not be told, so Wix retries;
/// 4. queues the event for the handler and answers 200 at once (Wix wants
///    one within 1,250 ms); a full queue answers 503 so Wix retries.
///
/// The handler runs off the request path, a few at a time
/// ([`concurrency`](WebhookEndpointBuilder::concurrency)); make it
/// idempotent, as Wix may deliver out of order.
///
/// ```
/// use axum::{Router, routing::post_service};
/// use wix_elevate::{Elevator, webhook::{EventPayload, WebhookEndpoint, WebhookKeys, WebhookVerifier}};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let public_key = wix_elevate::test_util::WEBHOOK_PUBLIC_KEY;
/// let elevator = Elevator::builder("app", "secret").build()?;
/// let on_install = elevator.app_client("webhook:installed").allow("GET /apps/v1/instance").build()?;
/// let webhooks = WebhookEndpoint::builder(&elevator, WebhookVerifier::new(WebhookKeys::new().key(public_key)?))
///     .on_event(move |event| {
///         let on_install = on_install.clone();
///         async move {
///             if let (EventPayload::AppInstalled { .. }, Some(instance)) = (event.payload(), event.instance_id()) {
///                 // Wix's answer, with the app's identity, outside any request.
///                 let _ = on_install.for_instance(instance).get("/apps/v1/instance").await;
///             }
///         }
///     })
///     .build();
/// let app: Router = Router::new().route("/webhooks", post_service(webhooks));
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct WebhookEndpoint {
    shared: Arc<Shared>,
}

struct Shared {
    verifier: WebhookVerifier,
    elevator: Elevator,
    forget_on_lifecycle: bool,
    queue: mpsc::Sender<WixEvent>,
    /// The background work (the in-process worker, or the fleet queue's
    /// consumer), spawned at build inside a runtime, else on the first
    /// delivery.
    worker: Mutex<Option<Pin<Box<dyn Future<Output = ()> + Send>>>>,
    /// In fleet mode (unless handled before acknowledging): the fleet's
    /// durable queue, instead of the in-process one.
    #[cfg(feature = "redis")]
    durable: Option<Arc<super::durable::DurableQueue>>,
    /// Dropped with the endpoint: the consumer stops.
    _alive: Arc<()>,
    /// Events queued or running.
    pending: Arc<Pending>,
    /// Run the handler before answering, instead of queueing.
    inline: bool,
    routes: Arc<Routes>,
    handler_deadline: Duration,
    /// Deliveries taken, or being taken (in process; Redis too in fleet
    /// mode).
    deliveries: Deliveries,
}

impl WebhookEndpoint {
    /// An endpoint for `elevator`'s app, checking with `verifier`.
    pub fn builder(elevator: &Elevator, verifier: WebhookVerifier) -> WebhookEndpointBuilder {
        WebhookEndpointBuilder::new(elevator, verifier)
    }

    /// Answer one delivery's raw body.
    pub async fn deliver(&self, body: &[u8]) -> Response<Full<Bytes>> {
        let shared = &*self.shared;
        let event = match shared.verifier.verify(body) {
            Ok(event) => event,
            Err(refused) => return refusal(refused.kind()),
        };
        self.start_worker();
        // What Wix signed identifies the delivery: the event's id where it
        // has one, else the exact compact token verified (bytes around it
        // never make a new delivery; a token that differs in any signed
        // byte is one).
        let key = match event.id().filter(|id| !id.is_empty()) {
            Some(id) => shared
                .elevator
                .delivery_key(format!("event\0{id}").as_bytes()),
            None => shared.elevator.delivery_key(compact_token(body)),
        };
        match shared.deliveries.claim(key).await {
            Claim::Mine => {}
            Claim::Duplicate => return acknowledged("duplicate"),
            Claim::Busy => return retry_later("A copy of this delivery is being taken."),
        }
        if shared.forget_on_lifecycle
            && event.changes_instance()
            && let Some(instance) = event.instance_id()
            && shared.elevator.forget_instance(instance).await.is_err()
        {
            shared.deliveries.release(key).await;
            tracing::warn!(target: "wix_elevate::webhook", event_type = event.event_type(), "could not forget the instance fleet-wide: 503, Wix will retry");
            return retry_later("The instance could not be forgotten on every replica.");
        }
        if let Some(instance) = event.instance_id() {
            match event.payload() {
                super::EventPayload::AppInstalled { .. } => {
                    shared.elevator.lifecycle(instance, true).await;
                }
                super::EventPayload::AppRemoved { .. } => {
                    shared.elevator.lifecycle(instance, false).await;
                }
                _ => {}
            }
        }
        let window = self.dedupe_window(&event);
        if shared.inline {
            // Handled before the answer: a 200 means the handler ran.
            return if run_one(&shared.routes, shared.handler_deadline, event).await == "ok" {
                shared.deliveries.taken(key, window).await;
                acknowledged("handled")
            } else {
                shared.deliveries.release(key).await;
                retry_later("The webhook's handler failed.")
            };
        }
        #[cfg(feature = "redis")]
        if let Some(durable) = &shared.durable {
            // Taken once it is in the fleet's stream: a crash after this
            // loses nothing.
            return match durable.append(&event).await {
                Some(true) => {
                    shared.deliveries.taken(key, window).await;
                    acknowledged("accepted")
                }
                full_or_away => {
                    shared.deliveries.release(key).await;
                    tracing::warn!(target: "wix_elevate::webhook", full = full_or_away.is_some(), "webhook not queued in the fleet: 503, Wix will retry");
                    retry_later(if full_or_away.is_some() {
                        "The webhook queue is full."
                    } else {
                        "The webhook could not be queued durably."
                    })
                }
            };
        }
        shared.pending.add();
        if shared.queue.try_send(event).is_err() {
            shared.pending.done();
            shared.deliveries.release(key).await;
            tracing::warn!(target: "wix_elevate::webhook", "webhook queue full: 503, Wix will retry");
            return retry_later("The webhook queue is full.");
        }
        shared.deliveries.taken(key, window).await;
        acknowledged("accepted")
    }

    /// Resolves once every event accepted so far has been handled (its
    /// handler finished, failed, panicked or ran out of time): for tests
    /// that wait for the handler without polling, and for a graceful
    /// shutdown that drains the queue. In-process work is lost if the
    /// process dies first.
    ///
    /// ```
    /// # #[cfg(feature = "test-util")] {
    /// # use wix_elevate::{Elevator, test_util::{MockWebhook, WEBHOOK_PUBLIC_KEY}, webhook::{WebhookEndpoint, WebhookKeys, WebhookVerifier}};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// let verifier = WebhookVerifier::new(WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap());
    /// let endpoint = WebhookEndpoint::builder(&elevator, verifier)
    ///     .forget_on_lifecycle(false)
    ///     .on_event(|event| async move { println!("{}", event.event_type()) })
    ///     .build();
    /// let answer = endpoint.deliver(MockWebhook::app_installed("inst-1").sign().as_bytes()).await;
    /// assert_eq!(answer.status(), 200);
    /// endpoint.handled().await; // the handler has run
    /// # }
    /// # }
    /// ```
    pub async fn handled(&self) {
        #[cfg(feature = "redis")]
        if let Some(durable) = &self.shared.durable {
            // Fleet-wide: another replica may be the one running it.
            loop {
                durable.pending.drained().await;
                if durable.is_empty().await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        self.shared.pending.drained().await;
    }

    /// For a graceful shutdown: stop taking events from the fleet's queue
    /// and resolve once the handlers this replica queued or runs have
    /// finished (bound it with the shutdown's deadline). Without Redis the
    /// queue is in this process: what is still queued when the process
    /// exits is lost (Wix had its 200), so drain it. In fleet mode, what
    /// this replica took and did not finish is taken over by another once
    /// the handler's deadline and a second have passed.
    ///
    /// ```
    /// # #[cfg(feature = "test-util")] {
    /// # use wix_elevate::{Elevator, test_util::{MockWebhook, WEBHOOK_PUBLIC_KEY}, webhook::{WebhookEndpoint, WebhookKeys, WebhookVerifier}};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// let verifier = WebhookVerifier::new(WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap());
    /// let endpoint = WebhookEndpoint::builder(&elevator, verifier).build();
    /// endpoint.deliver(MockWebhook::app_installed("inst-1").sign().as_bytes()).await;
    /// // SIGTERM: the server stopped; the handlers get up to 10 s.
    /// let _ = tokio::time::timeout(std::time::Duration::from_secs(10), endpoint.drain()).await;
    /// # }
    /// # }
    /// ```
    pub async fn drain(&self) {
        #[cfg(feature = "redis")]
        if let Some(durable) = &self.shared.durable {
            durable.stop();
            durable.pending.drained().await;
            return;
        }
        self.shared.pending.drained().await;
    }

    /// Fleet mode: up to `count` events whose every run failed, parked
    /// for an operator, oldest first (empty without fleet mode; `None`
    /// while Redis is away).
    #[cfg(feature = "redis")]
    pub async fn dead_letters(&self, count: usize) -> Option<Vec<super::DeadLetter>> {
        match &self.shared.durable {
            Some(durable) => durable.dead_letters(count).await,
            None => Some(Vec::new()),
        }
    }

    /// Fleet mode: put up to `count` dead letters back in the queue, each
    /// for a fresh set of runs (after the cause was fixed): how many.
    #[cfg(feature = "redis")]
    pub async fn replay_dead_letters(&self, count: usize) -> Option<usize> {
        match &self.shared.durable {
            Some(durable) => durable.replay(count).await,
            None => Some(0),
        }
    }

    /// How long a delivery is remembered: [`DEDUPE_WINDOW`] at most, and
    /// never past the time its token stops verifying (`exp` plus the
    /// verifier's leeway).
    fn dedupe_window(&self, event: &WixEvent) -> Duration {
        let Some(exp) = event.expires_at() else {
            return DEDUPE_WINDOW;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let verifies_for = Duration::from_secs(exp.saturating_sub(now))
            .saturating_add(self.shared.verifier.leeway_allowed());
        verifies_for.clamp(Duration::from_secs(1), DEDUPE_WINDOW)
    }

    /// Start the handler's worker on the runtime in use, once.
    fn start_worker(&self) {
        let worker = match self.shared.worker.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(worker) = worker {
            tokio::spawn(worker);
        }
    }
}

impl WebhookEndpoint {
    /// The endpoint `builder` describes; its worker starts now inside a
    /// runtime.
    pub(super) fn new(builder: WebhookEndpointBuilder) -> WebhookEndpoint {
        let elevator = builder.elevator.clone();
        let (queue, events) = mpsc::channel(builder.capacity);
        let pending = Arc::new(Pending::default());
        let routes = Arc::new(builder.routes);
        let alive = Arc::new(());
        let worker: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(
            Worker {
                events,
                routes: routes.clone(),
                concurrency: builder.concurrency,
                deadline: builder.handler_deadline,
                pending: pending.clone(),
            }
            .run(),
        );
        #[cfg(feature = "redis")]
        let durable = elevator
            .event_stream()
            .filter(|_| !builder.inline)
            .map(|stream| {
                Arc::new(super::durable::DurableQueue::new(
                    stream,
                    routes.clone(),
                    builder.handler_deadline,
                    builder.concurrency,
                    super::durable::Retries {
                        max_attempts: builder.max_attempts,
                        backoff: builder.retry_backoff,
                    },
                    builder.capacity,
                ))
            });
        #[cfg(feature = "redis")]
        let worker = match &durable {
            Some(durable) => Box::pin(durable.clone().consume(Arc::downgrade(&alive))),
            None => worker,
        };
        let endpoint = WebhookEndpoint {
            shared: Arc::new(Shared {
                verifier: builder.verifier,
                elevator: builder.elevator.clone(),
                forget_on_lifecycle: builder.forget_on_lifecycle,
                queue,
                worker: Mutex::new(Some(worker)),
                #[cfg(feature = "redis")]
                durable,
                _alive: alive,
                pending,
                inline: builder.inline,
                routes,
                handler_deadline: builder.handler_deadline,
                deliveries: Deliveries::new(elevator, 100_000),
            }),
        };
        // Inside a runtime, the worker starts now: in fleet mode it takes
        // over what other replicas left, whether or not Wix calls this one.
        if tokio::runtime::Handle::try_current().is_ok() {
            endpoint.start_worker();
        }
        endpoint
    }
}

impl<B> Service<Request<B>> for WebhookEndpoint
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let endpoint = self.clone();
        let limit = self.shared.verifier.body_limit();
        Box::pin(async move {
            let body = Limited::new(req.into_body(), limit);
            let Ok(body) = body.collect().await.map(|collected| collected.to_bytes()) else {
                // Over the limit (or a broken body): never parsed.
                return Ok(refusal(WebhookErrorKind::TooLarge));
            };
            Ok(endpoint.deliver(&body).await)
        })
    }
}

/// The compact token a verified body holds: the body without the white
/// space around it (what the verifier read).
fn compact_token(body: &[u8]) -> &[u8] {
    body.trim_ascii()
}

fn refusal(kind: WebhookErrorKind) -> Response<Full<Bytes>> {
    problem(kind.status(), kind.detail(), kind.code(), None)
}

fn retry_later(detail: &str) -> Response<Full<Bytes>> {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        detail,
        "webhook_retry_later",
        Some(Duration::from_secs(1)),
    )
}

fn acknowledged(what: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!(
        r#"{{"received":"{what}"}}"#
    ))));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

impl fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("forget_on_lifecycle", &self.shared.forget_on_lifecycle)
            .finish_non_exhaustive()
    }
}
