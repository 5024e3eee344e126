//! The quickstart's routes, shared with the AWS Lambda example.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    Json, Router,
    routing::{get, post, post_service},
};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use tower_http::cors::Any;
use wix_elevate::{
    Caller, ConfigError, ElevateLayer, Elevator, PolicyExt, SubjectTypes, WixApi, WixApiError,
    policy,
    webhook::{EventPayload, WebhookEndpoint, WebhookVerifier},
};

/// The demo app: one elevated layer per route, each declaring the Wix
/// operations its handler may call (and, with `RATE_LIMIT_PER_CALLER_PER_MIN`,
/// limiting each caller); CORS outside them all so browser preflights (which
/// carry no token) are answered.
pub(crate) fn app(
    elevator: &Elevator,
    metrics: PrometheusHandle,
    per_caller_per_min: Option<u32>,
    premium_plans: &[String],
    webhooks: Option<WebhookVerifier>,
    stopping: Arc<AtomicBool>,
) -> Result<Router, ConfigError> {
    // Wix's headers (`x-wix-linguist`, `X-Wix-Consistent`) allowed,
    // `Retry-After` and `WWW-Authenticate` readable by page code; a demo
    // takes any origin, a real app lists its sites.
    let cors = wix_elevate::cors::cors_layer().allow_origin(Any);
    let layer = |name: &'static str| -> Result<ElevateLayer, ConfigError> {
        let layer = elevator.layer().route_name(name);
        match per_caller_per_min {
            Some(limit) => layer.rate_limit_per_caller(limit),
            None => Ok(layer),
        }
    };
    let reads_instance = |name| layer(name)?.allow("GET /apps/v1/instance");
    let router = match webhooks {
        Some(verifier) => Router::new().route(
            "/webhooks",
            post_service(webhook_endpoint(elevator, verifier)?),
        ),
        None => Router::new(),
    };
    Ok(router
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readiness(elevator.clone(), stopping)))
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .route(
            "/api/whoami",
            get(whoami).route_layer(layer("whoami")?.policy(SubjectTypes::default())),
        )
        .route(
            "/api/instance",
            get(instance).route_layer(reads_instance("instance")?.policy(SubjectTypes::default())),
        )
        .route(
            "/api/members/instance",
            get(instance)
                .route_layer(reads_instance("members_instance")?.policy(SubjectTypes::members())),
        )
        .route(
            "/api/dashboard/instance",
            get(instance).route_layer(
                reads_instance("dashboard_instance")?
                    .policy(SubjectTypes::wix_users())
                    // Older dashboard pages send the token as `?instance=`.
                    .credential_from_query("instance"),
            ),
        )
        // Sites on one of the premium plans; others get 403 plan_required.
        .route(
            "/api/premium/instance",
            get(instance).route_layer(
                reads_instance("premium_instance")?
                    .policy(SubjectTypes::wix_users().and(policy::plans(premium_plans))),
            ),
        )
        // Declares nothing: its handler's attempt to create a member is refused.
        .route(
            "/api/members/escalate",
            post(escalate).route_layer(layer("members_escalate")?.policy(SubjectTypes::members())),
        )
        .layer(cors))
}

/// Readiness that keeps the fleet up: 503 only for what this replica alone
/// can fix, here that it is shutting down. A Wix outage is shared by every
/// replica: failing readiness for it would make a load balancer drop them
/// all at once, including the ones still serving cached callers (and let
/// anyone who can open the Token Info circuit take the service down). The
/// circuits' states are in the body and in `/metrics`, for dashboards and
/// alerts.
fn readiness(
    elevator: Elevator,
    stopping: Arc<AtomicBool>,
) -> impl Fn() -> std::future::Ready<(axum::http::StatusCode, Json<Value>)> + Clone {
    move || {
        let circuits = elevator.circuits();
        let ready = !stopping.load(Ordering::Acquire);
        let states: serde_json::Map<String, Value> = circuits
            .iter()
            .map(|(endpoint, closed)| {
                let state = if *closed { "closed" } else { "open" };
                (endpoint.as_str().to_owned(), json!(state))
            })
            .collect();
        let status = if ready {
            axum::http::StatusCode::OK
        } else {
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        };
        std::future::ready((status, Json(json!({ "ready": ready, "circuits": states }))))
    }
}

fn caller_json(caller: &Caller) -> Value {
    json!({
        "subjectType": caller.subject_type().as_str(),
        "subjectId": caller.subject_id(),
        "instanceId": caller.instance_id(),
    })
}

async fn whoami(caller: Caller) -> Json<Value> {
    Json(caller_json(&caller))
}

/// Wix's Get App Instance, called with the app token (which never leaves
/// the server).
/// Wix's webhooks: logged; app-instance events have already forgotten the
/// instance when the handler runs; on `AppInstalled`, the instance is read
/// with the app's identity, outside any request.
fn webhook_endpoint(
    elevator: &Elevator,
    verifier: WebhookVerifier,
) -> Result<WebhookEndpoint, ConfigError> {
    let on_install = elevator
        .layer()
        .route_name("webhook:app_installed")
        .allow("GET /apps/v1/instance")?;
    Ok(WebhookEndpoint::builder(elevator, verifier)
        .on_event(move |event| {
            let on_install = on_install.clone();
            async move {
                tracing::info!(
                    event_type = event.event_type(),
                    instance_id = event.instance_id(),
                    "webhook"
                );
                if let (EventPayload::AppInstalled { .. }, Some(instance)) =
                    (event.payload(), event.instance_id())
                {
                    let api = on_install.api_for_instance(instance);
                    match api
                        .get("/apps/v1/instance")
                        .await
                        .and_then(|r| r.json::<Value>())
                    {
                        Ok(answer) => tracing::info!(
                            instance_id = instance,
                            app_name = answer["instance"]["appName"].as_str(),
                            "installed"
                        ),
                        Err(error) => tracing::warn!(%error, "could not read the new instance"),
                    }
                }
            }
        })
        .build())
}

async fn instance(api: WixApi) -> Result<Json<Value>, WixApiError> {
    let instance: Value = api.get("/apps/v1/instance").await?.json()?;
    Ok(Json(
        json!({ "caller": caller_json(api.caller()), "instance": instance }),
    ))
}

/// A handler that tries more than its route allows: creating a member. The
/// route declares no operation, so the call is refused before it leaves.
async fn escalate(api: WixApi) -> Result<Json<Value>, WixApiError> {
    let member = json!({ "member": { "loginEmail": "intruder@example.com" } });
    let created: Value = api
        .post_json("/members/v1/members", &member)
        .await?
        .json()?;
    Ok(Json(created))
}
