//! Run with: `cargo run --release --example loopback_server`
//!
//! The server `benches/loopback.sh` drives with wrk: the same handler on
//! `GET /plain` (no layer) and `GET /elevated` (behind the layer, default
//! policy), against the in-process mock Wix. It mints one member token with
//! a realistic 1 KiB length, writes it to the file named by `TOKEN_FILE`
//! (default `target/loopback-token`), then prints `listening on http://ADDR`.
//! `BIND_ADDR` defaults to `127.0.0.1:0`.

use std::{env, error::Error};

use axum::{Router, routing::get};
use wix_elevate::{
    Elevator, SubjectType,
    test_util::{CallerSpec, MockWix},
};

async fn ok() -> &'static str {
    "ok"
}

/// The two routes under comparison.
fn app(elevator: &Elevator) -> Router {
    Router::new()
        .route("/plain", get(ok))
        .route("/elevated", get(ok).route_layer(elevator.layer()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let wix = MockWix::start().await?;
    let elevator = Elevator::builder(wix.app_id(), wix.app_secret())
        .base_url(wix.base_url())
        .build()?;
    let token = wix.mint(
        CallerSpec::new(SubjectType::Member).token_len(
            std::env::var("TOKEN_LEN")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1024),
        ),
    );
    let token_file = env::var("TOKEN_FILE").unwrap_or_else(|_| "target/loopback-token".into());
    std::fs::write(&token_file, &token)?;
    let bind = env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(&elevator)).await?;
    Ok(())
}
