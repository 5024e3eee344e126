//! [`Rejection`]: a request was refused, and its [`RejectionKind`] (status,
//! code and fixed detail, each in one table).

use std::{fmt, sync::Arc, time::Duration};

use http::StatusCode;

use super::UpstreamError;
use crate::caller::Caller;

/// The `Retry-After` of a 503 when Wix gave none.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a request was refused. Each kind maps to exactly one status.
///
/// | status | when | `code` in the body |
/// |---|---|---|
/// | 401 | no token; malformed header; Wix refuses the token (400/401/403/404, or not `active`); expired; another app's token; no instance; no subject | `missing_token`, `malformed_token`, `invalid_token`, `expired_token`, `foreign_token`, `no_instance`, `no_subject` |
/// | 400 | `Authorization` and the route's credential query parameter (`credential_from_query`) disagree | `conflicting_credentials` |
/// | 403 | the route's policy denies the caller | `forbidden` |
/// | 403 | the route's plan policy (`policy::paid`, `policy::plans`) refuses the caller's site plan | `plan_required` |
/// | 429 | the caller exceeded the route's per-caller rate limit (`Retry-After` set) | `rate_limited` |
/// | 502 | Wix answered 5xx or another unexpected status, a malformed or non-JSON body, or dropped the connection | `upstream_failed` |
/// | 503 | Wix answered 429 and its `Retry-After` does not fit the request's deadline (forwarded, else 1 s) | `upstream_throttled` |
/// | 503 | a circuit is open after repeated Wix failures, or too many Wix calls are in flight (`Retry-After` set) | `upstream_unavailable` |
/// | 504 | a Wix call exceeded its timeout, or the request's authentication deadline passed | `upstream_timeout` |
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

    /// Status, code and fixed detail together (a `WixApiError` of the same
    /// failure answers exactly these).
    pub(crate) const fn describe(self) -> (StatusCode, &'static str, &'static str) {
        (self.status(), self.code(), self.detail())
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
            RejectionKind::UpstreamFailed => {
                "Wix could not be reached or sent an unreadable answer."
            }
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
    /// The app a `plan_required` caller would upgrade (set by the route).
    app_id: Option<Arc<str>>,
}

impl Rejection {
    /// A rejection of this kind with no upstream cause.
    pub fn new(kind: RejectionKind) -> Self {
        Self {
            kind,
            source: None,
            caller: None,
            retry_after: None,
            app_id: None,
        }
    }

    pub(crate) fn upstream(source: Arc<UpstreamError>) -> Self {
        Self {
            kind: source.rejection_kind(),
            retry_after: source.retry_after(),
            app_id: None,
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
            app_id: None,
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
            app_id: None,
        }
    }

    /// The verified caller, when the rejection is a policy denial.
    pub fn caller(&self) -> Option<&Caller> {
        self.caller.as_ref()
    }

    /// For a `plan_required` refusal, the app whose plan the caller's site
    /// needs, as the route knows it: what a frontend offers an upgrade of.
    pub fn app_id(&self) -> Option<&str> {
        self.app_id.as_deref()
    }

    pub(crate) fn with_app_id(mut self, app_id: Arc<str>) -> Self {
        self.app_id = Some(app_id);
        self
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
            | RejectionKind::RateLimited => Some(self.retry_after.unwrap_or(DEFAULT_RETRY_AFTER)),
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
