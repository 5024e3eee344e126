//! The harness: a mock Wix, an elevator pointed at it, the demo app
//! served over real HTTP on 127.0.0.1:0, and the counters and request
//! helpers the tests read.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Body};
use http::Request;
use serde_json::Value;
use tokio::{net::TcpListener, task::JoinHandle};
use tower::ServiceExt;
use wix_elevate::{
    Elevator, ElevatorBuilder, SubjectType,
    test_util::{CallerSpec, MockWix},
};

use super::routes::demo_app;

/// A mock Wix, an elevator on it, and the demo app ([`demo_app`]) served
/// over HTTP. Its fields move out freely: a test that builds its own
/// routes takes `wix` and `elevator` and lets the rest go.
pub(crate) struct Harness {
    pub(crate) wix: MockWix,
    pub(crate) elevator: Elevator,
    /// The demo app, for `oneshot` calls.
    pub(crate) app: Router,
    /// The demo app over HTTP.
    pub(crate) served: Served,
    handler_calls: Arc<AtomicUsize>,
}

/// A harness with the default settings.
pub(crate) async fn harness() -> Harness {
    harness_with(|b| b).await
}

/// A harness whose elevator `configure` sets up.
pub(crate) async fn harness_with(
    configure: impl FnOnce(ElevatorBuilder) -> ElevatorBuilder,
) -> Harness {
    harness_on(mock_wix().await, configure).await
}

/// A harness on a mock started by the test (another app id, say).
pub(crate) async fn harness_on(
    wix: MockWix,
    configure: impl FnOnce(ElevatorBuilder) -> ElevatorBuilder,
) -> Harness {
    let elevator = configure(wix.elevator_builder())
        .build()
        .expect("valid configuration");
    let handler_calls = Arc::new(AtomicUsize::new(0));
    let app = demo_app(&elevator, handler_calls.clone());
    let served = serve(app.clone()).await;
    Harness {
        wix,
        elevator,
        app,
        served,
        handler_calls,
    }
}

/// A mock Wix with the default app id and secret.
pub(crate) async fn mock_wix() -> MockWix {
    MockWix::start().await.expect("mock Wix starts")
}

/// A router served over HTTP on `127.0.0.1:0` until dropped.
pub(crate) struct Served {
    pub(crate) url: String,
    http: reqwest::Client,
    server: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Serve `app` on a free loopback port.
pub(crate) async fn serve(app: Router) -> Served {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    Served {
        url,
        http: reqwest::Client::new(),
        server,
    }
}

impl Served {
    /// GET `path` of the demo app over HTTP with this `Authorization`
    /// value (none if `None`).
    pub(crate) async fn get(&self, path: &str, authorization: Option<&str>) -> Answer {
        let mut req = self
            .http
            .get(format!("{}{path}", self.url))
            .timeout(Duration::from_secs(30));
        if let Some(value) = authorization {
            req = req.header("authorization", value);
        }
        let res = req.send().await.expect("the app answers");
        Answer {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body: res.text().await.expect("body"),
        }
    }
}

/// `method path` with this `Authorization` value through `app` in process
/// (`oneshot`): the status and the JSON body (`Null` if none).
pub(crate) async fn call(app: &Router, method: &str, path: &str, token: &str) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", token)
        .body(Body::empty())
        .expect("a request");
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status().as_u16();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .expect("a body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

impl Harness {
    pub(crate) fn mint(&self, subject: SubjectType) -> String {
        self.wix.mint(CallerSpec::new(subject))
    }

    pub(crate) fn handler_calls(&self) -> usize {
        self.handler_calls.load(Ordering::SeqCst)
    }

    /// GET `path` of the demo app over HTTP with this `Authorization`
    /// value (none if `None`).
    pub(crate) async fn get(&self, path: &str, authorization: Option<&str>) -> Answer {
        self.served.get(path, authorization).await
    }
}

#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("JSON body, got {:?}", self.body))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A problem+json rejection with this status and code.
    #[track_caller]
    pub(crate) fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let body = self.json();
        assert_eq!(body["status"], status, "{self:?}");
        assert_eq!(body["code"], code, "{self:?}");
    }
}

/// Let `duration` pass on the tokio clock at once, with no real wait: the
/// layer's TTLs, renewals, expiries and cool-downs follow that clock. For
/// `#[tokio::test]`'s current-thread runtime.
pub(crate) async fn skip(duration: Duration) {
    tokio::time::pause();
    tokio::time::advance(duration).await;
    tokio::time::resume();
}

/// `n`, which a test knows is positive, as a rate or a budget.
pub(crate) fn nz(n: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(n).expect("a positive number")
}
