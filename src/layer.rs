//! [`ElevateLayer`]: per-route configuration of the middleware.

use std::{fmt, num::NonZeroU32, sync::Arc};

use tower_layer::Layer;

use crate::{
    elevator::Elevator,
    error::ConfigError,
    metrics::RouteMetrics,
    operation::Operation,
    policy::{Policy, SubjectTypes},
    rate_limit::CallerRateLimit,
    response::{OnRejection, ProblemJson},
    route::RouteConfig,
    service::Elevate,
};

/// Applies [`Elevate`] to a route: verifies the caller, enforces this
/// route's [`Policy`] and attaches the [`Caller`](crate::Caller) and
/// [`ElevatedToken`](crate::ElevatedToken) to the request.
///
/// Cheap to clone: the expensive state lives in the shared [`Elevator`].
/// Attach it with axum's `route_layer`, one layer per route, so unknown
/// paths still answer 404 rather than 401.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::get};
/// use wix_elevate::{Caller, Elevator, SubjectTypes};
///
/// # fn main() -> Result<(), wix_elevate::ConfigError> {
/// let elevator = Elevator::builder("app-id", "app-secret").build()?;
///
/// let app: Router = Router::new()
///     .route(
///         "/api/whoami",
///         get(|caller: Caller| async move { caller.subject_id().to_owned() })
///             .route_layer(elevator.layer()),
///     )
///     .route(
///         "/api/members/profile",
///         get(|caller: Caller| async move { caller.subject_id().to_owned() })
///             .route_layer(elevator.layer().policy(SubjectTypes::members()).route_name("profile")),
///     );
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct ElevateLayer {
    elevator: Elevator,
    policy: Arc<dyn Policy>,
    route_name: Arc<str>,
    operations: Vec<Operation>,
    rate_limit: Option<Arc<CallerRateLimit>>,
    /// Registered by `route_name`; unnamed routes register when layered.
    metrics: Option<Arc<RouteMetrics>>,
    on_rejection: Arc<dyn OnRejection>,
}

impl ElevateLayer {
    /// A layer with the default policy ([`SubjectTypes::default()`]:
    /// visitors, members and Wix users) and [`ProblemJson`] rejections.
    #[deprecated(
        since = "0.2.0",
        note = "use `Elevator::layer`, the one way to build a layer"
    )]
    pub fn new(elevator: Elevator) -> Self {
        Self::on(elevator)
    }

    pub(crate) fn on(elevator: Elevator) -> Self {
        Self {
            elevator,
            policy: Arc::new(SubjectTypes::default()),
            route_name: Arc::from(""),
            operations: Vec::new(),
            rate_limit: None,
            metrics: None,
            on_rejection: Arc::new(ProblemJson),
        }
    }

    /// Declare a Wix operation this route's handler may call through
    /// [`WixApi`](crate::WixApi), as `"METHOD /path/{template}"` (see
    /// [`Operation`]). A route that declares nothing may call nothing.
    ///
    /// ```
    /// # use wix_elevate::{Elevator, SubjectTypes};
    /// # fn main() -> Result<(), wix_elevate::ConfigError> {
    /// # let elevator = Elevator::builder("app", "secret").build()?;
    /// let layer = elevator
    ///     .layer()
    ///     .policy(SubjectTypes::members())
    ///     .allow("GET /apps/v1/instance")?
    ///     .allow("GET /members/v1/members/{subjectId}")?;
    /// assert!(elevator.layer().allow("GET members").is_err());
    /// # let _ = layer;
    /// # Ok(())
    /// # }
    /// ```
    pub fn allow(self, operation: &str) -> Result<Self, ConfigError> {
        Ok(self.allow_operation(operation.parse()?))
    }

    /// Allow each caller (instance and subject, whatever token it holds)
    /// at most `per_minute` requests per minute on this route, in bursts of
    /// as many. Beyond it: 429 with `Retry-After`; other callers are
    /// unaffected. Anyone can obtain a visitor token, so an elevated visitor
    /// route wants this.
    ///
    /// ```
    /// # use wix_elevate::Elevator;
    /// # let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// let layer = elevator.layer().rate_limit_per_caller(60).unwrap();
    /// assert!(elevator.layer().rate_limit_per_caller(0).is_err());
    /// # let _ = layer;
    /// ```
    pub fn rate_limit_per_caller(mut self, per_minute: u32) -> Result<Self, ConfigError> {
        let per_minute =
            NonZeroU32::new(per_minute).ok_or(ConfigError::Zero("rate_limit_per_caller"))?;
        self.rate_limit = Some(Arc::new(CallerRateLimit::per_minute(per_minute)));
        Ok(self)
    }

    /// Declare a Wix operation that is safe to retry on a transient failure
    /// although its method is not idempotent, such as a `POST` query:
    /// `allow_idempotent("POST /stores/v1/products/query")`.
    pub fn allow_idempotent(self, operation: &str) -> Result<Self, ConfigError> {
        Ok(self.allow_operation(operation.parse::<Operation>()?.idempotent()))
    }

    /// Declare an already-parsed [`Operation`].
    pub fn allow_operation(mut self, operation: Operation) -> Self {
        self.operations.push(operation);
        self
    }

    /// Who may call this route. Checked on every request, before elevation.
    pub fn policy(mut self, policy: impl Policy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// A name for this route in spans, audit events and metrics (label
    /// `route`). Metric handles bind to the recorder installed now.
    pub fn route_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.route_name = name.into();
        self.metrics = Some(Arc::new(RouteMetrics::new(&self.route_name)));
        self
    }

    /// Replace the rejection response (default: [`ProblemJson`]).
    pub fn on_rejection(mut self, on_rejection: impl OnRejection) -> Self {
        self.on_rejection = Arc::new(on_rejection);
        self
    }
}

impl<S> Layer<S> for ElevateLayer {
    type Service = Elevate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Elevate::from_parts(
            inner,
            RouteConfig {
                elevator: self.elevator.clone(),
                policy: self.policy.clone(),
                metrics: self
                    .metrics
                    .clone()
                    .unwrap_or_else(|| Arc::new(RouteMetrics::new(&self.route_name))),
                route_name: self.route_name.clone(),
                operations: self.operations.clone().into(),
                rate_limit: self.rate_limit.clone(),
                on_rejection: self.on_rejection.clone(),
            },
        )
    }
}

impl fmt::Debug for ElevateLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElevateLayer")
            .field("elevator", &self.elevator)
            .field("policy", &self.policy.name())
            .field("route_name", &self.route_name)
            .field("operations", &self.operations)
            .finish_non_exhaustive()
    }
}
