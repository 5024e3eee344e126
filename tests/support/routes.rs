//! The routers the tests serve: the demo app (one route per policy,
//! handlers counted) and the scoped app (routes that declare Wix
//! operations, for least privilege and audit).

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{
    Json, Router,
    extract::Path,
    routing::{get, post},
};
use serde_json::{Value, json};
use wix_elevate::{
    Caller, ElevatedToken, Elevator, PolicyExt, Rejection, SubjectType, SubjectTypes, WixApi,
    WixApiError,
};

/// The smallest routes: `/whoami` (identity only: the caller's subject
/// id, no app token), `/token` (the app token exposed: its instance id)
/// and `/limited` (named `limited`, 30 requests a minute per caller). The
/// fleet replicas serve them, and suites that count Wix calls per step.
pub(crate) fn identity_app(elevator: &Elevator) -> Router {
    Router::new()
        .route(
            "/whoami",
            get(|caller: Caller| async move { caller.subject_id().to_owned() })
                .route_layer(elevator.layer()),
        )
        .route(
            "/token",
            get(|token: ElevatedToken| async move { token.instance_id().to_owned() })
                .route_layer(elevator.layer().expose_app_token()),
        )
        .route(
            "/limited",
            get(|| async { "ok" }).route_layer(
                elevator
                    .layer()
                    .route_name("limited")
                    .rate_limit_per_caller(crate::support::nz(30)),
            ),
        )
}

/// The routes the tests call; every elevated handler counts its runs.
pub(crate) fn demo_app(elevator: &Elevator, calls: Arc<AtomicUsize>) -> Router {
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
            get(instance).route_layer(elevator.layer().allow("GET /apps/v1/instance")),
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

async fn instance(api: WixApi) -> Result<Json<Value>, WixApiError> {
    Ok(Json(api.get("/apps/v1/instance").await?.json()?))
}

async fn create_member(api: WixApi) -> Result<Json<Value>, WixApiError> {
    Ok(Json(
        api.post("/members/v1/members")
            .json(&json!({"member": {}}))
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

/// Routes that declare the Wix operations their handlers call.
pub(crate) fn scoped_app(elevator: &Elevator) -> Router {
    let instance_only = || {
        elevator
            .layer()
            .route_name("instance")
            .allow("GET /apps/v1/instance")
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
                    .allow("GET /members/v1/members/{subjectId}"),
            ),
        )
        .route(
            "/any-member/{*path}",
            get(|api: WixApi, Path(path): Path<String>| async move {
                api.get(&format!("/members/v1/members/{path}"))
                    .await
                    .map(|_| "ok")
            })
            .route_layer(elevator.layer().allow("GET /members/v1/members/{id}")),
        )
        .route("/profiles/{id}", get(profile).route_layer(elevator.layer()))
}
