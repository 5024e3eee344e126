//! Who may call a route: a small trait, evaluated on every request after
//! the caller is verified and before any elevation.
//!
//! * [`SubjectTypes`]: an allow-list of subject types, with presets.
//!   [`SubjectTypes::default()`] admits visitors, members and Wix users;
//!   apps and unknown subjects only when a route names them.
//! * [`paid`] and [`plans`]: the caller's site bought a paid plan of the
//!   app (any, or one of these product ids). Their refusal is 403
//!   `plan_required` rather than `forbidden`, so a frontend can offer an
//!   upgrade. A plan change takes effect at the next request once the
//!   instance is forgotten (Wix's plan webhooks do that; see
//!   [`Elevator::forget_instance`](crate::Elevator::forget_instance)),
//!   else within the identity TTL.
//! * Any `Fn(&Caller) -> bool` is a policy.
//! * [`PolicyExt`] composes them: [`and`](PolicyExt::and),
//!   [`or`](PolicyExt::or), [`not`](PolicyExt::not); [`any`] and [`all`]
//!   take lists.
//!
//! # Example
//!
//! ```
//! use wix_elevate::{Caller, Policy, PolicyExt, SubjectType, SubjectTypes};
//!
//! // Members of one site, and never a blocked member id.
//! let policy = SubjectTypes::members()
//!     .and(|c: &Caller| c.site_id() == Some("site-1"))
//!     .and((|c: &Caller| c.subject_id() == "blocked").not());
//!
//! let member = Caller::new(SubjectType::Member, "m-1", "instance-1");
//! let visitor = Caller::new(SubjectType::Visitor, "v-1", "instance-1");
//! assert!(!policy.allows(&member)); // no site id
//! assert!(!policy.allows(&visitor));
//! assert!(SubjectTypes::members().allows(&member));
//! ```

use std::{fmt, ops::BitOr, sync::Arc};

use crate::caller::{Caller, Plan, SubjectType};

mod lists;

pub use lists::{AllOf, AnyOf, all, any};

/// Why a policy refused a caller: the rejection it answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Denial {
    /// 403 `forbidden`: this caller may not use the route.
    Forbidden,
    /// 403 `plan_required`: the caller's site needs a (different) paid
    /// plan of the app.
    PlanRequired,
}

/// Decides whether a verified caller may use a route.
///
/// Implemented for closures `Fn(&Caller) -> bool`. A denial answers 403
/// before any app token is requested.
///
/// ```
/// use wix_elevate::{Caller, Policy, SubjectType};
///
/// struct OnlyInstance(&'static str);
///
/// impl Policy for OnlyInstance {
///     fn allows(&self, caller: &Caller) -> bool {
///         caller.instance_id() == self.0
///     }
///     fn name(&self) -> &str {
///         "only-instance"
///     }
/// }
///
/// let caller = Caller::new(SubjectType::User, "u", "i-1");
/// assert!(OnlyInstance("i-1").allows(&caller));
/// ```
pub trait Policy: Send + Sync + 'static {
    /// Whether `caller` may proceed.
    fn allows(&self, caller: &Caller) -> bool;

    /// A short name for logs and spans. Defaults to `"custom"`.
    fn name(&self) -> &str {
        "custom"
    }

    /// Why `caller` is refused, asked only after [`allows`](Self::allows)
    /// said no. Defaults to [`Denial::Forbidden`]; the plan policies answer
    /// [`Denial::PlanRequired`].
    fn denial(&self, caller: &Caller) -> Denial {
        let _ = caller;
        Denial::Forbidden
    }

    /// Whether this policy decides on the caller's plan ([`paid`], [`plans`],
    /// or a combination holding one): then a caller whose plan could not be
    /// read ([`Plan::Unreadable`]) is refused, negated or not. Defaults to
    /// `false`; a custom policy that reads [`Caller::plan`] should say `true`.
    fn reads_plan(&self) -> bool {
        false
    }
}

/// Whether `policy` must refuse `caller` because it decides on a plan it
/// cannot read.
fn unreadable_plan(policy: &dyn Policy, caller: &Caller) -> bool {
    matches!(caller.plan(), Plan::Unreadable) && policy.reads_plan()
}

impl<F> Policy for F
where
    F: Fn(&Caller) -> bool + Send + Sync + 'static,
{
    fn allows(&self, caller: &Caller) -> bool {
        self(caller)
    }
}

/// An allow-list of [`SubjectType`]s.
///
/// ```
/// use wix_elevate::{Caller, Policy, SubjectType, SubjectTypes};
///
/// let policy = SubjectTypes::wix_users() | SubjectType::App;
/// assert!(policy.contains(SubjectType::App));
/// assert!(!policy.contains(SubjectType::Visitor));
/// assert!(policy.allows(&Caller::new(SubjectType::User, "u", "i")));
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SubjectTypes(u8);

impl SubjectTypes {
    /// Admits nobody.
    pub const NONE: Self = SubjectTypes(0);

    /// Exactly these subject types.
    pub fn only(types: impl IntoIterator<Item = SubjectType>) -> Self {
        types.into_iter().fold(Self::NONE, |set, t| set | t)
    }

    /// Anyone on the site: anonymous visitors and logged-in members.
    /// Remember that anyone can obtain a visitor token.
    pub const fn site_visitors() -> Self {
        SubjectTypes(SubjectType::Visitor.bit() | SubjectType::Member.bit())
    }

    /// Logged-in site members only.
    pub const fn members() -> Self {
        SubjectTypes(SubjectType::Member.bit())
    }

    /// Wix users (site owners and collaborators, e.g. from a dashboard
    /// extension) only.
    pub const fn wix_users() -> Self {
        SubjectTypes(SubjectType::User.bit())
    }

    /// Whether `subject_type` is on the list.
    pub const fn contains(self, subject_type: SubjectType) -> bool {
        self.0 & subject_type.bit() != 0
    }
}

/// Visitors, members and Wix users; not apps, not unknown subjects.
impl Default for SubjectTypes {
    fn default() -> Self {
        SubjectTypes(
            SubjectType::Visitor.bit() | SubjectType::Member.bit() | SubjectType::User.bit(),
        )
    }
}

impl BitOr<SubjectType> for SubjectTypes {
    type Output = SubjectTypes;
    fn bitor(self, rhs: SubjectType) -> SubjectTypes {
        SubjectTypes(self.0 | rhs.bit())
    }
}

impl BitOr for SubjectTypes {
    type Output = SubjectTypes;
    fn bitor(self, rhs: SubjectTypes) -> SubjectTypes {
        SubjectTypes(self.0 | rhs.0)
    }
}

impl fmt::Debug for SubjectTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = [
            SubjectType::Visitor,
            SubjectType::Member,
            SubjectType::User,
            SubjectType::App,
            SubjectType::Unknown,
        ];
        f.debug_set()
            .entries(all.into_iter().filter(|t| self.contains(*t)))
            .finish()
    }
}

impl Policy for SubjectTypes {
    fn allows(&self, caller: &Caller) -> bool {
        self.contains(caller.subject_type())
    }

    fn name(&self) -> &str {
        match *self {
            s if s == Self::site_visitors() => "site_visitors",
            s if s == Self::members() => "members",
            s if s == Self::wix_users() => "wix_users",
            s if s == Self::default() => "default",
            _ => "subject_types",
        }
    }
}

/// Both policies must allow. See [`PolicyExt::and`].
#[derive(Clone, Copy, Debug)]
pub struct And<A, B>(A, B);

/// Either policy must allow. See [`PolicyExt::or`].
#[derive(Clone, Copy, Debug)]
pub struct Or<A, B>(A, B);

/// The policy must deny, and the caller must not be an app or unknown.
/// See [`PolicyExt::not`].
#[derive(Clone, Copy, Debug)]
pub struct Not<A>(A);

impl<A: Policy, B: Policy> Policy for And<A, B> {
    fn allows(&self, caller: &Caller) -> bool {
        !unreadable_plan(self, caller) && self.0.allows(caller) && self.1.allows(caller)
    }
    fn name(&self) -> &str {
        "and"
    }
    fn reads_plan(&self) -> bool {
        self.0.reads_plan() || self.1.reads_plan()
    }
    /// The first refusing side's reason.
    fn denial(&self, caller: &Caller) -> Denial {
        first_denial([&self.0 as &dyn Policy, &self.1], caller)
    }
}

impl<A: Policy, B: Policy> Policy for Or<A, B> {
    fn allows(&self, caller: &Caller) -> bool {
        !unreadable_plan(self, caller) && (self.0.allows(caller) || self.1.allows(caller))
    }
    fn name(&self) -> &str {
        "or"
    }
    fn reads_plan(&self) -> bool {
        self.0.reads_plan() || self.1.reads_plan()
    }
    /// A plan is required if a plan would admit the caller on either side.
    fn denial(&self, caller: &Caller) -> Denial {
        any_denial([&self.0 as &dyn Policy, &self.1], caller)
    }
}

/// The reason of the first policy that refuses (all refuse: `And`).
fn first_denial<'a>(policies: impl IntoIterator<Item = &'a dyn Policy>, caller: &Caller) -> Denial {
    policies
        .into_iter()
        .find(|p| !p.allows(caller))
        .map_or(Denial::Forbidden, |p| {
            if unreadable_plan(p, caller) {
                Denial::PlanRequired
            } else {
                p.denial(caller)
            }
        })
}

/// [`Denial::PlanRequired`] if any refusing policy says so (`Or`: a plan
/// would open one of the ways in), else [`Denial::Forbidden`].
fn any_denial<'a>(policies: impl IntoIterator<Item = &'a dyn Policy>, caller: &Caller) -> Denial {
    if policies
        .into_iter()
        .any(|p| p.denial(caller) == Denial::PlanRequired || unreadable_plan(p, caller))
    {
        Denial::PlanRequired
    } else {
        Denial::Forbidden
    }
}

/// Admits callers whose site bought a paid plan of the app, any plan
/// ([`paid`]) or one of a list ([`plans`]). Refuses with
/// [`Denial::PlanRequired`]; an [`Unreadable`](Plan::Unreadable) plan is
/// refused too.
#[derive(Clone, Debug)]
pub struct Plans {
    /// `None`: any paid plan.
    product_ids: Option<Arc<[Box<str>]>>,
}

/// Admits callers on any paid plan of the app (403 `plan_required`
/// otherwise). Compose it with a subject policy:
///
/// ```
/// use wix_elevate::{Caller, Plan, Policy, PolicyExt, SubjectType, SubjectTypes, policy};
///
/// let premium_dashboard = SubjectTypes::wix_users().and(policy::paid());
/// let user = Caller::new(SubjectType::User, "u-1", "i-1");
/// assert!(!premium_dashboard.allows(&user));
/// assert_eq!(premium_dashboard.denial(&user), policy::Denial::PlanRequired);
/// assert!(premium_dashboard.allows(&user.with_plan(Plan::paid("basic"))));
/// ```
pub fn paid() -> Plans {
    Plans { product_ids: None }
}

/// Admits callers on one of these plans (product ids, as in the app's
/// pricing plans); 403 `plan_required` otherwise.
///
/// ```
/// use wix_elevate::{Caller, Plan, Policy, SubjectType, policy};
///
/// let business = policy::plans(["premium", "business"]);
/// let on = |plan| Caller::new(SubjectType::User, "u-1", "i-1").with_plan(plan);
/// assert!(business.allows(&on(Plan::paid("business"))));
/// assert!(!business.allows(&on(Plan::paid("basic"))));
/// assert!(!business.allows(&on(Plan::Free)));
/// ```
pub fn plans<S: AsRef<str>>(product_ids: impl IntoIterator<Item = S>) -> Plans {
    Plans {
        product_ids: Some(
            product_ids
                .into_iter()
                .map(|id| Box::from(id.as_ref()))
                .collect(),
        ),
    }
}

impl Policy for Plans {
    fn allows(&self, caller: &Caller) -> bool {
        match (caller.plan(), &self.product_ids) {
            (Plan::Paid(_), None) => true,
            (Plan::Paid(id), Some(ids)) => ids.iter().any(|allowed| **allowed == **id),
            (Plan::Free | Plan::Unreadable, _) => false,
        }
    }
    fn name(&self) -> &str {
        if self.product_ids.is_some() {
            "plans"
        } else {
            "paid"
        }
    }
    fn denial(&self, _caller: &Caller) -> Denial {
        Denial::PlanRequired
    }
    fn reads_plan(&self) -> bool {
        true
    }
}

impl<A: Policy> Policy for Not<A> {
    fn allows(&self, caller: &Caller) -> bool {
        // `APP` and `UNKNOWN` are admitted only where a policy names them:
        // negating something else must not name them by accident. Nor does
        // negating a plan gate admit a plan nobody could read.
        let named_only = matches!(
            caller.subject_type(),
            SubjectType::App | SubjectType::Unknown
        );
        !named_only && !unreadable_plan(self, caller) && !self.0.allows(caller)
    }
    fn name(&self) -> &str {
        "not"
    }
    fn denial(&self, caller: &Caller) -> Denial {
        if unreadable_plan(self, caller) {
            Denial::PlanRequired
        } else {
            Denial::Forbidden
        }
    }
    fn reads_plan(&self) -> bool {
        self.0.reads_plan()
    }
}

/// Combinators for every [`Policy`].
///
/// ```
/// use wix_elevate::{Caller, Policy, PolicyExt, SubjectType, SubjectTypes};
///
/// let policy = SubjectTypes::members().or(SubjectTypes::wix_users()).not();
/// assert!(policy.allows(&Caller::new(SubjectType::Visitor, "v", "i")));
/// ```
pub trait PolicyExt: Policy + Sized {
    /// Allows only when both allow.
    fn and<P: Policy>(self, other: P) -> And<Self, P> {
        And(self, other)
    }

    /// Allows when either allows.
    fn or<P: Policy>(self, other: P) -> Or<Self, P> {
        Or(self, other)
    }

    /// Allows when `self` denies, except apps and unknown subjects: like
    /// everywhere else, those are admitted only by a policy that names them
    /// (`SubjectTypes::only([SubjectType::App])`).
    ///
    /// ```
    /// use wix_elevate::{Caller, Policy, PolicyExt, SubjectType, SubjectTypes};
    ///
    /// let not_members = SubjectTypes::members().not();
    /// assert!(not_members.allows(&Caller::new(SubjectType::Visitor, "v", "i")));
    /// assert!(!not_members.allows(&Caller::new(SubjectType::App, "a", "i")));
    /// assert!(!not_members.allows(&Caller::new(SubjectType::Unknown, "u", "i")));
    /// ```
    fn not(self) -> Not<Self> {
        Not(self)
    }
}

impl<P: Policy> PolicyExt for P {}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(t: SubjectType) -> Caller {
        Caller::new(t, "s", "i")
    }

    #[test]
    fn default_admits_people_not_apps_or_unknown() {
        let p = SubjectTypes::default();
        for t in [SubjectType::Visitor, SubjectType::Member, SubjectType::User] {
            assert!(p.allows(&caller(t)), "{t}");
        }
        for t in [SubjectType::App, SubjectType::Unknown] {
            assert!(!p.allows(&caller(t)), "{t}");
        }
    }

    #[test]
    fn presets_admit_only_their_subjects() {
        let cases = [
            (SubjectTypes::members(), vec![SubjectType::Member]),
            (SubjectTypes::wix_users(), vec![SubjectType::User]),
            (
                SubjectTypes::site_visitors(),
                vec![SubjectType::Visitor, SubjectType::Member],
            ),
            (
                SubjectTypes::only([SubjectType::App]),
                vec![SubjectType::App],
            ),
            (SubjectTypes::NONE, vec![]),
        ];
        for (policy, admitted) in cases {
            for t in [
                SubjectType::Visitor,
                SubjectType::Member,
                SubjectType::User,
                SubjectType::App,
                SubjectType::Unknown,
            ] {
                assert_eq!(
                    policy.allows(&caller(t)),
                    admitted.contains(&t),
                    "{policy:?} {t}"
                );
            }
        }
    }

    #[test]
    fn combinators_compose() {
        let member = caller(SubjectType::Member);
        let user = caller(SubjectType::User);
        let m = SubjectTypes::members();
        let u = SubjectTypes::wix_users();
        assert!(m.or(u).allows(&user));
        assert!(!m.and(u).allows(&member));
        assert!(m.not().allows(&user));
        assert!(!any([]).allows(&member));
        assert!(any([Box::new(u) as Box<dyn Policy>, Box::new(m)]).allows(&member));
        assert!(!all([Box::new(u) as Box<dyn Policy>, Box::new(m)]).allows(&member));
        assert!(all([Box::new(m) as Box<dyn Policy>, Box::new(|_: &Caller| true)]).allows(&member));
        assert!(!all([]).allows(&member));
    }

    #[test]
    fn every_combinator_allows_exactly_what_its_parts_say() {
        let member = caller(SubjectType::Member);
        let (yes, no) = (|_: &Caller| true, |_: &Caller| false);
        assert!(yes.allows(&member), "a closure's true");
        assert!(!no.allows(&member), "a closure's false");
        for (a, b, and, or) in [
            (true, true, true, true),
            (true, false, false, true),
            (false, true, false, true),
            (false, false, false, false),
        ] {
            let p = move |_: &Caller| a;
            let q = move |_: &Caller| b;
            assert_eq!(p.and(q).allows(&member), and, "{a} and {b}");
            assert_eq!(p.or(q).allows(&member), or, "{a} or {b}");
        }
    }

    #[test]
    fn an_unreadable_plan_is_refused_by_every_plan_gate_negated_or_combined() {
        let on = |t: SubjectType, plan: Plan| caller(t).with_plan(plan);
        let odd = on(SubjectType::User, Plan::Unreadable);
        let free = on(SubjectType::User, Plan::Free);
        let boxed = |p: Box<dyn Policy>| p;
        let cases: Vec<(&str, Box<dyn Policy>)> = vec![
            ("paid().not()", Box::new(paid().not())),
            ("plans().not()", Box::new(plans(["premium"]).not())),
            (
                "wix_users and not paid",
                Box::new(SubjectTypes::wix_users().and(paid().not())),
            ),
            (
                "not paid and wix_users",
                Box::new(paid().not().and(SubjectTypes::wix_users())),
            ),
            (
                "wix_users or not paid",
                Box::new(SubjectTypes::wix_users().or(paid().not())),
            ),
            (
                "not paid or members",
                Box::new(paid().not().or(SubjectTypes::members())),
            ),
            (
                "paid or wix_users",
                Box::new(paid().or(SubjectTypes::wix_users())),
            ),
            (
                "any[not paid]",
                Box::new(any([boxed(Box::new(paid().not()))])),
            ),
            (
                "all[wix_users, not plans]",
                Box::new(all([
                    boxed(Box::new(SubjectTypes::wix_users())),
                    boxed(Box::new(plans(["x"]).not())),
                ])),
            ),
        ];
        for (case, policy) in &cases {
            assert!(policy.reads_plan(), "{case} reads the plan");
            assert!(!policy.allows(&odd), "{case} admitted an unreadable plan");
            assert_eq!(policy.denial(&odd), Denial::PlanRequired, "{case}");
            // A plan that was read still gets each policy's own answer.
            assert!(policy.allows(&free), "{case} refused a free site's user");
        }
        let twice = paid().not().not();
        assert!(!twice.allows(&odd) && !twice.allows(&free));
        assert!(twice.allows(&on(SubjectType::User, Plan::paid("basic"))));
        // Policies that never look at the plan are untouched by it.
        assert!(!SubjectTypes::wix_users().reads_plan());
        assert!(
            SubjectTypes::wix_users()
                .or(SubjectTypes::members())
                .allows(&odd)
        );
        assert!(SubjectTypes::members().not().allows(&odd));
    }

    #[test]
    fn plan_policies_admit_their_plans_and_say_why_they_refuse() {
        let user = caller(SubjectType::User);
        let on = |plan: Plan| user.clone().with_plan(plan);
        let (premium, basic) = (on(Plan::paid("premium")), on(Plan::paid("basic")));
        let (free, odd) = (on(Plan::Free), on(Plan::Unreadable));
        assert!(paid().allows(&premium) && paid().allows(&basic));
        assert!(!paid().allows(&free) && !paid().allows(&odd));
        let business = plans(["premium", "business"]);
        assert!(business.allows(&premium));
        assert!(!business.allows(&basic) && !business.allows(&free) && !business.allows(&odd));
        assert_eq!(business.denial(&free), Denial::PlanRequired);
        assert_eq!(SubjectTypes::members().denial(&user), Denial::Forbidden);
        // `and`: the first refusing side's reason.
        let users_on_paid = SubjectTypes::wix_users().and(paid());
        assert_eq!(users_on_paid.denial(&free), Denial::PlanRequired);
        assert_eq!(
            users_on_paid.denial(&caller(SubjectType::Member)),
            Denial::Forbidden
        );
        let paid_users = paid().and(SubjectTypes::wix_users());
        assert_eq!(
            paid_users.denial(&caller(SubjectType::Member)),
            Denial::PlanRequired
        );
        // `or`: a plan is required if a plan would open either way in.
        let members_or_paid = SubjectTypes::members().or(paid());
        assert_eq!(members_or_paid.denial(&free), Denial::PlanRequired);
        let members_or_users = SubjectTypes::members().or(SubjectTypes::wix_users());
        assert_eq!(
            members_or_users.denial(&caller(SubjectType::Visitor)),
            Denial::Forbidden
        );
        let listed = all([
            Box::new(SubjectTypes::wix_users()) as Box<dyn Policy>,
            Box::new(paid()),
        ]);
        assert_eq!(listed.denial(&free), Denial::PlanRequired);
        let either = any([
            Box::new(SubjectTypes::members()) as Box<dyn Policy>,
            Box::new(paid()),
        ]);
        assert_eq!(either.denial(&free), Denial::PlanRequired);
    }

    #[test]
    fn negation_never_admits_an_app_or_an_unknown_subject() {
        let app = caller(SubjectType::App);
        let unknown = caller(SubjectType::Unknown);
        for negated in [
            Box::new(SubjectTypes::members().not()) as Box<dyn Policy>,
            Box::new(SubjectTypes::NONE.not()),
            Box::new((|c: &Caller| c.subject_id() == "blocked").not()),
        ] {
            assert!(!negated.allows(&app));
            assert!(!negated.allows(&unknown));
            assert!(negated.allows(&caller(SubjectType::User)));
        }
        // Named, they are admitted as usual.
        let apps = SubjectTypes::only([SubjectType::App]);
        assert!(apps.allows(&app));
        assert!(
            !apps.not().not().allows(&app),
            "a double negation names nothing"
        );
    }
}
