//! The quickstart's routes on AWS Lambda, behind an API Gateway HTTP API
//! or a function URL.
//!
//! ```text
//! cargo lambda build --release --example lambda   # or any Lambda build
//! ```
//!
//! Environment: `WIX_APP_ID`, `WIX_APP_SECRET` (required); `WIX_API_BASE_URL`
//! (default Wix's); `REDIS_URL` turns fleet mode on, so every concurrent
//! instance of the function and every cold start shares identities and app
//! tokens; `WIX_WEBHOOK_PUBLIC_KEY` serves `POST /webhooks` and the Additional
//! Fees plugin;
//! `WIX_PREMIUM_PLANS` as in the quickstart.
//!
//! The `Elevator` is built once per cold start, before the first
//! invocation: each execution environment keeps its caches for as long as
//! Lambda keeps it warm. Lambda freezes the process between invocations,
//! and the crate is built for that: nothing runs on a timer (an app token
//! is renewed by the first request that finds it due, in a task of its
//! own), a renewal frozen mid-call is never waited on (a request that finds
//! the token expired fetches its own), caches judge age by the monotonic
//! clock, which keeps counting through a freeze, and the Redis connection
//! and pub/sub listener reconnect by themselves after one.

#[path = "../quickstart/routes.rs"]
mod routes;

use std::{
    env,
    sync::{Arc, atomic::AtomicBool},
};

use metrics_exporter_prometheus::PrometheusBuilder;
use wix_elevate::{Elevator, webhook::WebhookKeys};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .without_time() // CloudWatch stamps each line
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let required = |name: &str| env::var(name).map_err(|_| format!("{name} is required"));
    let mut builder = Elevator::builder(required("WIX_APP_ID")?, required("WIX_APP_SECRET")?);
    if let Ok(url) = env::var("WIX_API_BASE_URL") {
        builder = builder.base_url(url);
    }
    let fleet = env::var("REDIS_URL").ok();
    if let Some(url) = &fleet {
        builder = builder.redis(url.clone());
    }
    let elevator = builder.build()?;
    let signing_keys = match env::var("WIX_WEBHOOK_PUBLIC_KEY") {
        Ok(key) => Some(WebhookKeys::new().key(&key)?),
        Err(_) => None,
    };
    let premium_plans: Vec<String> = env::var("WIX_PREMIUM_PLANS")
        .unwrap_or_else(|_| "premium".to_owned())
        .split(',')
        .map(str::to_owned)
        .collect();
    // `/metrics` renders this process's counters (not installed globally:
    // scrape CloudWatch or push them instead in production).
    let metrics = PrometheusBuilder::new().build_recorder().handle();
    // Lambda handles a webhook before answering (without Redis) or leaves
    // it in the fleet's queue: nothing of this process's to drain.
    let app = routes::app(
        &elevator,
        metrics,
        None,
        &premium_plans,
        signing_keys,
        // Without Redis, a webhook's handler runs before the answer: Lambda
        // may freeze the environment right after it, queued work included.
        fleet
            .is_some()
            .then_some(wix_elevate::webhook::DEFAULT_HANDLER_DEADLINE),
        Arc::new(AtomicBool::new(false)),
    )?;
    lambda_http::run(app.router).await
}
