//! Declared operations, caller binding, the audit trail and metrics.

use axum::{
    Json, Router,
    body::Body,
    extract::Path,
    routing::{get, post},
};
use http::Request;
use serde_json::{Value, json};
use tower::ServiceExt;
use wix_elevate::{
    Caller, Elevator, Rejection, SubjectType, SubjectTypes, WixApi, WixApiError,
    test_util::{CallerSpec, MockEndpoint, MockWix},
};

pub(crate) async fn setup() -> (MockWix, Elevator) {
    let wix = MockWix::start().await.unwrap();
    let elevator = Elevator::builder(wix.app_id(), wix.app_secret())
        .base_url(wix.base_url())
        .build()
        .unwrap();
    (wix, elevator)
}

async fn instance(api: WixApi) -> Result<Json<Value>, WixApiError> {
    Ok(Json(api.get("/apps/v1/instance").await?.json()?))
}

async fn create_member(api: WixApi) -> Result<Json<Value>, WixApiError> {
    Ok(Json(
        api.post_json("/members/v1/members", &json!({"member": {}}))
            .await?
            .json()?,
    ))
}

async fn member(api: WixApi, Path(id): Path<String>) -> Result<Json<Value>, WixApiError> {
    Ok(Json(
        api.get(&format!("/members/v1/members/{id}"))
            .await?
            .json()?,
    ))
}

async fn profile(caller: Caller, Path(id): Path<String>) -> Result<String, Rejection> {
    caller.require_subject_id(&id)?;
    Ok(format!("profile of {id}"))
}

pub(crate) fn app(elevator: &Elevator) -> Router {
    let instance_only = || {
        elevator
            .layer()
            .route_name("instance")
            .allow("GET /apps/v1/instance")
            .unwrap()
    };
    Router::new()
        .route("/instance", get(instance).route_layer(instance_only()))
        .route(
            "/escalate",
            post(create_member).route_layer(instance_only()),
        )
        .route(
            "/nothing-declared",
            get(instance).route_layer(elevator.layer().route_name("nothing")),
        )
        .route(
            "/members/{id}",
            get(member).route_layer(
                elevator
                    .layer()
                    .policy(SubjectTypes::members())
                    .route_name("own_member")
                    .allow("GET /members/v1/members/{subjectId}")
                    .unwrap(),
            ),
        )
        .route(
            "/any-member/{*path}",
            get(|api: WixApi, Path(path): Path<String>| async move {
                api.get(&format!("/members/v1/members/{path}"))
                    .await
                    .map(|_| "ok")
            })
            .route_layer(
                elevator
                    .layer()
                    .allow("GET /members/v1/members/{id}")
                    .unwrap(),
            ),
        )
        .route("/profiles/{id}", get(profile).route_layer(elevator.layer()))
}

pub(crate) async fn call(app: &Router, method: &str, path: &str, token: &str) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", token)
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_declared_call_goes_through_with_the_elevated_token() {
    let (wix, elevator) = setup().await;
    let app = app(&elevator);
    let token = wix.mint(CallerSpec::new(SubjectType::Visitor).instance("inst-lp"));
    let (status, body) = call(&app, "GET", "/instance", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instance"]["instanceId"], "inst-lp");
    assert_eq!(wix.calls(MockEndpoint::GetAppInstance), 1);
}

#[tokio::test]
async fn an_undeclared_call_is_refused_before_any_traffic() {
    let (wix, elevator) = setup().await;
    let app = app(&elevator);
    let token = wix.mint(CallerSpec::new(SubjectType::Member));
    let (status, body) = call(&app, "POST", "/escalate", &token).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "operation_not_declared");
    let (status, body) = call(&app, "GET", "/nothing-declared", &token).await;
    assert_eq!(
        status, 403,
        "a route that declares nothing may call nothing: {body}"
    );
    assert_eq!(wix.calls(MockEndpoint::Other), 0);
    assert_eq!(wix.calls(MockEndpoint::GetAppInstance), 0);
}

#[tokio::test]
async fn path_tricks_cannot_reach_an_undeclared_api() {
    let (wix, elevator) = setup().await;
    let app = app(&elevator);
    let token = wix.mint(CallerSpec::new(SubjectType::Member));
    assert_eq!(call(&app, "GET", "/any-member/m-9", &token).await.0, 200);
    for trick in [
        "/any-member/..%2F..%2Fapps%2Fv1%2Finstance",
        "/any-member/m-9/../../../apps/v1/instance",
        "/any-member/a%2Fb",
    ] {
        let (status, body) = call(&app, "GET", trick, &token).await;
        assert_eq!(status, 403, "{trick}: {body}");
    }
    assert_eq!(wix.calls(MockEndpoint::GetMember), 1);
    assert_eq!(wix.calls(MockEndpoint::GetAppInstance), 0);
    assert_eq!(wix.calls(MockEndpoint::Other), 0);
}

#[tokio::test]
async fn a_template_bound_to_the_caller_refuses_another_members_id() {
    let (wix, elevator) = setup().await;
    let app = app(&elevator);
    let token = wix.mint(CallerSpec::new(SubjectType::Member).subject_id("m-1"));
    let (status, body) = call(&app, "GET", "/members/m-1", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["member"]["id"], "m-1");
    let (status, body) = call(&app, "GET", "/members/m-2", &token).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        wix.calls(MockEndpoint::GetMember),
        1,
        "the refused read never reached Wix"
    );
}

#[tokio::test]
async fn a_route_parameter_can_be_required_to_match_the_caller() {
    let (wix, elevator) = setup().await;
    let app = app(&elevator);
    let token = wix.mint(CallerSpec::new(SubjectType::Member).subject_id("m-1"));
    assert_eq!(call(&app, "GET", "/profiles/m-1", &token).await.0, 200);
    let (status, body) = call(&app, "GET", "/profiles/m-2", &token).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "forbidden");
}

#[tokio::test]
async fn metrics_move_with_requests_cache_and_wix_calls() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let wix = MockWix::start().await.unwrap();
    // Handles bind to the recorder in force when the elevator and layers are built.
    let (elevator, app) = metrics::with_local_recorder(&recorder, || {
        let elevator = Elevator::builder(wix.app_id(), wix.app_secret())
            .base_url(wix.base_url())
            .build()
            .unwrap();
        let app = app(&elevator);
        (elevator, app)
    });
    let token = wix.mint(CallerSpec::new(SubjectType::Member));
    for _ in 0..3 {
        assert_eq!(call(&app, "GET", "/instance", &token).await.0, 200);
    }
    assert_eq!(
        call(&app, "GET", "/instance", "OauthNG.JWS.unknown")
            .await
            .0,
        401
    );
    drop(elevator);
    let text = handle.render();
    for expected in [
        r#"wix_elevate_requests_total{route="instance",outcome="granted",status="200"} 3"#,
        r#"wix_elevate_requests_total{route="instance",outcome="invalid_token",status="401"} 1"#,
        r#"wix_elevate_cache_total{cache="identity",result="hit"} 2"#,
        r#"wix_elevate_cache_total{cache="identity",result="miss"} 2"#,
        r#"wix_elevate_cache_total{cache="app_token",result="miss"} 1"#,
        r#"wix_elevate_wix_calls_total{endpoint="token_info",outcome="ok"} 1"#,
        r#"wix_elevate_wix_calls_total{endpoint="token_info",outcome="client_error"} 1"#,
        r#"wix_elevate_wix_calls_total{endpoint="create_access_token",outcome="ok"} 1"#,
        r#"wix_elevate_wix_calls_total{endpoint="api",outcome="ok"} 3"#,
        "wix_elevate_wix_call_duration_seconds",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in\n{text}");
    }
}
