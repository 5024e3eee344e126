//! [`WixApi`]: the client handlers use to call Wix with the caller's
//! elevated token, limited to the operations their route declared.
//!
//! Every call is checked against the route's declared [`Operation`]s before
//! any traffic; an undeclared call is refused with
//! [`WixApiError::Undeclared`] (403 as a response). Every call that goes out
//! is audited (target `wix_elevate::audit`) and counted (endpoint `api`). The
//! token never needs to be touched: it is attached here.
//!
//! # Example
//!
//! ```
//! use axum::{Json, Router, routing::{get, post}};
//! use serde_json::Value;
//! use wix_elevate::{Elevator, SubjectTypes, WixApi, WixApiError};
//!
//! async fn instance(api: WixApi) -> Result<Json<Value>, WixApiError> {
//!     Ok(Json(api.get("/apps/v1/instance").await?.json()?))
//! }
//!
//! async fn escalate(api: WixApi) -> Result<Json<Value>, WixApiError> {
//!     // Not declared below: refused with 403 before anything reaches Wix.
//!     Ok(Json(api.post_json("/members/v1/members", &serde_json::json!({})).await?.json()?))
//! }
//!
//! # fn main() -> Result<(), wix_elevate::ConfigError> {
//! let elevator = Elevator::builder("app", "secret").build()?;
//! let app: Router = Router::new()
//!     .route("/instance", get(instance).route_layer(elevator.layer().allow("GET /apps/v1/instance")?))
//!     .route("/escalate", post(escalate).route_layer(elevator.layer().policy(SubjectTypes::members())));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use std::{fmt, sync::Arc, time::Instant};

use bytes::Bytes;
use http::{Extensions, HeaderValue, Method, StatusCode, header};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    audit,
    caller::{Caller, ElevatedToken},
    client::{self, transport_error},
    error::{Endpoint, UpstreamError},
    layer::{RouteConfig, RouteScope},
    metrics::CallOutcome,
    operation::Operation,
};

/// Wix API answers larger than this are refused.
const MAX_API_BODY: usize = 4 * 1024 * 1024;

/// A Wix API client acting with the caller's elevated token, limited to the
/// operations the route declared. Extract it in a handler (feature `axum`).
///
/// On a route that declared no operation it refuses every call, before
/// any traffic (and its audit events then name no route or policy).
#[derive(Clone)]
pub struct WixApi {
    /// `None` on a route that declared no operation: every call is refused.
    route: Option<Arc<RouteConfig>>,
    caller: Caller,
    token: ElevatedToken,
}

impl WixApi {
    /// The client for a request the layer authorized, read from its
    /// extensions; `None` if no [`ElevateLayer`](crate::ElevateLayer) ran.
    /// For plain tower services; axum handlers extract `WixApi` directly.
    ///
    /// ```
    /// use wix_elevate::WixApi;
    ///
    /// let req = http::Request::new(());
    /// assert!(WixApi::from_extensions(req.extensions()).is_none(), "no layer ran");
    /// ```
    pub fn from_extensions(extensions: &Extensions) -> Option<Self> {
        Some(Self {
            // Absent on a route that declared no operation (see `service::attach`).
            route: extensions.get::<RouteScope>().map(|scope| scope.0.clone()),
            caller: extensions.get::<Caller>()?.clone(),
            token: extensions.get::<ElevatedToken>()?.clone(),
        })
    }

    /// The caller this client acts for.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The operations this route declared.
    pub fn operations(&self) -> &[Operation] {
        self.route.as_ref().map_or(&[], |route| &route.operations)
    }

    /// `GET` a path under the Wix API base URL (a query string is allowed).
    pub async fn get(&self, path: &str) -> Result<WixResponse, WixApiError> {
        self.send(Method::GET, path, None).await
    }

    /// `POST` a JSON body.
    pub async fn post_json<T: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<WixResponse, WixApiError> {
        let body = serde_json::to_vec(body).map_err(|_| WixApiError::Body)?;
        self.send(Method::POST, path, Some(body.into())).await
    }

    /// Any method, with an optional JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        json: Option<Bytes>,
    ) -> Result<WixResponse, WixApiError> {
        let route = self.route.as_deref();
        let (bare_path, query) = path.split_once('?').unwrap_or((path, ""));
        let declared = route
            .filter(|_| query.bytes().all(|b| b.is_ascii_graphic() && b != b'#'))
            .and_then(|route| {
                (route.operations.iter())
                    .find(|op| op.matches(&method, bare_path, &self.caller))
                    .map(|operation| (route, operation))
            });
        let Some((route, operation)) = declared else {
            let refused = format!("{method} {bare_path}");
            audit::denied(
                route.map(|route| &*route.route_name),
                route.map(|route| route.policy.name()),
                Some(&self.caller),
                Some(&refused),
                "operation_not_declared",
            );
            return Err(WixApiError::Undeclared {
                method,
                path: bare_path.to_owned(),
            });
        };

        let started = Instant::now();
        let result = self.call(route, method, path, json).await;
        let elapsed = started.elapsed();
        let (outcome, status) = match &result {
            Ok(response) => (CallOutcome::Ok, Some(response.status.as_u16())),
            Err(WixApiError::Wix { status, .. }) => {
                (CallOutcome::of_status(*status), Some(status.as_u16()))
            }
            Err(WixApiError::Upstream(error)) => (CallOutcome::of_error(error), None),
            Err(_) => (CallOutcome::Malformed, None),
        };
        route
            .elevator
            .client()
            .metrics()
            .api
            .record(outcome, elapsed);
        audit::wix_call(
            &route.route_name,
            route.policy.name(),
            &self.caller,
            operation,
            outcome.as_str(),
            status,
            elapsed,
        );
        result
    }

    async fn call(
        &self,
        route: &RouteConfig,
        method: Method,
        path: &str,
        json: Option<Bytes>,
    ) -> Result<WixResponse, WixApiError> {
        let endpoint = Endpoint::Api;
        let client = route.elevator.client();
        let mut request = client
            .http()
            .request(method, format!("{}{path}", client.base_url()))
            .header(header::AUTHORIZATION, self.token.authorization_header());
        if let Some(json) = json {
            request = request
                .header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )
                .body(json);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(endpoint, e))?;
        let status = response.status();
        let request_id = client::request_id(response.headers());
        let body = client::read_body(endpoint, response, MAX_API_BODY).await?;
        if status.is_success() {
            return Ok(WixResponse {
                status,
                request_id,
                body,
            });
        }
        let error: WixErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        Err(WixApiError::Wix {
            status,
            message: error.message,
            code: error
                .details
                .and_then(|d| d.application_error)
                .and_then(|e| e.code),
            request_id,
        })
    }
}

impl fmt::Debug for WixApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WixApi")
            .field("caller", &self.caller)
            .field("operations", &self.operations())
            .finish_non_exhaustive()
    }
}

/// Wix's standard error body, `{message, details: {applicationError: {code}}}`.
#[derive(Default, serde::Deserialize)]
struct WixErrorBody {
    message: Option<String>,
    details: Option<WixErrorDetails>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WixErrorDetails {
    application_error: Option<WixApplicationError>,
}

#[derive(serde::Deserialize)]
struct WixApplicationError {
    code: Option<String>,
}

/// A successful answer from a Wix API.
#[derive(Clone, Debug)]
pub struct WixResponse {
    status: StatusCode,
    request_id: Option<String>,
    body: Bytes,
}

impl WixResponse {
    /// The HTTP status (2xx).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Wix's `x-wix-request-id`, for support tickets.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The raw body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body decoded as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, WixApiError> {
        serde_json::from_slice(&self.body).map_err(|_| {
            WixApiError::Upstream(UpstreamError::Malformed {
                endpoint: Endpoint::Api,
                reason: "the body is not the expected JSON",
            })
        })
    }
}

/// A [`WixApi`] call failed.
///
/// As a response (feature `axum`), every kind is a fixed
/// `application/problem+json` body: 403 for an undeclared operation, 504 for
/// a timeout, 502 otherwise. Wix's own message stays in this value, for logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WixApiError {
    /// The route did not declare this operation; nothing was sent.
    #[error("{method} {path} is not an operation this route declared")]
    Undeclared {
        /// The method asked for.
        method: Method,
        /// The path asked for (without query).
        path: String,
    },
    /// Wix answered with a non-2xx status.
    #[error("Wix answered HTTP {status}")]
    Wix {
        /// Wix's status.
        status: StatusCode,
        /// Wix's `message`, if it sent one.
        message: Option<String>,
        /// Wix's `details.applicationError.code`, if it sent one.
        code: Option<String>,
        /// Wix's `x-wix-request-id`.
        request_id: Option<String>,
    },
    /// Wix did not answer in time, could not be reached, or sent a body that
    /// could not be read.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The request body could not be serialized.
    #[error("the request body could not be serialized to JSON")]
    Body,
}

impl WixApiError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.describe().0
    }

    /// A stable code for the problem body.
    pub fn code(&self) -> &'static str {
        self.describe().1
    }

    /// Status, code and fixed detail text, in one place.
    fn describe(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            WixApiError::Undeclared { .. } => (
                StatusCode::FORBIDDEN,
                "operation_not_declared",
                "This endpoint may not perform that Wix operation.",
            ),
            WixApiError::Wix { .. } => (
                StatusCode::BAD_GATEWAY,
                "wix_api_error",
                "A Wix API call failed.",
            ),
            WixApiError::Upstream(UpstreamError::Timeout { .. }) => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "Wix did not answer in time.",
            ),
            WixApiError::Upstream(_) => (
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
                "Wix could not be reached or sent an unreadable answer.",
            ),
            WixApiError::Body => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "request_body",
                "The request to Wix could not be built.",
            ),
        }
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for WixApiError {
    fn into_response(self) -> axum_core::response::Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(target: "wix_elevate::api", error = %self, "Wix API call failed");
        }
        let (_, code, detail) = self.describe();
        crate::response::problem(status, detail, code)
    }
}
