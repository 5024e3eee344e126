//! [`WixApi`]: the client handlers use to call Wix with the caller's
//! elevated token, limited to the operations their route declared.
//!
//! A call is built from values, never from a pre-formatted URL: a path
//! template whose `{placeholders}` are filled with [`WixRequest::arg`]
//! (`{subjectId}` and `{instanceId}` default to the caller's own), and
//! query parameters added with [`WixRequest::query`], which are encoded
//! here. The whole call, method, path and query, is checked against the
//! route's declared [`Operation`]s before any traffic: a path argument
//! that is not a plain segment (a `?`, `#`, `/`, `%`...), an undeclared
//! query key, a fixed key with another value or a repeated key is refused
//! with 403 (`operation_not_declared`) and audited.
//!
//! A call that goes out has the same protections as the authentication: a
//! deadline ([`api_deadline`](crate::ElevatorBuilder::api_deadline)) with a
//! timeout per attempt, jittered retries of transient failures for
//! idempotent operations only, Wix's 429 honoured (retried if its
//! `Retry-After` fits, else 503 with it), a cap on calls in flight and a
//! circuit breaker of its own. If Wix answers 401 to the cached app token
//! (the app was reinstalled, the token revoked), the token is replaced
//! once, for every request that saw it, and the call retried once.
//!
//! Every call that goes out is audited (target `wix_elevate::audit`) and
//! counted (endpoint `api`). The token never needs to be touched.
//!
//! # Example
//!
//! ```
//! use axum::{Json, Router, extract::Path, routing::{get, post}};
//! use serde_json::Value;
//! use wix_elevate::{Elevator, SubjectTypes, WixApi, WixApiError};
//!
//! async fn instance(api: WixApi) -> Result<Json<Value>, WixApiError> {
//!     Ok(Json(api.get("/apps/v1/instance").await?.json()?))
//! }
//!
//! async fn member(api: WixApi, Path(id): Path<String>) -> Result<Json<Value>, WixApiError> {
//!     // `id` is a value, never part of a URL string: `m1?fieldsets=FULL`
//!     // cannot add a query, it is refused.
//!     let member = api
//!         .get("/members/v1/members/{id}")
//!         .arg("id", &id)
//!         .query("fieldsets", "PUBLIC")
//!         .await?;
//!     Ok(Json(member.json()?))
//! }
//!
//! async fn escalate(api: WixApi) -> Result<Json<Value>, WixApiError> {
//!     // Not declared below: refused with 403 before anything reaches Wix.
//!     Ok(Json(api.post("/members/v1/members").json(&serde_json::json!({})).await?.json()?))
//! }
//!
//! # fn main() -> Result<(), wix_elevate::ConfigError> {
//! let elevator = Elevator::builder("app", "secret").build()?;
//! let app: Router = Router::new()
//!     .route("/instance", get(instance).route_layer(elevator.layer().allow("GET /apps/v1/instance")?))
//!     .route("/members/{id}", get(member).route_layer(
//!         elevator.layer().allow("GET /members/v1/members/{id}?fieldsets=PUBLIC")?))
//!     .route("/escalate", post(escalate).route_layer(elevator.layer().policy(SubjectTypes::members())));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use std::{
    fmt,
    future::{Future, IntoFuture},
    pin::Pin,
    sync::Arc,
    time::Duration,
};
use tokio::time::Instant;

use bytes::Bytes;
use http::{Extensions, Method, StatusCode};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    audit::{self, Clean},
    caller::{Caller, ElevatedToken},
    client::{ApiAnswer, ApiCall},
    error::{DEFAULT_RETRY_AFTER, Endpoint, Rejection, RejectionKind, UpstreamError},
    operation::{Operation, placeholder},
    route::{RouteConfig, RouteScope},
};

/// A Wix API client acting with the caller's elevated token, limited to the
/// operations the route declared. Extract it in a handler (feature `axum`).
///
/// On a route that declared no operation it refuses every call, before
/// any traffic.
#[derive(Clone)]
pub struct WixApi {
    route: Arc<RouteConfig>,
    caller: Caller,
    /// Attached by the layer on routes that declare operations.
    token: Option<ElevatedToken>,
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
        let scope = extensions.get::<RouteScope>()?;
        Some(Self {
            route: scope.route.clone(),
            caller: extensions.get::<Caller>()?.clone(),
            token: scope.token.clone(),
        })
    }

    pub(crate) fn new(
        route: Arc<RouteConfig>,
        caller: Caller,
        token: Option<ElevatedToken>,
    ) -> Self {
        Self {
            route,
            caller,
            token,
        }
    }

    /// The caller this client acts for.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The operations this route declared.
    pub fn operations(&self) -> &[Operation] {
        &self.route.operations
    }

    /// A `GET` of `path`, a path or path template (see [`WixRequest`]).
    /// Await it to send it.
    pub fn get(&self, path: &str) -> WixRequest<'_> {
        self.request(Method::GET, path)
    }

    /// A `POST` to `path`; add a body with [`WixRequest::json`].
    pub fn post(&self, path: &str) -> WixRequest<'_> {
        self.request(Method::POST, path)
    }

    /// A `PUT` to `path`.
    pub fn put(&self, path: &str) -> WixRequest<'_> {
        self.request(Method::PUT, path)
    }

    /// A `PATCH` to `path`.
    pub fn patch(&self, path: &str) -> WixRequest<'_> {
        self.request(Method::PATCH, path)
    }

    /// A `DELETE` of `path`.
    pub fn delete(&self, path: &str) -> WixRequest<'_> {
        self.request(Method::DELETE, path)
    }

    /// `POST` a JSON body to `path`.
    pub fn post_json<T: Serialize + ?Sized>(&self, path: &str, body: &T) -> WixRequest<'_> {
        self.post(path).json(body)
    }

    /// A call of any method.
    pub fn request(&self, method: Method, path: &str) -> WixRequest<'_> {
        WixRequest {
            api: self,
            method,
            path: path.to_owned(),
            args: Vec::new(),
            query: Vec::new(),
            body: RequestBody::None,
        }
    }

    fn scope(&self) -> audit::Scope<'_> {
        self.route.audit_scope()
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

enum RequestBody {
    None,
    Json(Bytes),
    Unserializable,
}

/// One call to a Wix API, built from values and checked against the
/// route's declaration when sent. Made by [`WixApi::get`] and friends;
/// `.await` it (or call [`send`](Self::send)).
///
/// * `path` is a path (`/apps/v1/instance`) or a template
///   (`/members/v1/members/{id}`) whose placeholders [`arg`](Self::arg)
///   fills; `{subjectId}` and `{instanceId}` default to the caller's own.
///   Every resulting segment must be plain (`A-Z a-z 0-9 - . _ ~`, not `.`
///   or `..`), or the call is refused.
/// * [`query`](Self::query) adds a query parameter; keys and values are
///   percent-encoded here, so a value can never add another parameter.
#[must_use = "a WixRequest does nothing until awaited"]
pub struct WixRequest<'a> {
    api: &'a WixApi,
    method: Method,
    path: String,
    args: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: RequestBody,
}

impl WixRequest<'_> {
    /// Fill the path placeholder `{name}` with `value`.
    pub fn arg(mut self, name: &str, value: impl AsRef<str>) -> Self {
        self.args.push((name.to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Add the query parameter `key=value`.
    pub fn query(mut self, key: &str, value: impl AsRef<str>) -> Self {
        self.query.push((key.to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Send `body` as JSON.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        self.body = match serde_json::to_vec(body) {
            Ok(json) => RequestBody::Json(json.into()),
            Err(_) => RequestBody::Unserializable,
        };
        self
    }

    /// The `.arg` names given, for an error message.
    fn arg_names(&self) -> String {
        if self.args.is_empty() {
            return " (no `.arg` given)".to_owned();
        }
        let names: Vec<&str> = self.args.iter().map(|(name, _)| name.as_str()).collect();
        format!(
            " (`.arg` names given: {}; they are case-sensitive)",
            names.join(", ")
        )
    }

    /// Check the call against the route's declaration and send it.
    pub async fn send(self) -> Result<WixResponse, WixApiError> {
        let api = self.api;
        let (path, operation) = match self.resolve() {
            Ok(resolved) => resolved,
            Err(refusal) => return Err(refusal),
        };
        let json = match &self.body {
            RequestBody::None => None,
            RequestBody::Json(json) => Some(json),
            RequestBody::Unserializable => {
                return Err(WixApiError::invalid(
                    "the JSON body could not be serialized".to_owned(),
                ));
            }
        };
        let started = Instant::now();
        let deadline = api.route.elevator.api_deadline_from(started);
        let template = operation.template();
        let call = Call {
            api,
            call: ApiCall {
                method: &self.method,
                path_and_query: &path,
                declared_path: template.split_once('?').map_or(template, |(path, _)| path),
                json,
                idempotent: operation.is_idempotent(),
            },
            deadline,
        };
        let result = match tokio::time::timeout_at(deadline, call.run()).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::timeout(Endpoint::Api).into()),
        };
        let (outcome, status) = match &result {
            Ok(response) => ("ok", Some(response.status.as_u16())),
            Err(error) => (error.code(), error.wix_status().map(|s| s.as_u16())),
        };
        audit::wix_call(
            api.scope(),
            &api.caller,
            operation,
            outcome,
            status,
            started.elapsed(),
        );
        result
    }

    /// The encoded path and query, and the declared operation they are, or
    /// the (audited) refusal.
    fn resolve(&self) -> Result<(String, &Operation), WixApiError> {
        let api = self.api;
        let caller = &api.caller;
        let mut segments: Vec<&str> = Vec::new();
        let mut used = 0;
        for segment in self.path.strip_prefix('/').unwrap_or(&self.path).split('/') {
            let value = match placeholder(segment) {
                Some(name) => match self.args.iter().find(|(n, _)| n == name) {
                    Some((_, value)) => {
                        used += 1;
                        value.as_str()
                    }
                    None if name == "subjectId" => caller.subject_id(),
                    None if name == "instanceId" => caller.instance_id(),
                    None => {
                        return Err(WixApiError::invalid(format!(
                            "no `.arg(\"{name}\", ...)` for the placeholder `{{{name}}}`{}",
                            self.arg_names()
                        )));
                    }
                },
                None => segment,
            };
            segments.push(value);
        }
        if !self.path.starts_with('/') {
            return Err(WixApiError::invalid(
                "the path must start with `/`".to_owned(),
            ));
        }
        if used != self.args.len() {
            let unused: Vec<&str> = self
                .args
                .iter()
                .map(|(name, _)| name.as_str())
                .filter(|name| !self.path.contains(&format!("{{{name}}}")))
                .collect();
            return Err(WixApiError::invalid(format!(
                "`.arg` names no placeholder of the path: {} (placeholders are case-sensitive)",
                unused.join(", ")
            )));
        }
        let query: Vec<(&str, &str)> = self
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // The first declared operation this call is, and the query it sends
        // (caller-bound keys filled in).
        let declared = api.route.operations.iter().find_map(|op| {
            op.permits(&self.method, segments.iter().copied(), &query, caller)
                .map(|sent| (op, sent))
        });
        let sent = declared.as_ref().map_or(&query, |(_, sent)| sent);
        let mut path = String::with_capacity(self.path.len() + 16);
        for segment in &segments {
            path.push('/');
            path.push_str(segment);
        }
        if !sent.is_empty() {
            path.push('?');
            path.push_str(
                &form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(sent)
                    .finish(),
            );
        }
        match declared {
            Some((operation, _)) => Ok((path, operation)),
            None => {
                let refused = format!("{} {path}", self.method);
                audit::denied(
                    api.scope(),
                    Some(caller),
                    Some(&refused),
                    "operation_not_declared",
                );
                Err(WixApiError {
                    operation: Some(Clean(&refused).to_string()),
                    ..WixApiError::new(WixApiErrorKind::Undeclared)
                })
            }
        }
    }
}

impl<'a> IntoFuture for WixRequest<'a> {
    type Output = Result<WixResponse, WixApiError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

impl fmt::Debug for WixRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WixRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

/// A checked call on its way to Wix.
struct Call<'a> {
    api: &'a WixApi,
    call: ApiCall<'a>,
    deadline: Instant,
}

impl Call<'_> {
    async fn run(&self) -> Result<WixResponse, WixApiError> {
        let api = self.api;
        let elevator = &api.route.elevator;
        let token = match &api.token {
            Some(token) => token.clone(),
            None => api
                .route
                .elevate_on_demand(&api.caller)
                .await
                .map_err(WixApiError::from_rejection)?,
        };
        let answer = self.send_with(&token).await?;
        if answer.status != StatusCode::UNAUTHORIZED {
            return answer_result(answer);
        }
        // Wix refused the app token itself: replace it (once for every
        // request that saw it) and try once more.
        let metrics = &elevator.client().metrics().app_token_recovery;
        let fresh = elevator
            .app_tokens()
            .replace(&token, self.deadline)
            .await
            .map_err(WixApiError::from_rejection)?;
        let answer = self.send_with(&fresh).await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            metrics.rejected.increment(1);
            tracing::warn!(
                target: "wix_elevate::api",
                instance_id = api.caller.instance_id(),
                wix_request_id = answer.request_id.as_deref(),
                "Wix refused a freshly created app token"
            );
            return Err(WixApiError {
                wix_status: Some(answer.status),
                request_id: answer.request_id,
                ..WixApiError::new(WixApiErrorKind::AppTokenRejected)
            });
        }
        metrics.recovered.increment(1);
        answer_result(answer)
    }

    async fn send_with(&self, token: &ElevatedToken) -> Result<ApiAnswer, WixApiError> {
        Ok(self
            .api
            .route
            .elevator
            .client()
            .api(&self.call, token, self.deadline)
            .await?)
    }
}

/// Wix's answer to an API call, as the handler sees it: 2xx a response,
/// anything else an error carrying Wix's status, code and message.
fn answer_result(answer: ApiAnswer) -> Result<WixResponse, WixApiError> {
    if answer.status.is_success() {
        return Ok(WixResponse {
            status: answer.status,
            request_id: answer.request_id,
            body: answer.body,
        });
    }
    let error: WixErrorBody = serde_json::from_slice(&answer.body).unwrap_or_default();
    let kind = if answer.status == StatusCode::NOT_FOUND {
        WixApiErrorKind::NotFound
    } else {
        WixApiErrorKind::Refused
    };
    Err(WixApiError {
        wix_status: Some(answer.status),
        message: error.message,
        code: error
            .details
            .and_then(|d| d.application_error)
            .and_then(|e| e.code),
        request_id: answer.request_id,
        ..WixApiError::new(kind)
    })
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
    request_id: Option<Box<str>>,
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
            UpstreamError::malformed(Endpoint::Api, "the body is not the expected JSON").into()
        })
    }
}

/// What kind of failure a [`WixApiError`] is; each answers one status.
///
/// | kind | status | `code` |
/// |---|---|---|
/// | [`Undeclared`](Self::Undeclared) | 403 | `operation_not_declared` |
/// | [`InvalidRequest`](Self::InvalidRequest) | 500 | `invalid_wix_request` |
/// | [`NotFound`](Self::NotFound) | 404 | `wix_not_found` |
/// | [`Refused`](Self::Refused) | 502 | `wix_api_error` |
/// | [`AppTokenRejected`](Self::AppTokenRejected) | 502 | `app_token_rejected` |
/// | [`Throttled`](Self::Throttled) | 503 + `Retry-After` | `upstream_throttled` |
/// | [`Unavailable`](Self::Unavailable) | 503 + `Retry-After` | `upstream_unavailable` |
/// | [`Timeout`](Self::Timeout) | 504 | `upstream_timeout` |
/// | [`Failed`](Self::Failed) | 502 | `upstream_failed` |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WixApiErrorKind {
    /// The route did not declare this call (method, path or query); nothing
    /// was sent.
    Undeclared,
    /// The handler built a call that cannot be sent: a placeholder without
    /// an argument, an unused argument, a body that does not serialize.
    InvalidRequest,
    /// Wix answered 404.
    NotFound,
    /// Wix answered another 4xx (its message and code are kept for logs).
    Refused,
    /// Wix answered 401 to the app token, and again to a fresh one.
    AppTokenRejected,
    /// Wix answered 429 and its `Retry-After` did not fit the deadline.
    Throttled,
    /// Wix APIs are failing (circuit open) or too many calls are in flight.
    Unavailable,
    /// Wix did not answer within the call's deadline.
    Timeout,
    /// Wix answered 5xx, could not be reached, or sent an unreadable body.
    Failed,
}

impl WixApiErrorKind {
    /// Status, code and fixed detail text, in one place.
    const fn describe(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            WixApiErrorKind::Undeclared => (
                StatusCode::FORBIDDEN,
                "operation_not_declared",
                "This endpoint may not perform that Wix operation.",
            ),
            WixApiErrorKind::InvalidRequest => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "invalid_wix_request",
                "The request to Wix could not be built.",
            ),
            WixApiErrorKind::NotFound => (
                StatusCode::NOT_FOUND,
                "wix_not_found",
                "Wix found no such resource.",
            ),
            WixApiErrorKind::Refused => (
                StatusCode::BAD_GATEWAY,
                "wix_api_error",
                "A Wix API call failed.",
            ),
            WixApiErrorKind::AppTokenRejected => (
                StatusCode::BAD_GATEWAY,
                "app_token_rejected",
                "Wix refused the app's access token.",
            ),
            // Wix's failures read the same as the layer's: one table.
            WixApiErrorKind::Throttled => RejectionKind::UpstreamThrottled.describe(),
            WixApiErrorKind::Unavailable => RejectionKind::UpstreamUnavailable.describe(),
            WixApiErrorKind::Timeout => RejectionKind::UpstreamTimeout.describe(),
            WixApiErrorKind::Failed => RejectionKind::UpstreamFailed.describe(),
        }
    }
}

/// A [`WixApi`] call failed. Opaque: ask [`kind`](Self::kind).
///
/// As a response (feature `axum`), every kind is a fixed
/// `application/problem+json` body with `Cache-Control: no-store` (see
/// [`WixApiErrorKind`] for the statuses); Wix's own message stays in this
/// value, for logs.
pub struct WixApiError {
    kind: WixApiErrorKind,
    wix_status: Option<StatusCode>,
    message: Option<String>,
    code: Option<String>,
    request_id: Option<Box<str>>,
    retry_after: Option<Duration>,
    /// For a refused call: what was refused; for a request that could not
    /// be built, why. Escaped.
    operation: Option<String>,
    source: Option<Arc<UpstreamError>>,
}

impl WixApiError {
    fn new(kind: WixApiErrorKind) -> Self {
        Self {
            kind,
            wix_status: None,
            message: None,
            code: None,
            request_id: None,
            retry_after: None,
            operation: None,
            source: None,
        }
    }

    /// A request the handler's code could not build: `why` names the
    /// placeholder or argument at fault. It reaches `Display` (so the log
    /// line), never the response body.
    fn invalid(why: String) -> Self {
        Self {
            operation: Some(Clean(&why).to_string()),
            ..Self::new(WixApiErrorKind::InvalidRequest)
        }
    }

    /// An app-token failure (from the layer's caches) as a call failure.
    fn from_rejection(rejection: Rejection) -> Self {
        let kind = match rejection.kind() {
            RejectionKind::UpstreamTimeout => WixApiErrorKind::Timeout,
            RejectionKind::UpstreamThrottled => WixApiErrorKind::Throttled,
            RejectionKind::UpstreamUnavailable => WixApiErrorKind::Unavailable,
            _ => WixApiErrorKind::Failed,
        };
        Self {
            retry_after: rejection.retry_after(),
            source: rejection.upstream_source(),
            ..Self::new(kind)
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> WixApiErrorKind {
        self.kind
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.kind.describe().0
    }

    /// A stable code for the problem body.
    pub fn code(&self) -> &'static str {
        self.kind.describe().1
    }

    /// The status Wix answered, if it answered one.
    pub fn wix_status(&self) -> Option<StatusCode> {
        self.wix_status
            .or_else(|| self.source.as_ref().and_then(|s| s.status()))
    }

    /// Wix's `message`, if it sent one (for logs; never sent to clients).
    pub fn wix_message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// Wix's `details.applicationError.code`, if it sent one.
    pub fn wix_code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Wix's `x-wix-request-id`, for support tickets.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id
            .as_deref()
            .or_else(|| self.source.as_ref().and_then(|s| s.request_id()))
    }

    /// How long to wait before retrying, for the 503 kinds.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            WixApiErrorKind::Throttled | WixApiErrorKind::Unavailable => {
                Some(self.retry_after.unwrap_or(DEFAULT_RETRY_AFTER))
            }
            _ => None,
        }
    }

    /// The Wix failure behind this error, if any.
    pub fn upstream_error(&self) -> Option<&UpstreamError> {
        self.source.as_deref()
    }
}

impl From<UpstreamError> for WixApiError {
    fn from(error: UpstreamError) -> Self {
        Self::from_rejection(Rejection::upstream(Arc::new(error)))
    }
}

impl fmt::Display for WixApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.describe().2)?;
        if let Some(operation) = &self.operation {
            write!(f, " ({operation})")?;
        }
        if let Some(status) = self.wix_status() {
            write!(f, " (Wix answered HTTP {status})")?;
        }
        if let Some(id) = self.request_id() {
            write!(f, " (x-wix-request-id {id})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for WixApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WixApiError")
            .field("kind", &self.kind)
            .field("wix_status", &self.wix_status())
            .field("wix_code", &self.code)
            .field("request_id", &self.request_id())
            .field("operation", &self.operation)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl std::error::Error for WixApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for WixApiError {
    fn into_response(self) -> axum_core::response::Response {
        let (status, code, detail) = self.kind.describe();
        if status.is_server_error() {
            tracing::warn!(target: "wix_elevate::api", error = %self, code, "Wix API call failed");
        }
        crate::response::problem(status, detail, code, self.retry_after())
    }
}
