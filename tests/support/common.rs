//! Shared set-up: a mock Wix, an elevator pointed at it, and a demo app
//! served over real HTTP on 127.0.0.1:0.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, routing::get};
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};
use wix_elevate::{
    Caller, ElevatedToken, Elevator, ElevatorBuilder, PolicyExt, SubjectType, SubjectTypes, WixApi,
    WixApiError,
    test_util::{CallerSpec, MockWix},
};

pub(crate) struct Harness {
    pub(crate) wix: MockWix,
    pub(crate) elevator: Elevator,
    pub(crate) app: Router,
    handler_calls: Arc<AtomicUsize>,
    url: String,
    http: reqwest::Client,
    server: JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub(crate) async fn harness() -> Harness {
    harness_with(|b| b).await
}

pub(crate) async fn harness_with(
    configure: impl FnOnce(ElevatorBuilder) -> ElevatorBuilder,
) -> Harness {
    let wix = MockWix::start().await.expect("mock Wix starts");
    let elevator =
        configure(Elevator::builder(wix.app_id(), wix.app_secret()).base_url(wix.base_url()))
            .build()
            .expect("valid configuration");
    let handler_calls = Arc::new(AtomicUsize::new(0));
    let app = app(&elevator, handler_calls.clone());
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let served = app.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, served).await.expect("serve");
    });
    Harness {
        wix,
        elevator,
        app,
        handler_calls,
        url,
        http: reqwest::Client::new(),
        server,
    }
}

/// The routes the tests call; every elevated handler counts its runs.
fn app(elevator: &Elevator, calls: Arc<AtomicUsize>) -> Router {
    let whoami = move |caller: Caller, token: ElevatedToken| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            assert_eq!(
                token.instance_id(),
                caller.instance_id(),
                "token for the caller's instance"
            );
            Json(json!({
                "subjectType": caller.subject_type().as_str(),
                "subjectId": caller.subject_id(),
                "instanceId": caller.instance_id(),
                "siteId": caller.site_id(),
            }))
        }
    };
    // Wix's Get App Instance, called with the app token through `WixApi`.
    let instance = |api: WixApi| async move {
        Ok::<_, WixApiError>(Json(api.get("/apps/v1/instance").await?.json::<Value>()?))
    };
    Router::new()
        .route(
            "/whoami",
            get(whoami.clone()).route_layer(elevator.layer().expose_app_token()),
        )
        .route(
            "/members",
            get(whoami.clone()).route_layer(
                elevator
                    .layer()
                    .expose_app_token()
                    .policy(SubjectTypes::members()),
            ),
        )
        .route(
            "/users",
            get(whoami.clone()).route_layer(
                elevator
                    .layer()
                    .expose_app_token()
                    .policy(SubjectTypes::wix_users()),
            ),
        )
        .route(
            "/apps",
            get(whoami.clone()).route_layer(
                elevator
                    .layer()
                    .expose_app_token()
                    .policy(SubjectTypes::only([SubjectType::App])),
            ),
        )
        .route(
            "/unknown",
            get(whoami.clone()).route_layer(
                elevator
                    .layer()
                    .expose_app_token()
                    .policy(SubjectTypes::only([SubjectType::Unknown])),
            ),
        )
        .route(
            "/site-1-members",
            get(whoami).route_layer(
                elevator.layer().expose_app_token().policy(
                    SubjectTypes::members().and(|c: &Caller| c.site_id() == Some("site-1")),
                ),
            ),
        )
        .route(
            "/instance",
            get(instance).route_layer(
                elevator
                    .layer()
                    .allow("GET /apps/v1/instance")
                    .expect("a valid operation"),
            ),
        )
        .route(
            "/open",
            get(|caller: Option<Caller>| async move {
                caller.map_or("anonymous".to_owned(), |c| c.subject_id().to_owned())
            }),
        )
        .route(
            "/misconfigured",
            get(|caller: Caller| async move { caller.subject_id().to_owned() }),
        )
}

impl Harness {
    pub(crate) fn mint(&self, subject: SubjectType) -> String {
        self.wix.mint(CallerSpec::new(subject))
    }

    pub(crate) fn handler_calls(&self) -> usize {
        self.handler_calls.load(Ordering::SeqCst)
    }

    /// GET `path` with this `Authorization` value (none if `None`).
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
