//! The Wix operations a route declares: what its handler may call with the
//! elevated token, and nothing else.
//!
//! An [`Operation`] is a method and a path template, written as in Wix's API
//! reference: `GET /apps/v1/instance`, `GET /members/v1/members/{id}`.
//! `{name}` matches one path segment; two names are bound to the caller:
//! `{subjectId}` matches only the caller's own subject id, `{instanceId}`
//! only its instance id. A path matches only if each of its segments is
//! plain (`A-Z a-z 0-9 - . _ ~`, not `.` or `..`), so no encoded slash,
//! dot-segment or empty segment can reach another API.
//!
//! # Example
//!
//! ```
//! use http::Method;
//! use wix_elevate::{Caller, Operation, SubjectType};
//!
//! let own_profile: Operation = "GET /members/v1/members/{subjectId}".parse().unwrap();
//! let me = Caller::new(SubjectType::Member, "m-1", "inst-1");
//! assert!(own_profile.matches(&Method::GET, "/members/v1/members/m-1", &me));
//! assert!(!own_profile.matches(&Method::GET, "/members/v1/members/m-2", &me));
//! assert!(!own_profile.matches(&Method::GET, "/members/v1/members/..", &me));
//! ```

use std::{fmt, str::FromStr};

use http::Method;

use crate::{caller::Caller, error::ConfigError};

/// A Wix API operation a route may call: a method and a path template.
#[derive(Clone, PartialEq, Eq)]
pub struct Operation {
    method: Method,
    template: Box<str>,
    segments: Box<[Segment]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Any,
    CallerSubject,
    CallerInstance,
}

impl Operation {
    /// An operation from a method and a path template such as
    /// `/members/v1/members/{id}`.
    ///
    /// ```
    /// # use wix_elevate::Operation;
    /// let op = Operation::new(http::Method::GET, "/apps/v1/instance").unwrap();
    /// assert_eq!(op.to_string(), "GET /apps/v1/instance");
    /// assert!(Operation::new(http::Method::GET, "apps/v1").is_err());
    /// ```
    pub fn new(method: Method, template: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::InvalidOperation(format!("{method} {template}"));
        let rest = template.strip_prefix('/').ok_or_else(invalid)?;
        let segments = rest
            .split('/')
            .map(|segment| match segment {
                "{subjectId}" => Ok(Segment::CallerSubject),
                "{instanceId}" => Ok(Segment::CallerInstance),
                s if s.len() > 2
                    && s.starts_with('{')
                    && s.ends_with('}')
                    && is_plain(&s[1..s.len() - 1]) =>
                {
                    Ok(Segment::Any)
                }
                s if is_plain(s) && s != "." && s != ".." => Ok(Segment::Literal(s.into())),
                _ => Err(invalid()),
            })
            .collect::<Result<Box<[Segment]>, _>>()?;
        Ok(Self {
            method,
            template: template.into(),
            segments,
        })
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path template as declared.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// Whether a call of `method` to `path` (no query) by `caller` is this
    /// operation.
    pub fn matches(&self, method: &Method, path: &str, caller: &Caller) -> bool {
        if *method != self.method {
            return false;
        }
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
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

/// Non-empty, and only RFC 3986 unreserved characters.
fn is_plain(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Parses `"METHOD /path/template"`.
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
            "GET /a?b=1",
            "G T /a",
            "GET /a/%2F",
        ] {
            assert!(bad.parse::<Operation>().is_err(), "{bad}");
        }
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
}
