//! Who is calling: [`Caller`], its [`SubjectType`] and its site's [`Plan`].
//!
//! Cheap to clone (one `Arc`) and inserted into the request's extensions;
//! with the `axum` feature, an extractor.

use std::{fmt, sync::Arc, time::Duration};
use tokio::time::Instant;

use crate::{error::Rejection, forget::Stamp};

/// "Forever", for values made without an expiry.
pub(crate) const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);

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
            Err(Rejection::denied(
                self.clone(),
                crate::policy::Denial::Forbidden,
            ))
        }
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
