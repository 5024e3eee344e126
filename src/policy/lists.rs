//! Policies over lists: [`any`] and [`all`].

use std::fmt;

use super::{Denial, Policy, any_denial, first_denial, unreadable_plan};
use crate::caller::Caller;

/// Allows when any policy in the list allows (none: denies).
///
/// ```
/// use wix_elevate::{Caller, Policy, SubjectType, SubjectTypes, policy};
///
/// let p = policy::any([Box::new(SubjectTypes::members()) as Box<dyn Policy>,
///                      Box::new(|c: &Caller| c.subject_id() == "vip")]);
/// assert!(p.allows(&Caller::new(SubjectType::Visitor, "vip", "i")));
/// ```
pub fn any(policies: impl IntoIterator<Item = Box<dyn Policy>>) -> AnyOf {
    AnyOf(policies.into_iter().collect())
}

/// Allows when every policy in the list allows (none: denies, to fail
/// closed on an empty list).
///
/// ```
/// use wix_elevate::{Caller, Policy, SubjectType, SubjectTypes, policy};
///
/// let p = policy::all([Box::new(SubjectTypes::members()) as Box<dyn Policy>,
///                      Box::new(|c: &Caller| c.instance_id() == "i")]);
/// assert!(p.allows(&Caller::new(SubjectType::Member, "m", "i")));
/// assert!(!policy::all([]).allows(&Caller::new(SubjectType::Member, "m", "i")));
/// ```
pub fn all(policies: impl IntoIterator<Item = Box<dyn Policy>>) -> AllOf {
    AllOf(policies.into_iter().collect())
}

/// See [`any`].
pub struct AnyOf(Vec<Box<dyn Policy>>);

/// See [`all`].
pub struct AllOf(Vec<Box<dyn Policy>>);

impl Policy for AnyOf {
    fn allows(&self, caller: &Caller) -> bool {
        !unreadable_plan(self, caller) && self.0.iter().any(|p| p.allows(caller))
    }
    fn name(&self) -> &str {
        "any"
    }
    fn reads_plan(&self) -> bool {
        self.0.iter().any(|p| p.reads_plan())
    }
    fn denial(&self, caller: &Caller) -> Denial {
        any_denial(self.0.iter().map(|p| &**p), caller)
    }
}

impl Policy for AllOf {
    fn allows(&self, caller: &Caller) -> bool {
        !self.0.is_empty()
            && !unreadable_plan(self, caller)
            && self.0.iter().all(|p| p.allows(caller))
    }
    fn name(&self) -> &str {
        "all"
    }
    fn reads_plan(&self) -> bool {
        self.0.iter().any(|p| p.reads_plan())
    }
    fn denial(&self, caller: &Caller) -> Denial {
        first_denial(self.0.iter().map(|p| &**p), caller)
    }
}

/// A list of policies, by name.
fn debug_names(policies: &[Box<dyn Policy>], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_list()
        .entries(policies.iter().map(|p| p.name()))
        .finish()
}

impl fmt::Debug for AnyOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_names(&self.0, f)
    }
}

impl fmt::Debug for AllOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_names(&self.0, f)
    }
}
