//! An app whose routes declare Wix operations, shared by the least-privilege
//! and audit tests.

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
    Caller, Elevator, Rejection, SubjectTypes, WixApi, WixApiError, test_util::MockWix,
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
