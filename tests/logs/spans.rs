//! Issue 20: a span for every Wix call, in the request's span tree, with
//! OpenTelemetry's HTTP client fields and no secret among them.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex},
};

use axum::{Json, Router, body::Body, routing::get};
use http::Request;
use serde_json::Value;
use tower::ServiceExt;
use tracing::{
    Instrument, Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{Layer, layer::Context, prelude::*, registry::LookupSpan};
use wix_elevate::{
    SubjectType, WixApi, WixApiError,
    test_util::{CallerSpec, Fault, MockEndpoint, MockWix},
};

/// A span as recorded: its name, its parent's name, its fields.
#[derive(Clone, Debug)]
struct Recorded {
    name: &'static str,
    parent: Option<&'static str>,
    fields: BTreeMap<String, String>,
}

impl Recorded {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

/// A `tracing` layer that keeps every span, in the order they open.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Recorded>>>);

struct Index(usize);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("a new span is in the registry");
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        spans.push(Recorded {
            name: attrs.metadata().name(),
            parent: span.parent().map(|parent| parent.name()),
            fields,
        });
        span.extensions_mut().insert(Index(spans.len() - 1));
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("a recorded span is in the registry");
        let extensions = span.extensions();
        let Some(Index(index)) = extensions.get::<Index>() else {
            return;
        };
        values.record(&mut Fields(&mut self.0.lock().unwrap()[*index].fields));
    }
}

impl Spans {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::registry().with(
            self.clone()
                .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG),
        );
        let guard = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        guard
    }

    fn named(&self, name: &str) -> Vec<Recorded> {
        let spans = self.0.lock().unwrap();
        spans.iter().filter(|s| s.name == name).cloned().collect()
    }
}

async fn instance(api: WixApi) -> Result<Json<Value>, WixApiError> {
    Ok(Json(api.get("/apps/v1/instance").await?.json()?))
}

/// One request, in a span of its own as a tracing middleware makes it.
async fn one_request(wix: &MockWix, token: &str) -> u16 {
    let elevator = wix.elevator_builder().build().unwrap();
    let app = Router::new().route(
        "/api/instance",
        get(instance).route_layer(
            elevator
                .layer()
                .route_name("instance")
                .allow("GET /apps/v1/instance"),
        ),
    );
    let req = Request::get("/api/instance")
        .header("authorization", token)
        .body(Body::empty())
        .unwrap();
    let request = tracing::info_span!("request", http.route = "/api/instance");
    app.oneshot(req)
        .instrument(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn one_elevated_request_is_a_span_tree_request_token_info_create_access_token_api_call() {
    let wix = crate::support::mock_wix().await;
    let token = wix.mint(CallerSpec::new(SubjectType::Member).instance("inst-traced"));
    let spans = Spans::default();
    let _guard = spans.install();
    assert_eq!(one_request(&wix, &token).await, 200);

    let authorize = spans.named("wix_elevate.authorize");
    assert_eq!(authorize.len(), 1, "{authorize:?}");
    assert_eq!(authorize[0].parent, Some("request"));
    assert_eq!(authorize[0].field("route"), "instance");
    assert_eq!(authorize[0].field("outcome"), "admitted");

    let calls = spans.named("wix_elevate.wix_call");
    let shape: Vec<(&str, &str, Option<&str>)> = calls
        .iter()
        .map(|c| (c.field("otel.name"), c.field("wix.endpoint"), c.parent))
        .collect();
    assert_eq!(
        shape,
        [
            (
                "POST /oauth2/token-info",
                "token_info",
                Some("wix_elevate.authorize")
            ),
            (
                "POST /oauth2/token",
                "create_access_token",
                Some("wix_elevate.authorize")
            ),
            ("GET /apps/v1/instance", "api", Some("request")),
        ],
        "request → authorize → Token Info, Create Access Token; request → the API call"
    );
    let server = wix.addr().to_string();
    for call in &calls {
        assert_eq!(call.field("otel.kind"), "client");
        assert_eq!(call.field("server.address"), server);
        assert_eq!(call.field("http.response.status_code"), "200");
        assert_eq!(call.field("http.request.resend_count"), "0");
        assert!(!call.fields.contains_key("error.type"), "{call:?}");
    }
    assert_eq!(calls[2].field("http.request.method"), "GET");
    assert_eq!(calls[2].field("url.path"), "/apps/v1/instance");
    // No token, app token or secret in any field of any span.
    let app_token_calls = wix.calls(MockEndpoint::CreateAccessToken);
    assert_eq!(app_token_calls, 1);
    for span in spans.0.lock().unwrap().iter() {
        for value in span.fields.values() {
            assert!(!value.contains(&token), "{span:?}");
            assert!(!value.contains(wix.app_secret()), "{span:?}");
            assert!(!value.contains("app-token"), "{span:?}");
        }
    }
}

#[tokio::test]
async fn every_attempt_is_a_span_and_a_failed_one_says_why() {
    let wix = crate::support::mock_wix().await;
    let token = wix.mint(CallerSpec::new(SubjectType::Member).instance("inst-retried"));
    wix.fail_times(MockEndpoint::TokenInfo, Fault::Status(503), 1);
    let spans = Spans::default();
    let _guard = spans.install();
    assert_eq!(one_request(&wix, &token).await, 200);
    let token_info: Vec<Recorded> = spans
        .named("wix_elevate.wix_call")
        .into_iter()
        .filter(|c| c.field("wix.endpoint") == "token_info")
        .collect();
    assert_eq!(token_info.len(), 2, "{token_info:?}");
    assert_eq!(token_info[0].field("http.request.resend_count"), "0");
    assert_eq!(token_info[0].field("http.response.status_code"), "503");
    assert_eq!(token_info[0].field("error.type"), "503");
    assert_eq!(token_info[0].field("otel.status_code"), "ERROR");
    assert_eq!(token_info[1].field("http.request.resend_count"), "1");
    assert_eq!(token_info[1].field("http.response.status_code"), "200");
}

#[tokio::test]
async fn an_open_circuit_is_an_event_and_the_outcome_is_on_the_request_span() {
    let wix = crate::support::mock_wix().await;
    let elevator = wix.elevator_builder().build().unwrap();
    wix.fail(MockEndpoint::TokenInfo, Fault::Status(503));
    let app = Router::new().route(
        "/whoami",
        get(|| async { "ok" }).route_layer(elevator.layer().route_name("whoami")),
    );
    let send = |n: usize| {
        let req = Request::get("/whoami")
            .header("authorization", format!("invented-token-{n}"))
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(req)
    };
    // Enough failures to open the Token Info circuit.
    for n in 0..8 {
        let _ = send(n).await.unwrap();
    }
    let spans = Spans::default();
    let events = crate::Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(
            spans
                .clone()
                .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(events.clone())
                .with_ansi(false)
                .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG),
        );
    let _guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    let status = send(100).await.unwrap().status();
    assert_eq!(status, 503);
    let authorize = spans.named("wix_elevate.authorize");
    assert_eq!(
        authorize.last().unwrap().field("outcome"),
        "upstream_unavailable"
    );
    assert!(
        spans.named("wix_elevate.wix_call").is_empty(),
        "no call went out"
    );
    let written = events.text();
    assert!(
        written.contains("circuit open: Wix not called"),
        "{written}"
    );
}
