//! Run with: `cargo run --example otel` (with an OTLP collector on
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, default `http://localhost:4318`).
//!
//! wix-elevate's spans exported to OpenTelemetry: each request's span
//! continues the caller's W3C trace (`traceparent`), and every Wix call is a
//! child span after OpenTelemetry's HTTP client conventions:
//!
//! ```text
//! GET /api/instance                       (this app, server span)
//! ├── wix_elevate.authorize               (the layer, on a cache miss)
//! │   ├── POST /oauth2/token-info         (Token Info)
//! │   └── POST /oauth2/token              (Create Access Token)
//! └── GET /apps/v1/instance               (the handler's WixApi call)
//! ```
//!
//! The crate's spans are DEBUG: the OpenTelemetry layer takes
//! `wix_elevate=debug` while the log lines stay at `info`. It runs against
//! the mock Wix, like the quickstart, and stops on Ctrl-C or SIGTERM after
//! exporting what is left.
//!
//! The exporter is OTLP/HTTP through the async `reqwest` client, so the
//! batch processor runs on tokio (`span_processor_with_async_runtime`,
//! feature `rt-tokio` of `opentelemetry_sdk`): the SDK's default batch
//! processor exports from a thread of its own, where an async HTTP client
//! finds no reactor and the spans are lost. (The other working pairing is
//! the default processor with `opentelemetry-otlp`'s blocking client.)

use std::error::Error;

use axum::{
    Json, Router,
    extract::{Request, State},
    http::HeaderMap,
    middleware::{self, Next},
    response::Response,
    routing::get,
};
use opentelemetry::{global, propagation::Extractor, trace::TracerProvider as _};
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    runtime,
    trace::{SdkTracerProvider, span_processor_with_async_runtime::BatchSpanProcessor},
};
use serde_json::Value;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, prelude::*};
use wix_elevate::{
    SubjectType, WixApi, WixApiError,
    test_util::{CallerSpec, MockWix},
};

/// W3C trace context from the request's headers.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// The request's server span, a child of the caller's trace if it sent one.
/// `route` is the route's template, the span's low-cardinality name.
async fn traced(State(route): State<&'static str>, req: Request, next: Next) -> Response {
    let parent = global::get_text_map_propagator(|p| p.extract(&Headers(req.headers())));
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{} {route}", req.method()),
        otel.kind = "server",
        http.request.method = %req.method(),
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    );
    let _ = span.set_parent(parent);
    let response = next.run(req).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

async fn instance(api: WixApi) -> Result<Json<Value>, WixApiError> {
    Ok(Json(api.get("/apps/v1/instance").await?.json()?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // OTLP over HTTP; the endpoint comes from OTEL_EXPORTER_OTLP_ENDPOINT.
    let exporter = SpanExporter::builder().with_http().build()?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter, runtime::Tokio).build())
        .build();
    global::set_text_map_propagator(TraceContextPropagator::new());
    tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("wix-app"))
                .with_filter(EnvFilter::new("info,wix_elevate=debug")),
        )
        .with(tracing_subscriber::fmt::layer().with_filter(EnvFilter::new("info")))
        .init();

    let wix = MockWix::start().await?;
    let elevator = wix.elevator_builder().build()?;
    let app = Router::new().route(
        "/api/instance",
        get(instance)
            .route_layer(elevator.layer().allow("GET /apps/v1/instance"))
            // Outermost: the request span is the parent of the layer's.
            .route_layer(middleware::from_fn_with_state("/api/instance", traced)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let member = wix.mint(CallerSpec::new(SubjectType::Member));
    println!("curl -H 'authorization: {member}' \\");
    println!("  -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' \\");
    println!("  http://{addr}/api/instance");
    println!("listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped())
        .await?;
    // Export what is still queued. The processor's shutdown blocks until
    // its tokio task has exported, so it waits off the runtime's workers.
    tokio::task::spawn_blocking(move || provider.shutdown()).await??;
    println!("spans exported");
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = terminate.recv() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
