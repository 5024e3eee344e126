//! The Wix operations a route declares: what its handler may call with the
//! elevated token, path and query, and nothing else.
//!
//! An [`Operation`] is a method, a path template and an optional query
//! declaration, written as in Wix's API reference:
//!
//! * `GET /apps/v1/instance`
//! * `GET /members/v1/members/{id}`: `{name}` matches one path segment.
//!   Two names are bound to the caller: `{subjectId}` matches only the
//!   caller's own subject id, `{instanceId}` only its instance id.
//! * `GET /members/v1/members/{subjectId}?fieldsets=PUBLIC&paging.limit={n}`:
//!   the query keys the call may carry, each at most once, with a fixed
//!   value (`fieldsets` may only be `PUBLIC`) or a free one (`{n}`). A key
//!   not declared, a fixed key with another value, or a repeated key is
//!   refused. With no `?`, the call may carry no query at all.
//! * `GET /items/v1/items?memberId={subjectId}`: in the query as in the
//!   path, `{subjectId}` and `{instanceId}` are the caller's own. The
//!   library always sends them with the caller's value (a handler need not
//!   pass them) and refuses a call that passes another value. Any other
//!   `{name}` is free.
//!
//! A path matches only if each of its segments is plain (`A-Z a-z 0-9 - .
//! _ ~`, not `.` or `..`), so no `?`, `#`, encoded slash, dot-segment or
//! empty segment can reach another API or add a query.
//!
//! Calls are retried on transient failures only when idempotent: `GET`,
//! `HEAD`, `PUT`, `DELETE` and `OPTIONS` are; a `POST` that is (a query, for
//! example) opts in with
//! [`ElevateLayer::allow_idempotent`](crate::ElevateLayer::allow_idempotent).
//!
//! # Example
//!
//! ```
//! use wix_elevate::Operation;
//!
//! let own_profile: Operation = "GET /members/v1/members/{subjectId}".parse().unwrap();
//! assert_eq!(own_profile.method(), http::Method::GET);
//! assert_eq!(own_profile.template(), "/members/v1/members/{subjectId}");
//! assert!(own_profile.is_idempotent());
//! assert!("POST /stores/v1/products/query".parse::<Operation>().is_ok_and(|op| !op.is_idempotent()));
//! assert!("GET members".parse::<Operation>().is_err(), "a path starts with /");
//! ```
//!
//! A call matches an operation when its method is the operation's, each
//! path segment is the template's (a `{placeholder}` takes one plain
//! segment; `{subjectId}` and `{instanceId}` only the caller's own), and
//! its query keys are declared ones, each at most once, with the fixed value
//! where the template gives one.

use std::{fmt, str::FromStr};

use http::Method;

use crate::{caller::Caller, error::ConfigError};

/// A Wix API operation a route may call: a method, a path template and the
/// query it may carry.
#[derive(Clone, PartialEq, Eq)]
pub struct Operation {
    method: Method,
    template: Box<str>,
    segments: Box<[Segment]>,
    query: Box<[QueryParam]>,
    idempotent: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Any,
    CallerSubject,
    CallerInstance,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct QueryParam {
    key: Box<str>,
    value: QueryValue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum QueryValue {
    /// Only this value.
    Fixed(Box<str>),
    /// Any value.
    Free,
    /// Always the caller's subject id.
    CallerSubject,
    /// Always the caller's instance id.
    CallerInstance,
}

impl QueryValue {
    /// The value the library sends itself, for a caller-bound key.
    fn bound<'a>(&self, caller: &'a Caller) -> Option<&'a str> {
        match self {
            QueryValue::CallerSubject => Some(caller.subject_id()),
            QueryValue::CallerInstance => Some(caller.instance_id()),
            QueryValue::Fixed(_) | QueryValue::Free => None,
        }
    }

    fn admits(&self, value: &str, caller: &Caller) -> bool {
        match self {
            QueryValue::Fixed(fixed) => **fixed == *value,
            QueryValue::Free => true,
            bound => bound.bound(caller) == Some(value),
        }
    }
}

impl Operation {
    /// An operation from a method and a template such as
    /// `/members/v1/members/{id}` or `/items?fieldsets=PUBLIC&limit={n}`.
    pub(crate) fn new(method: Method, template: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::InvalidOperation(format!("{method} {template}"));
        if !is_known_method(&method) {
            return Err(invalid());
        }
        let (path, query) = match template.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (template, None),
        };
        let rest = path.strip_prefix('/').ok_or_else(invalid)?;
        let segments = rest
            .split('/')
            .map(|segment| match segment {
                "{subjectId}" => Ok(Segment::CallerSubject),
                "{instanceId}" => Ok(Segment::CallerInstance),
                s if placeholder(s).is_some() => Ok(Segment::Any),
                s if is_plain(s) && s != "." && s != ".." => Ok(Segment::Literal(s.into())),
                _ => Err(invalid()),
            })
            .collect::<Result<Box<[Segment]>, _>>()?;
        let mut params: Vec<QueryParam> = Vec::new();
        for pair in query.map(|q| q.split('&')).into_iter().flatten() {
            let (key, value) = pair.split_once('=').ok_or_else(invalid)?;
            let value = match placeholder(value) {
                Some("subjectId") => QueryValue::CallerSubject,
                Some("instanceId") => QueryValue::CallerInstance,
                Some(_) => QueryValue::Free,
                None if is_plain(value) => QueryValue::Fixed(value.into()),
                None => return Err(invalid()),
            };
            if !is_plain(key) || params.iter().any(|p| &*p.key == key) {
                return Err(invalid());
            }
            params.push(QueryParam {
                key: key.into(),
                value,
            });
        }
        Ok(Self {
            idempotent: matches!(
                method,
                Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
            ),
            method,
            template: template.into(),
            segments,
            query: params.into(),
        })
    }

    /// Mark this operation safe to retry on a transient failure although
    /// its method is not idempotent (a `POST` that only queries, say).
    pub(crate) fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Whether calls are retried on transient failures.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The template as declared, query included.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// Whether a call of `method` to `path` (no query) by `caller` is this
    /// operation's method and path.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn matches(&self, method: &Method, path: &str, caller: &Caller) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        *method == self.method && self.matches_segments(rest.split('/'), caller)
    }

    /// Whether a call by `caller` carrying these query parameters
    /// (decoded, in order) is allowed: every key declared, at most once,
    /// with its fixed value where it has one and the caller's own where
    /// it is `{subjectId}` or `{instanceId}`.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn allows_query(&self, params: &[(&str, &str)], caller: &Caller) -> bool {
        self.query_for(params, caller).is_some()
    }

    /// The query a call by `caller` sends: the handler's `params`, allowed,
    /// then the caller-bound keys it did not pass, with the caller's
    /// values. `None` if the params are not allowed.
    fn query_for<'a>(
        &'a self,
        params: &[(&'a str, &'a str)],
        caller: &'a Caller,
    ) -> Option<Vec<(&'a str, &'a str)>> {
        let allowed = params.iter().enumerate().all(|(i, (key, value))| {
            let once = !params[..i].iter().any(|(k, _)| k == key);
            let declared = self.query.iter().find(|p| &*p.key == *key);
            once && declared.is_some_and(|p| p.value.admits(value, caller))
        });
        if !allowed {
            return None;
        }
        let mut query = params.to_vec();
        for param in self.query.iter() {
            if let Some(own) = param.value.bound(caller)
                && !params.iter().any(|(key, _)| **key == *param.key)
            {
                query.push((&param.key, own));
            }
        }
        Some(query)
    }

    /// The query a whole call sends if it is this operation (method, path
    /// segments already split with no query, and query), else `None`.
    pub(crate) fn permits<'a>(
        &'a self,
        method: &Method,
        segments: impl Iterator<Item = &'a str>,
        query: &[(&'a str, &'a str)],
        caller: &'a Caller,
    ) -> Option<Vec<(&'a str, &'a str)>> {
        if *method != self.method || !self.matches_segments(segments, caller) {
            return None;
        }
        self.query_for(query, caller)
    }

    fn matches_segments<'a>(
        &self,
        mut parts: impl Iterator<Item = &'a str>,
        caller: &Caller,
    ) -> bool {
        let all_match = self.segments.iter().all(|segment| {
            let Some(part) = parts.next() else {
                return false;
            };
            if !is_plain(part) || part == "." || part == ".." {
                return false;
            }
            match segment {
                Segment::Literal(literal) => **literal == *part,
                Segment::Any => true,
                Segment::CallerSubject => part == caller.subject_id(),
                Segment::CallerInstance => part == caller.instance_id(),
            }
        });
        all_match && parts.next().is_none()
    }
}

/// `{name}`'s name, if `s` is a placeholder with a plain name.
pub(crate) fn placeholder(s: &str) -> Option<&str> {
    s.strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .filter(|name| is_plain(name))
}

/// Non-empty, and only RFC 3986 unreserved characters.
pub(crate) fn is_plain(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The methods Wix's APIs use; anything else (a typo, a lowercase `get`)
/// would never match a call, so it is refused when declared.
fn is_known_method(method: &Method) -> bool {
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ]
    .contains(method)
}

/// Parses `"METHOD /path/template[?query]"`.
impl FromStr for Operation {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (method, template) = s
            .trim()
            .split_once(' ')
            .ok_or_else(|| ConfigError::InvalidOperation(s.to_owned()))?;
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| ConfigError::InvalidOperation(s.to_owned()))?;
        Operation::new(method, template.trim())
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.template)
    }
}

impl fmt::Debug for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Operation({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SubjectType;

    fn op(s: &str) -> Operation {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_refuses_templates() {
        assert_eq!(
            op("GET /apps/v1/instance").to_string(),
            "GET /apps/v1/instance"
        );
        assert_eq!(op("  POST /members/v1/members  ").method(), Method::POST);
        for bad in [
            "GET",
            "GET apps",
            "GET /a//b",
            "GET /a/../b",
            "GET /a/{}",
            "GET /a/{b/c}",
            "G T /a",
            "GET /a/%2F",
            "get /a",
            "FETCH /a",
            "GET /a?b",
            "GET /a?b=1&b=2",
            "GET /a?b=%26",
            "GET /a?=1",
            "GET /a?b={}",
            "GET /a?b=1#c",
        ] {
            assert!(bad.parse::<Operation>().is_err(), "{bad}");
        }
        assert!("GET /a?b=1&c={n}".parse::<Operation>().is_ok());
    }

    #[test]
    fn matches_literals_placeholders_and_the_caller() {
        let me = Caller::new(SubjectType::Member, "m-1", "inst-1");
        let instance = op("GET /apps/v1/instance");
        assert!(instance.matches(&Method::GET, "/apps/v1/instance", &me));
        assert!(!instance.matches(&Method::POST, "/apps/v1/instance", &me));
        assert!(!instance.matches(&Method::GET, "/apps/v1/instance/x", &me));
        assert!(!instance.matches(&Method::GET, "/apps/v1", &me));
        assert!(!instance.matches(&Method::GET, "apps/v1/instance", &me));

        let any_member = op("GET /members/v1/members/{id}");
        assert!(any_member.matches(&Method::GET, "/members/v1/members/m-2", &me));
        for traversal in [
            "/members/v1/members/..",
            "/members/v1/members/.",
            "/members/v1/members/",
            "/members/v1/members/a%2F..%2F..",
            "/members/v1/members/a/b",
            "/members/v1/members//",
            "/members/v1/members/m1?fieldsets=FULL",
            "/members/v1/members/m1#x",
        ] {
            assert!(
                !any_member.matches(&Method::GET, traversal, &me),
                "{traversal}"
            );
        }

        let own = op("GET /sites/{instanceId}/members/{subjectId}");
        assert!(own.matches(&Method::GET, "/sites/inst-1/members/m-1", &me));
        assert!(!own.matches(&Method::GET, "/sites/inst-1/members/m-2", &me));
        assert!(!own.matches(&Method::GET, "/sites/inst-2/members/m-1", &me));
    }

    #[test]
    fn the_query_declaration_governs_every_key() {
        let me = Caller::new(SubjectType::Member, "m-1", "inst-1");
        let none = op("GET /a");
        assert!(none.allows_query(&[], &me));
        assert!(!none.allows_query(&[("x", "1")], &me));
        let declared = op("GET /a?fieldsets=PUBLIC&paging.limit={n}");
        assert!(declared.allows_query(&[], &me));
        assert!(declared.allows_query(&[("fieldsets", "PUBLIC")], &me));
        assert!(declared.allows_query(&[("paging.limit", "10"), ("fieldsets", "PUBLIC")], &me));
        assert!(
            declared.allows_query(&[("paging.limit", "a&b=c")], &me),
            "free"
        );
        assert!(
            !declared.allows_query(&[("fieldsets", "FULL")], &me),
            "fixed"
        );
        assert!(
            !declared.allows_query(&[("filter", "x")], &me),
            "undeclared"
        );
        assert!(
            !declared.allows_query(&[("fieldsets", "PUBLIC"), ("fieldsets", "PUBLIC")], &me),
            "repeated"
        );
    }

    #[test]
    fn caller_bound_query_values_are_the_callers_own_and_always_sent() {
        let me = Caller::new(SubjectType::Member, "m-1", "inst-1");
        let own = op("GET /items?memberId={subjectId}&site={instanceId}&limit={n}");
        let segments = || ["items"].into_iter();
        // Not passed: filled in with the caller's values.
        assert_eq!(
            own.permits(&Method::GET, segments(), &[("limit", "5")], &me),
            Some(vec![
                ("limit", "5"),
                ("memberId", "m-1"),
                ("site", "inst-1")
            ])
        );
        // Passed as the caller's own: sent once.
        assert_eq!(
            own.permits(&Method::GET, segments(), &[("memberId", "m-1")], &me),
            Some(vec![("memberId", "m-1"), ("site", "inst-1")])
        );
        // Another member's, or another instance's: refused.
        for other in [("memberId", "m-2"), ("site", "inst-2")] {
            assert_eq!(
                own.permits(&Method::GET, segments(), &[other], &me),
                None,
                "{other:?}"
            );
        }
        // Any other placeholder stays free.
        assert!(own.allows_query(&[("limit", "anything")], &me));
    }

    #[test]
    fn a_whole_call_must_be_the_operation_in_method_path_and_query() {
        let me = Caller::new(SubjectType::Member, "m-1", "inst-1");
        let op = op("GET /apps/v1/instance?fields={f}");
        let split = |path: &'static str| path.strip_prefix('/').unwrap().split('/');
        let query = [("fields", "x")];
        assert!(
            op.permits(&Method::GET, split("/apps/v1/instance"), &query, &me)
                .is_some()
        );
        for (method, path) in [
            (Method::POST, "/apps/v1/instance"),
            (Method::GET, "/apps/v1/instances"),
            (Method::GET, "/apps/v2/instance"),
            (Method::POST, "/apps/v1/other"),
        ] {
            assert!(
                op.permits(&method, split(path), &query, &me).is_none(),
                "{method} {path}"
            );
        }
        assert!(
            op.permits(
                &Method::GET,
                split("/apps/v1/instance"),
                &[("other", "x")],
                &me
            )
            .is_none()
        );
    }

    #[test]
    fn a_call_that_differs_only_in_a_literal_segment_is_not_the_operation() {
        let me = Caller::new(SubjectType::Member, "m-1", "inst-1");
        let instance = op("GET /apps/v1/instance");
        for other in [
            "/apps/v1/instances",
            "/apps/v2/instance",
            "/sites/v1/instance",
        ] {
            assert!(!instance.matches(&Method::GET, other, &me), "{other}");
        }
        let member = op("GET /members/v1/members/{id}");
        assert!(!member.matches(&Method::GET, "/members/v1/contacts/x", &me));
    }

    #[test]
    fn only_idempotent_methods_retry_unless_opted_in() {
        for (s, idempotent) in [
            ("GET /a", true),
            ("HEAD /a", true),
            ("PUT /a", true),
            ("DELETE /a", true),
            ("POST /a", false),
            ("PATCH /a", false),
        ] {
            assert_eq!(op(s).is_idempotent(), idempotent, "{s}");
        }
        assert!(op("POST /a").idempotent().is_idempotent());
    }
}
