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
//!     .route("/instance", get(instance).route_layer(elevator.layer().allow("GET /apps/v1/instance")))
//!     .route("/members/{id}", get(member).route_layer(
//!         elevator.layer().allow("GET /members/v1/members/{id}?fieldsets=PUBLIC")))
//!     .route("/escalate", post(escalate).route_layer(elevator.layer().policy(SubjectTypes::members())));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

mod call;
mod error;
mod request;
mod response;

use std::{fmt, sync::Arc};

use http::{Extensions, Method};

pub use error::{WixApiError, WixApiErrorKind};
pub use request::WixRequest;
pub use response::WixResponse;

use crate::{
    audit,
    caller::Caller,
    elevated_token::ElevatedToken,
    operation::Operation,
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
    /// Wix's id of the request being answered, for the audit trail (a
    /// service plugin's `metadata.requestId`).
    request_id: Option<Arc<str>>,
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
            request_id: None,
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
            request_id: None,
        }
    }

    /// The same client, its audit events naming Wix's `request_id`.
    #[cfg(feature = "plugins")]
    pub(crate) fn with_request_id(mut self, request_id: Option<Arc<str>>) -> Self {
        self.request_id = request_id;
        self
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

    /// A call of any method.
    pub fn request(&self, method: Method, path: &str) -> WixRequest<'_> {
        WixRequest::new(self, method, path)
    }

    fn scope(&self) -> audit::Scope<'_> {
        audit::Scope {
            request_id: self.request_id.as_deref(),
            ..self.route.audit_scope()
        }
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
