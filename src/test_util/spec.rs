//! What the mock is told: endpoints, answer styles and quirks, faults,
//! caller tokens to mint, and the answers of registered operations.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::Value;

use crate::caller::SubjectType;

/// Wix's documented app-token lifetime: 4 hours.
pub const DEFAULT_APP_TOKEN_LIFETIME: Duration = Duration::from_secs(14_400);

/// One of the mock's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MockEndpoint {
    /// `POST /oauth2/token-info`.
    TokenInfo,
    /// `POST /oauth2/token`.
    CreateAccessToken,
    /// `GET /apps/v1/instance`.
    GetAppInstance,
    /// `GET /members/v1/members/{id}`.
    GetMember,
    /// Any operation registered with [`MockWix::on`](super::MockWix::on)
    /// (faults injected here apply to all of them).
    Api,
    /// Any other path (answered 404).
    Other,
}

/// How Token Info writes its fields. Wix's sources disagree (its docs and
/// its generated SDK types), so the mock speaks all three plausible forms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenInfoStyle {
    /// Wix's most likely live form, from the generated service types:
    /// proto3 JSON, so `active` a boolean, `exp`/`iat` int64 as strings,
    /// fields at their default value (`false`, `""`) omitted, and
    /// `accountId`/`vendorProductId` present.
    #[default]
    Proto3,
    /// `"active":"true","exp":"1715096067"`: the documentation example.
    Strings,
    /// `"active":true,"exp":1715096067`: the hand-written SDK types.
    Native,
}

/// Odd but harmless forms Wix's own SDK accepts, layered on a
/// [`TokenInfoStyle`] with [`MockWix::set_token_info_quirks`](super::MockWix::set_token_info_quirks),
/// so embedders can rehearse them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenInfoQuirk {
    /// `iat` as an ISO date (`"2026-11-27T10:00:00Z"`).
    IatIsoDate,
    /// `iat` as an object.
    IatObject,
    /// `subjectType` with a JSON escape (`"MEMB\u0045R"`).
    SubjectTypeEscaped,
    /// `subjectType` as a number.
    SubjectTypeNumber,
    /// `active` as `"TRUE"` (or `"FALSE"`).
    ActiveUppercase,
    /// `exp` as a decimal string (`"1795872125.0"`).
    ExpDecimalString,
    /// `exp` as a decimal number (`1795872125.5`).
    ExpDecimalNumber,
    /// A UTF-8 byte-order mark before the body.
    Bom,
}

/// Forms of Create Access Token's `expires_in` that Wix's SDK accepts
/// without checking; see [`MockWix::set_grant_quirk`](super::MockWix::set_grant_quirk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrantQuirk {
    /// No `expires_in` at all.
    NoExpiresIn,
    /// `"expires_in":0`.
    ZeroExpiresIn,
    /// `"expires_in":"14400s"` (protobuf Duration JSON).
    DurationString,
    /// `"expires_in":9223372036854775807`.
    Huge,
}

/// What Token Info answers for an unknown or revoked token. Wix's real
/// behaviour is undocumented, so test both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusedTokenAnswer {
    /// This status with a Wix error body.
    Status(u16),
    /// 200 with `{"active": false}`.
    Inactive,
}

impl Default for RefusedTokenAnswer {
    fn default() -> Self {
        RefusedTokenAnswer::Status(401)
    }
}

/// A failure to inject into an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer this status with a Wix error body.
    Status(u16),
    /// Answer normally after this delay.
    Delay(Duration),
    /// Never answer.
    Hang,
    /// Answer 200 with JSON of the wrong shape.
    Malformed,
    /// Answer 200 with a body that is not JSON.
    NotJson,
    /// Send the status line, then drop the connection.
    Drop,
    /// Answer 429, with `Retry-After` when given (seconds).
    TooManyRequests {
        /// The `Retry-After` header, in seconds.
        retry_after_secs: Option<u64>,
    },
}

/// A call received by an operation registered with
/// [`MockWix::on`](super::MockWix::on) or by a built-in endpoint (see
/// [`MockWix::calls_to`](super::MockWix::calls_to)).
#[derive(Clone, Debug)]
pub struct MockRequest {
    /// The method.
    pub method: http::Method,
    /// The path, as sent (percent-encoding kept).
    pub path: String,
    /// The query string, as sent, if any.
    pub query: Option<String>,
    /// The request headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The instance the app token acts for.
    pub instance_id: String,
}

/// What a registered operation answers.
#[derive(Clone, Debug)]
pub struct MockReply {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    pub(super) headers: http::HeaderMap,
}

impl MockReply {
    /// `status` with a JSON body.
    ///
    /// ```
    /// use wix_elevate::test_util::MockReply;
    /// let reply = MockReply::json(200, serde_json::json!({"product": {"id": "p-1"}}));
    /// # let _ = reply;
    /// ```
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
            headers: http::HeaderMap::new(),
        }
    }

    /// Wix's standard error body with this status.
    pub fn wix_error(status: u16, message: &str) -> Self {
        Self::json(
            status,
            serde_json::json!({ "message": message, "details": { "applicationError": { "code": "MOCK", "description": message } } }),
        )
    }

    /// Add a response header (ignored if name or value is invalid).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            self.headers.insert(name, value);
        }
        self
    }
}

/// A caller token to mint; see [`MockWix::mint`](super::MockWix::mint).
///
/// Defaults: instance `mock-instance`, this app's client id, active,
/// expiring in 4 hours, a generated subject id.
///
/// ```
/// use std::time::Duration;
/// use wix_elevate::{SubjectType, test_util::CallerSpec};
///
/// let spec = CallerSpec::new(SubjectType::Visitor)
///     .instance("inst-9")
///     .expires_in(Duration::from_secs(60))
///     .token_len(1024);
/// # let _ = spec;
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct CallerSpec {
    pub(super) subject_type: String,
    pub(super) subject_id: Option<String>,
    pub(super) instance_id: Option<String>,
    pub(super) client_id: ClientId,
    pub(super) site_id: Option<String>,
    pub(super) expires_in_secs: i64,
    pub(super) active: bool,
    pub(super) token_len: usize,
    /// `vendorProductId`: `None` is the free plan (omitted).
    pub(super) plan: Option<String>,
}

#[derive(Clone, Debug)]
pub(super) enum ClientId {
    ThisApp,
    Other(String),
    Absent,
}

impl CallerSpec {
    /// A token for this subject type.
    pub fn new(subject_type: SubjectType) -> Self {
        Self::with_subject_type_str(subject_type.as_str())
    }

    /// A token whose `subjectType` is any string, e.g. one Wix may add.
    pub fn with_subject_type_str(subject_type: impl Into<String>) -> Self {
        Self {
            subject_type: subject_type.into(),
            subject_id: None,
            instance_id: Some("mock-instance".into()),
            client_id: ClientId::ThisApp,
            site_id: Some("mock-site".into()),
            expires_in_secs: 4 * 3600,
            active: true,
            token_len: 0,
            plan: None,
        }
    }

    /// The subject id (default: generated).
    pub fn subject_id(mut self, id: impl Into<String>) -> Self {
        self.subject_id = Some(id.into());
        self
    }

    /// The app instance the token is bound to.
    pub fn instance(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// No `instanceId` in Token Info.
    pub fn no_instance(mut self) -> Self {
        self.instance_id = None;
        self
    }

    /// Issued for another app (`clientId`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = ClientId::Other(id.into());
        self
    }

    /// No `clientId` in Token Info.
    pub fn no_client_id(mut self) -> Self {
        self.client_id = ClientId::Absent;
        self
    }

    /// The `siteId` (default `mock-site`).
    pub fn site_id(mut self, id: impl Into<String>) -> Self {
        self.site_id = Some(id.into());
        self
    }

    /// Expires this long from now.
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_in_secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        self
    }

    /// Expired a minute ago (Token Info still says `active: true`).
    pub fn expired(mut self) -> Self {
        self.expires_in_secs = -60;
        self
    }

    /// Token Info says `active: false`.
    pub fn inactive(mut self) -> Self {
        self.active = false;
        self
    }

    /// The site bought this plan of the app: Token Info's `vendorProductId`
    /// is `product_id` (default: the free plan, no `vendorProductId`).
    ///
    /// ```
    /// use wix_elevate::{SubjectType, test_util::CallerSpec};
    ///
    /// let premium_owner = CallerSpec::new(SubjectType::User).plan("premium");
    /// # let _ = premium_owner;
    /// ```
    pub fn plan(mut self, product_id: impl Into<String>) -> Self {
        self.plan = Some(product_id.into());
        self
    }

    /// Pad the token to this many characters (realistic Wix tokens are
    /// around 1 KiB).
    pub fn token_len(mut self, len: usize) -> Self {
        self.token_len = len;
        self
    }
}
