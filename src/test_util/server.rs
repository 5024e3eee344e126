//! The mock's HTTP side: Wix's routes and answers, faults applied.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::Body,
    extract::State,
    response::Response,
    routing::{get, post},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::{
    spec::{
        ClientId, Fault, GrantQuirk, MockEndpoint, RefusedTokenAnswer, TokenInfoQuirk,
        TokenInfoStyle,
    },
    state::{AppTokenRecord, MockState},
};

/// Serve Wix's routes for `state` on `listener` until the task is aborted.
pub(super) async fn serve(listener: TcpListener, state: Arc<MockState>) {
    let router = Router::new()
        .route("/oauth2/token-info", post(token_info))
        .route("/oauth2/token", post(create_access_token))
        .route("/apps/v1/instance", get(get_app_instance))
        .route("/members/v1/members/{id}", get(get_member))
        .fallback(not_found)
        // Operations registered with `MockWix::on` win over the built-in ones.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::registered::registered_first,
        ))
        .with_state(state);
    // The listener only fails if the runtime shuts down.
    let _ = axum::serve(listener, router).await;
}

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn body_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        "x-wix-request-id",
        HeaderValue::from_static("mock-request-id"),
    );
    response
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    body_response(status, body.to_string())
}

/// Wix's standard error body.
pub(super) fn wix_error(status: StatusCode, message: &str, code: &str) -> Response {
    json_response(
        status,
        &json!({
            "message": message,
            "details": { "applicationError": { "code": code, "description": message, "data": {} } }
        }),
    )
}

/// A body that fails on its first poll: hyper then drops the connection.
struct DroppedBody;

impl http_body::Body for DroppedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        Poll::Ready(Some(Err(io::Error::other("mock: connection dropped"))))
    }
}

/// Apply latency and the injected fault; `Some` is the answer to send.
pub(super) async fn apply(latency: Duration, fault: Option<Fault>) -> Option<Response> {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let fault = fault?;
    Some(match fault {
        Fault::Delay(delay) => {
            tokio::time::sleep(delay).await;
            return None;
        }
        Fault::Hang => std::future::pending::<Response>().await,
        Fault::Status(code) => wix_error(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "injected failure",
            "MOCK_FAULT",
        ),
        Fault::Malformed => json_response(
            StatusCode::OK,
            &json!({ "active": "maybe", "access_token": 42 }),
        ),
        Fault::NotJson => {
            let mut response = Response::new(Body::from("<html>Bad gateway</html>"));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            response
        }
        Fault::Drop => Response::new(Body::new(DroppedBody)),
        Fault::TooManyRequests { retry_after_secs } => {
            let mut response = wix_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests",
                "RESOURCE_EXHAUSTED",
            );
            if let Some(secs) = retry_after_secs {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
    })
}

async fn token_info(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    let token = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_owned));
    if let Some(token) = &token {
        *state
            .lock()
            .token_info_by_token
            .entry(token.clone())
            .or_default() += 1;
    }
    let (latency, fault) = state.begin(MockEndpoint::TokenInfo);
    state.wait_released(MockEndpoint::TokenInfo).await;
    if let Some(response) = apply(latency, fault).await {
        return response;
    }
    let Some(token) = token else {
        return wix_error(
            StatusCode::BAD_REQUEST,
            "token is required",
            "INVALID_ARGUMENT",
        );
    };
    let inner = state.lock();
    if let Some(body) = &inner.raw_token_info {
        return body_response(StatusCode::OK, body.clone());
    }
    let Some(minted) = inner.callers.get(&token) else {
        return match inner.refused {
            RefusedTokenAnswer::Status(code) => wix_error(
                StatusCode::from_u16(code).unwrap_or(StatusCode::UNAUTHORIZED),
                "invalid token",
                "INVALID_TOKEN",
            ),
            RefusedTokenAnswer::Inactive => match inner.style {
                // proto3 JSON omits `false`.
                TokenInfoStyle::Proto3 => json_response(StatusCode::OK, &json!({})),
                _ => json_response(StatusCode::OK, &json!({ "active": false })),
            },
        };
    };
    let spec = &minted.spec;
    let mut body = match inner.style {
        TokenInfoStyle::Proto3 => json!({
            "exp": minted.exp.to_string(),
            "iat": minted.iat.to_string(),
            "accountId": "mock-account",
        }),
        TokenInfoStyle::Strings => json!({
            "active": spec.active.to_string(),
            "exp": minted.exp.to_string(),
            "iat": minted.iat.to_string(),
        }),
        TokenInfoStyle::Native => {
            json!({ "active": spec.active, "exp": minted.exp, "iat": minted.iat })
        }
    };
    let proto3 = inner.style == TokenInfoStyle::Proto3;
    if proto3 && spec.active {
        body["active"] = json!(true);
    }
    // proto3 JSON drops fields at their default value: `false` and "".
    let mut set = |name: &str, value: &str| {
        if !(proto3 && value.is_empty()) {
            body[name] = json!(value);
        }
    };
    set("subjectType", &spec.subject_type);
    set("subjectId", &minted.subject_id);
    match &spec.client_id {
        ClientId::ThisApp => set("clientId", &state.app_id),
        ClientId::Other(id) => set("clientId", id),
        ClientId::Absent => {}
    }
    if let Some(site) = &spec.site_id {
        set("siteId", site);
    }
    if let Some(instance) = &spec.instance_id {
        set("instanceId", instance);
    }
    let site_plan = spec
        .instance_id
        .as_ref()
        .and_then(|instance| inner.instance_plans.get(instance));
    if let Some(plan) = site_plan.unwrap_or(&spec.plan) {
        set("vendorProductId", plan);
    }
    let quirks = &inner.quirks;
    for quirk in quirks {
        match quirk {
            TokenInfoQuirk::IatIsoDate => body["iat"] = json!("2026-11-27T10:00:00Z"),
            TokenInfoQuirk::IatObject => body["iat"] = json!({ "seconds": minted.iat }),
            TokenInfoQuirk::SubjectTypeNumber => body["subjectType"] = json!(2),
            TokenInfoQuirk::ActiveUppercase => {
                body["active"] = json!(if spec.active { "TRUE" } else { "FALSE" });
            }
            TokenInfoQuirk::ExpDecimalString => body["exp"] = json!(format!("{}.0", minted.exp)),
            TokenInfoQuirk::ExpDecimalNumber => body["exp"] = json!(minted.exp as f64 + 0.5),
            TokenInfoQuirk::SubjectTypeEscaped | TokenInfoQuirk::Bom => {}
        }
    }
    let mut text = body.to_string();
    if quirks.contains(&TokenInfoQuirk::SubjectTypeEscaped) {
        let plain = format!(r#""subjectType":"{}""#, spec.subject_type);
        if let Some(first) = spec.subject_type.chars().next() {
            let rest = &spec.subject_type[first.len_utf8()..];
            let escaped = format!(r#""subjectType":"\u{:04X}{rest}""#, u32::from(first));
            text = text.replace(&plain, &escaped);
        }
    }
    if quirks.contains(&TokenInfoQuirk::Bom) {
        text.insert(0, '\u{FEFF}');
    }
    body_response(StatusCode::OK, text)
}

async fn create_access_token(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let field = |name: &str| {
        request
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let instance = field("instance_id");
    if !instance.is_empty() {
        *state
            .lock()
            .grants_by_instance
            .entry(instance.clone())
            .or_default() += 1;
    }
    let (latency, fault) = state.begin(MockEndpoint::CreateAccessToken);
    state.wait_released(MockEndpoint::CreateAccessToken).await;
    if let Some(response) = apply(latency, fault).await {
        return response;
    }
    if field("grant_type") != "client_credentials" {
        return wix_error(
            StatusCode::BAD_REQUEST,
            "unsupported grant_type",
            "INVALID_ARGUMENT",
        );
    }
    if field("client_id") != state.app_id || field("client_secret") != state.app_secret {
        return wix_error(
            StatusCode::UNAUTHORIZED,
            "invalid client credentials",
            "UNAUTHENTICATED",
        );
    }
    if instance.is_empty() {
        return wix_error(
            StatusCode::BAD_REQUEST,
            "instance_id is required",
            "INVALID_ARGUMENT",
        );
    }
    let mut inner = state.lock();
    let lifetime = inner
        .lifetimes
        .get(&instance)
        .copied()
        .unwrap_or(inner.default_lifetime);
    inner.minted += 1;
    let nonce = std::hash::BuildHasher::hash_one(&state.random, inner.minted);
    let token = format!("OauthNG.JWS.mock-app-{}-{nonce:016x}", inner.minted);
    let secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2);
    inner.app_tokens.insert(
        token.clone(),
        AppTokenRecord {
            instance_id: instance,
            expires_at: unix_now().saturating_add(secs),
        },
    );
    let mut body = json!({ "access_token": token, "token_type": "Bearer", "expires_in": secs });
    match inner.grant_quirk {
        None => {}
        Some(GrantQuirk::NoExpiresIn) => {
            body.as_object_mut().map(|o| o.remove("expires_in"));
        }
        Some(GrantQuirk::ZeroExpiresIn) => body["expires_in"] = json!(0),
        Some(GrantQuirk::DurationString) => body["expires_in"] = json!(format!("{secs}s")),
        Some(GrantQuirk::Huge) => body["expires_in"] = json!(i64::MAX),
    }
    json_response(StatusCode::OK, &body)
}

type WixErrorParts = (StatusCode, &'static str, &'static str);

/// The instance an app token in `Authorization` acts for, or the Wix error
/// to answer: 403 for a caller token, 401 for an unknown, revoked or
/// expired one.
pub(super) fn check_app_token(
    state: &MockState,
    headers: &HeaderMap,
) -> Result<String, WixErrorParts> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v))
        .unwrap_or_default();
    let inner = state.lock();
    if inner.callers.contains_key(token) {
        return Err((
            StatusCode::FORBIDDEN,
            "caller identity is not permitted to call this method",
            "PERMISSION_DENIED",
        ));
    }
    match inner.app_tokens.get(token) {
        None => Err((
            StatusCode::UNAUTHORIZED,
            "invalid access token",
            "UNAUTHENTICATED",
        )),
        Some(record) if record.expires_at <= unix_now() => Err((
            StatusCode::UNAUTHORIZED,
            "access token expired",
            "UNAUTHENTICATED",
        )),
        Some(record) => Ok(record.instance_id.clone()),
    }
}

async fn get_member(
    State(state): State<Arc<MockState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response {
    let (_, fault) = state.begin(MockEndpoint::GetMember);
    state.wait_released(MockEndpoint::GetMember).await;
    if let Some(response) = apply(Duration::ZERO, fault).await {
        return response;
    }
    match check_app_token(&state, &headers) {
        Ok(_) => {
            // As Wix: the PUBLIC fieldset leaves out private fields.
            let public = uri
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "fieldsets=PUBLIC"));
            let mut member = json!({ "id": id, "status": "APPROVED" });
            if !public {
                member["loginEmail"] = json!(format!("{id}@example.com"));
            }
            json_response(StatusCode::OK, &json!({ "member": member }))
        }
        Err((status, message, code)) => wix_error(status, message, code),
    }
}

/// Any path nothing serves: Wix's 404, counted.
async fn not_found(State(state): State<Arc<MockState>>) -> Response {
    state.begin(MockEndpoint::Other);
    wix_error(
        StatusCode::NOT_FOUND,
        "no such endpoint in the mock",
        "NOT_FOUND",
    )
}

async fn get_app_instance(State(state): State<Arc<MockState>>, headers: HeaderMap) -> Response {
    let (_, fault) = state.begin(MockEndpoint::GetAppInstance);
    state.wait_released(MockEndpoint::GetAppInstance).await;
    if let Some(response) = apply(Duration::ZERO, fault).await {
        return response;
    }
    let instance_id = match check_app_token(&state, &headers) {
        Ok(instance_id) => instance_id,
        Err((status, message, code)) => return wix_error(status, message, code),
    };
    json_response(
        StatusCode::OK,
        &json!({
            "instance": {
                "instanceId": instance_id,
                "appName": "Mock App",
                "appVersion": "1.0.0",
                "isFree": true,
                "permissions": ["SCOPE.DC-APPS.MANAGE-YOUR-APP"],
            },
            "site": {
                "siteId": "mock-site",
                "siteDisplayName": "Mock Site",
                "url": "https://example.wixsite.com/mock",
                "locale": "en",
                "paymentCurrency": "USD",
                "multilingual": { "isMultiLingual": false, "supportedLanguages": [] },
                "description": "A site served by wix-elevate's mock",
            }
        }),
    )
}
