//! [`AppClient`]: the app calling Wix on its own behalf, outside any
//! request (a scheduled job, a webhook handler, a service plugin), with
//! the same declared operations, single-flight app token, retries,
//! breakers and audit as a route.

use std::{fmt, sync::Arc};

use crate::{
    Caller, Elevator, SubjectType, WixApi, error::ConfigError, layer::ElevateLayer,
    route::RouteConfig,
};

/// Calls Wix with the app's identity for any instance your code chooses,
/// limited to the operations it declared, with no route layer involved.
/// Made by [`Elevator::app_client`]; cheap to clone.
///
/// Its audit events name the actor: the name given to
/// [`Elevator::app_client`] as the route and as the acting subject
/// (`subject_type="APP"`), so name it after the job.
///
/// No caller is verified here: only your own code decides which instance
/// to act for, so never take the instance id from a request.
///
/// ```
/// # use wix_elevate::test_util::MockWix;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let wix = MockWix::start().await?;
/// # let elevator = wix.elevator_builder().build()?;
/// let sync = elevator
///     .app_client("job:hourly-sync")
///     .allow("GET /apps/v1/instance")
///     .build()?;
/// let instance: serde_json::Value = sync.for_instance("inst-1").get("/apps/v1/instance").await?.json()?;
/// assert_eq!(instance["instance"]["instanceId"], "inst-1");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AppClient {
    route: Arc<RouteConfig>,
}

/// Configures an [`AppClient`]; its operations are checked once, by
/// [`build`](Self::build).
#[must_use]
pub struct AppClientBuilder {
    /// The actor's route: its name and its declared operations.
    layer: ElevateLayer,
}

impl AppClientBuilder {
    pub(crate) fn new(elevator: Elevator, actor: &str) -> Self {
        let actor = if actor.is_empty() {
            "background"
        } else {
            actor
        };
        Self {
            layer: elevator.layer().route_name(actor),
        }
    }

    /// Declare a Wix operation the client may call, as
    /// `"METHOD /path/{template}"` (see [`Operation`](crate::Operation)).
    /// A client that declares nothing may call nothing.
    pub fn allow(mut self, operation: &str) -> Self {
        self.layer = self.layer.allow(operation);
        self
    }

    /// Declare a non-idempotent operation that is safe to retry (a `POST`
    /// query), as [`ElevateLayer::allow_idempotent`] does.
    pub fn allow_idempotent(mut self, operation: &str) -> Self {
        self.layer = self.layer.allow_idempotent(operation);
        self
    }

    /// The client, or [`ConfigError::InvalidOperation`] for an operation
    /// that does not parse.
    pub fn build(self) -> Result<AppClient, ConfigError> {
        self.layer.check()?;
        Ok(AppClient::from_layer(&self.layer))
    }
}

impl AppClient {
    fn from_layer(layer: &ElevateLayer) -> Self {
        Self {
            route: Arc::new(layer.route_config()),
        }
    }

    /// A [`WixApi`] acting with the app's identity for `instance_id`.
    pub fn for_instance(&self, instance_id: &str) -> WixApi {
        let actor = self.route.route_name.clone();
        WixApi::new(
            self.route.clone(),
            Caller::new(SubjectType::App, actor, instance_id),
            None,
        )
    }

    /// The actor's name, as its audit events give it.
    pub fn actor(&self) -> &str {
        &self.route.route_name
    }
}

impl fmt::Debug for AppClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppClient")
            .field("actor", &self.route.route_name)
            .field("operations", &self.route.operations)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for AppClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppClientBuilder")
            .field("layer", &self.layer)
            .finish()
    }
}
