//! The audit trail: one event per elevated Wix call and per denial, with
//! who, what and how it ended; never a token.

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
    test_util::{CallerSpec, MockWix},
};

use crate::Captured;

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
async fn audit_events_carry_who_did_what_and_no_token() {
    let captured = Captured::default();
    let _guard = captured.install(tracing::Level::INFO);

    let (wix, elevator) = setup().await;
    let app = app(&elevator).route(
        "/members-only",
        get(|| async { "ok" }).route_layer(
            elevator
                .layer()
                .policy(SubjectTypes::members())
                .route_name("members_only"),
        ),
    );
    let member = wix.mint(
        CallerSpec::new(SubjectType::Member)
            .subject_id("m-7")
            .instance("inst-7"),
    );
    let visitor = wix.mint(
        CallerSpec::new(SubjectType::Visitor)
            .subject_id("v-7")
            .instance("inst-7"),
    );
    assert_eq!(call(&app, "GET", "/instance", &member).await.0, 200);
    assert_eq!(call(&app, "POST", "/escalate", &member).await.0, 403);
    assert_eq!(call(&app, "GET", "/members-only", &visitor).await.0, 403);
    drop(_guard);
    let logs = captured.text();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("wix_elevate::audit"))
        .collect();

    let call_event = lines
        .iter()
        .find(|l| l.contains("elevated Wix call"))
        .expect(&logs);
    for field in [
        "route=\"instance\"",
        "policy=\"default\"",
        "subject_type=\"MEMBER\"",
        "subject_id=\"m-7\"",
        "instance_id=\"inst-7\"",
        "operation=GET /apps/v1/instance",
        "outcome=\"ok\"",
        "status=200",
        "latency_ms=",
    ] {
        assert!(
            call_event.contains(field),
            "{field} missing in {call_event}"
        );
    }
    let undeclared = lines
        .iter()
        .find(|l| l.contains("operation_not_declared"))
        .expect(&logs);
    assert!(
        undeclared.contains("operation=POST /members/v1/members"),
        "{undeclared}"
    );
    assert!(undeclared.contains("subject_id=\"m-7\""), "{undeclared}");
    let denied = lines
        .iter()
        .find(|l| l.contains("policy_denied"))
        .expect(&logs);
    assert!(
        denied.contains("route=\"members_only\"") && denied.contains("subject_type=\"VISITOR\""),
        "{denied}"
    );
    assert!(denied.contains("policy=\"members\""), "{denied}");
    for token in [&member, &visitor] {
        assert!(!logs.contains(token.as_str()));
    }
    assert!(!logs.contains("OauthNG"), "{logs}");
}
