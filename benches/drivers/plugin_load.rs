//! Run with: `cargo run --release --example plugin_load`.
//!
//! The cost of a service-plugin call: first the verification alone
//! (`PluginVerifier::verify` of one signed Additional Fees call, RS256 and
//! the envelope, repeated), then the quickstart's Additional Fees endpoint
//! (its own routes, in process) served over loopback against the mock Wix,
//! its app token warm, driven by concurrent HTTP workers: the latency of
//! each call, p50 and p99, and the throughput. Workers and server share
//! this machine's cores. Settings: `VERIFY_ROUNDS` (default 20000),
//! `WORKERS` (default 16), `REQUESTS` per worker (default 500).

#[path = "../../examples/quickstart/routes.rs"]
mod routes;

use std::{
    env,
    error::Error,
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;
use wix_elevate::{
    plugin::PluginVerifier,
    test_util::{MockEndpoint, MockServicePlugin, MockWix, WEBHOOK_PUBLIC_KEY},
    webhook::WebhookKeys,
};

fn setting(name: &str, default: usize) -> usize {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (rounds, workers, requests) = (
        setting("VERIFY_ROUNDS", 20_000),
        setting("WORKERS", 16),
        setting("REQUESTS", 500),
    );
    let wix = MockWix::start().await?;
    let keys = WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY)?;
    let call = |instance: &str| {
        MockServicePlugin::additional_fees(
            instance,
            json!([{"id": "li-1", "quantity": 2}, {"id": "li-2", "quantity": 1}]),
        )
        .app_id(wix.app_id())
        .currency("EUR")
    };

    // 1. Verification alone.
    let verifier = PluginVerifier::new(wix.app_id(), keys.clone());
    let token = call("inst-bench").sign();
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(verifier.verify(std::hint::black_box(token.as_bytes()))?);
    }
    let per_call = started.elapsed() / u32::try_from(rounds.max(1))?;
    println!(
        "verification: {rounds} calls, {:.1} µs per call",
        per_call.as_secs_f64() * 1e6
    );

    // 2. The quickstart's endpoint under load, app token warm.
    let elevator = wix.elevator_builder().build()?;
    let metrics = PrometheusBuilder::new().build_recorder().handle();
    let app = routes::app(
        &elevator,
        metrics,
        None,
        &[],
        Some(keys),
        Some(wix_elevate::webhook::DEFAULT_HANDLER_DEADLINE),
        Arc::new(AtomicBool::new(false)),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!(
        "http://{}{}/v1/calculate-additional-fees",
        listener.local_addr()?,
        routes::ADDITIONAL_FEES_BASE
    );
    tokio::spawn(async move { axum::serve(listener, app.router).await });
    // Signed ahead of time: the workers measure the server, not the signing.
    let tokens: Arc<Vec<String>> = Arc::new((0..64).map(|_| call("inst-load").sign()).collect());
    let client = reqwest::Client::new();
    let warm = client.post(&url).body(tokens[0].clone()).send().await?;
    assert_eq!(warm.status(), 200, "the warm-up call is answered");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (client, url, tokens) = (client.clone(), url.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(requests);
            for i in 0..requests {
                let body = tokens[(worker + i) % tokens.len()].clone();
                let sent = Instant::now();
                let response = client.post(&url).body(body).send().await.expect("answered");
                assert_eq!(response.status(), 200);
                response.bytes().await.expect("a body");
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    println!(
        "endpoint: {} calls by {workers} workers in {:.2} s ({:.0}/s): p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "Wix calls: Create Access Token {}, Get App Instance {}",
        wix.calls(MockEndpoint::CreateAccessToken),
        wix.calls(MockEndpoint::GetAppInstance)
    );
    Ok(())
}
