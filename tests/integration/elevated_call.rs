//! The elevated call: `WixApi` is as safe and as resilient as the
//! authentication. Every rule is checked against the mock with counted
//! Wix calls.

use std::time::Duration;

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, RawQuery},
    routing::{get, post},
};
use http::{HeaderMap, Request};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::{Harness, harness_with};
use wix_elevate::{
    Elevator, ElevatorBuilder, SubjectType, WixApi, WixApiError,
    test_util::{CallerSpec, Fault, MockEndpoint, MockReply, MockWix},
};

const PRODUCT: &str = "GET /stores/v1/products/{id}";
const QUERY: &str = "POST /stores/v1/products/query";
const CREATE: &str = "POST /members/v1/members";
const ITEMS: &str = "GET /items/v1/items";

struct Rig {
    wix: MockWix,
    elevator: Elevator,
    app: Router,
}

/// Forward the incoming query string's pairs to Wix as values: the
/// library, not the handler, decides whether they may pass.
fn forward_query<'a>(
    mut call: wix_elevate::WixRequest<'a>,
    raw: &Option<String>,
) -> wix_elevate::WixRequest<'a> {
    for (key, value) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        call = call.query(&key, value);
    }
    call
}

async fn rig_with(configure: impl FnOnce(ElevatorBuilder) -> ElevatorBuilder) -> Rig {
    let Harness { wix, elevator, .. } = harness_with(configure).await;
    wix.on(PRODUCT, |req: &wix_elevate::test_util::MockRequest| {
        MockReply::json(
            200,
            json!({ "product": { "path": req.path, "query": req.query } }),
        )
    });
    wix.on(
        "GET /members/v1/members/{id}",
        |req: &wix_elevate::test_util::MockRequest| {
            MockReply::json(
                200,
                json!({ "member": { "path": req.path, "query": req.query } }),
            )
        },
    );
    wix.on(ITEMS, |req: &wix_elevate::test_util::MockRequest| {
        MockReply::json(200, json!({ "query": req.query }))
    });
    wix.on(QUERY, MockReply::json(200, json!({ "products": [] })));
    wix.on(CREATE, MockReply::json(200, json!({ "member": {} })));
    wix.on(
        "GET /stores/v1/products/missing",
        MockReply::wix_error(404, "no such product"),
    );
    let layer = |op: &str| elevator.layer().allow(op);
    let app = Router::new()
        // The README's pattern: path values and query pairs as values.
        .route(
            "/members/{id}",
            get(
                |api: WixApi, Path(id): Path<String>, RawQuery(raw): RawQuery| async move {
                    let call = api.get("/members/v1/members/{id}").arg("id", &id);
                    Ok::<_, WixApiError>(Json(forward_query(call, &raw).await?.json::<Value>()?))
                },
            )
            .route_layer(layer("GET /members/v1/members/{id}?fieldsets=PUBLIC")),
        )
        // The old, string-formatting pattern: still cannot change the request.
        .route(
            "/formatted/{id}",
            get(|api: WixApi, Path(id): Path<String>| async move {
                let path = format!("/members/v1/members/{id}");
                Ok::<_, WixApiError>(Json(api.get(&path).await?.json::<Value>()?))
            })
            .route_layer(layer("GET /members/v1/members/{id}")),
        )
        .route(
            "/items",
            get(|api: WixApi, RawQuery(raw): RawQuery| async move {
                let call = api.get("/items/v1/items");
                Ok::<_, WixApiError>(Json(forward_query(call, &raw).await?.json::<Value>()?))
            })
            .route_layer(layer("GET /items/v1/items?filter={f}")),
        )
        .route(
            "/products/{id}",
            get(|api: WixApi, Path(id): Path<String>| async move {
                let product = api.get("/stores/v1/products/{id}").arg("id", &id).await?;
                Ok::<_, WixApiError>(Json(product.json::<Value>()?))
            })
            .route_layer(layer(PRODUCT)),
        )
        .route(
            "/create",
            post(|api: WixApi| async move {
                Ok::<_, WixApiError>(Json(
                    api.post(CREATE_PATH)
                        .json(&json!({}))
                        .await?
                        .json::<Value>()?,
                ))
            })
            .route_layer(layer(CREATE)),
        )
        .route(
            "/query",
            post(|api: WixApi| async move {
                let found = api.post(QUERY_PATH).json(&json!({"query": {}})).await?;
                Ok::<_, WixApiError>(Json(found.json::<Value>()?))
            })
            .route_layer(elevator.layer().allow_idempotent(QUERY)),
        )
        .merge(crate::support::identity_app(&elevator));
    Rig { wix, elevator, app }
}

const CREATE_PATH: &str = "/members/v1/members";
const QUERY_PATH: &str = "/stores/v1/products/query";

async fn rig() -> Rig {
    rig_with(|b| b).await
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Rig {
    async fn send(&self, method: &str, uri: &str, token: &str) -> Answer {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", token)
            .body(Body::empty())
            .unwrap();
        let res = self.app.clone().oneshot(req).await.unwrap();
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        }
    }

    /// `n` concurrent GETs of `path`, each on its own task; their statuses.
    fn spawn_gets(
        &self,
        n: usize,
        path: &'static str,
        token: &str,
    ) -> Vec<tokio::task::JoinHandle<u16>> {
        (0..n)
            .map(|_| {
                let (app, token) = (self.app.clone(), token.to_owned());
                tokio::spawn(async move {
                    let req = Request::get(path)
                        .header("authorization", token)
                        .body(Body::empty())
                        .unwrap();
                    app.oneshot(req).await.unwrap().status().as_u16()
                })
            })
            .collect()
    }

    fn member(&self, instance: &str) -> String {
        self.wix.mint(
            CallerSpec::new(SubjectType::Member)
                .subject_id("m1")
                .instance(instance),
        )
    }
}

#[tokio::test]
async fn query_and_path_tricks_through_route_parameters_are_refused_before_any_traffic() {
    let rig = rig().await;
    let token = rig.member("inst-q");
    let tricks = [
        // An encoded `?` in a path value (the reported injection).
        "/members/m1%3Ffieldsets=FULL%26paging.limit=1000",
        // Its raw form reaches the old formatting handler as a `?` in the path.
        "/formatted/m1%3Ffieldsets=FULL",
        // Double-encoded.
        "/formatted/m1%253Ffieldsets=FULL",
        "/members/m1%23fragment",
        "/members/m1%26fieldsets=FULL",
        "/members/m1%3DFULL",
        "/formatted/m1%2F..%2F..%2Fapps%2Fv1%2Finstance",
        // A fixed value changed, an undeclared key, a repeated key.
        "/members/m1?fieldsets=FULL",
        "/members/m1?paging.limit=1000",
        "/members/m1?fieldsets=PUBLIC&fieldsets=PUBLIC",
        "/members/m1?fieldsets=PUBLIC&fieldsets=FULL",
    ];
    for trick in tricks {
        let answer = rig.send("GET", trick, &token).await;
        assert_eq!(answer.status, 403, "{trick}: {}", answer.body);
        assert_eq!(answer.body["code"], "operation_not_declared", "{trick}");
        assert_eq!(answer.headers["cache-control"], "no-store", "{trick}");
    }
    assert_eq!(rig.wix.calls(MockEndpoint::Api), 0, "nothing reached Wix");
    assert_eq!(rig.wix.calls(MockEndpoint::Other), 0);
    // The declared forms go through, exactly as declared.
    let ok = rig
        .send("GET", "/members/m1?fieldsets=PUBLIC", &token)
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["member"]["path"], "/members/v1/members/m1");
    assert_eq!(ok.body["member"]["query"], "fieldsets=PUBLIC");
    let ok = rig.send("GET", "/members/m1", &token).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["member"]["query"], Value::Null);
    assert_eq!(rig.wix.calls_to("GET /members/v1/members/{id}"), 2);
}

#[tokio::test]
async fn a_free_query_value_is_encoded_and_stays_one_parameter() {
    let rig = rig().await;
    let token = rig.member("inst-f");
    let answer = rig.send("GET", "/items?filter=a%26b%3Dc%23d", &token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let sent = rig.wix.requests_to(ITEMS);
    assert_eq!(sent.len(), 1);
    let query = sent[0].query.clone().unwrap();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(pairs, [("filter".to_owned(), "a&b=c#d".to_owned())]);
}

#[tokio::test]
async fn a_revoked_app_token_is_replaced_once_for_all_waiting_calls() {
    let rig = rig().await;
    let token = rig.member("inst-r");
    assert_eq!(rig.send("GET", "/products/p1", &token).await.status, 200);
    assert_eq!(rig.wix.access_token_calls_for("inst-r"), 1);
    // The app is reinstalled: Wix refuses every token it issued before.
    rig.wix.revoke_app_tokens("inst-r");
    rig.wix.hold(MockEndpoint::CreateAccessToken);
    let calls = rig.spawn_gets(20, "/products/p1", &token);
    // Every call saw its 401, and one of them is asking for a new token.
    rig.wix
        .wait_for_calls(MockEndpoint::CreateAccessToken, 2)
        .await;
    rig.wix.release(MockEndpoint::CreateAccessToken);
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(
        rig.wix.access_token_calls_for("inst-r"),
        2,
        "exactly one new Create Access Token call"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_401_is_its_own_error_counted_and_audited() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let rig = metrics::with_local_recorder(&recorder, || {
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(rig()))
    });
    rig.wix
        .on(PRODUCT, MockReply::wix_error(401, "app not installed"));
    let token = rig.member("inst-x");
    let answer = rig.send("GET", "/products/p1", &token).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(answer.body["code"], "app_token_rejected");
    assert_eq!(rig.wix.calls_to(PRODUCT), 2, "the call was retried once");
    assert_eq!(
        rig.wix.access_token_calls_for("inst-x"),
        2,
        "one replacement"
    );
    let text = handle.render();
    assert!(
        text.contains(r#"wix_elevate_app_token_recoveries_total{result="rejected"} 1"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_failures_are_retried_for_idempotent_calls_only() {
    let rig = rig().await;
    let token = rig.member("inst-t");
    rig.wix.fail_times(MockEndpoint::Api, Fault::Status(503), 1);
    assert_eq!(rig.send("GET", "/products/p1", &token).await.status, 200);
    assert_eq!(rig.wix.calls_to(PRODUCT), 2, "GET retried");

    rig.wix.fail_times(MockEndpoint::Api, Fault::Status(503), 1);
    let answer = rig.send("POST", "/create", &token).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(answer.body["code"], "upstream_failed");
    assert_eq!(rig.wix.calls_to(CREATE), 1, "a POST is never retried");

    rig.wix.fail_times(MockEndpoint::Api, Fault::Drop, 1);
    assert_eq!(rig.send("POST", "/query", &token).await.status, 200);
    assert_eq!(rig.wix.calls_to(QUERY), 2, "a POST declared idempotent is");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wix_429_is_waited_out_if_it_fits_else_a_503_with_its_retry_after() {
    let rig = rig().await;
    let token = rig.member("inst-429");
    rig.wix.fail_times(
        MockEndpoint::Api,
        Fault::TooManyRequests {
            retry_after_secs: Some(1),
        },
        1,
    );
    assert_eq!(rig.send("GET", "/products/p1", &token).await.status, 200);
    assert_eq!(rig.wix.calls_to(PRODUCT), 2);

    rig.wix.fail_times(
        MockEndpoint::Api,
        Fault::TooManyRequests {
            retry_after_secs: Some(60),
        },
        1,
    );
    let answer = rig.send("GET", "/products/p1", &token).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.body["code"], "upstream_throttled");
    assert_eq!(answer.headers["retry-after"], "60");
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert_eq!(rig.wix.calls_to(PRODUCT), 3, "not waited out: one call");
}

#[tokio::test]
async fn a_wix_404_is_a_404_and_a_hang_a_504() {
    let rig = rig_with(|b| {
        b.http_timeout(Duration::from_millis(200))
            .api_deadline(Duration::from_millis(500))
    })
    .await;
    let token = rig.member("inst-404");
    let answer = rig.send("GET", "/products/missing", &token).await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(answer.body["code"], "wix_not_found");
    assert_eq!(answer.headers["cache-control"], "no-store");
    rig.wix.fail(MockEndpoint::Api, Fault::Hang);
    let answer = rig.send("GET", "/products/p1", &token).await;
    assert_eq!(answer.status, 504, "{}", answer.body);
    assert_eq!(answer.body["code"], "upstream_timeout");
}

#[tokio::test]
async fn failures_about_one_caller_or_instance_never_open_a_breaker() {
    let rig = rig().await;
    // Twenty unknown tokens: Wix refuses each (an answer, not a failure).
    for i in 0..20 {
        let answer = rig
            .send("GET", "/whoami", &format!("OauthNG.JWS.garbage-{i}"))
            .await;
        assert_eq!(answer.status, 401);
    }
    // Six malformed grants, each about one instance.
    rig.wix
        .fail(MockEndpoint::CreateAccessToken, Fault::Malformed);
    for i in 0..6 {
        let answer = rig
            .send("GET", "/token", &rig.member(&format!("bad-{i}")))
            .await;
        assert_eq!(answer.status, 502, "{}", answer.body);
    }
    rig.wix.clear_faults();
    assert!(rig.elevator.circuits().iter().all(|(_, closed)| *closed));
    let answer = rig.send("GET", "/products/p1", &rig.member("fine")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn garbage_tokens_opening_token_info_cannot_block_app_tokens_for_known_callers() {
    let rig = rig().await;
    let token = rig.member("inst-known");
    // Known: the identity is cached; this route needs no app token yet.
    assert_eq!(rig.send("GET", "/whoami", &token).await.status, 200);
    assert_eq!(rig.wix.access_token_calls_for("inst-known"), 0);
    // Token Info throttles, and six garbage tokens open its circuit.
    rig.wix.fail(
        MockEndpoint::TokenInfo,
        Fault::TooManyRequests {
            retry_after_secs: None,
        },
    );
    for i in 0..6 {
        let answer = rig
            .send("GET", "/whoami", &format!("OauthNG.JWS.flood-{i}"))
            .await;
        assert!(answer.status == 503, "{}", answer.status);
    }
    let circuits = rig.elevator.circuits();
    assert!(!circuits[0].1, "Token Info's circuit is open");
    // The known caller still gets an app token and its Wix call.
    let answer = rig.send("GET", "/products/p1", &token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(rig.wix.access_token_calls_for("inst-known"), 1);
}

#[tokio::test]
async fn a_route_that_never_uses_the_app_identity_never_mints_a_token() {
    let rig = rig().await;
    let token = rig.member("inst-lazy");
    for _ in 0..5 {
        assert_eq!(rig.send("GET", "/whoami", &token).await.status, 200);
    }
    assert_eq!(rig.wix.calls(MockEndpoint::CreateAccessToken), 0);
    // A handler that asks for the token gets one, on demand, coalesced.
    rig.wix.hold(MockEndpoint::CreateAccessToken);
    let asks = rig.spawn_gets(10, "/token", &token);
    rig.wix
        .wait_for_calls(MockEndpoint::CreateAccessToken, 1)
        .await;
    rig.wix.release(MockEndpoint::CreateAccessToken);
    for ask in asks {
        assert_eq!(ask.await.unwrap(), 200);
    }
    assert_eq!(rig.wix.calls(MockEndpoint::CreateAccessToken), 1);
    // On demand or in the layer, one token per instance.
    assert_eq!(rig.send("GET", "/products/p1", &token).await.status, 200);
    assert_eq!(rig.wix.calls(MockEndpoint::CreateAccessToken), 1);
}

#[tokio::test]
async fn an_on_demand_elevation_failure_is_a_rejection_and_the_handler_never_runs() {
    let rig = rig().await;
    let token = rig.member("inst-down");
    rig.wix
        .fail(MockEndpoint::CreateAccessToken, Fault::Status(500));
    let answer = rig.send("GET", "/token", &token).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(answer.body["code"], "upstream_failed");
    assert_eq!(answer.headers["cache-control"], "no-store");
}
