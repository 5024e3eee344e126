//! [`ElevateLayer`]: per-route configuration of the middleware.

use std::{fmt, sync::Arc};

use tower_layer::Layer;

use crate::{
    elevator::Elevator,
    policy::{Policy, SubjectTypes},
    response::{OnRejection, ProblemJson},
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
    on_rejection: Arc<dyn OnRejection>,
}

impl ElevateLayer {
    /// A layer with the default policy ([`SubjectTypes::default()`]:
    /// visitors, members and Wix users) and [`ProblemJson`] rejections.
    pub fn new(elevator: Elevator) -> Self {
        Self {
            elevator,
            policy: Arc::new(SubjectTypes::default()),
            route_name: Arc::from(""),
            on_rejection: Arc::new(ProblemJson),
        }
    }

    /// Who may call this route. Checked on every request, before elevation.
    pub fn policy(mut self, policy: impl Policy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// A name for this route in spans and rejection events.
    pub fn route_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.route_name = name.into();
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
                route_name: self.route_name.clone(),
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
            .finish_non_exhaustive()
    }
}

/// What one route's service shares between its clones.
pub(crate) struct RouteConfig {
    pub(crate) elevator: Elevator,
    pub(crate) policy: Arc<dyn Policy>,
    pub(crate) route_name: Arc<str>,
    pub(crate) on_rejection: Arc<dyn OnRejection>,
}
