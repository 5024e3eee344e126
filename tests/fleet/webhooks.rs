//! Lifecycle work that loses nothing in fleet mode: webhooks go through the
//! fleet's stream, so an event whose replica dies mid-handler is taken
//! over by another, a failed run is retried and, after its last attempt,
//! parked where an operator can replay it; an entry nobody with the app
//! secret wrote is never handled.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use wix_elevate::{
    Elevator,
    test_util::{MockWebhook, MockWix, WEBHOOK_PUBLIC_KEY},
    webhook::{WebhookEndpoint, WebhookEndpointBuilder, WebhookKeys, WebhookVerifier},
};

use crate::{REDIS_TIMEOUT, replica_with, turn};

fn endpoint(elevator: &Elevator) -> WebhookEndpointBuilder {
    WebhookEndpoint::builder(
        elevator,
        WebhookVerifier::new(WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap()),
    )
}

/// Replica A takes a delivery (Wix has its 200) and dies while its handler
/// runs: its whole runtime is gone, so nothing of it settles or retries.
/// Replica B takes the event over once it has been idle for the handler's
/// deadline and a second, and runs it (attempt 2). Before, the event was in
/// A's memory only, lost with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_replica_dies_mid_handler_is_taken_over_by_another() {
    let Some(turn) = turn().await else { return };
    let wix = crate::support::mock_wix().await;
    let url = turn.redis.url();
    let deadline = Duration::from_secs(1);

    // Replica A, on a runtime of its own, to kill it whole.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let body = MockWebhook::app_installed("inst-dies").sign();
    let (wix_a, url_a) = (wix.elevator_builder(), url.clone());
    // Driven from a thread of its own (not one of this test's runtime).
    let (replica_a, status) = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let status = runtime.block_on(async move {
            let elevator = wix_a
                .redis(wix_elevate::RedisConfig::new(url_a).timeout(REDIS_TIMEOUT))
                .build()
                .unwrap();
            let started = Mutex::new(Some(started_tx));
            let webhooks = endpoint(&elevator)
                .handler_deadline(deadline)
                .on_event(move |event| {
                    if let Some(tx) = started.lock().unwrap().take() {
                        let _ = tx.send(event.attempt());
                    }
                    // Never finishes: the replica dies first.
                    std::future::pending::<()>()
                })
                .build();
            let status = webhooks.deliver(body.as_bytes()).await.status();
            // Kept alive on A's runtime until it dies.
            tokio::spawn(async move {
                let _keep = (webhooks, elevator);
                std::future::pending::<()>().await
            });
            status
        });
        (runtime, status)
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "acknowledged by A");
    let first = tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
        .await
        .unwrap();
    assert_eq!(first, 1);
    // A dies mid-handler.
    let died = Instant::now();
    replica_a.shutdown_background();

    // Replica B, alive all along, takes it over.
    let (elevator_b, _) = replica_with(&wix, Some(&url), REDIS_TIMEOUT);
    let runs: Arc<Mutex<Vec<(u32, Duration)>>> = Arc::default();
    let seen = runs.clone();
    let webhooks_b = endpoint(&elevator_b)
        .handler_deadline(deadline)
        .on_event(move |event| {
            seen.lock().unwrap().push((event.attempt(), died.elapsed()));
            async {}
        })
        .build();
    webhooks_b.handled().await;
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let (attempt, took) = runs[0];
    println!(
        "an event whose replica died mid-handler: run again by another replica {took:?} after the death (handler deadline {deadline:?}), attempt {attempt}"
    );
    assert_eq!(attempt, 2);
    assert!(took < deadline + Duration::from_secs(3), "{took:?}");
}

/// A handler that fails (here, panics) is run again after a growing delay,
/// with its attempt number; after its last attempt the event is parked as a
/// dead letter, which an operator lists and replays once the cause is
/// fixed. An entry written into the stream by anyone without the app
/// secret is parked too, never handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_is_retried_then_parked_and_replayed() {
    let Some(turn) = turn().await else { return };
    let (wix, webhooks, attempts) = retried_parked_replayed(&turn.redis.url()).await;

    // Someone with write access to Redis adds an entry of their own.
    let mut c = turn
        .redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stream = format!("{{wix-elevate:{}}}:queue:webhook", wix.app_id());
    let _: String = ::redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("v")
        .arg(br#"{"data":"{\"eventType\":\"AppRemoved\"}","iat":null,"exp":null}"#)
        .query_async(&mut c)
        .await
        .unwrap();
    webhooks.handled().await;
    assert_eq!(attempts.lock().unwrap().len(), 4, "never handled");
    let dead = webhooks.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].event_type(), None, "unreadable");
}

/// The same on a Redis Cluster: the stream, its consumer group, the
/// claim and move scripts and the dead letters all live in the app's slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_a_failing_handler_is_retried_then_parked_and_replayed() {
    let Some(_turn) = turn().await else { return };
    let Some(cluster) = crate::support::redis_cluster::RedisCluster::start() else {
        return;
    };
    retried_parked_replayed(&cluster.nodes[1].url()).await;
}

/// An endpoint on Redis at `url` whose handler fails until fixed: it runs
/// as attempts 1, 2, 3, is parked, then replayed once fixed and run once
/// more (attempt 1 of a fresh set). The mock, the endpoint and the
/// attempts seen.
async fn retried_parked_replayed(url: &str) -> (MockWix, WebhookEndpoint, Arc<Mutex<Vec<u32>>>) {
    let wix = crate::support::mock_wix().await;
    let (elevator, _) = replica_with(&wix, Some(url), REDIS_TIMEOUT);
    let attempts: Arc<Mutex<Vec<u32>>> = Arc::default();
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (seen, works) = (attempts.clone(), fixed.clone());
    let webhooks = endpoint(&elevator)
        .handler_deadline(Duration::from_millis(300))
        .max_attempts(3)
        .retry_backoff(Duration::from_millis(100))
        .on_event(move |event| {
            seen.lock().unwrap().push(event.attempt());
            assert!(
                works.load(std::sync::atomic::Ordering::SeqCst),
                "the handler's bug"
            );
            async {}
        })
        .build();
    let body = MockWebhook::app_removed("inst-bug").sign();
    assert_eq!(webhooks.deliver(body.as_bytes()).await.status(), 200);
    webhooks.handled().await;
    assert_eq!(*attempts.lock().unwrap(), [1, 2, 3]);
    let dead = webhooks.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].event_type(), Some("AppRemoved"));
    assert_eq!(dead[0].instance_id(), Some("inst-bug"));

    // Fixed: replayed, handled once more, and the dead letters are empty.
    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(webhooks.replay_dead_letters(10).await, Some(1));
    webhooks.handled().await;
    assert_eq!(*attempts.lock().unwrap(), [1, 2, 3, 1]);
    assert!(webhooks.dead_letters(10).await.unwrap().is_empty());
    (wix, webhooks, attempts)
}
