//! [`WixApiError`]: a [`WixApi`](super::WixApi) call failed, and its
//! [`WixApiErrorKind`] (status, code and fixed detail).

use std::{fmt, sync::Arc, time::Duration};

use http::StatusCode;

use crate::{
    audit::Clean,
    error::{DEFAULT_RETRY_AFTER, Rejection, RejectionKind, UpstreamError},
};

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

/// A [`WixApi`](crate::WixApi) call failed. Opaque: ask [`kind`](Self::kind).
///
/// As a response (feature `axum`), every kind is a fixed
/// `application/problem+json` body with `Cache-Control: no-store` (see
/// [`WixApiErrorKind`] for the statuses); Wix's own message stays in this
/// value, for logs.
pub struct WixApiError(Box<ErrorInner>);

/// What a [`WixApiError`] holds, boxed so that a `Result` stays small.
pub(super) struct ErrorInner {
    pub(super) kind: WixApiErrorKind,
    pub(super) wix_status: Option<StatusCode>,
    pub(super) message: Option<String>,
    pub(super) code: Option<String>,
    pub(super) request_id: Option<Box<str>>,
    pub(super) retry_after: Option<Duration>,
    /// For a refused call: what was refused; for a request that could not
    /// be built, why. Escaped.
    pub(super) operation: Option<String>,
    pub(super) source: Option<Arc<UpstreamError>>,
}

impl ErrorInner {
    pub(super) fn new(kind: WixApiErrorKind) -> Self {
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
}

impl From<ErrorInner> for WixApiError {
    fn from(inner: ErrorInner) -> Self {
        Self(Box::new(inner))
    }
}

impl WixApiError {
    /// A request the handler's code could not build: `why` names the
    /// placeholder or argument at fault. It reaches `Display` (so the log
    /// line), never the response body.
    pub(super) fn invalid(why: String) -> Self {
        ErrorInner {
            operation: Some(Clean(&why).to_string()),
            ..ErrorInner::new(WixApiErrorKind::InvalidRequest)
        }
        .into()
    }

    /// An app-token failure (from the layer's caches) as a call failure.
    pub(super) fn from_rejection(rejection: Rejection) -> Self {
        let kind = match rejection.kind() {
            RejectionKind::UpstreamTimeout => WixApiErrorKind::Timeout,
            RejectionKind::UpstreamThrottled => WixApiErrorKind::Throttled,
            RejectionKind::UpstreamUnavailable => WixApiErrorKind::Unavailable,
            _ => WixApiErrorKind::Failed,
        };
        ErrorInner {
            retry_after: rejection.retry_after(),
            source: rejection.upstream_source(),
            ..ErrorInner::new(kind)
        }
        .into()
    }

    /// What went wrong.
    pub fn kind(&self) -> WixApiErrorKind {
        self.0.kind
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.0.kind.describe().0
    }

    /// A stable code for the problem body.
    pub fn code(&self) -> &'static str {
        self.0.kind.describe().1
    }

    /// The status Wix answered, if it answered one.
    pub fn wix_status(&self) -> Option<StatusCode> {
        self.0
            .wix_status
            .or_else(|| self.0.source.as_ref().and_then(|s| s.status()))
    }

    /// Wix's `message`, if it sent one (for logs; never sent to clients).
    pub fn wix_message(&self) -> Option<&str> {
        self.0.message.as_deref()
    }

    /// Wix's `details.applicationError.code`, if it sent one.
    pub fn wix_code(&self) -> Option<&str> {
        self.0.code.as_deref()
    }

    /// Wix's `x-wix-request-id`, for support tickets.
    pub fn request_id(&self) -> Option<&str> {
        self.0
            .request_id
            .as_deref()
            .or_else(|| self.0.source.as_ref().and_then(|s| s.request_id()))
    }

    /// How long to wait before retrying, for the 503 kinds.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.0.kind {
            WixApiErrorKind::Throttled | WixApiErrorKind::Unavailable => {
                Some(self.0.retry_after.unwrap_or(DEFAULT_RETRY_AFTER))
            }
            _ => None,
        }
    }

    /// The Wix failure behind this error, if any.
    pub fn upstream_error(&self) -> Option<&UpstreamError> {
        self.0.source.as_deref()
    }
}

impl From<UpstreamError> for WixApiError {
    fn from(error: UpstreamError) -> Self {
        Self::from_rejection(Rejection::upstream(Arc::new(error)))
    }
}

impl fmt::Display for WixApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.kind.describe().2)?;
        if let Some(operation) = &self.0.operation {
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
            .field("kind", &self.0.kind)
            .field("wix_status", &self.wix_status())
            .field("wix_code", &self.0.code)
            .field("request_id", &self.request_id())
            .field("operation", &self.0.operation)
            .field("source", &self.0.source)
            .finish_non_exhaustive()
    }
}

impl std::error::Error for WixApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl WixApiError {
    /// The problem response for this error (logged at WARN when it is a
    /// 5xx): what a handler that returns it answers.
    #[cfg_attr(not(any(feature = "axum", feature = "plugins")), allow(dead_code))]
    pub(crate) fn problem_response<B: From<String>>(&self) -> http::Response<B> {
        let (status, code, detail) = self.0.kind.describe();
        if status.is_server_error() {
            tracing::warn!(target: "wix_elevate::api", error = %self, code, "Wix API call failed");
        }
        crate::response::problem(status, detail, code, self.retry_after())
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for WixApiError {
    fn into_response(self) -> axum_core::response::Response {
        self.problem_response()
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use http::StatusCode;

    use super::*;
    use crate::error::{Endpoint, UpstreamErrorKind};

    /// The table of the crate docs' "When Wix fails", row by row: what
    /// happened, the request's refusal, the `WixApi` call's failure, and
    /// the status and code both answer.
    #[test]
    fn a_wix_failure_answers_the_same_as_a_refusal_and_as_a_failed_call() {
        let e = Endpoint::TokenInfo;
        let second = Duration::from_secs(1);
        let cases = [
            (
                UpstreamError::timeout(e),
                RejectionKind::UpstreamTimeout,
                WixApiErrorKind::Timeout,
                504,
                "upstream_timeout",
            ),
            (
                UpstreamError::throttled(e, None, None),
                RejectionKind::UpstreamThrottled,
                WixApiErrorKind::Throttled,
                503,
                "upstream_throttled",
            ),
            (
                UpstreamError::circuit_open(e, second),
                RejectionKind::UpstreamUnavailable,
                WixApiErrorKind::Unavailable,
                503,
                "upstream_unavailable",
            ),
            (
                UpstreamError::overloaded(e),
                RejectionKind::UpstreamUnavailable,
                WixApiErrorKind::Unavailable,
                503,
                "upstream_unavailable",
            ),
            (
                UpstreamError::budget_spent(e, second),
                RejectionKind::UpstreamUnavailable,
                WixApiErrorKind::Unavailable,
                503,
                "upstream_unavailable",
            ),
            (
                UpstreamError::transport(e, std::io::Error::other("reset")),
                RejectionKind::UpstreamFailed,
                WixApiErrorKind::Failed,
                502,
                "upstream_failed",
            ),
            (
                UpstreamError::bad_status(e, StatusCode::BAD_GATEWAY, None),
                RejectionKind::UpstreamFailed,
                WixApiErrorKind::Failed,
                502,
                "upstream_failed",
            ),
            (
                UpstreamError::malformed(e, "no exp"),
                RejectionKind::UpstreamFailed,
                WixApiErrorKind::Failed,
                502,
                "upstream_failed",
            ),
        ];
        for (error, refusal, failure, status, code) in cases {
            let what = error.kind();
            assert!(
                !matches!(what, UpstreamErrorKind::Status) || error.status().is_some(),
                "{what:?}"
            );
            let rejection = Rejection::upstream(Arc::new(error));
            assert_eq!(rejection.kind(), refusal, "{what:?}");
            assert_eq!(
                (rejection.status().as_u16(), rejection.kind().code()),
                (status, code),
                "{what:?}"
            );
            let call = WixApiError::from_rejection(rejection);
            assert_eq!(call.kind(), failure, "{what:?}");
            assert_eq!(
                (call.status().as_u16(), call.code()),
                (status, code),
                "{what:?}"
            );
        }
    }
}
