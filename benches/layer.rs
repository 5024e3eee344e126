//! Run with: `cargo bench`
//!
//! Side by side, in one run, in-process (no HTTP in front of the router):
//!
//! * `warm_path`: the same route without the layer and with it, both caches
//!   warm, a 1 KiB caller token; and the keyed POLYVAL-AES digest of that
//!   token alone (the identity cache's key, the part of the layer's cost
//!   that keying the cache by a cryptographic digest imposes), with SHA-256
//!   of the same token for scale.
//! * `vs_naive`: with 20 ms of injected Wix latency, the naive pattern of
//!   Wix's samples (Token Info + Create Access Token on every request)
//!   against the layer, warm and with a new caller token each request.
//! * `burst_1000`: 1,000 concurrent first requests, from one new token and
//!   from 1,000 new callers of one new instance. Each burst asserts its
//!   upstream call count.
//!
//! Ratios of the medians are printed at the end. Throughput over loopback
//! HTTP is measured by `benches/loopback.sh` (wrk).

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use aes::{
    Aes128,
    cipher::{BlockCipherEncrypt, KeyInit},
};
use axum::{Router, body::Body, extract::State, routing::get};
use criterion::Criterion;
use http::{Request, StatusCode, header::AUTHORIZATION};
use polyval::{Polyval, universal_hash::UniversalHash};
use serde_json::{Value, json};
use tower::ServiceExt;
use wix_elevate::{
    Elevator, SubjectType,
    test_util::{CallerSpec, MockEndpoint, MockWix},
};

const TOKEN_LEN: usize = 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn setup() -> (MockWix, Elevator) {
    let wix = MockWix::start().await.expect("mock");
    let elevator = wix
        .elevator_builder()
        // The bursts below bring thousands of new callers, on purpose.
        .token_info_budget_for_new_tokens(std::num::NonZeroU32::MAX, std::num::NonZeroU32::MAX)
        .build()
        .expect("elevator");
    (wix, elevator)
}

fn request(token: &str) -> Request<Body> {
    Request::get("/")
        .header(AUTHORIZATION, token)
        .body(Body::empty())
        .expect("request")
}

async fn handler() -> &'static str {
    "ok"
}

/// A layer that elevates every request (its route declares a Wix call).
fn elevating(elevator: &Elevator) -> wix_elevate::ElevateLayer {
    elevator.layer().allow("GET /apps/v1/instance")
}

async fn call(router: &Router, token: &str) {
    let res = router
        .clone()
        .oneshot(request(token))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    black_box(res);
}

fn warm_path(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let (wix, elevator) = rt.block_on(setup());
    let token = wix.mint(CallerSpec::new(SubjectType::Member).token_len(TOKEN_LEN));
    // `with_state` finalizes the routes as `axum::serve` does, so route
    // layers are applied once, not on every call.
    let without: Router = Router::new().route("/", get(handler)).with_state(());
    // A route that declares a Wix operation: the layer verifies the caller
    // and attaches its app token on every request (the full warm path).
    let with: Router = Router::new()
        .route("/", get(handler).route_layer(elevating(&elevator)))
        .with_state(());
    // A route that declares none: no app token is looked up.
    let identity_only: Router = Router::new()
        .route("/", get(handler).route_layer(elevator.layer()))
        .with_state(());
    rt.block_on(call(&with, &token));
    rt.block_on(call(&identity_only, &token));

    let mut group = c.benchmark_group("warm_path");
    group.bench_function("without_layer", |b| {
        b.to_async(rt).iter(|| call(&without, &token))
    });
    group.bench_function("with_layer", |b| {
        b.to_async(rt).iter(|| call(&with, &token))
    });
    group.bench_function("with_layer_identity_only", |b| {
        b.to_async(rt).iter(|| call(&identity_only, &token))
    });
    // The floor: the identity cache is keyed by a keyed digest of the
    // token, AES-128(POLYVAL(token, length)), which the layer computes once
    // per request (the same construction as `src/token.rs`, random keys).
    // SHA-256, the obvious unkeyed choice, runs beside it for scale.
    let polyval = Polyval::new(&[7; 16].into());
    let cipher = Aes128::new(&[9; 16].into());
    group.bench_function("keyed_digest_of_token_alone", |b| {
        b.iter(|| {
            let mut hash = polyval.clone();
            hash.update_padded(black_box(token.as_bytes()));
            let mut length = polyval::Block::default();
            length[..8].copy_from_slice(&(token.len() as u64).to_le_bytes());
            hash.update(&[length]);
            let mut block = hash.finalize();
            cipher.encrypt_block(&mut block);
            block
        })
    });
    group.bench_function("sha256_of_token_alone", |b| {
        b.iter(|| <sha2::Sha256 as sha2::Digest>::digest(black_box(token.as_bytes())))
    });
    group.finish();
    assert_eq!(
        wix.calls(MockEndpoint::TokenInfo),
        1,
        "the warm path never calls Wix"
    );
}

#[derive(Clone)]
struct Naive {
    http: reqwest::Client,
    base: Arc<str>,
    id: Arc<str>,
    secret: Arc<str>,
}

/// Wix's documented per-request pattern, as the SDK's `elevated()` does it.
async fn naive_handler(
    State(Naive {
        http,
        base,
        id,
        secret,
    }): State<Naive>,
    req: Request<Body>,
) -> StatusCode {
    let Some(token) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return StatusCode::UNAUTHORIZED;
    };
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let info = post("/oauth2/token-info", json!({ "token": token }))
        .await
        .expect("token-info");
    let info: Value = serde_json::from_slice(&info.bytes().await.expect("body")).expect("json");
    let grant = post(
        "/oauth2/token",
        json!({ "grant_type": "client_credentials", "client_id": &*id, "client_secret": &*secret, "instance_id": info["instanceId"] }),
    )
    .await
    .expect("token");
    let grant: Value = serde_json::from_slice(&grant.bytes().await.expect("body")).expect("json");
    black_box(grant["access_token"].as_str().expect("access token"));
    StatusCode::OK
}

fn vs_naive(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let (wix, elevator) = rt.block_on(setup());
    wix.set_latency(Duration::from_millis(20));
    let token = wix.mint(CallerSpec::new(SubjectType::Member).token_len(TOKEN_LEN));
    let state = Naive {
        http: reqwest::Client::new(),
        base: Arc::from(wix.base_url()),
        id: Arc::from(wix.app_id()),
        secret: Arc::from(wix.app_secret()),
    };
    let naive = Router::new()
        .route("/", get(naive_handler))
        .with_state(state);
    let with: Router = Router::new()
        .route("/", get(handler).route_layer(elevating(&elevator)))
        .with_state(());
    rt.block_on(call(&with, &token));

    let mut group = c.benchmark_group("vs_naive");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    group.bench_function("naive_two_calls_per_request", |b| {
        b.to_async(rt).iter(|| call(&naive, &token))
    });
    group.bench_function("layer_warm", |b| {
        b.to_async(rt).iter(|| call(&with, &token))
    });
    group.bench_function("layer_new_caller_each_request", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let tokens: Vec<String> = (0..iters)
                .map(|_| wix.mint(CallerSpec::new(SubjectType::Member).token_len(TOKEN_LEN)))
                .collect();
            let with = with.clone();
            async move {
                let start = Instant::now();
                for token in &tokens {
                    call(&with, token).await;
                }
                start.elapsed()
            }
        })
    });
    group.finish();
}

async fn burst(router: &Router, tokens: &[String]) {
    let tasks: Vec<_> = tokens
        .iter()
        .map(|token| {
            let router = router.clone();
            let req = request(token);
            tokio::spawn(async move { router.oneshot(req).await.expect("infallible").status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task"), StatusCode::OK);
    }
}

fn bursts(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let (wix, elevator) = rt.block_on(setup());
    let with: Router = Router::new()
        .route("/", get(handler).route_layer(elevating(&elevator)))
        .with_state(());
    let mut group = c.benchmark_group("burst_1000");
    group.sample_size(10);
    let mut instance = 0u64;
    let mut new_instance = || {
        instance += 1;
        format!("burst-{instance}")
    };
    group.bench_function("one_new_token", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let runs: Vec<Vec<String>> = (0..iters)
                .map(|_| {
                    vec![
                        wix.mint(
                            CallerSpec::new(SubjectType::Member)
                                .instance(new_instance())
                                .token_len(TOKEN_LEN)
                        );
                        1000
                    ]
                })
                .collect();
            let (with, wix) = (with.clone(), &wix);
            async move {
                let mut total = Duration::ZERO;
                for tokens in runs {
                    let (info, grants) = (
                        wix.calls(MockEndpoint::TokenInfo),
                        wix.calls(MockEndpoint::CreateAccessToken),
                    );
                    let start = Instant::now();
                    burst(&with, &tokens).await;
                    total += start.elapsed();
                    assert_eq!(
                        wix.calls(MockEndpoint::TokenInfo) - info,
                        1,
                        "one Token Info per burst"
                    );
                    assert_eq!(
                        wix.calls(MockEndpoint::CreateAccessToken) - grants,
                        1,
                        "one grant per burst"
                    );
                }
                total
            }
        })
    });
    group.bench_function("distinct_callers_one_instance", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let runs: Vec<Vec<String>> = (0..iters)
                .map(|_| {
                    let instance = new_instance();
                    (0..1000)
                        .map(|_| {
                            wix.mint(
                                CallerSpec::new(SubjectType::Visitor)
                                    .instance(instance.clone())
                                    .token_len(TOKEN_LEN),
                            )
                        })
                        .collect()
                })
                .collect();
            let (with, wix) = (with.clone(), &wix);
            async move {
                let mut total = Duration::ZERO;
                for tokens in runs {
                    let grants = wix.calls(MockEndpoint::CreateAccessToken);
                    let start = Instant::now();
                    burst(&with, &tokens).await;
                    total += start.elapsed();
                    assert_eq!(
                        wix.calls(MockEndpoint::CreateAccessToken) - grants,
                        1,
                        "one grant per burst"
                    );
                }
                total
            }
        })
    });
    group.finish();
}

/// The median of one benchmark, from criterion's saved estimates.
fn median(group: &str, id: &str) -> Option<f64> {
    let home = std::env::var("CRITERION_HOME").unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        format!("{target}/criterion")
    });
    let text = std::fs::read_to_string(format!("{home}/{group}/{id}/new/estimates.json")).ok()?;
    let estimates: Value = serde_json::from_str(&text).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

fn print_ratios() {
    println!("\n== ratios of medians (this run) ==");
    let pairs = [
        (
            "warm_path",
            "with_layer",
            "warm_path",
            "without_layer",
            "layer (warm) / no layer",
        ),
        (
            "vs_naive",
            "naive_two_calls_per_request",
            "vs_naive",
            "layer_warm",
            "naive / layer (warm)",
        ),
        (
            "vs_naive",
            "naive_two_calls_per_request",
            "vs_naive",
            "layer_new_caller_each_request",
            "naive / layer (new caller each request)",
        ),
    ];
    for (g1, a, g2, b, label) in pairs {
        match (median(g1, a), median(g2, b)) {
            (Some(x), Some(y)) => println!("{label:<42} {:>10.2}x", x / y),
            _ => println!("{label:<42} (not measured in this run)"),
        }
    }
    if let (Some(with), Some(without)) = (
        median("warm_path", "with_layer"),
        median("warm_path", "without_layer"),
    ) {
        println!(
            "{:<42} {:>10.0} ns",
            "layer overhead, warm (median difference)",
            with - without
        );
        if let Some(hash) = median("warm_path", "keyed_digest_of_token_alone") {
            println!(
                "{:<42} {:>10.0} ns",
                "  of which the 1 KiB token's keyed digest", hash
            );
        }
        if let Some(hash) = median("warm_path", "sha256_of_token_alone") {
            println!(
                "{:<42} {:>10.0} ns",
                "  (SHA-256 of the same token, for scale)", hash
            );
        }
    }
}

fn main() {
    let rt = runtime();
    let mut c = Criterion::default().configure_from_args();
    warm_path(&mut c, &rt);
    vs_naive(&mut c, &rt);
    bursts(&mut c, &rt);
    c.final_summary();
    print_ratios();
}
