//! [`Elevator`]: the expensive, shared, per-app half of the middleware (app
//! credentials, the one Wix client, both caches), built once by
//! [`ElevatorBuilder`](crate::ElevatorBuilder) and shared by every route's
//! [`ElevateLayer`].
//!
//! It answers questions (who is this token, what is this instance's app
//! token) and knows nothing about routes: the request path lives in
//! [`Elevate`](crate::Elevate), each step in the module that owns it.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use secrecy::SecretString;

use crate::{
    app_token::AppTokens, builder::ElevatorBuilder, client::WixClient, error::Endpoint,
    identity::Identities, layer::ElevateLayer,
};

/// Wix's production API.
pub const WIX_API_BASE_URL: &str = "https://www.wixapis.com";

/// The shared state of the middleware: app credentials, the HTTP client to
/// Wix and both caches. Cheap to clone (one `Arc`); build one per app and
/// derive a layer per route with [`layer`](Self::layer).
///
/// `Debug` shows the app id and base URL, never the secret.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use wix_elevate::{Elevator, SubjectTypes};
///
/// # fn main() -> Result<(), wix_elevate::ConfigError> {
/// let elevator = Elevator::builder("my-app-id", "my-app-secret")
///     .http_timeout(Duration::from_secs(3))
///     .token_info_ttl(Duration::from_secs(30))
///     .build()?;
/// let members_only = elevator.layer().policy(SubjectTypes::members());
/// assert!(!format!("{elevator:?}").contains("my-app-secret"));
/// # let _ = members_only;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Elevator {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) app_id: Box<str>,
    pub(crate) app_secret: SecretString,
    pub(crate) client: WixClient,
    pub(crate) identities: Identities,
    pub(crate) app_tokens: AppTokens,
    pub(crate) auth_deadline: Duration,
    pub(crate) api_deadline: Duration,
}

impl Elevator {
    /// Start configuring an elevator for this app.
    pub fn builder(app_id: impl Into<String>, app_secret: impl Into<String>) -> ElevatorBuilder {
        ElevatorBuilder::new(app_id.into(), app_secret.into())
    }

    pub(crate) fn from_shared(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }

    /// A layer on this elevator with the default policy
    /// ([`SubjectTypes::default()`](crate::SubjectTypes)): the one way to
    /// configure a route.
    pub fn layer(&self) -> ElevateLayer {
        ElevateLayer::on(self.clone())
    }

    /// The app id this elevator accepts tokens for.
    pub fn app_id(&self) -> &str {
        &self.shared.app_id
    }

    /// The Wix API base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.shared.client.base_url()
    }

    /// Whether each endpoint's circuit breaker lets calls through (closed,
    /// or ready for its probe), for readiness checks: Token Info, Create
    /// Access Token and Wix APIs each have their own.
    ///
    /// ```
    /// # use wix_elevate::Elevator;
    /// let elevator = Elevator::builder("app", "secret").build().unwrap();
    /// assert!(elevator.circuits().iter().all(|(_, closed)| *closed));
    /// ```
    pub fn circuits(&self) -> [(Endpoint, bool); 3] {
        self.shared.client.circuits_closed()
    }

    pub(crate) fn client(&self) -> &WixClient {
        &self.shared.client
    }

    pub(crate) fn identities(&self) -> &Identities {
        &self.shared.identities
    }

    pub(crate) fn app_tokens(&self) -> &AppTokens {
        &self.shared.app_tokens
    }

    pub(crate) fn credentials(&self) -> (&str, &SecretString) {
        (&self.shared.app_id, &self.shared.app_secret)
    }

    /// The deadline of a request's authentication that began at `started`.
    pub(crate) fn auth_deadline_from(&self, started: Instant) -> Instant {
        started
            .checked_add(self.shared.auth_deadline)
            .unwrap_or(started)
    }

    /// The deadline of a Wix API call that began at `started`.
    pub(crate) fn api_deadline_from(&self, started: Instant) -> Instant {
        started
            .checked_add(self.shared.api_deadline)
            .unwrap_or(started)
    }
}

impl fmt::Debug for Elevator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elevator")
            .field("app_id", &self.shared.app_id)
            .field("app_secret", &"[REDACTED]")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}
