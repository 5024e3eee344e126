//! What the layer hands to handlers: who is calling ([`Caller`]) and the
//! app-identity token for their instance ([`ElevatedToken`]).
//!
//! Both are cheap to clone (one `Arc`) and are inserted into the request's
//! extensions; with the `axum` feature they are also extractors.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;

use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::{error::Rejection, forget::Stamp};

/// "Forever", for values made without an expiry.
const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The kind of identity a Wix access token was issued to (`subjectType`).
///
/// ```
/// use wix_elevate::SubjectType;
///
/// assert_eq!(SubjectType::from_wix("MEMBER"), SubjectType::Member);
/// assert_eq!(SubjectType::from_wix("ROBOT"), SubjectType::Unknown);
/// assert_eq!(SubjectType::Visitor.as_str(), "VISITOR");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubjectType {
    /// An anonymous site visitor. Anyone can obtain such a token.
    Visitor,
    /// A logged-in site member.
    Member,
    /// A Wix user (site owner or collaborator), typically from a dashboard.
    User,
    /// An app identity.
    App,
    /// Anything else, including a missing `subjectType`.
    Unknown,
}

impl SubjectType {
    /// Parse Wix's `subjectType` string; unrecognised values are
    /// [`Unknown`](Self::Unknown).
    pub fn from_wix(value: &str) -> Self {
        match value {
            "VISITOR" => SubjectType::Visitor,
            "MEMBER" => SubjectType::Member,
            "USER" => SubjectType::User,
            "APP" => SubjectType::App,
            _ => SubjectType::Unknown,
        }
    }

    /// Wix's spelling of this subject type.
    pub const fn as_str(self) -> &'static str {
        match self {
            SubjectType::Visitor => "VISITOR",
            SubjectType::Member => "MEMBER",
            SubjectType::User => "USER",
            SubjectType::App => "APP",
            SubjectType::Unknown => "UNKNOWN",
        }
    }

    pub(crate) const fn bit(self) -> u8 {
        match self {
            SubjectType::Visitor => 1,
            SubjectType::Member => 2,
            SubjectType::User => 4,
            SubjectType::App => 8,
            SubjectType::Unknown => 16,
        }
    }
}

impl fmt::Display for SubjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The app plan the caller's site bought, as Token Info's `vendorProductId`
/// names it.
///
/// Decoded leniently, like every field no decision needs, until a route's
/// policy reads it ([`policy::paid`](crate::policy::paid),
/// [`policy::plans`](crate::policy::plans)): then an [`Unreadable`](Self::Unreadable)
/// plan is refused, never admitted.
///
/// ```
/// use wix_elevate::Plan;
///
/// assert_eq!(Plan::paid("premium").product_id(), Some("premium"));
/// assert!(!Plan::Free.is_paid());
/// assert!(!Plan::Unreadable.is_paid());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Plan {
    /// No paid plan: `vendorProductId` absent, `null` or empty.
    #[default]
    Free,
    /// A paid plan, by its product id.
    Paid(Arc<str>),
    /// Wix sent something that is not a product id (a number, an object,
    /// the field twice).
    Unreadable,
}

impl Plan {
    /// A paid plan with this product id (an empty id is the free plan).
    pub fn paid(product_id: impl Into<Arc<str>>) -> Self {
        let id = product_id.into();
        if id.is_empty() {
            Plan::Free
        } else {
            Plan::Paid(id)
        }
    }

    /// The product id of a paid plan.
    pub fn product_id(&self) -> Option<&str> {
        match self {
            Plan::Paid(id) => Some(id),
            Plan::Free | Plan::Unreadable => None,
        }
    }

    /// Whether this is a paid plan.
    pub fn is_paid(&self) -> bool {
        matches!(self, Plan::Paid(_))
    }
}

/// The verified caller of a request, as Wix's Token Info described it.
///
/// Only the layer creates it in production, after Wix confirmed the token
/// is active, unexpired, issued for this app and bound to an instance. The
/// instance id always comes from Wix, never from anything the client sent.
///
/// ```
/// use wix_elevate::{Caller, SubjectType};
///
/// // Handy in unit tests of your own handlers:
/// let caller = Caller::new(SubjectType::Member, "member-1", "instance-1");
/// assert_eq!(caller.subject_type(), SubjectType::Member);
/// assert_eq!(caller.instance_id(), "instance-1");
/// assert_eq!(caller.site_id(), None);
/// ```
#[derive(Clone)]
pub struct Caller(Arc<CallerData>);

#[derive(Clone)]
struct CallerData {
    subject_type: SubjectType,
    subject_id: Arc<str>,
    instance_id: Arc<str>,
    site_id: Option<Box<str>>,
    /// Wix's `exp`, on the monotonic clock.
    live_until: Instant,
    plan: Plan,
    /// Whether the layer may still serve this identity from its cache
    /// (see [`forget`](crate::forget)); `None` for callers made by hand.
    stamp: Option<Stamp>,
}

impl Caller {
    /// A caller with these identifiers, no site id and no expiry.
    pub fn new(
        subject_type: SubjectType,
        subject_id: impl Into<Arc<str>>,
        instance_id: impl Into<Arc<str>>,
    ) -> Self {
        let now = Instant::now();
        let far = now.checked_add(CENTURY).unwrap_or(now);
        Self::from_parts(
            subject_type,
            subject_id.into(),
            instance_id.into(),
            None,
            far,
            Plan::Free,
        )
    }

    pub(crate) fn from_parts(
        subject_type: SubjectType,
        subject_id: Arc<str>,
        instance_id: Arc<str>,
        site_id: Option<Box<str>>,
        live_until: Instant,
        plan: Plan,
    ) -> Self {
        Caller(Arc::new(CallerData {
            subject_type,
            subject_id,
            instance_id,
            site_id,
            live_until,
            plan,
            stamp: None,
        }))
    }

    /// The same caller, cached under `stamp`.
    pub(crate) fn with_stamp(self, stamp: Stamp) -> Self {
        Caller(Arc::new(CallerData {
            stamp: Some(stamp),
            ..Arc::unwrap_or_clone(self.0)
        }))
    }

    /// The same caller on `plan` (for tests of your own handlers and
    /// policies; the layer takes the plan from Wix).
    ///
    /// ```
    /// use wix_elevate::{Caller, Plan, SubjectType};
    ///
    /// let caller = Caller::new(SubjectType::User, "u-1", "i-1").with_plan(Plan::paid("premium"));
    /// assert_eq!(caller.plan().product_id(), Some("premium"));
    /// ```
    pub fn with_plan(self, plan: Plan) -> Self {
        Caller(Arc::new(CallerData {
            plan,
            ..Arc::unwrap_or_clone(self.0)
        }))
    }

    /// The plan the caller's site bought for this app (Token Info's
    /// `vendorProductId`).
    pub fn plan(&self) -> &Plan {
        &self.0.plan
    }

    /// Whether this identity was not forgotten since Wix gave it.
    pub(crate) fn is_unforgotten(&self) -> bool {
        self.0.stamp.as_ref().is_none_or(Stamp::holds)
    }

    /// The kind of identity calling.
    pub fn subject_type(&self) -> SubjectType {
        self.0.subject_type
    }

    /// Wix's id of the subject (visitor, member, user or app id).
    pub fn subject_id(&self) -> &str {
        &self.0.subject_id
    }

    /// The app instance (one installation of the app on one site).
    pub fn instance_id(&self) -> &str {
        &self.0.instance_id
    }

    pub(crate) fn instance_key(&self) -> &Arc<str> {
        &self.0.instance_id
    }

    pub(crate) fn subject_key(&self) -> &Arc<str> {
        &self.0.subject_id
    }

    /// The site the token was issued for, when Wix said.
    pub fn site_id(&self) -> Option<&str> {
        self.0.site_id.as_deref()
    }

    /// When the caller's token expires (Wix's `exp`), on the monotonic
    /// clock like every expiry in this crate.
    pub fn expires_at(&self) -> Instant {
        self.0.live_until
    }

    /// How long until the token expires, from `now`.
    pub(crate) fn time_left(&self, now: Instant) -> Duration {
        self.0.live_until.saturating_duration_since(now)
    }

    /// Whether the token is still unexpired at `now`.
    pub(crate) fn is_live(&self, now: Instant) -> bool {
        now < self.0.live_until
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("subject_type", &self.0.subject_type)
            .field("subject_id", &self.0.subject_id)
            .field("instance_id", &self.0.instance_id)
            .field("site_id", &self.0.site_id)
            .field("plan", &self.0.plan)
            .field("expires_at", &self.0.live_until)
            .finish()
    }
}

/// An app-identity access token for the caller's instance, from Wix's
/// Create Access Token.
///
/// Its value never shows in `Debug` and it has no `Display`: the only ways
/// to read it are [`expose_secret`](Self::expose_secret) and
/// [`authorization_header`](Self::authorization_header), easy to grep for.
/// Never send it to the browser.
///
/// ```
/// use std::time::Duration;
/// use wix_elevate::ElevatedToken;
///
/// let token = ElevatedToken::new("app-token", "instance-1", Duration::from_secs(60));
/// assert_eq!(token.expose_secret(), "app-token");
/// assert!(!format!("{token:?}").contains("app-token"));
/// ```
#[derive(Clone)]
pub struct ElevatedToken(Arc<TokenData>);

struct TokenData {
    header: HeaderValue,
    secret: SecretString,
    instance_id: Arc<str>,
    expires_at: Instant,
    /// From here on, the first request renews the token in the background.
    renew_at: Instant,
    /// From here on, the token is never handed out.
    usable_until: Instant,
    /// Set by the one request that started this token's renewal.
    renewal_claimed: AtomicBool,
    /// Whether it may still be served from the cache (see
    /// [`forget`](crate::forget)).
    stamp: Option<Stamp>,
}

impl ElevatedToken {
    /// A token valid for `lifetime` from now. Handy in tests; the layer
    /// makes these from Wix's answers.
    ///
    /// A value that is not a valid header value yields a token whose
    /// [`authorization_header`](Self::authorization_header) is empty.
    pub fn new(
        token: impl Into<String>,
        instance_id: impl Into<Arc<str>>,
        lifetime: Duration,
    ) -> Self {
        Self::issued(
            token.into(),
            instance_id.into(),
            lifetime,
            Duration::ZERO,
            Duration::ZERO,
            None,
        )
    }

    /// A token from Wix valid for `lifetime`, renewed from `renew_before`
    /// its expiry and never handed out in its last `margin`. For short
    /// lifetimes both are scaled down (to half and a tenth of it).
    pub(crate) fn issued(
        token: String,
        instance_id: Arc<str>,
        lifetime: Duration,
        renew_before: Duration,
        margin: Duration,
        stamp: Option<Stamp>,
    ) -> Self {
        let now = Instant::now();
        // Never a panic on a huge lifetime: it saturates at a century.
        let lifetime = lifetime.min(CENTURY);
        let expires_at = now.checked_add(lifetime).unwrap_or(now);
        let mut header =
            HeaderValue::from_str(&token).unwrap_or_else(|_| HeaderValue::from_static(""));
        header.set_sensitive(true);
        Self(Arc::new(TokenData {
            header,
            secret: SecretString::from(token),
            instance_id,
            expires_at,
            renew_at: expires_at
                .checked_sub(renew_before.min(lifetime / 2))
                .unwrap_or(now),
            usable_until: expires_at
                .checked_sub(margin.min(lifetime / 10))
                .unwrap_or(now),
            renewal_claimed: AtomicBool::new(false),
            stamp,
        }))
    }

    /// The raw token. Pass it only to Wix, in `Authorization`.
    pub fn expose_secret(&self) -> &str {
        self.0.secret.expose_secret()
    }

    /// The token as an `Authorization` value (the raw token, as the Wix SDK
    /// sends it), marked sensitive so HTTP/2 never indexes it.
    pub fn authorization_header(&self) -> HeaderValue {
        self.0.header.clone()
    }

    /// The instance this token acts for.
    pub fn instance_id(&self) -> &str {
        &self.0.instance_id
    }

    pub(crate) fn instance_key(&self) -> &Arc<str> {
        &self.0.instance_id
    }

    /// Whether both are the very same issued token (not merely equal text).
    pub(crate) fn same_as(&self, other: &ElevatedToken) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// When Wix stops accepting this token, on the monotonic clock.
    pub fn expires_at(&self) -> Instant {
        self.0.expires_at
    }

    pub(crate) fn is_usable_at(&self, now: Instant) -> bool {
        now < self.0.usable_until && self.0.stamp.as_ref().is_none_or(Stamp::holds)
    }

    pub(crate) fn is_due_for_renewal(&self, now: Instant) -> bool {
        now >= self.0.renew_at
    }

    /// Claim the right to renew this token; true for exactly one caller
    /// until [`release_renewal`](Self::release_renewal).
    pub(crate) fn claim_renewal(&self) -> bool {
        !self.0.renewal_claimed.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn release_renewal(&self) {
        self.0.renewal_claimed.store(false, Ordering::Release);
    }
}

impl fmt::Debug for ElevatedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElevatedToken")
            .field("token", &"[REDACTED]")
            .field("instance_id", &self.0.instance_id)
            .field("expires_at", &self.0.expires_at)
            .finish()
    }
}

/// Checks a handler makes against the caller; a refusal is a 403
/// [`Rejection`] (the layer audits it on the way out).
impl Caller {
    /// Require that a value taken from the request (a route parameter, a
    /// query or body field) is the caller's own subject id; otherwise a 403
    /// [`Rejection`](crate::Rejection), which is also a response.
    ///
    /// ```
    /// use wix_elevate::{Caller, SubjectType};
    ///
    /// let me = Caller::new(SubjectType::Member, "m-1", "inst-1");
    /// assert!(me.require_subject_id("m-1").is_ok());
    /// assert_eq!(me.require_subject_id("m-2").unwrap_err().status(), 403);
    /// ```
    pub fn require_subject_id(&self, id: &str) -> Result<(), Rejection> {
        self.require(self.subject_id() == id)
    }

    /// Require that a value taken from the request is the caller's own
    /// instance id; otherwise a 403 [`Rejection`](crate::Rejection).
    pub fn require_instance_id(&self, id: &str) -> Result<(), Rejection> {
        self.require(self.instance_id() == id)
    }

    /// A refusal answered by a handler; the layer audits it on the way out
    /// (`caller_mismatch`, with the route and policy).
    fn require(&self, holds: bool) -> Result<(), Rejection> {
        if holds {
            Ok(())
        } else {
            Err(Rejection::forbidden(self.clone()))
        }
    }
}

impl ElevatedToken {
    /// The app token for a request an [`ElevateLayer`](crate::ElevateLayer)
    /// authorized, for plain tower services (axum handlers extract
    /// `ElevatedToken`): the one the layer attached, or, on a route that
    /// declares no Wix operation, one fetched now through the elevator's
    /// cache. `None` if no layer ran; `Some(Err(response))` is the
    /// rejection to answer with (502/503/504), or a 500 if the route's
    /// layer did not opt in with
    /// [`expose_app_token`](crate::ElevateLayer::expose_app_token).
    ///
    /// ```
    /// use wix_elevate::ElevatedToken;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let req = http::Request::new(());
    /// assert!(ElevatedToken::for_request(req.extensions()).await.is_none(), "no layer ran");
    /// # }
    /// ```
    pub async fn for_request(
        extensions: &http::Extensions,
    ) -> Option<Result<ElevatedToken, http::Response<bytes::Bytes>>> {
        let scope = extensions.get::<crate::route::RouteScope>()?;
        if !scope.route.expose_app_token {
            tracing::error!(
                target: "wix_elevate::rejection",
                route = &*scope.route.route_name,
                "a handler asked for the raw app token (ElevatedToken) on a route whose layer did not opt in: call Wix through WixApi, or opt in with ElevateLayer::expose_app_token()"
            );
            return Some(Err(crate::response::problem(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "Server misconfiguration: this route may not hold the app token.",
                "app_token_not_exposed",
                None,
            )));
        }
        if let Some(token) = &scope.token {
            return Some(Ok(token.clone()));
        }
        let route = &scope.route;
        let caller = extensions.get::<Caller>()?;
        Some(
            route
                .elevate_on_demand(caller)
                .await
                .map_err(|rejection| route.reject(rejection)),
        )
    }
}
