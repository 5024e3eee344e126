//! Errors, split by when they happen.
//!
//! * [`ConfigError`]: building an [`Elevator`](crate::Elevator) failed.
//! * [`Rejection`]: a request was refused; it becomes a response, never a
//!   service error.
//! * [`UpstreamError`]: a call to Wix failed; it is the `source()` of a
//!   5xx [`Rejection`].
//!
//! None of these types ever holds a token or the app secret, so their
//! `Display` and `Debug` output is safe to log.

use std::{fmt, sync::Arc, time::Duration};

use http::StatusCode;

use crate::caller::Caller;

/// Building an [`Elevator`](crate::Elevator) failed.
///
/// # Example
///
/// ```
/// use wix_elevate::{ConfigError, Elevator};
///
/// let err = Elevator::builder("", "secret").build().unwrap_err();
/// assert!(matches!(err, ConfigError::EmptyAppId));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The app id is empty.
    #[error("the Wix app id is empty")]
    EmptyAppId,
    /// The app secret is empty.
    #[error("the Wix app secret is empty")]
    EmptyAppSecret,
    /// The Wix API base URL is not an absolute `http` or `https` URL.
    #[error("the Wix API base URL must be an absolute http(s) URL without query or fragment")]
    InvalidBaseUrl,
    /// A duration or size setting that must be positive was zero.
    #[error("the setting `{0}` must be greater than zero")]
    Zero(&'static str),
    /// A duration setting is longer than 24 hours.
    #[error("the setting `{0}` must be at most 24 hours")]
    TooLong(&'static str),
    /// A declared operation is not `METHOD /path/template` with plain
    /// segments and `{name}` placeholders.
    #[error(
        "invalid Wix operation `{0}`: expected `METHOD /path/{{placeholder}}`, the method in capitals (`GET`, `POST`...), plain path segments and an optional `?key=value&key={{placeholder}}` query"
    )]
    InvalidOperation(String),
    /// The operating system's random number generator failed, so no secret
    /// key could be drawn for the identity cache.
    #[error("the operating system's random number generator failed")]
    Randomness(#[source] std::io::Error),
    /// The HTTP client could not be built (for example, no TLS backend).
    #[error("the HTTP client for Wix could not be built")]
    HttpClient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The Redis URL (`ElevatorBuilder::redis`) is not a `redis://`,
    /// `rediss://` or `unix://` URL, or the key prefix is empty or has
    /// spaces.
    #[error("the Redis URL or key prefix is invalid")]
    InvalidRedisUrl,
    /// The base URL is `https`, but the crate was built without a TLS
    /// backend (features `rustls` and `native-tls` both off).
    #[error("the Wix API base URL is https, but no TLS feature (rustls, native-tls) is enabled")]
    NoTls,
}

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

/// Why a request was refused. Each kind maps to exactly one status.
///
/// | kind | status |
/// |---|---|
/// | [`MissingToken`](Self::MissingToken), [`MalformedToken`](Self::MalformedToken), [`InvalidToken`](Self::InvalidToken), [`ExpiredToken`](Self::ExpiredToken), [`ForeignToken`](Self::ForeignToken), [`NoInstance`](Self::NoInstance), [`NoSubject`](Self::NoSubject) | 401 |
/// | [`Forbidden`](Self::Forbidden) | 403 |
/// | [`UpstreamFailed`](Self::UpstreamFailed) | 502 |
/// | [`UpstreamThrottled`](Self::UpstreamThrottled), [`UpstreamUnavailable`](Self::UpstreamUnavailable) | 503 |
/// | [`UpstreamTimeout`](Self::UpstreamTimeout) | 504 |
/// | [`RateLimited`](Self::RateLimited) | 429 |
///
/// ```
/// use http::StatusCode;
/// use wix_elevate::RejectionKind;
///
/// assert_eq!(RejectionKind::Forbidden.status(), StatusCode::FORBIDDEN);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No `Authorization` header, or an empty one.
    MissingToken,
    /// The header is not a raw token or `Bearer <token>` of allowed
    /// characters and length. Refused before any call to Wix.
    MalformedToken,
    /// Wix does not know the token, or says it is not active.
    InvalidToken,
    /// The token's `exp` has passed.
    ExpiredToken,
    /// The token was issued to another app (`clientId` differs or is absent).
    ForeignToken,
    /// The request carries its credential twice, differently: in
    /// `Authorization` and in the query parameter the route reads
    /// ([`ElevateLayer::credential_from_query`](crate::ElevateLayer::credential_from_query)).
    /// Answered 400: neither is guessed at.
    ConflictingCredentials,
    /// The token is not bound to an app instance (`instanceId` absent).
    NoInstance,
    /// Wix named no subject for the token (`subjectId` absent or empty): a
    /// caller that cannot be identified cannot be rate-limited or bound to
    /// `{subjectId}` templates, so it is refused.
    NoSubject,
    /// The route's policy does not admit this caller.
    Forbidden,
    /// The route admits only sites on a paid plan of the app (or on
    /// certain plans: [`policy::paid`](crate::policy::paid),
    /// [`policy::plans`](crate::policy::plans)), and this caller's site is
    /// not on one. A frontend can offer an upgrade.
    PlanRequired,
    /// Wix failed: 5xx, an unexpected status, a malformed answer or a
    /// dropped connection.
    UpstreamFailed,
    /// Wix answered 429.
    UpstreamThrottled,
    /// Wix did not answer in time, or the request's authentication deadline
    /// passed.
    UpstreamTimeout,
    /// Wix is failing (circuit open) or too many calls to it are in flight.
    UpstreamUnavailable,
    /// This caller exceeded the route's rate limit.
    RateLimited,
}

impl RejectionKind {
    /// Every kind, in declaration order.
    pub(crate) const ALL: [RejectionKind; 15] = [
        RejectionKind::MissingToken,
        RejectionKind::MalformedToken,
        RejectionKind::InvalidToken,
        RejectionKind::ExpiredToken,
        RejectionKind::ForeignToken,
        RejectionKind::NoInstance,
        RejectionKind::NoSubject,
        RejectionKind::Forbidden,
        RejectionKind::UpstreamFailed,
        RejectionKind::UpstreamThrottled,
        RejectionKind::UpstreamTimeout,
        RejectionKind::UpstreamUnavailable,
        RejectionKind::RateLimited,
        RejectionKind::PlanRequired,
        RejectionKind::ConflictingCredentials,
    ];

    /// This kind's position in [`ALL`](Self::ALL). An exhaustive match, so
    /// a new kind cannot compile without a place (and a unit test checks
    /// that `ALL` agrees).
    pub(crate) const fn index(self) -> usize {
        match self {
            RejectionKind::MissingToken => 0,
            RejectionKind::MalformedToken => 1,
            RejectionKind::InvalidToken => 2,
            RejectionKind::ExpiredToken => 3,
            RejectionKind::ForeignToken => 4,
            RejectionKind::NoInstance => 5,
            RejectionKind::NoSubject => 6,
            RejectionKind::Forbidden => 7,
            RejectionKind::UpstreamFailed => 8,
            RejectionKind::UpstreamThrottled => 9,
            RejectionKind::UpstreamTimeout => 10,
            RejectionKind::UpstreamUnavailable => 11,
            RejectionKind::RateLimited => 12,
            RejectionKind::PlanRequired => 13,
            RejectionKind::ConflictingCredentials => 14,
        }
    }

    /// The HTTP status this kind is answered with.
    ///
    /// ```
    /// # use wix_elevate::RejectionKind;
    /// assert_eq!(RejectionKind::UpstreamTimeout.status().as_u16(), 504);
    /// ```
    pub const fn status(self) -> StatusCode {
        match self {
            RejectionKind::MissingToken
            | RejectionKind::MalformedToken
            | RejectionKind::InvalidToken
            | RejectionKind::ExpiredToken
            | RejectionKind::ForeignToken
            | RejectionKind::NoInstance
            | RejectionKind::NoSubject => StatusCode::UNAUTHORIZED,
            RejectionKind::Forbidden | RejectionKind::PlanRequired => StatusCode::FORBIDDEN,
            RejectionKind::ConflictingCredentials => StatusCode::BAD_REQUEST,
            RejectionKind::UpstreamFailed => StatusCode::BAD_GATEWAY,
            RejectionKind::UpstreamThrottled | RejectionKind::UpstreamUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            RejectionKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            RejectionKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// A stable snake_case code, used in problem bodies, logs and metrics.
    ///
    /// ```
    /// # use wix_elevate::RejectionKind;
    /// assert_eq!(RejectionKind::ForeignToken.code(), "foreign_token");
    /// ```
    pub const fn code(self) -> &'static str {
        match self {
            RejectionKind::MissingToken => "missing_token",
            RejectionKind::MalformedToken => "malformed_token",
            RejectionKind::InvalidToken => "invalid_token",
            RejectionKind::ExpiredToken => "expired_token",
            RejectionKind::ForeignToken => "foreign_token",
            RejectionKind::NoInstance => "no_instance",
            RejectionKind::NoSubject => "no_subject",
            RejectionKind::Forbidden => "forbidden",
            RejectionKind::PlanRequired => "plan_required",
            RejectionKind::ConflictingCredentials => "conflicting_credentials",
            RejectionKind::UpstreamFailed => "upstream_failed",
            RejectionKind::UpstreamThrottled => "upstream_throttled",
            RejectionKind::UpstreamTimeout => "upstream_timeout",
            RejectionKind::UpstreamUnavailable => "upstream_unavailable",
            RejectionKind::RateLimited => "rate_limited",
        }
    }

    /// A fixed, human-readable sentence (the problem body's `detail`).
    ///
    /// ```
    /// # use wix_elevate::RejectionKind;
    /// assert!(RejectionKind::Forbidden.detail().contains("not allowed"));
    /// ```
    pub const fn detail(self) -> &'static str {
        match self {
            RejectionKind::MissingToken => "The request carries no access token.",
            RejectionKind::MalformedToken => {
                "The Authorization header is not a valid access token."
            }
            RejectionKind::InvalidToken => "The access token is not valid.",
            RejectionKind::ExpiredToken => "The access token has expired.",
            RejectionKind::ForeignToken => "The access token was not issued for this app.",
            RejectionKind::NoInstance => "The access token is not bound to an app instance.",
            RejectionKind::NoSubject => "The access token names no subject.",
            RejectionKind::Forbidden => "The caller is not allowed to use this endpoint.",
            RejectionKind::ConflictingCredentials => {
                "The request carries two different credentials."
            }
            RejectionKind::PlanRequired => {
                "This endpoint needs a paid plan of the app for this site."
            }
            RejectionKind::UpstreamFailed => "Wix could not authorize the request.",
            RejectionKind::UpstreamThrottled => "Wix is throttling requests; retry later.",
            RejectionKind::UpstreamTimeout => "Wix did not answer in time.",
            RejectionKind::UpstreamUnavailable => "Wix is unavailable; retry later.",
            RejectionKind::RateLimited => "Too many requests from this caller; retry later.",
        }
    }

    /// The kind with this [`code`](Self::code), if any.
    pub(crate) fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.code() == code)
    }

    /// Whether the caller sent a token that was refused (as opposed to none).
    pub(crate) const fn token_was_sent(self) -> bool {
        !matches!(self, RejectionKind::MissingToken)
    }
}

/// A refused request: what went wrong and, for 5xx, the Wix error behind it.
///
/// The middleware answers it with a response (see
/// [`OnRejection`](crate::OnRejection)) and puts a clone of it into that
/// response's extensions, so outer layers can inspect it:
///
/// ```
/// use wix_elevate::{Rejection, RejectionKind};
///
/// let rejection = Rejection::new(RejectionKind::MissingToken);
/// assert_eq!(rejection.status().as_u16(), 401);
/// assert_eq!(rejection.to_string(), "The request carries no access token.");
/// ```
#[derive(Clone, Debug)]
pub struct Rejection {
    kind: RejectionKind,
    source: Option<Arc<UpstreamError>>,
    caller: Option<Caller>,
    retry_after: Option<Duration>,
}

impl Rejection {
    /// A rejection of this kind with no upstream cause.
    pub fn new(kind: RejectionKind) -> Self {
        Self {
            kind,
            source: None,
            caller: None,
            retry_after: None,
        }
    }

    pub(crate) fn upstream(source: Arc<UpstreamError>) -> Self {
        Self {
            kind: source.rejection_kind(),
            retry_after: source.retry_after(),
            source: Some(source),
            caller: None,
        }
    }

    /// The caller exceeded the route's rate limit; retry after `after`.
    pub(crate) fn rate_limited(caller: Caller, after: Duration) -> Self {
        Self {
            kind: RejectionKind::RateLimited,
            source: None,
            caller: Some(caller),
            retry_after: Some(after),
        }
    }

    /// The route's policy refused this verified caller, for `denial`.
    pub(crate) fn denied(caller: Caller, denial: crate::policy::Denial) -> Self {
        let kind = match denial {
            crate::policy::Denial::PlanRequired => RejectionKind::PlanRequired,
            crate::policy::Denial::Forbidden => RejectionKind::Forbidden,
        };
        Self {
            kind,
            source: None,
            caller: Some(caller),
            retry_after: None,
        }
    }

    /// The route's policy refused this verified caller.
    pub(crate) fn forbidden(caller: Caller) -> Self {
        Self {
            kind: RejectionKind::Forbidden,
            source: None,
            caller: Some(caller),
            retry_after: None,
        }
    }

    /// The verified caller, when the rejection is a policy denial.
    pub fn caller(&self) -> Option<&Caller> {
        self.caller.as_ref()
    }

    /// Why the request was refused.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The status the request is answered with.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The Wix failure behind a 5xx, if any.
    pub fn upstream_error(&self) -> Option<&UpstreamError> {
        self.source.as_deref()
    }

    pub(crate) fn upstream_source(&self) -> Option<Arc<UpstreamError>> {
        self.source.clone()
    }

    /// How long the caller should wait before retrying, for 503s and 429s:
    /// Wix's own `Retry-After`, the breaker's cool-down or the rate limit's
    /// wait when known, else one second.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            RejectionKind::UpstreamThrottled
            | RejectionKind::UpstreamUnavailable
            | RejectionKind::RateLimited => {
                Some(self.retry_after.unwrap_or(Duration::from_secs(1)))
            }
            _ => None,
        }
    }
}

impl From<RejectionKind> for Rejection {
    fn from(kind: RejectionKind) -> Self {
        Self::new(kind)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.detail())
    }
}

impl std::error::Error for Rejection {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_sits_at_its_index_in_all() {
        for (position, kind) in RejectionKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), position, "{kind:?}");
        }
        let codes: std::collections::HashSet<_> =
            RejectionKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(codes.len(), RejectionKind::ALL.len(), "codes are distinct");
    }
}
