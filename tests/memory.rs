//! Bytes held per cached identity and per cached app token, and memory
//! under a flood of distinct tokens, measured by a counting allocator on
//! this thread (the mock Wix runs on its own runtime thread, so only the
//! layer's work is counted), and allocations on the warm path. Run with
//! `--nocapture` to see the figures.

#[path = "support/mod.rs"]
mod support;

use std::{sync::OnceLock, time::Duration};

use axum::{Router, body::Body, routing::get};
use http::Request;
use tower::{ServiceExt, util::MapRequestLayer};
use wix_elevate::{
    Caller, ElevatedToken, SubjectType,
    test_util::{CallerSpec, MockWix},
};

const N: usize = 4_000;
/// A realistic Wix token length.
const TOKEN_LEN: usize = 1024;

/// The mock, served by its own runtime on another thread.
fn wix() -> &'static MockWix {
    static WIX: OnceLock<(tokio::runtime::Runtime, MockWix)> = OnceLock::new();
    &WIX.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let wix = rt.block_on(support::mock_wix());
        (rt, wix)
    })
    .1
}

fn tokens(count: usize, instance: impl Fn(usize) -> String) -> Vec<String> {
    (0..count)
        .map(|i| {
            wix().mint(
                CallerSpec::new(SubjectType::Visitor)
                    .instance(instance(i))
                    .token_len(TOKEN_LEN),
            )
        })
        .collect()
}

/// Bytes still held on this thread after an elevator with room for
/// `capacity` identities served one request per token.
fn held_bytes(capacity: usize, tokens: &[String]) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut keep = None;
    let info = allocation_counter::measure(|| {
        rt.block_on(async {
            let elevator = wix()
                .elevator_builder()
                .max_cached_identities(capacity)
                .max_cached_app_tokens(capacity)
                // Thousands of new tokens at once, on purpose.
                .token_info_budget_for_new_tokens(
                    std::num::NonZeroU32::MAX,
                    std::num::NonZeroU32::MAX,
                )
                .build()
                .unwrap();
            // The handler takes the app token, so each instance gets one.
            let app = Router::new().route(
                "/",
                get(|_token: ElevatedToken| async { "ok" })
                    .route_layer(elevator.layer().expose_app_token()),
            );
            for token in tokens {
                let req = Request::get("/")
                    .header("authorization", token)
                    .body(Body::empty())
                    .unwrap();
                assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 200);
            }
            keep = Some((elevator, app));
        });
    });
    drop(keep);
    info.bytes_current
}

#[test]
fn a_cached_identity_holds_under_512_bytes_and_an_app_token_is_counted() {
    // The two measurements run side by side, each on a thread (and a
    // runtime) of its own: the counting allocator counts per thread.
    let (shared, own) = std::thread::scope(|scope| {
        let shared = scope.spawn(|| held_bytes(N, &tokens(N, |_| "memory-shared".into())));
        let own = scope.spawn(|| held_bytes(N, &tokens(N, |i| format!("memory-{i}"))));
        (shared.join().unwrap(), own.join().unwrap())
    });
    let per_identity = shared as f64 / N as f64;
    let per_pair = own as f64 / N as f64;
    let per_app_token = per_pair - per_identity;

    println!("bytes held per cached identity: {per_identity:.0}");
    println!("bytes held per cached app token: {per_app_token:.0}");
    assert!(per_identity > 0.0, "the measurement saw the cache");
    assert!(
        per_identity < 512.0,
        "a cached identity holds {per_identity:.0} bytes"
    );
    assert!(
        per_app_token < 1024.0,
        "a cached app token holds {per_app_token:.0} bytes"
    );
}

#[test]
fn a_flood_of_distinct_tokens_stays_within_the_bounds() {
    // Past capacity, memory must stop growing: a flood twice as large holds
    // the same bytes.
    let capacity = 500;
    let flood = tokens(4 * capacity, |_| "flood".into());
    let double_flood = tokens(8 * capacity, |_| "flood".into());
    let (held, held_double) = std::thread::scope(|scope| {
        let held = scope.spawn(|| held_bytes(capacity, &flood));
        let held_double = scope.spawn(|| held_bytes(capacity, &double_flood));
        (held.join().unwrap(), held_double.join().unwrap())
    });
    println!(
        "bytes held with capacity {capacity}: after {} tokens {held}, after {} tokens {held_double}",
        flood.len(),
        double_flood.len()
    );
    assert!(
        (held_double as f64) < 1.1 * held as f64,
        "memory grew with the flood: {held} -> {held_double}"
    );
    assert!(
        (held as f64) < 2.0 * 1024.0 * capacity as f64,
        "more than 2 KiB per cache slot: {held}"
    );
}

#[test]
fn a_warm_request_allocates_no_more_than_any_layer_that_attaches_two_extensions() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let elevator = wix().elevator_builder().build().unwrap();
    let token = tokens(1, |_| "memory-warm".into()).remove(0);
    // The least any route layer does to hand a handler a caller and a token.
    let (caller, app_token) = (
        Caller::new(SubjectType::Member, "floor", "floor"),
        ElevatedToken::new("floor", "floor", Duration::from_secs(3600)),
    );
    let floor = MapRequestLayer::new(move |mut req: Request<Body>| {
        req.extensions_mut().insert(caller.clone());
        req.extensions_mut().insert(app_token.clone());
        req
    });
    let handler = || async { "ok" };
    let elevated: Router = Router::new()
        .route("/", get(handler).route_layer(elevator.layer()))
        .with_state(());
    let floor: Router = Router::new()
        .route("/", get(handler).route_layer(floor))
        .with_state(());
    let allocations = |router: &Router| {
        let req = Request::get("/")
            .header("authorization", &token)
            .body(Body::empty())
            .unwrap();
        let router = router.clone();
        allocation_counter::measure(|| {
            let res = rt.block_on(router.oneshot(req)).unwrap();
            assert_eq!(res.status(), 200);
        })
        .count_total
    };
    allocations(&elevated); // warm both caches
    let (elevated, floor) = (allocations(&elevated), allocations(&floor));
    println!("allocations per warm request: elevated {elevated}, floor {floor}");
    assert!(
        elevated <= floor,
        "the warm path allocates beyond its two extensions: {elevated} vs {floor}"
    );
}

/// The quickstart's server module: its metrics upkeep is under test here.
#[path = "../examples/quickstart/serve.rs"]
#[allow(dead_code)]
mod quickstart_serve;

/// Bytes still held after each of five rounds of 20,000 latency samples
/// recorded into a Prometheus recorder nobody scrapes, with the clock
/// moved one upkeep period per round, with or without the quickstart's
/// upkeep task.
fn held_per_round(upkeep: bool) -> Vec<i64> {
    use metrics_exporter_prometheus::PrometheusBuilder;
    let recorder = PrometheusBuilder::new().build_recorder();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    if upkeep {
        let handle = recorder.handle();
        rt.block_on(async {
            quickstart_serve::spawn_metrics_upkeep(handle, quickstart_serve::METRICS_UPKEEP);
        });
    }
    metrics::with_local_recorder(&recorder, || {
        let latency = metrics::histogram!("wix_elevate_wix_call_duration_seconds");
        (0..5)
            .map(|_| {
                allocation_counter::measure(|| {
                    for _ in 0..20_000 {
                        latency.record(0.012);
                    }
                    rt.block_on(async {
                        tokio::time::advance(quickstart_serve::METRICS_UPKEEP).await;
                        tokio::task::yield_now().await;
                    });
                })
                .bytes_current
            })
            .collect()
    })
}

#[test]
fn the_quickstarts_metrics_upkeep_keeps_an_idle_exporter_flat() {
    let without = held_per_round(false);
    let with = held_per_round(true);
    println!("bytes held per round of 20,000 samples: without upkeep {without:?}, with {with:?}");
    // Without upkeep every round's samples stay buffered.
    assert!(without[1..].iter().all(|b| *b > 100_000), "{without:?}");
    // With it, after the first round nothing more is held.
    assert!(with[1..].iter().all(|b| *b < 4_096), "{with:?}");
}
