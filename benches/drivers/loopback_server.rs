//! Run with: `cargo run --release --example loopback_server`
//!
//! The server `benches/loopback.sh` drives with wrk: the same handler on
//! `GET /plain` (no layer), `GET /floor` (a route layer that only clones two
//! `Arc`s into the request extensions, the least any such layer costs) and
//! `GET /elevated` (behind the layer, default policy), against the
//! in-process mock Wix. It mints one member token with a realistic 1 KiB
//! length (`TOKEN_LEN` to change it), writes it to the file named by `TOKEN_FILE`
//! (default `target/loopback-token`), then prints `listening on http://ADDR`.
//! `BIND_ADDR` defaults to `127.0.0.1:0`.

use std::{env, error::Error, time::Duration};

use axum::{Router, routing::get};
use wix_elevate::{
    Caller, ElevatedToken, Elevator, SubjectType,
    test_util::{CallerSpec, MockWix},
};

async fn ok() -> &'static str {
    "ok"
}

/// The three routes under comparison.
fn app(elevator: &Elevator) -> Result<Router, wix_elevate::ConfigError> {
    // The floor any route layer pays: axum's per-request plumbing for a
    // route layer plus two `Arc`s cloned into the request extensions, as
    // the elevation layer does for `Caller` and `ElevatedToken`.
    let caller = Caller::new(SubjectType::Member, "floor", "floor");
    let token = ElevatedToken::new("floor", "floor", Duration::from_secs(3600));
    let floor = tower::util::MapRequestLayer::new(move |mut req: axum::extract::Request| {
        req.extensions_mut().insert(caller.clone());
        req.extensions_mut().insert(token.clone());
        req
    });
    Ok(Router::new()
        .route("/plain", get(ok))
        .route("/floor", get(ok).route_layer(floor))
        // Declares a Wix call, so the layer attaches the app token too.
        .route(
            "/elevated",
            get(ok).route_layer(elevator.layer().allow("GET /apps/v1/instance")),
        ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let wix = MockWix::start().await?;
    let elevator = wix.elevator_builder().build()?;
    let token_len = env::var("TOKEN_LEN").ok().and_then(|v| v.parse().ok());
    let token = wix.mint(CallerSpec::new(SubjectType::Member).token_len(token_len.unwrap_or(1024)));
    let token_file = env::var("TOKEN_FILE").unwrap_or_else(|_| "target/loopback-token".into());
    std::fs::write(&token_file, &token)?;
    let bind = env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(&elevator)?).await?;
    Ok(())
}
