//! Why a service-plugin or payment-provider request got no handler's
//! answer ([`PluginError`]), and what a handler answers when it fails
//! ([`PluginFailure`], [`ApplicationError`]).

use std::fmt;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::{WixApiError, jwt::JwtRefusal, response::problem};

/// Why a request from Wix was not handed to the plugin's handler, or got
/// no answer from it in time. Each kind answers one status with a fixed
/// `application/problem+json` body.
///
/// | kind | status | `code` |
/// |---|---|---|
/// | [`TooLarge`](Self::TooLarge) | 413 | `plugin_request_too_large` |
/// | [`BadSignature`](Self::BadSignature) | 401 | `plugin_bad_signature` |
/// | [`Expired`](Self::Expired) | 401 | `plugin_expired` |
/// | [`InvalidClaims`](Self::InvalidClaims) | 401 | `plugin_invalid_claims` |
/// | [`MissingDigest`](Self::MissingDigest) | 401 | `digest_missing` |
/// | [`DigestMismatch`](Self::DigestMismatch) | 401 | `digest_mismatch` |
/// | [`NotAPluginRequest`](Self::NotAPluginRequest) | 400 | `not_a_plugin_request` |
/// | [`InvalidRequest`](Self::InvalidRequest) | 400 | `invalid_plugin_request` |
/// | [`UnknownMethod`](Self::UnknownMethod) | 404 | `unknown_plugin_method` |
/// | [`DeadlineExceeded`](Self::DeadlineExceeded) | 504 | `plugin_deadline_exceeded` |
/// | [`InvalidResponse`](Self::InvalidResponse) | 500 | `invalid_plugin_response` |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PluginErrorKind {
    /// The body is larger than the verifier reads; never parsed.
    TooLarge,
    /// No configured key verifies the JWT, it is not RS256, or its header
    /// names a `crit` extension.
    BadSignature,
    /// Signed, but past `exp` or before `nbf`.
    Expired,
    /// Signed, but `iss` is not `wix.com`, `aud` does not name this app,
    /// `exp` is missing, or a time claim is not a number.
    InvalidClaims,
    /// A payment-provider request without a `Digest: JWT=…` header.
    MissingDigest,
    /// The body's SHA-256 is not the one the `Digest` JWT signs.
    DigestMismatch,
    /// Not a JWT, or signed claims whose `data` is not a plugin envelope
    /// (an object with `metadata.appExtensionType` and
    /// `metadata.instanceId`), or one for another plugin.
    NotAPluginRequest,
    /// A plugin envelope whose `request` is not what the handler reads.
    InvalidRequest,
    /// No method of this plugin is served at the request's path.
    UnknownMethod,
    /// The handler did not answer within the plugin's deadline.
    DeadlineExceeded,
    /// The handler's answer could not be serialized.
    InvalidResponse,
}

impl PluginErrorKind {
    /// Status, code and fixed detail, in one place.
    const fn describe(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            PluginErrorKind::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "plugin_request_too_large",
                "The request body is too large.",
            ),
            PluginErrorKind::BadSignature => (
                StatusCode::UNAUTHORIZED,
                "plugin_bad_signature",
                "The request's signature is not valid.",
            ),
            PluginErrorKind::Expired => (
                StatusCode::UNAUTHORIZED,
                "plugin_expired",
                "The request has expired or is not yet valid.",
            ),
            PluginErrorKind::InvalidClaims => (
                StatusCode::UNAUTHORIZED,
                "plugin_invalid_claims",
                "The request was not signed by Wix for this app.",
            ),
            PluginErrorKind::MissingDigest => (
                StatusCode::UNAUTHORIZED,
                "digest_missing",
                "The request has no Digest header.",
            ),
            PluginErrorKind::DigestMismatch => (
                StatusCode::UNAUTHORIZED,
                "digest_mismatch",
                "The request body does not match its signed digest.",
            ),
            PluginErrorKind::NotAPluginRequest => (
                StatusCode::BAD_REQUEST,
                "not_a_plugin_request",
                "The body is not a request for this service plugin.",
            ),
            PluginErrorKind::InvalidRequest => (
                StatusCode::BAD_REQUEST,
                "invalid_plugin_request",
                "The service plugin request is not in the expected form.",
            ),
            PluginErrorKind::UnknownMethod => (
                StatusCode::NOT_FOUND,
                "unknown_plugin_method",
                "This service plugin has no method at this path.",
            ),
            PluginErrorKind::DeadlineExceeded => (
                StatusCode::GATEWAY_TIMEOUT,
                "plugin_deadline_exceeded",
                "The service plugin did not answer in time.",
            ),
            PluginErrorKind::InvalidResponse => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "invalid_plugin_response",
                "The service plugin's answer could not be written.",
            ),
        }
    }

    /// The status it answers.
    pub const fn status(self) -> StatusCode {
        self.describe().0
    }

    /// A stable snake_case code, for problem bodies and logs.
    pub const fn code(self) -> &'static str {
        self.describe().1
    }

    /// A fixed sentence, for problem bodies.
    pub const fn detail(self) -> &'static str {
        self.describe().2
    }
}

impl From<JwtRefusal> for PluginErrorKind {
    fn from(refusal: JwtRefusal) -> Self {
        match refusal {
            JwtRefusal::TooLarge => PluginErrorKind::TooLarge,
            JwtRefusal::NotAJwt => PluginErrorKind::NotAPluginRequest,
            JwtRefusal::BadSignature => PluginErrorKind::BadSignature,
            JwtRefusal::Expired => PluginErrorKind::Expired,
            JwtRefusal::BadClaims => PluginErrorKind::InvalidClaims,
        }
    }
}

impl fmt::Display for PluginErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A request from Wix refused, or left unanswered by its handler. Shows
/// its kind, never the body or the token.
///
/// ```
/// use wix_elevate::plugin::{PluginError, PluginErrorKind};
///
/// let refused = PluginError::from(PluginErrorKind::BadSignature);
/// assert_eq!(refused.status(), 401);
/// assert_eq!(refused.to_string(), "plugin request refused: plugin_bad_signature");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("plugin request refused: {}", .kind.code())]
pub struct PluginError {
    kind: PluginErrorKind,
}

impl PluginError {
    /// Why.
    pub fn kind(&self) -> PluginErrorKind {
        self.kind
    }

    /// The status to answer with.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// Its `application/problem+json` response.
    pub fn to_response<B: From<String>>(&self) -> Response<B> {
        let (status, code, detail) = self.kind.describe();
        problem(status, detail, code, None)
    }
}

impl From<PluginErrorKind> for PluginError {
    fn from(kind: PluginErrorKind) -> Self {
        Self { kind }
    }
}

impl From<JwtRefusal> for PluginError {
    fn from(refusal: JwtRefusal) -> Self {
        PluginErrorKind::from(refusal).into()
    }
}

/// A business answer a plugin method gives instead of its result, in
/// Wix's shape: `{"applicationError": {"code", "data"}}` with its HTTP
/// status (400 unless set), as Wix's SDK answers one.
///
/// ```
/// use wix_elevate::plugin::ApplicationError;
///
/// let error = ApplicationError::new("NO_FEES_FOR_REGION")
///     .status(http::StatusCode::UNPROCESSABLE_ENTITY)
///     .data(serde_json::json!({"region": "AQ"}));
/// assert_eq!(error.to_string(), "service plugin application error NO_FEES_FOR_REGION (422)");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ApplicationError {
    status: StatusCode,
    code: String,
    data: Value,
}

impl ApplicationError {
    /// An application error with Wix's `code`, status 400 and no data.
    pub fn new(code: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: code.into(),
            data: Value::Null,
        }
    }

    /// Its HTTP status.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Its `data`, as the plugin's documentation defines it.
    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// The code.
    pub fn code(&self) -> &str {
        &self.code
    }

    pub(super) fn to_response<B: From<String>>(&self) -> Response<B> {
        let body = json!({"applicationError": {"code": self.code, "data": self.data}});
        let mut response = Response::new(B::from(body.to_string()));
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    }
}

impl fmt::Display for ApplicationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "service plugin application error {} ({})",
            self.code,
            self.status.as_u16()
        )
    }
}

impl std::error::Error for ApplicationError {}

/// Why a plugin method's handler gave no result: a business answer for
/// Wix ([`ApplicationError`]), or a Wix API call that failed
/// ([`WixApiError`], answered with its status as a problem document).
/// `?` converts both.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginFailure {
    /// Answered in Wix's `applicationError` shape.
    #[error(transparent)]
    Application(#[from] ApplicationError),
    /// A call to Wix failed; answered like any [`WixApiError`].
    #[error(transparent)]
    Wix(#[from] WixApiError),
}

impl PluginFailure {
    pub(super) fn to_response<B: From<String>>(&self) -> Response<B> {
        match self {
            PluginFailure::Application(error) => error.to_response(),
            PluginFailure::Wix(error) => error.problem_response(),
        }
    }
}
