//! Instruction counts of one warm request (callgrind, through gungraun):
//! the same axum route without the layer, with the layer on a route that
//! declares a Wix call (identity and app token looked up, three extensions
//! attached), and with the layer on a route that declares none (identity
//! only). Counts are deterministic for a binary, unlike times on shared
//! vCPUs, so `benches/instruction_gate.sh` fails CI when the layer adds
//! more than its budget to the bare route.
//!
//! Run with: `cargo bench --bench instructions` (needs valgrind and
//! `cargo install gungraun-runner --version 0.20.0`).

// gungraun's macros generate undocumented public items.
#![allow(missing_docs)]

use std::hint::black_box;

use axum::{Router, body::Body, routing::get};
use gungraun::{library_benchmark, library_benchmark_group, main};
use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use tower::ServiceExt;
use wix_elevate::{
    SubjectType,
    test_util::{CallerSpec, MockWix},
};

/// Realistic Wix caller tokens are about 1 KiB.
const TOKEN_LEN: usize = 1024;

/// A warmed router and the request to send it; the runtime and mock live
/// as long as it does.
struct Warm {
    rt: tokio::runtime::Runtime,
    _wix: Option<MockWix>,
    router: Router,
    token: String,
}

#[derive(Clone, Copy)]
enum Route {
    Bare,
    Elevating,
    IdentityOnly,
}

fn warm(route: Route) -> Warm {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let wix = rt.block_on(MockWix::start()).expect("mock Wix");
    let elevator = wix.elevator_builder().build().expect("elevator");
    let token = wix.mint(CallerSpec::new(SubjectType::Member).token_len(TOKEN_LEN));
    let handler = get(|| async { "ok" });
    let route = match route {
        Route::Bare => handler,
        Route::Elevating => handler.route_layer(elevator.layer().allow("GET /apps/v1/instance")),
        Route::IdentityOnly => handler.route_layer(elevator.layer()),
    };
    // Finalized as `axum::serve` does.
    let router = Router::new().route("/", route).with_state(());
    let warm = Warm {
        rt,
        _wix: Some(wix),
        router,
        token,
    };
    // Twice: fill both caches, then settle every lazily built structure.
    for _ in 0..2 {
        assert_eq!(send(&warm).status(), StatusCode::OK);
    }
    warm
}

fn send(warm: &Warm) -> Response<Body> {
    let req = Request::get("/")
        .header(AUTHORIZATION, &warm.token)
        .body(Body::empty())
        .expect("request");
    warm.rt
        .block_on(warm.router.clone().oneshot(req))
        .expect("infallible")
}

// One warm request; everything built before (setup) and dropped after
// (the returned fixture) is not counted.
#[library_benchmark]
#[bench::without_layer(args = (Route::Bare), setup = warm)]
#[bench::with_layer(args = (Route::Elevating), setup = warm)]
#[bench::with_layer_identity_only(args = (Route::IdentityOnly), setup = warm)]
fn warm_request(warm: Warm) -> (Warm, Response<Body>) {
    let response = black_box(send(&warm));
    (warm, response)
}

library_benchmark_group!(name = warm_path; benchmarks = warm_request);

main!(library_benchmark_groups = warm_path);
