//! The AWS Lambda example, run as Lambda runs it: the example binary polls
//! a local stand-in for the Lambda Runtime API (the HTTP interface at
//! `AWS_LAMBDA_RUNTIME_API`: next invocation, response) for API Gateway
//! HTTP API events, and calls the mock Wix. No AWS account involved.

#[path = "../support/mod.rs"]
mod support;

use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue},
    routing::{get, post},
};
use serde_json::{Value, json};
use tokio::sync::Notify;
use wix_elevate::{
    SubjectType,
    test_util::{CallerSpec, MockEndpoint, MockWix},
};

use crate::support::Redis;

/// The Lambda Runtime API, as far as a function sees it.
#[derive(Clone, Default)]
struct RuntimeApi {
    pending: Arc<Mutex<VecDeque<(String, Value)>>>,
    answered: Arc<Mutex<HashMap<String, Value>>>,
    changed: Arc<Notify>,
}

const PREFIX: &str = "/2018-06-01/runtime";

impl RuntimeApi {
    async fn start(&self) -> String {
        let app = Router::new()
            .route(&format!("{PREFIX}/invocation/next"), get(next))
            .route(
                &format!("{PREFIX}/invocation/{{id}}/response"),
                post(respond),
            )
            .route(&format!("{PREFIX}/invocation/{{id}}/error"), post(respond))
            .route(&format!("{PREFIX}/init/error"), post(init_error))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr.to_string()
    }

    /// Invoke the function with `event`; its answer.
    async fn invoke(&self, id: &str, event: Value) -> Value {
        let answered = self.changed.notified();
        self.pending
            .lock()
            .unwrap()
            .push_back((id.to_owned(), event));
        self.changed.notify_waiters();
        let mut answered = std::pin::pin!(answered);
        loop {
            if let Some(answer) = self.answered.lock().unwrap().remove(id) {
                return answer;
            }
            let wait = tokio::time::timeout(Duration::from_secs(20), answered.as_mut());
            assert!(wait.await.is_ok(), "the function did not answer {id}");
            answered.set(self.changed.notified());
        }
    }
}

async fn next(State(api): State<RuntimeApi>) -> (HeaderMap, String) {
    loop {
        let changed = api.changed.notified();
        if let Some((id, event)) = api.pending.lock().unwrap().pop_front() {
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 30_000;
            let mut headers = HeaderMap::new();
            let mut set = |name: &'static str, value: String| {
                headers.insert(name, HeaderValue::from_str(&value).unwrap());
            };
            set("lambda-runtime-aws-request-id", id);
            set("lambda-runtime-deadline-ms", deadline.to_string());
            set(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:000000000000:function:wix-elevate".into(),
            );
            set(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
            );
            return (headers, event.to_string());
        }
        changed.await;
    }
}

async fn respond(State(api): State<RuntimeApi>, Path(id): Path<String>, body: Bytes) {
    let answer = serde_json::from_slice(&body).unwrap_or(Value::Null);
    api.answered.lock().unwrap().insert(id, answer);
    api.changed.notify_waiters();
}

async fn init_error(body: Bytes) {
    panic!(
        "the function failed to start: {}",
        String::from_utf8_lossy(&body)
    );
}

/// An API Gateway HTTP API (payload 2.0) event for `GET path`.
fn get_event(path: &str, token: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": { "authorization": token, "host": "api.example.com" },
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "wix-elevate-test"
            },
            "requestId": "local",
            "routeKey": "$default",
            "stage": "$default",
            "time": "30/Nov/2026:00:00:00 +0000",
            "timeEpoch": 0
        },
        "isBase64Encoded": false
    })
}

fn binary() -> PathBuf {
    crate::support::example::example_binary("lambda")
}

/// A cold start of the function: the process, killed on drop.
struct Function(Child);

impl Function {
    fn start(runtime_api: &str, wix: &MockWix, redis: Option<&str>) -> Function {
        let mut cmd = Command::new(binary());
        cmd.env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", "wix-elevate")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "local")
            .env("WIX_APP_ID", wix.app_id())
            .env("WIX_APP_SECRET", wix.app_secret())
            .env("WIX_API_BASE_URL", wix.base_url())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        if let Some(url) = redis {
            cmd.env("REDIS_URL", url);
        }
        Function(cmd.spawn().expect("the lambda example starts"))
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Wix calls so far: Token Info, Create Access Token, the API call.
fn wix_calls(wix: &MockWix) -> (u64, u64, u64) {
    (
        wix.calls(MockEndpoint::TokenInfo),
        wix.calls(MockEndpoint::CreateAccessToken),
        wix.calls(MockEndpoint::GetAppInstance),
    )
}

fn assert_instance(answer: &Value, instance: &str) {
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["instance"]["instance"]["instanceId"], instance,
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_example_answers_runtime_api_invocations_with_one_elevator_per_cold_start() {
    let wix = crate::support::mock_wix().await;
    let runtime = RuntimeApi::default();
    let runtime_api = runtime.start().await;
    let member = wix.mint(CallerSpec::new(SubjectType::Member).instance("inst-lambda"));
    let _function = Function::start(&runtime_api, &wix, None);

    let first = runtime
        .invoke("1", get_event("/api/instance", &member))
        .await;
    assert_instance(&first, "inst-lambda");
    let before = wix_calls(&wix);
    assert_eq!(before.0, 1, "Token Info once");
    assert_eq!(before.1, 1, "Create Access Token once");
    // The next invocations reuse the cold start's elevator: warm caches.
    for id in 2..5 {
        let answer = runtime
            .invoke(&id.to_string(), get_event("/api/instance", &member))
            .await;
        assert_instance(&answer, "inst-lambda");
    }
    let after = wix_calls(&wix);
    assert_eq!((after.0, after.1), (1, 1), "no Wix auth call when warm");
    // Refusals go back through the Runtime API like any answer.
    let refused = runtime
        .invoke("5", get_event("/api/instance", "not a token"))
        .await;
    assert_eq!(refused["statusCode"], 401, "{refused}");
}

/// Process start to first elevated answer, and that answer's Wix calls.
async fn cold_start(
    runtime: &RuntimeApi,
    wix: &MockWix,
    redis: Option<&str>,
    token: &str,
    id: &str,
    instance: &str,
) -> (Duration, (u64, u64, u64)) {
    let before = wix_calls(wix);
    let started = Instant::now();
    let _function = Function::start(&runtime.start().await, wix, redis);
    let answer = runtime.invoke(id, get_event("/api/instance", token)).await;
    let took = started.elapsed();
    assert_instance(&answer, instance);
    let after = wix_calls(wix);
    (
        took,
        (after.0 - before.0, after.1 - before.1, after.2 - before.2),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_figures_with_and_without_redis() {
    let Some(redis) = Redis::start() else { return };
    let wix = crate::support::mock_wix().await;
    // Wix as seen from a cloud region: 20 ms a call.
    wix.set_latency(Duration::from_millis(20));
    let runtime = RuntimeApi::default();
    let url = redis.url();
    let (mut none, mut empty, mut primed) = (Vec::new(), Vec::new(), Vec::new());
    // Three rounds, each a new caller of a new instance (so Redis starts
    // empty for it); the order alternates between rounds.
    for round in 0..3 {
        let instance = format!("inst-cold-{round}");
        let member = wix.mint(CallerSpec::new(SubjectType::Member).instance(&instance));
        let mut without = async || {
            let id = format!("none-{round}");
            let start = cold_start(&runtime, &wix, None, &member, &id, &instance).await;
            none.push(start);
        };
        if round % 2 == 1 {
            without().await;
        }
        let id = format!("empty-{round}");
        let start = cold_start(&runtime, &wix, Some(&url), &member, &id, &instance).await;
        empty.push(start);
        let id = format!("primed-{round}");
        let start = cold_start(&runtime, &wix, Some(&url), &member, &id, &instance).await;
        primed.push(start);
        if round % 2 == 0 {
            without().await;
        }
    }
    let median = |starts: &mut Vec<(Duration, (u64, u64, u64))>| {
        starts.sort();
        starts[starts.len() / 2]
    };
    let (none, empty, primed) = (median(&mut none), median(&mut empty), median(&mut primed));
    println!(
        "cold start to first elevated answer, median of 3 (Token Info, Create Access Token, API calls):"
    );
    println!(
        "  without Redis:                      {:?} {:?}",
        none.0, none.1
    );
    println!(
        "  empty Redis:                        {:?} {:?}",
        empty.0, empty.1
    );
    println!(
        "  Redis holding caller and app token: {:?} {:?}",
        primed.0, primed.1
    );
    assert_eq!(none.1, (1, 1, 1));
    assert_eq!(empty.1, (1, 1, 1));
    assert_eq!(primed.1, (0, 0, 1), "the cold start asked Redis, not Wix");
}
