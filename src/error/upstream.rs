//! [`UpstreamError`]: a call to Wix failed, and where ([`Endpoint`]).

use std::{fmt, time::Duration};

use http::StatusCode;

use super::RejectionKind;

/// Which Wix endpoint a call went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `POST /oauth2/token-info`: who is the caller.
    TokenInfo,
    /// `POST /oauth2/token`: create the app-identity token.
    CreateAccessToken,
    /// A Wix API called through [`WixApi`](crate::WixApi).
    Api,
}

impl Endpoint {
    /// A short, stable name for logs and metrics.
    ///
    /// ```
    /// assert_eq!(wix_elevate::Endpoint::TokenInfo.as_str(), "token_info");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Endpoint::TokenInfo => "token_info",
            Endpoint::CreateAccessToken => "create_access_token",
            Endpoint::Api => "api",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call to Wix failed in a way that says nothing about the caller.
///
/// Opaque, like `std::io::Error`: ask [`kind`](Self::kind) what went wrong
/// and [`endpoint`](Self::endpoint) where. Never cached: the next request
/// asks Wix again. Its text names the endpoint and Wix's status, never a
/// token, a body or the secret.
///
/// ```
/// use wix_elevate::{Endpoint, Rejection, UpstreamErrorKind};
///
/// fn describe(rejection: &Rejection) -> String {
///     match rejection.upstream_error() {
///         Some(e) if e.kind() == UpstreamErrorKind::Timeout => format!("{} was slow", e.endpoint()),
///         Some(e) => e.to_string(),
///         None => "not Wix's fault".into(),
///     }
/// }
/// # let _ = describe;
/// ```
pub struct UpstreamError {
    endpoint: Endpoint,
    kind: UpstreamErrorKind,
    status: Option<StatusCode>,
    request_id: Option<Box<str>>,
    retry_after: Option<Duration>,
    reason: Option<&'static str>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// What kind of failure an [`UpstreamError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UpstreamErrorKind {
    /// No answer within the call's timeout or the request's deadline.
    Timeout,
    /// The connection failed or dropped before a full answer arrived.
    Transport,
    /// Wix answered with a status this call cannot use (see
    /// [`UpstreamError::status`]).
    Status,
    /// Wix answered 429 Too Many Requests.
    Throttled,
    /// Wix answered with a body that is not the documented shape.
    Malformed,
    /// Wix failed repeatedly; calls are paused (circuit open).
    CircuitOpen,
    /// Too many calls to Wix were in flight for too long.
    Overloaded,
    /// The budget of Token Info calls for tokens never seen before is
    /// spent (a flood of invented tokens); Wix was not called.
    BudgetSpent,
}

impl UpstreamError {
    fn new(endpoint: Endpoint, kind: UpstreamErrorKind) -> Self {
        Self {
            endpoint,
            kind,
            status: None,
            request_id: None,
            retry_after: None,
            reason: None,
            source: None,
        }
    }

    pub(crate) fn timeout(endpoint: Endpoint) -> Self {
        Self::new(endpoint, UpstreamErrorKind::Timeout)
    }

    pub(crate) fn transport(
        endpoint: Endpoint,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            source: Some(Box::new(source)),
            ..Self::new(endpoint, UpstreamErrorKind::Transport)
        }
    }

    pub(crate) fn bad_status(
        endpoint: Endpoint,
        status: StatusCode,
        request_id: Option<Box<str>>,
    ) -> Self {
        Self {
            status: Some(status),
            request_id,
            ..Self::new(endpoint, UpstreamErrorKind::Status)
        }
    }

    pub(crate) fn throttled(
        endpoint: Endpoint,
        retry_after: Option<Duration>,
        request_id: Option<Box<str>>,
    ) -> Self {
        Self {
            status: Some(StatusCode::TOO_MANY_REQUESTS),
            retry_after,
            request_id,
            ..Self::new(endpoint, UpstreamErrorKind::Throttled)
        }
    }

    pub(crate) fn malformed(endpoint: Endpoint, reason: &'static str) -> Self {
        Self {
            reason: Some(reason),
            ..Self::new(endpoint, UpstreamErrorKind::Malformed)
        }
    }

    pub(crate) fn circuit_open(endpoint: Endpoint, retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(endpoint, UpstreamErrorKind::CircuitOpen)
        }
    }

    pub(crate) fn overloaded(endpoint: Endpoint) -> Self {
        Self::new(endpoint, UpstreamErrorKind::Overloaded)
    }

    pub(crate) fn budget_spent(endpoint: Endpoint, retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(endpoint, UpstreamErrorKind::BudgetSpent)
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> UpstreamErrorKind {
        self.kind
    }

    /// The endpoint that failed (or was not called).
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// Wix's status, when it answered one.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// Wix's `x-wix-request-id`, for support tickets.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// How long a caller should wait, when Wix said (`Retry-After`) or the
    /// circuit breaker knows.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Worth another attempt within the deadline: connection failures,
    /// dropped connections, an attempt's timeout, 408, 425 and 502/503/504.
    /// (429 is retried only when its `Retry-After` fits; other 4xx never.)
    pub(crate) fn is_transient(&self) -> bool {
        match self.kind {
            UpstreamErrorKind::Transport | UpstreamErrorKind::Timeout => true,
            UpstreamErrorKind::Status => self
                .status
                .is_some_and(|s| matches!(s.as_u16(), 408 | 425 | 502..=504)),
            _ => false,
        }
    }

    /// Whether this failure says Wix itself is in trouble, and so counts
    /// toward the circuit breaker: timeouts, transport errors, 5xx and 429.
    /// A 4xx or a malformed answer is about one token or one instance, and
    /// one tenant must not be able to open the circuit for all.
    pub(crate) fn trips_breaker(&self) -> bool {
        match self.kind {
            UpstreamErrorKind::Transport
            | UpstreamErrorKind::Timeout
            | UpstreamErrorKind::Throttled => true,
            UpstreamErrorKind::Status => self.status.is_some_and(|s| s.is_server_error()),
            UpstreamErrorKind::Malformed
            | UpstreamErrorKind::CircuitOpen
            | UpstreamErrorKind::Overloaded
            | UpstreamErrorKind::BudgetSpent => false,
        }
    }

    /// Whether Wix itself failed (so degraded mode may serve a stale
    /// identity): it failed now, or it failed enough to open the circuit.
    /// Never for local limits (calls in flight, the new-token budget).
    pub(crate) fn is_wix_failure(&self) -> bool {
        self.trips_breaker() || self.kind == UpstreamErrorKind::CircuitOpen
    }

    /// The one table from an upstream failure to the rejection it causes
    /// and the outcome its call is counted as.
    pub(crate) fn classify(&self) -> (RejectionKind, CallOutcome) {
        match self.kind {
            UpstreamErrorKind::Timeout => (RejectionKind::UpstreamTimeout, CallOutcome::Timeout),
            UpstreamErrorKind::Transport => (RejectionKind::UpstreamFailed, CallOutcome::Transport),
            UpstreamErrorKind::Status => (
                RejectionKind::UpstreamFailed,
                self.status
                    .map_or(CallOutcome::ServerError, CallOutcome::of_status),
            ),
            UpstreamErrorKind::Throttled => {
                (RejectionKind::UpstreamThrottled, CallOutcome::Throttled)
            }
            UpstreamErrorKind::Malformed => (RejectionKind::UpstreamFailed, CallOutcome::Malformed),
            // No call was made: the outcome is never recorded.
            UpstreamErrorKind::CircuitOpen
            | UpstreamErrorKind::Overloaded
            | UpstreamErrorKind::BudgetSpent => {
                (RejectionKind::UpstreamUnavailable, CallOutcome::Transport)
            }
        }
    }

    pub(crate) fn rejection_kind(&self) -> RejectionKind {
        self.classify().0
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoint = self.endpoint;
        match self.kind {
            UpstreamErrorKind::Timeout => write!(f, "Wix {endpoint} did not answer in time"),
            UpstreamErrorKind::Transport => write!(f, "Wix {endpoint} could not be reached"),
            UpstreamErrorKind::Status => match self.status {
                Some(status) => write!(f, "Wix {endpoint} answered HTTP {status}"),
                None => write!(f, "Wix {endpoint} answered an unexpected status"),
            },
            UpstreamErrorKind::Throttled => write!(f, "Wix {endpoint} is throttling requests"),
            UpstreamErrorKind::Malformed => write!(
                f,
                "Wix {endpoint} sent a malformed answer: {}",
                self.reason.unwrap_or("unreadable")
            ),
            UpstreamErrorKind::CircuitOpen => {
                write!(
                    f,
                    "Wix {endpoint} is failing; calls are paused (circuit open)"
                )
            }
            UpstreamErrorKind::Overloaded => {
                write!(f, "too many Wix calls in flight; {endpoint} was not called")
            }
            UpstreamErrorKind::BudgetSpent => write!(
                f,
                "the budget of {endpoint} calls for new tokens is spent; Wix was not called"
            ),
        }?;
        if let Some(id) = &self.request_id {
            write!(f, " (x-wix-request-id {id})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamError")
            .field("endpoint", &self.endpoint)
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field("request_id", &self.request_id)
            .field("retry_after", &self.retry_after)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// How a call to Wix ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallOutcome {
    Ok,
    ClientError,
    ServerError,
    Throttled,
    Timeout,
    Transport,
    Malformed,
}

impl CallOutcome {
    pub(crate) const ALL: [CallOutcome; 7] = [
        CallOutcome::Ok,
        CallOutcome::ClientError,
        CallOutcome::ServerError,
        CallOutcome::Throttled,
        CallOutcome::Timeout,
        CallOutcome::Transport,
        CallOutcome::Malformed,
    ];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::ClientError => "client_error",
            CallOutcome::ServerError => "server_error",
            CallOutcome::Throttled => "throttled",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Transport => "transport",
            CallOutcome::Malformed => "malformed",
        }
    }

    pub(crate) fn of_status(status: http::StatusCode) -> Self {
        match status.as_u16() {
            200..=299 => CallOutcome::Ok,
            429 => CallOutcome::Throttled,
            400..=499 => CallOutcome::ClientError,
            _ => CallOutcome::ServerError,
        }
    }
}
