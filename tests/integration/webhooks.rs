//! Wix's webhooks at the endpoint: verified, deduplicated, wired to the
//! caches, acknowledged before the handler runs.

use std::time::Duration;

use axum::{Router, body::Body, routing::post_service};
use http::Request;
use tokio::sync::mpsc;
use tower::ServiceExt;
use wix_elevate::{
    SubjectType,
    test_util::{CallerSpec, MockWebhook, OTHER_WEBHOOK_PRIVATE_KEY, WEBHOOK_PUBLIC_KEY},
    webhook::{EventPayload, WebhookEndpoint, WebhookKeys, WebhookVerifier, WixEvent},
};

use crate::support::{Harness, harness};

fn verifier() -> WebhookVerifier {
    WebhookVerifier::new(WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap())
}

/// The endpoint, with a handler that reports each event it runs for.
fn endpoint(h: &Harness, capacity: usize) -> (Router, mpsc::UnboundedReceiver<WixEvent>) {
    let (handled, events) = mpsc::unbounded_channel();
    let webhooks = WebhookEndpoint::builder(&h.elevator, verifier())
        .queue_capacity(capacity)
        .on_event(move |event| {
            let handled = handled.clone();
            async move {
                let _ = handled.send(event);
            }
        })
        .build();
    (
        Router::new().route("/webhooks", post_service(webhooks)),
        events,
    )
}

async fn deliver(app: &Router, body: impl Into<Body>) -> (u16, serde_json::Value) {
    let req = Request::post("/webhooks").body(body.into()).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn app_removed_forgets_the_instance_before_the_handler_runs() {
    let h = harness().await;
    let (app, mut events) = endpoint(&h, 16);
    let member = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("inst-gone"));
    assert_eq!(h.get("/whoami", Some(&member)).await.status, 200);
    // The app is removed: Wix revokes the site's tokens and says so.
    h.wix.revoke(&member);
    let (status, body) = deliver(&app, MockWebhook::app_removed("inst-gone").sign()).await;
    assert_eq!((status, body["received"].as_str()), (200, Some("accepted")));
    let event = events.recv().await.expect("the handler ran");
    assert!(matches!(event.payload(), EventPayload::AppRemoved { .. }));
    // Forgotten: the next request asks Wix, which refuses.
    h.get("/whoami", Some(&member))
        .await
        .assert_problem(401, "invalid_token");
    assert_eq!(h.wix.token_info_calls_for(&member), 2);
}

#[tokio::test]
async fn a_duplicate_is_acknowledged_and_handled_once() {
    let h = harness().await;
    let (app, mut events) = endpoint(&h, 16);
    let body = MockWebhook::plan_purchased("inst-1", "premium").sign();
    assert_eq!(deliver(&app, body.clone()).await.0, 200);
    let (status, answer) = deliver(&app, body).await;
    assert_eq!(
        (status, answer["received"].as_str()),
        (200, Some("duplicate"))
    );
    let first = events.recv().await.unwrap();
    assert!(
        matches!(first.payload(), EventPayload::PaidPlanPurchased(p) if p.vendor_product_id.as_deref() == Some("premium"))
    );
    // Nothing more arrives: a later, different event comes next.
    assert_eq!(
        deliver(&app, MockWebhook::app_installed("inst-1").sign())
            .await
            .0,
        200
    );
    assert_eq!(events.recv().await.unwrap().event_type(), "AppInstalled");
}

#[tokio::test]
async fn refusals_are_problems_with_the_statuses_wix_retries_on() {
    let h = harness().await;
    let (app, mut events) = endpoint(&h, 16);
    let cases = [
        (
            MockWebhook::app_removed("i").sign_with(OTHER_WEBHOOK_PRIVATE_KEY),
            401,
            "webhook_bad_signature",
        ),
        (
            MockWebhook::app_removed("i")
                .expires_in(Duration::ZERO)
                .sign(),
            401,
            "webhook_expired",
        ),
        (
            r#"{"eventType":"AppRemoved","instanceId":"i"}"#.to_owned(),
            400,
            "not_a_webhook",
        ),
        (
            format!("{}.{}", "a".repeat(300 * 1024), "b"),
            413,
            "webhook_too_large",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = deliver(&app, body).await;
        assert_eq!((got, answer["code"].as_str()), (status, Some(code)));
    }
    assert!(
        events.try_recv().is_err(),
        "no refused webhook reached the handler"
    );
}

#[tokio::test]
async fn a_full_queue_answers_503_and_the_retry_is_taken_later() {
    let h = harness().await;
    // A handler that does not finish until told: the queue fills.
    let (release, released) = tokio::sync::watch::channel(false);
    let webhooks = WebhookEndpoint::builder(&h.elevator, verifier())
        .queue_capacity(1)
        .concurrency(1)
        .on_event(move |_| {
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|r| *r).await;
            }
        })
        .build();
    let app = Router::new().route("/webhooks", post_service(webhooks));
    let mut statuses = Vec::new();
    let bodies: Vec<String> = (0..4)
        .map(|i| MockWebhook::app_installed(format!("inst-{i}")).sign())
        .collect();
    for body in &bodies {
        statuses.push(deliver(&app, body.clone()).await);
    }
    let refused: Vec<_> = statuses.iter().filter(|(s, _)| *s == 503).collect();
    println!(
        "4 deliveries to a queue of 1 with a stuck handler: {:?}",
        statuses.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    assert!(!refused.is_empty(), "{statuses:?}");
    assert!(
        refused
            .iter()
            .all(|(_, b)| b["code"] == "webhook_retry_later")
    );
    // Once the handler moves on, Wix's retry of a refused one is taken
    // (it was not remembered as seen).
    release.send(true).unwrap();
    let last = bodies.last().unwrap().clone();
    let mut retried = 0;
    while retried < 100 {
        let (status, body) = deliver(&app, last.clone()).await;
        if status == 200 {
            assert_eq!(body["received"], "accepted");
            break;
        }
        retried += 1;
        tokio::task::yield_now().await;
    }
    assert!(retried < 100, "the retry was never taken");
}

#[tokio::test]
async fn the_embedder_can_keep_the_caches_on_lifecycle_events() {
    let h = harness().await;
    let webhooks = WebhookEndpoint::builder(&h.elevator, verifier())
        .forget_on_lifecycle(false)
        .build();
    let app = Router::new().route("/webhooks", post_service(webhooks));
    let member = h
        .wix
        .mint(CallerSpec::new(SubjectType::Member).instance("inst-kept"));
    assert_eq!(h.get("/whoami", Some(&member)).await.status, 200);
    assert_eq!(
        deliver(&app, MockWebhook::app_removed("inst-kept").sign())
            .await
            .0,
        200
    );
    assert_eq!(h.get("/whoami", Some(&member)).await.status, 200);
    assert_eq!(
        h.wix.token_info_calls_for(&member),
        1,
        "nothing was forgotten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_at_a_thousand_deliveries_a_second() {
    let h = harness().await;
    let (app, mut events) = endpoint(&h, 4096);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // Signed beforehand: Wix signs, the endpoint verifies.
    let total = 2_000;
    let bodies: Vec<String> = (0..total)
        .map(|i| {
            MockWebhook::new(
                "SomethingHappened",
                format!("inst-{i}"),
                serde_json::json!({"i": i}),
            )
            .sign()
        })
        .collect();
    let client = reqwest::Client::new();
    let mut pace = tokio::time::interval(Duration::from_millis(1));
    let mut sent = Vec::with_capacity(total);
    for body in bodies {
        pace.tick().await;
        let (client, url) = (client.clone(), url.clone());
        sent.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let status = client.post(url).body(body).send().await.unwrap().status();
            (status.as_u16(), started.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in sent {
        let (status, took) = task.await.unwrap();
        assert_eq!(status, 200);
        latencies.push(took);
    }
    latencies.sort();
    let p50 = latencies[total / 2];
    let p99 = latencies[total * 99 / 100];
    println!(
        "{total} deliveries at 1,000/s over HTTP (verification included, debug build): acknowledged p50 {p50:?}, p99 {p99:?}"
    );
    assert!(
        p99 < Duration::from_millis(1_250),
        "Wix's deadline: {p99:?}"
    );
    for _ in 0..total {
        events.recv().await.expect("every event handled");
    }
}

/// A handler that panics (before its future, or inside it) or hangs is one
/// failed run: the endpoint keeps accepting and handling events, and
/// `handled()` resolves once every accepted event's run is over.
#[tokio::test]
async fn a_handler_that_panics_or_hangs_never_takes_the_endpoint_down() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let h = harness().await;
    let ran = Arc::new(AtomicUsize::new(0));
    let counted = ran.clone();
    let webhooks = WebhookEndpoint::builder(&h.elevator, verifier())
        .forget_on_lifecycle(false)
        .queue_capacity(2)
        .concurrency(1)
        .handler_deadline(Duration::from_millis(200))
        .on_event(move |event| {
            let instance = event.instance_id().unwrap_or_default().to_owned();
            // The synchronous part, before any future exists.
            assert_ne!(instance, "panics-at-once", "a handler's own bug");
            let counted = counted.clone();
            async move {
                match instance.as_str() {
                    "panics-later" => panic!("a handler's own bug, in its future"),
                    "hangs" => std::future::pending::<()>().await,
                    _ => {}
                }
                counted.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build();
    for instance in [
        "panics-at-once",
        "panics-later",
        "hangs",
        "fine-1",
        "fine-2",
    ] {
        let answer = webhooks
            .deliver(MockWebhook::app_installed(instance).sign().as_bytes())
            .await;
        assert_eq!(answer.status(), 200, "{instance}: accepted");
        // One at a time: each run is over before the next delivery. A dead
        // worker would never get there.
        tokio::time::timeout(Duration::from_secs(10), webhooks.handled())
            .await
            .unwrap_or_else(|_| panic!("{instance}: the worker stopped handling"));
    }
    assert_eq!(
        ran.load(Ordering::SeqCst),
        2,
        "the fine events ran after the failures"
    );
}

/// Each delivery carries when Wix signed it, and the plan events their
/// operation time: an `AppInstalled` delivered after a later `AppRemoved`
/// is recognised as stale instead of bringing the instance back.
#[tokio::test]
async fn an_event_signed_earlier_but_delivered_later_is_recognised() {
    use wix_elevate::webhook::EventOrder;
    let v = verifier();
    let verified = |webhook: MockWebhook| v.verify(webhook.sign().as_bytes()).unwrap();
    let removed = verified(MockWebhook::app_removed("inst-o"));
    let installed_before =
        verified(MockWebhook::app_installed("inst-o").issued_ago(Duration::from_secs(120)));
    assert!(removed.issued_at().unwrap() >= installed_before.issued_at().unwrap() + 120);
    let order = EventOrder::default();
    assert!(order.apply(&removed));
    assert!(
        !order.apply(&installed_before),
        "stale: the removal came after it"
    );
    // Another instance has its own order; a newer event is applied.
    assert!(order.apply(&verified(
        MockWebhook::app_installed("inst-p").issued_ago(Duration::from_secs(120))
    )));
    assert!(
        order.apply(&verified(MockWebhook::app_installed("inst-o"))),
        "a reinstall, signed after the removal"
    );
    // Plan events carry Wix's fields, their operation time included.
    let changed = verified(MockWebhook::plan_changed("inst-o", "business", "premium"));
    match changed.payload() {
        EventPayload::PaidPlanChanged(plan) => {
            assert_eq!(plan.vendor_product_id.as_deref(), Some("business"));
            assert_eq!(plan.previous_vendor_product_id.as_deref(), Some("premium"));
            assert!(plan.invoice_id.is_some() && plan.expires_on.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert!(changed.operation_time().is_some_and(|t| t.ends_with('Z')));
    for event_type in [
        "PaidPlanAutoRenewalCancelled",
        "PlanConvertedToPaid",
        "PlanReactivated",
        "PlanTransferred",
    ] {
        let event = verified(MockWebhook::plan_event(event_type, "inst-o", "premium"));
        assert!(event.changes_instance(), "{event_type}");
        assert_eq!(event.event_type(), event_type);
    }
}

/// The delivery is what Wix signed: white space around the token makes no
/// new delivery (40 padded copies ran the handler 41 times before), a new
/// signature of the same event is one.
#[tokio::test]
async fn padded_copies_are_one_delivery_and_a_new_signature_is_another() {
    let h = harness().await;
    let (app, mut events) = endpoint(&h, 64);
    let captured = MockWebhook::app_removed("inst-pad").sign();
    let (status, body) = deliver(&app, captured.clone()).await;
    assert_eq!((status, body["received"].as_str()), (200, Some("accepted")));
    for (i, padded) in [
        format!(" {captured}"),
        format!("{captured}\n"),
        format!("\t{captured}\r\n"),
        format!("\n\n{captured}   "),
    ]
    .into_iter()
    .cycle()
    .take(40)
    .enumerate()
    {
        let (status, body) = deliver(&app, padded).await;
        assert_eq!(
            (status, body["received"].as_str()),
            (200, Some("duplicate")),
            "copy {i}"
        );
    }
    events.recv().await.expect("the first delivery is handled");
    // Wix signing the event again is another delivery (handlers must be
    // idempotent for that reason).
    let (status, body) = deliver(&app, MockWebhook::app_removed("inst-pad").sign()).await;
    assert_eq!((status, body["received"].as_str()), (200, Some("accepted")));
    events.recv().await.expect("the new signature is handled");
    assert!(events.try_recv().is_err(), "no copy was handled");
}

/// A handler per event type: `AppInstalled`, `AppRemoved`, the plan events
/// (with their typed fields) and a domain event by its type each reach
/// their own; anything else goes to the catch-all.
#[tokio::test]
async fn each_event_type_reaches_its_own_handler() {
    let h = harness().await;
    let (seen, mut routed) = mpsc::unbounded_channel::<String>();
    let say = |what: &'static str| {
        let seen = seen.clone();
        move |event: WixEvent| {
            let _ = seen.send(format!("{what} {}", event.event_type()));
            async {}
        }
    };
    let plan_seen = seen.clone();
    let webhooks = WebhookEndpoint::builder(&h.elevator, verifier())
        .forget_on_lifecycle(false)
        .on_app_installed(say("installed"))
        .on_app_removed(say("removed"))
        .on_event_type("wix.stores.v1.product_created", say("product"))
        .on_plan_event(move |event, plan| {
            let _ = plan_seen.send(format!(
                "plan {} {}",
                event.event_type(),
                plan.vendor_product_id.unwrap_or_default()
            ));
            async {}
        })
        .on_event(say("other"))
        .build();
    for webhook in [
        MockWebhook::app_installed("i-r"),
        MockWebhook::app_removed("i-r"),
        MockWebhook::plan_purchased("i-r", "premium"),
        MockWebhook::plan_changed("i-r", "business", "premium"),
        MockWebhook::new(
            "wix.stores.v1.product_created",
            "i-r",
            serde_json::json!({"id": "e-1"}),
        ),
        MockWebhook::new("Novel", "i-r", serde_json::json!({})),
    ] {
        assert_eq!(
            webhooks.deliver(webhook.sign().as_bytes()).await.status(),
            200
        );
        webhooks.handled().await;
    }
    let got: Vec<String> = std::iter::from_fn(|| routed.try_recv().ok()).collect();
    assert_eq!(
        got,
        [
            "installed AppInstalled",
            "removed AppRemoved",
            "plan PaidPlanPurchased premium",
            "plan PaidPlanChanged business",
            "product wix.stores.v1.product_created",
            "other Novel",
        ]
    );
}

/// Handled before the answer (serverless without Redis): a 200 means the
/// handler ran; a handler that fails leaves no mark and is answered 503,
/// so Wix's retry runs it again.
#[tokio::test]
async fn handled_before_acknowledging_a_failure_is_a_503_and_the_retry_runs_again() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let h = harness().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let webhooks = WebhookEndpoint::builder(&h.elevator, verifier())
        .forget_on_lifecycle(false)
        .handle_before_acknowledging()
        .handler_deadline(Duration::from_millis(500))
        .on_event(move |_| {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move { assert!(run > 0, "the first run fails") }
        })
        .build();
    let body = MockWebhook::app_installed("inst-inline").sign();
    let first = webhooks.deliver(body.as_bytes()).await;
    assert_eq!(first.status(), 503);
    let retry = webhooks.deliver(body.as_bytes()).await;
    assert_eq!(retry.status(), 200);
    let bytes = http_body_util::BodyExt::collect(retry.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&bytes[..], br#"{"received":"handled"}"#);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "ran before each answer");
    let again = webhooks.deliver(body.as_bytes()).await;
    assert_eq!(again.status(), 200, "a duplicate of what was handled");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}
