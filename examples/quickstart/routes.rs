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
    plugin::{PluginCall, PluginFailure, PluginVerifier, ServicePlugin},
    policy,
    webhook::{WebhookEndpoint, WebhookKeys, WebhookVerifier, WixEvent},
};

/// Where the Additional Fees plugin is served: its extension's
/// `deploymentUri` in the app dashboard.
pub(crate) const ADDITIONAL_FEES_BASE: &str = "/plugins/additional-fees";

/// The demo app: one elevated layer per route, each declaring the Wix
/// operations its handler may call (and, with `RATE_LIMIT_PER_CALLER_PER_MIN`,
/// limiting each caller); CORS outside them all so browser preflights (which
/// carry no token) are answered.
/// The quickstart's routes, and its webhook endpoint (to drain on shutdown).
pub(crate) struct App {
    pub(crate) router: Router,
    /// Drained by the quickstart on shutdown; the Lambda example and the
    /// bench drivers that share these routes have nothing to drain.
    #[allow(dead_code)]
    pub(crate) webhooks: Option<WebhookEndpoint>,
}

pub(crate) fn app(
    elevator: &Elevator,
    metrics: PrometheusHandle,
    per_caller_per_min: Option<std::num::NonZeroU32>,
    premium_plans: &[String],
    signing_keys: Option<WebhookKeys>,
    // `None`: webhook handlers run before the answer (Lambda without Redis).
    webhooks_queued_within: Option<std::time::Duration>,
    stopping: Arc<AtomicBool>,
) -> Result<App, ConfigError> {
    // Wix's headers (`x-wix-linguist`, `X-Wix-Consistent`) allowed,
    // `Retry-After` and `WWW-Authenticate` readable by page code; a demo
    // takes any origin, a real app lists its sites.
    let cors = wix_elevate::cors::cors_layer().allow_origin(Any);
    let layer = |name: &'static str| -> ElevateLayer {
        let layer = elevator.layer().route_name(name);
        match per_caller_per_min {
            Some(limit) => layer.rate_limit_per_caller(limit),
            None => layer,
        }
    };
    let reads_instance = |name| layer(name).allow("GET /apps/v1/instance");
    // Wix signs webhooks and service-plugin calls with the same app key.
    let (router, webhooks) = match signing_keys {
        Some(keys) => {
            let webhooks = webhook_endpoint(
                elevator,
                WebhookVerifier::new(keys.clone()),
                webhooks_queued_within,
            )?;
            let router = Router::new()
                .route("/webhooks", post_service(webhooks.clone()))
                .nest_service(ADDITIONAL_FEES_BASE, additional_fees(elevator, keys)?);
            (router, Some(webhooks))
        }
        None => (Router::new(), None),
    };
    let router = router
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readiness(elevator.clone(), stopping)))
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .route(
            "/api/whoami",
            get(whoami).route_layer(layer("whoami").policy(SubjectTypes::default())),
        )
        .route(
            "/api/instance",
            get(instance).route_layer(reads_instance("instance").policy(SubjectTypes::default())),
        )
        .route(
            "/api/members/instance",
            get(instance)
                .route_layer(reads_instance("members_instance").policy(SubjectTypes::members())),
        )
        .route(
            "/api/dashboard/instance",
            get(instance).route_layer(
                reads_instance("dashboard_instance")
                    .policy(SubjectTypes::wix_users())
                    // Older dashboard pages send the token as `?instance=`.
                    .credential_from_query("instance"),
            ),
        )
        // Sites on one of the premium plans; others get 403 plan_required.
        .route(
            "/api/premium/instance",
            get(instance).route_layer(
                reads_instance("premium_instance")
                    .policy(SubjectTypes::wix_users().and(policy::plans(premium_plans))),
            ),
        )
        // Declares nothing: its handler's attempt to create a member is refused.
        .route(
            "/api/members/escalate",
            post(escalate).route_layer(layer("members_escalate").policy(SubjectTypes::members())),
        )
        .layer(cors);
    Ok(App { router, webhooks })
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
        // Shutting down, or a fleet required (`REDIS_REQUIRED`) that cannot
        // give its guarantees: out of rotation.
        let ready = !stopping.load(Ordering::Acquire) && elevator.fleet_ready();
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
        let mut body = json!({ "ready": ready, "circuits": states });
        // Fleet mode: a degraded fleet still serves, so readiness stays 200
        // unless the fleet is required; its state and cause are here, and in
        // `wix_elevate_fleet_up`.
        if elevator.redis_available().is_some() {
            let degraded = elevator.fleet_degraded();
            body["fleet"] = json!({ "up": degraded.is_none(), "cause": degraded });
        }
        std::future::ready((status, Json(body)))
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
/// `queued_within`: run after the answer (in fleet mode, from the fleet's
/// durable queue) within this deadline; `None`: before the answer, within
/// 800 ms (Lambda without Redis).
fn webhook_endpoint(
    elevator: &Elevator,
    verifier: WebhookVerifier,
    queued_within: Option<std::time::Duration>,
) -> Result<WebhookEndpoint, ConfigError> {
    let on_install = elevator
        .app_client("webhook:app_installed")
        .allow("GET /apps/v1/instance")
        .build()?;
    // One handler per event type; every event is logged.
    let log = |event: &WixEvent| {
        tracing::info!(
            event_type = event.event_type(),
            instance_id = event.instance_id(),
            "webhook"
        );
    };
    let builder = WebhookEndpoint::builder(elevator, verifier);
    // Where the process may be frozen right after an answer (Lambda
    // without Redis), the handler runs before it.
    let builder = match queued_within {
        None => builder
            .handle_before_acknowledging()
            .handler_deadline(std::time::Duration::from_millis(800)),
        Some(deadline) => builder.handler_deadline(deadline),
    };
    Ok(builder
        .on_app_installed(move |event| {
            log(&event);
            let on_install = on_install.clone();
            async move {
                let Some(instance) = event.instance_id() else {
                    return;
                };
                let api = on_install.for_instance(instance);
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
        })
        .on_plan_event(move |event, plan| {
            log(&event);
            tracing::info!(plan = plan.vendor_product_id.as_deref(), "plan changed");
            async {}
        })
        .on_event(move |event| {
            log(&event);
            async {}
        })
        .build())
}

/// Wix's Additional Fees request: only what the quickstart reads of it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CalculateAdditionalFees {
    #[serde(default)]
    line_items: Vec<LineItem>,
}

#[derive(serde::Deserialize)]
struct LineItem {
    id: String,
    #[serde(default = "one")]
    quantity: u32,
}

fn one() -> u32 {
    1
}

/// The Additional Fees plugin (`ECOM_ADDITIONAL_FEES`, method path from
/// Wix's `@wix/auto_sdk_ecom_additional-fees`): a handling fee of 1.50
/// per unit of each line item, in the call's currency, after reading the
/// site's instance with the app's identity (one app token per instance,
/// then cached). Wix waits 3 s: the plugin answers within 2.5 s, even when
/// Wix's own API hangs.
fn additional_fees(elevator: &Elevator, keys: WebhookKeys) -> Result<ServicePlugin, ConfigError> {
    ServicePlugin::builder(
        elevator,
        PluginVerifier::new(elevator.app_id(), keys),
        "ECOM_ADDITIONAL_FEES",
    )
    .route_name("plugin:additional_fees")
    .allow("GET /apps/v1/instance")
    .method("/v1/calculate-additional-fees", calculate_additional_fees)
    .build()
}

async fn calculate_additional_fees(
    call: PluginCall<CalculateAdditionalFees>,
) -> Result<Value, PluginFailure> {
    let site: Value = call.api().get("/apps/v1/instance").await?.json()?;
    let currency = call.metadata().currency().unwrap_or("USD");
    let fees: Vec<Value> = call
        .request()
        .line_items
        .iter()
        .map(|item| {
            let cents = 150 * u64::from(item.quantity);
            json!({
                "code": "handling",
                "name": "Handling",
                "price": format!("{}.{:02}", cents / 100, cents % 100),
                "taxDetails": {"taxable": false},
                "lineItemIds": [item.id],
            })
        })
        .collect();
    tracing::info!(
        instance_id = call.metadata().instance_id(),
        app_name = site["instance"]["appName"].as_str(),
        fees = fees.len(),
        "additional fees"
    );
    Ok(json!({ "additionalFees": fees, "currency": currency }))
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
        .post("/members/v1/members")
        .json(&member)
        .await?
        .json()?;
    Ok(Json(created))
}
