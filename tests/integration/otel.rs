//! `examples/otel.rs` exports for real: the example runs against a
//! stand-in OTLP/HTTP collector on `127.0.0.1:0`, serves one traced
//! request, stops on SIGTERM, and the collector holds the request's span
//! tree (names, the caller's trace, parent links) with no credential in
//! any attribute.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value::Value as AnyValue,
    trace::v1::Span,
};
use prost::Message;

use crate::support::{example::example_binary, send_signal, serve};

type Received = Arc<Mutex<Vec<Span>>>;

/// The stand-in collector: every span of every export, decoded.
async fn collect(State(received): State<Received>, body: Bytes) -> &'static [u8] {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
    let spans = request
        .resource_spans
        .into_iter()
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans);
    received.lock().unwrap().extend(spans);
    // An empty ExportTraceServiceResponse.
    b""
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(span: &Span) -> Vec<String> {
    span.attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            format!("{}={value}", kv.key)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_otel_example_delivers_one_requests_span_tree_to_a_collector() {
    let received: Received = Received::default();
    let collector = serve(
        Router::new()
            .route("/v1/traces", post(collect))
            .with_state(received.clone()),
    )
    .await;
    let mut child = Command::new(example_binary("otel"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url)
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the example starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut token, mut url) = (None, None);
    while url.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the example prints its address");
        if let Some(rest) = line.strip_prefix("curl -H 'authorization: ") {
            token = rest.split('\'').next().map(str::to_owned);
        }
        url = line.strip_prefix("listening on ").map(str::to_owned);
    }
    let (token, url) = (token.expect("a token"), url.unwrap());
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let answer = reqwest::Client::new()
        .get(format!("{url}/api/instance"))
        .header("authorization", &token)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // SIGTERM: the example exports what is queued, then exits.
    send_signal(&child, "-TERM");
    let exited = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("the example exits after SIGTERM")
    .unwrap()
    .unwrap();
    assert!(exited.success(), "{exited:?}");
    let mut stdout_rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        stdout_rest.push(line);
    }
    assert!(
        stdout_rest.iter().any(|l| l == "spans exported"),
        "{stdout_rest:?}"
    );

    let spans = received.lock().unwrap().clone();
    let by_id: HashMap<String, &Span> = spans.iter().map(|s| (hex(&s.span_id), s)).collect();
    let parent_name = |span: &Span| {
        by_id
            .get(&hex(&span.parent_span_id))
            .map_or_else(|| hex(&span.parent_span_id), |p| p.name.clone())
    };
    let tree: Vec<(String, String)> = spans
        .iter()
        .map(|s| (s.name.clone(), parent_name(s)))
        .collect();
    println!("{tree:#?}");
    let server = spans
        .iter()
        .find(|s| s.name == "GET /api/instance")
        .unwrap_or_else(|| panic!("no server span in {tree:?}"));
    assert_eq!(
        hex(&server.parent_span_id),
        caller_span,
        "the caller's trace continues"
    );
    for span in &spans {
        assert_eq!(hex(&span.trace_id), trace_id, "{}: one trace", span.name);
    }
    for (child, parent) in [
        ("wix_elevate.authorize", "GET /api/instance"),
        ("POST /oauth2/token-info", "wix_elevate.authorize"),
        ("POST /oauth2/token", "wix_elevate.authorize"),
        ("GET /apps/v1/instance", "GET /api/instance"),
    ] {
        assert!(
            tree.contains(&(child.to_owned(), parent.to_owned())),
            "{child} under {parent}: {tree:#?}"
        );
    }
    let everything: String = spans
        .iter()
        .flat_map(|s| attributes(s).into_iter().chain([s.name.clone()]))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        everything.contains("http.response.status_code=200"),
        "{everything}"
    );
    for secret in [token.as_str(), "mock-app-secret", "OauthNG.JWS.mock-app-"] {
        assert!(
            !everything.contains(secret),
            "a credential in a span attribute"
        );
    }
}
