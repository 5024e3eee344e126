//! [`ElevateLayer`]: per-route configuration of the middleware.

use std::{fmt, num::NonZeroU32, sync::Arc, time::Duration};

use tower_layer::Layer;

use crate::{
    elevator::Elevator,
    error::ConfigError,
    metrics::RouteMetrics,
    operation::Operation,
    policy::{Policy, SubjectTypes},
    rate_limit::{RouteRateLimit, Scope},
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
    /// What every service this layer makes runs with: the layer is its
    /// builder, and [`layer`](Layer::layer) hands each service a copy.
    route: RouteConfig,
    /// Whether the route's metric handles are registered (by
    /// [`route_name`](Self::route_name)); unnamed routes register when
    /// layered.
    metrics_bound: bool,
    /// The first declared operation that does not parse: reported by
    /// [`check`](Self::check), fatal when the layer is applied.
    invalid: Option<Box<str>>,
}

impl ElevateLayer {
    /// A layer with the default policy ([`SubjectTypes::default()`]:
    /// visitors, members and Wix users) and [`ProblemJson`] rejections;
    /// made by [`Elevator::layer`].
    pub(crate) fn on(elevator: Elevator) -> Self {
        Self {
            route: RouteConfig {
                elevator,
                policy: Arc::new(SubjectTypes::default()),
                route_name: Arc::from(""),
                operations: Arc::from([]),
                rate_limits: Arc::from([]),
                max_identity_age: None,
                expose_app_token: false,
                credential_query: None,
                referrer_policy: false,
                metrics: Arc::new(RouteMetrics::unbound()),
                on_rejection: Arc::new(ProblemJson),
            },
            metrics_bound: false,
            invalid: None,
        }
    }

    /// Declare a Wix operation this route's handler may call through
    /// [`WixApi`](crate::WixApi), as `"METHOD /path/{template}"` (see
    /// [`Operation`]). A route that declares nothing may call nothing.
    ///
    /// The declarations are checked once, when the layer is applied (axum
    /// applies a route's layers when the router is finalized for serving),
    /// as tower-http's `CorsLayer` checks its rules: a declaration that does
    /// not parse stops the program there, naming it. [`check`](Self::check)
    /// reports it as an error instead, for operations that come from
    /// configuration.
    ///
    /// ```
    /// # use wix_elevate::{Elevator, SubjectTypes};
    /// # fn main() -> Result<(), wix_elevate::ConfigError> {
    /// # let elevator = Elevator::builder("app", "secret").build()?;
    /// let layer = elevator
    ///     .layer()
    ///     .policy(SubjectTypes::members())
    ///     .allow("GET /apps/v1/instance")
    ///     .allow("GET /members/v1/members/{subjectId}");
    /// assert!(layer.check().is_ok());
    /// assert!(elevator.layer().allow("GET members").check().is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn allow(self, operation: &str) -> Self {
        self.declare(operation, false)
    }

    /// Declare `operation`, or remember the first one that does not parse
    /// for [`check`](Self::check) and [`layer`](Layer::layer).
    fn declare(mut self, operation: &str, idempotent: bool) -> Self {
        match operation.parse::<Operation>() {
            Ok(parsed) if idempotent => self.push_operation(parsed.idempotent()),
            Ok(parsed) => self.push_operation(parsed),
            Err(_) => {
                self.invalid.get_or_insert_with(|| operation.into());
                self
            }
        }
    }

    /// Whether every declared operation is valid: `Err` names the first
    /// that is not `METHOD /path/{template}` ([`ConfigError::InvalidOperation`]).
    /// Applying a layer that fails this check panics, so call it where the
    /// operations come from configuration rather than code.
    pub fn check(&self) -> Result<(), ConfigError> {
        match &self.invalid {
            Some(operation) => Err(ConfigError::InvalidOperation(operation.to_string())),
            None => Ok(()),
        }
    }

    /// Allow each caller (instance and subject, whatever token it holds)
    /// at most `per_minute` requests per minute on this route, in bursts of
    /// as many. Beyond it: 429 with `Retry-After`; other callers are
    /// unaffected. Anyone can obtain a visitor token, so an elevated visitor
    /// route wants this; a visitor is an anonymous *session*, though, not a
    /// person, so add [`rate_limit_visitors_per_instance`](Self::rate_limit_visitors_per_instance)
    /// to bound them together.
    ///
    /// The limit belongs to this layer value: every route it (or a clone of
    /// it) is applied to shares one budget per caller. For a budget per
    /// route, call this on each route's layer.
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// # use wix_elevate::Elevator;
    /// # let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// const PER_MINUTE: NonZeroU32 = NonZeroU32::new(60).unwrap();
    /// let layer = elevator.layer().rate_limit_per_caller(PER_MINUTE);
    /// # let _ = layer;
    /// ```
    pub fn rate_limit_per_caller(mut self, per_minute: NonZeroU32) -> Self {
        self.route.rate_limits = appended(
            &self.route.rate_limits,
            Arc::new(RouteRateLimit::per_minute(Scope::PerCaller, per_minute)),
        );
        self
    }

    /// Allow all `VISITOR` callers of one instance together at most
    /// `per_minute` requests per minute on this route (members, Wix users
    /// and apps are not counted). Every new anonymous session is a new
    /// visitor with a fresh per-caller allowance; this bounds what they can
    /// do to one site however many sessions they open.
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// # use wix_elevate::Elevator;
    /// # let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// let per_minute = |n| NonZeroU32::new(n).expect("a positive limit");
    /// let layer = elevator
    ///     .layer()
    ///     .rate_limit_per_caller(per_minute(30))
    ///     .rate_limit_visitors_per_instance(per_minute(600));
    /// # let _ = layer;
    /// ```
    pub fn rate_limit_visitors_per_instance(mut self, per_minute: NonZeroU32) -> Self {
        self.route.rate_limits = appended(
            &self.route.rate_limits,
            Arc::new(RouteRateLimit::per_minute(
                Scope::VisitorsPerInstance,
                per_minute,
            )),
        );
        self
    }

    /// The oldest verified identity this route accepts. The elevator's
    /// [`token_info_ttl`](crate::ElevatorBuilder::token_info_ttl) applies to
    /// every route; a sensitive route can ask Wix sooner, so a revoked
    /// token stops working sooner there. `Duration::ZERO` asks Wix on every
    /// request (concurrent requests for one token still share one call).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use wix_elevate::Elevator;
    /// # let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// let payouts = elevator.layer().max_identity_age(Duration::ZERO);
    /// # let _ = payouts;
    /// ```
    pub fn max_identity_age(mut self, age: Duration) -> Self {
        self.route.max_identity_age = Some(age);
        self
    }

    /// Declare a Wix operation that is safe to retry on a transient failure
    /// although its method is not idempotent, such as a `POST` query:
    /// `allow_idempotent("POST /stores/v1/products/query")`. Checked like
    /// [`allow`](Self::allow).
    pub fn allow_idempotent(self, operation: &str) -> Self {
        self.declare(operation, true)
    }

    fn push_operation(mut self, operation: Operation) -> Self {
        self.route.operations = appended(&self.route.operations, operation);
        self
    }

    /// Let this route's handlers hold the raw app token: the
    /// [`ElevatedToken`](crate::ElevatedToken) extractor (and
    /// [`ElevatedToken::for_request`](crate::ElevatedToken::for_request)).
    ///
    /// Off by default. Without it, asking for the token answers 500 and
    /// logs why: a handler with the raw token can call any Wix API as the
    /// app, so the route's declared operations would no longer be the
    /// whole truth about what it can do. [`WixApi`](crate::WixApi) is the
    /// way to call Wix; opt in only for what it cannot do (handing the
    /// token to another SDK, say), and never send the token to a browser.
    ///
    /// ```
    /// # use wix_elevate::Elevator;
    /// # let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// let raw_token_route = elevator.layer().route_name("sdk-bridge").expose_app_token();
    /// # let _ = raw_token_route;
    /// ```
    pub fn expose_app_token(mut self) -> Self {
        self.route.expose_app_token = true;
        self
    }

    /// Also read the caller's credential from the query parameter `name`,
    /// for dashboard pages and settings panels that Wix opens with
    /// `?instance=…` instead of a token in `Authorization`. The value goes
    /// to Token Info as the token, through the same checks, cache, budget,
    /// single flight and policy. A request that carries both, differently,
    /// is refused with 400 `conflicting_credentials`.
    ///
    /// A credential in a URL leaks where URLs go: access logs, proxies, the
    /// browser's history and the `Referer` header of anything the page
    /// loads. This crate never logs it (no request URI reaches its logs,
    /// audit events, metric labels or error bodies); redact it in your own
    /// access logs (tower-http's `TraceLayer` logs the URI). Every answer
    /// of such a route carries `Referrer-Policy: no-referrer` unless the
    /// handler sets its own (opt out with
    /// [`without_referrer_policy`](Self::without_referrer_policy)). Prefer
    /// `fetchWithAuth` (a token in `Authorization`) wherever the frontend
    /// can use it.
    ///
    /// ```
    /// # use wix_elevate::{Elevator, SubjectTypes};
    /// # let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// let settings_panel = elevator
    ///     .layer()
    ///     .policy(SubjectTypes::wix_users())
    ///     .credential_from_query("instance");
    /// # let _ = settings_panel;
    /// ```
    pub fn credential_from_query(mut self, name: impl Into<Box<str>>) -> Self {
        self.route.credential_query = Some(name.into());
        self.route.referrer_policy = true;
        self
    }

    /// Leave `Referrer-Policy` to the handler on a route that reads its
    /// credential from the URL ([`credential_from_query`](Self::credential_from_query)),
    /// which otherwise sends `Referrer-Policy: no-referrer` with every
    /// answer (a handler's own value is kept), so the page it serves does
    /// not hand the credential to everything it loads.
    ///
    /// ```
    /// # use wix_elevate::Elevator;
    /// # let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// let panel = elevator.layer().credential_from_query("instance").without_referrer_policy();
    /// # let _ = panel;
    /// ```
    pub fn without_referrer_policy(mut self) -> Self {
        self.route.referrer_policy = false;
        self
    }

    /// Who may call this route. Checked on every request, before elevation.
    pub fn policy(mut self, policy: impl Policy) -> Self {
        self.route.policy = Arc::new(policy);
        self
    }

    /// A name for this route in spans, audit events and metrics (label
    /// `route`). Metric handles bind to the recorder installed now.
    pub fn route_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.route.route_name = name.into();
        self.route.metrics = Arc::new(RouteMetrics::new(&self.route.route_name));
        self.metrics_bound = true;
        self
    }

    /// Replace the rejection response (default: [`ProblemJson`]).
    pub fn on_rejection(mut self, on_rejection: impl OnRejection) -> Self {
        self.route.on_rejection = Arc::new(on_rejection);
        self
    }
}

impl ElevateLayer {
    /// The configuration one route (or one background actor) runs with;
    /// an unnamed one registers its metric handles now.
    pub(crate) fn route_config(&self) -> RouteConfig {
        let mut route = self.route.clone();
        if !self.metrics_bound {
            route.metrics = Arc::new(RouteMetrics::new(&route.route_name));
        }
        route
    }
}

/// `items` with `item` after them: settings are appended at build time
/// only, and read as a shared slice on every request.
fn appended<T: Clone>(items: &Arc<[T]>, item: T) -> Arc<[T]> {
    items.iter().cloned().chain([item]).collect()
}

/// # Panics
///
/// Applying a layer that declared an operation which is not
/// `METHOD /path/{template}` panics, naming it: a route must never serve
/// with a declaration it could not read. [`ElevateLayer::check`] reports
/// it as an error instead.
impl<S> Layer<S> for ElevateLayer {
    type Service = Elevate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        if let Err(invalid) = self.check() {
            panic!("ElevateLayer applied with {invalid}");
        }
        Elevate::from_parts(inner, self.route_config())
    }
}

impl fmt::Debug for ElevateLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElevateLayer")
            .field("elevator", &self.route.elevator)
            .field("policy", &self.route.policy.name())
            .field("route_name", &self.route.route_name)
            .field("operations", &self.route.operations)
            .finish_non_exhaustive()
    }
}
