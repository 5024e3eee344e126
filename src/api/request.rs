//! [`WixRequest`]: one call built from values, and its check against the
//! route's declared operations.

use std::{
    fmt,
    future::{Future, IntoFuture},
    pin::Pin,
};
use tokio::time::Instant;

use bytes::Bytes;
use http::Method;
use serde::Serialize;

use super::{WixApi, WixApiError, WixApiErrorKind, WixResponse, call::Call, error::ErrorInner};
use crate::{
    audit::{self, Clean},
    caller::Caller,
    client::ApiCall,
    error::{Endpoint, UpstreamError},
    operation::{Operation, placeholder},
};

enum RequestBody {
    None,
    Json(Bytes),
    Unserializable,
}

/// One call to a Wix API, built from values and checked against the
/// route's declaration when sent. Made by [`WixApi::get`] and friends;
/// `.await` it (or call [`send`](Self::send)).
///
/// * `path` is a path (`/apps/v1/instance`) or a template
///   (`/members/v1/members/{id}`) whose placeholders [`arg`](Self::arg)
///   fills; `{subjectId}` and `{instanceId}` default to the caller's own.
///   Every resulting segment must be plain (`A-Z a-z 0-9 - . _ ~`, not `.`
///   or `..`), or the call is refused.
/// * [`query`](Self::query) adds a query parameter; keys and values are
///   percent-encoded here, so a value can never add another parameter.
#[must_use = "a WixRequest does nothing until awaited"]
pub struct WixRequest<'a> {
    api: &'a WixApi,
    method: Method,
    path: String,
    args: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: RequestBody,
}

impl<'a> WixRequest<'a> {
    pub(super) fn new(api: &'a WixApi, method: Method, path: &str) -> Self {
        Self {
            api,
            method,
            path: path.to_owned(),
            args: Vec::new(),
            query: Vec::new(),
            body: RequestBody::None,
        }
    }

    /// Fill the path placeholder `{name}` with `value`.
    pub fn arg(mut self, name: &str, value: impl AsRef<str>) -> Self {
        self.args.push((name.to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Add the query parameter `key=value`.
    pub fn query(mut self, key: &str, value: impl AsRef<str>) -> Self {
        self.query.push((key.to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Send `body` as JSON.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        self.body = match serde_json::to_vec(body) {
            Ok(json) => RequestBody::Json(json.into()),
            Err(_) => RequestBody::Unserializable,
        };
        self
    }

    /// Check the call against the route's declaration and send it.
    pub async fn send(self) -> Result<WixResponse, WixApiError> {
        let api = self.api;
        let (path, operation) = match self.resolve() {
            Ok(resolved) => resolved,
            Err(refusal) => return Err(refusal),
        };
        let json = match &self.body {
            RequestBody::None => None,
            RequestBody::Json(json) => Some(json),
            RequestBody::Unserializable => {
                return Err(WixApiError::invalid(
                    "the JSON body could not be serialized".to_owned(),
                ));
            }
        };
        let started = Instant::now();
        let deadline = api.route.elevator.api_deadline_from(started);
        let template = operation.template();
        let call = Call {
            api,
            call: ApiCall {
                method: &self.method,
                path_and_query: &path,
                declared_path: template.split_once('?').map_or(template, |(path, _)| path),
                json,
                idempotent: operation.is_idempotent(),
            },
            deadline,
        };
        let result = match tokio::time::timeout_at(deadline, call.run()).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::timeout(Endpoint::Api).into()),
        };
        let (outcome, status) = match &result {
            Ok(response) => ("ok", Some(response.status().as_u16())),
            Err(error) => (error.code(), error.wix_status().map(|s| s.as_u16())),
        };
        audit::wix_call(
            api.scope(),
            &api.caller,
            operation,
            outcome,
            status,
            started.elapsed(),
        );
        result
    }

    /// The encoded path and query, and the declared operation they are, or
    /// the (audited) refusal.
    fn resolve(&self) -> Result<(String, &Operation), WixApiError> {
        let api = self.api;
        let written = Written {
            method: &self.method,
            path: &self.path,
            args: &self.args,
            query: &self.query,
        };
        match resolve(&written, &api.route.operations, &api.caller) {
            Resolved::Declared {
                path_and_query,
                operation,
            } => Ok((path_and_query, operation)),
            Resolved::Invalid(why) => Err(WixApiError::invalid(why)),
            Resolved::Undeclared(refused) => {
                audit::denied(
                    api.scope(),
                    Some(&api.caller),
                    Some(&refused),
                    "operation_not_declared",
                );
                Err(WixApiError::from(ErrorInner {
                    operation: Some(Clean(&refused).to_string()),
                    ..ErrorInner::new(WixApiErrorKind::Undeclared)
                }))
            }
        }
    }
}

/// A call as the handler wrote it.
struct Written<'w> {
    method: &'w Method,
    path: &'w str,
    args: &'w [(String, String)],
    query: &'w [(String, String)],
}

/// What a written call is, against a route's declared operations.
#[derive(Debug, PartialEq)]
enum Resolved<'o> {
    /// The first declared operation it is, and the encoded path and query
    /// to send (caller-bound query keys filled in).
    Declared {
        path_and_query: String,
        operation: &'o Operation,
    },
    /// No declared operation allows it: `METHOD /path?query` as refused.
    Undeclared(String),
    /// It cannot be built: why, naming the placeholder or argument.
    Invalid(String),
}

/// Resolve `written` against `operations` for `caller`: fill the path's
/// placeholders (`{subjectId}` and `{instanceId}` default to the caller's
/// own), then find the first operation whose method, path and query allow
/// it. Pure: no audit, no traffic.
fn resolve<'o>(
    written: &Written<'_>,
    operations: &'o [Operation],
    caller: &Caller,
) -> Resolved<'o> {
    let Written {
        method,
        path,
        args,
        query,
    } = *written;
    if !path.starts_with('/') {
        return Resolved::Invalid("the path must start with `/`".to_owned());
    }
    let mut segments: Vec<&str> = Vec::new();
    let mut used = 0;
    for segment in path[1..].split('/') {
        let value = match placeholder(segment) {
            Some(name) => match args.iter().find(|(n, _)| n == name) {
                Some((_, value)) => {
                    used += 1;
                    value.as_str()
                }
                None if name == "subjectId" => caller.subject_id(),
                None if name == "instanceId" => caller.instance_id(),
                None => {
                    return Resolved::Invalid(format!(
                        "no `.arg(\"{name}\", ...)` for the placeholder `{{{name}}}`{}",
                        arg_names(args)
                    ));
                }
            },
            None => segment,
        };
        segments.push(value);
    }
    if used != args.len() {
        let unused: Vec<&str> = args
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| !path.contains(&format!("{{{name}}}")))
            .collect();
        return Resolved::Invalid(format!(
            "`.arg` names no placeholder of the path: {} (placeholders are case-sensitive)",
            unused.join(", ")
        ));
    }
    let query: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let declared = operations.iter().find_map(|op| {
        op.permits(method, segments.iter().copied(), &query, caller)
            .map(|sent| (op, sent))
    });
    let sent = declared.as_ref().map_or(&query, |(_, sent)| sent);
    let mut path_and_query = String::with_capacity(path.len() + 16);
    for segment in &segments {
        path_and_query.push('/');
        path_and_query.push_str(segment);
    }
    if !sent.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(
            &form_urlencoded::Serializer::new(String::new())
                .extend_pairs(sent)
                .finish(),
        );
    }
    match declared {
        Some((operation, _)) => Resolved::Declared {
            path_and_query,
            operation,
        },
        None => Resolved::Undeclared(format!("{method} {path_and_query}")),
    }
}

/// The `.arg` names given, for an error message.
fn arg_names(args: &[(String, String)]) -> String {
    if args.is_empty() {
        return " (no `.arg` given)".to_owned();
    }
    let names: Vec<&str> = args.iter().map(|(name, _)| name.as_str()).collect();
    format!(
        " (`.arg` names given: {}; they are case-sensitive)",
        names.join(", ")
    )
}

impl<'a> IntoFuture for WixRequest<'a> {
    type Output = Result<WixResponse, WixApiError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

impl fmt::Debug for WixRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WixRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SubjectType;

    /// `declared` against one call by member m-1 of instance i-1: the path
    /// and query sent, or why not.
    fn resolved(
        declared: &[&str],
        call: &str,
        args: &[(&str, &str)],
        query: &[(&str, &str)],
    ) -> Result<String, String> {
        let operations: Vec<Operation> = declared.iter().map(|d| d.parse().unwrap()).collect();
        let caller = Caller::new(SubjectType::Member, "m-1", "i-1");
        let (method, path) = call.split_once(' ').unwrap();
        let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let (args, query) = (owned(args), owned(query));
        let written = Written {
            method: &method.parse().unwrap(),
            path,
            args: &args,
            query: &query,
        };
        match resolve(&written, &operations, &caller) {
            Resolved::Declared { path_and_query, .. } => Ok(path_and_query),
            Resolved::Undeclared(refused) => Err(format!("undeclared {refused}")),
            Resolved::Invalid(why) => Err(format!("invalid: {why}")),
        }
    }

    #[test]
    fn the_declaration_decides_every_part_of_the_call() {
        const INSTANCE: &str = "GET /apps/v1/instance";
        const MEMBER: &str = "GET /members/v1/members/{id}";
        const PUBLIC: &str = "GET /members/v1/members/{id}?fieldsets=PUBLIC";
        const OWN: &str = "GET /items/v1/items?memberId={subjectId}";
        let ok = |s: &str| Ok(s.to_owned());
        let undeclared = |s: &str| Err(format!("undeclared {s}"));
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        type Case<'a> = (
            &'a [&'a str],
            &'a str,
            Pairs<'a>,
            Pairs<'a>,
            Result<String, String>,
        );
        #[rustfmt::skip]
        let cases: &[Case<'_>] = &[
            (&[INSTANCE], "GET /apps/v1/instance", &[], &[], ok("/apps/v1/instance")),
            // Differs from the declaration in one literal segment only.
            (&[INSTANCE], "GET /apps/v1/instances", &[], &[], undeclared("GET /apps/v1/instances")),
            (&[INSTANCE], "POST /apps/v1/instance", &[], &[], undeclared("POST /apps/v1/instance")),
            (&[INSTANCE], "GET /apps/v1/instance/x", &[], &[], undeclared("GET /apps/v1/instance/x")),
            (&[], "GET /apps/v1/instance", &[], &[], undeclared("GET /apps/v1/instance")),
            (&[MEMBER], "GET /members/v1/members/{id}", &[("id", "m-2")], &[], ok("/members/v1/members/m-2")),
            (&[MEMBER], "GET /members/v1/members/{id}", &[("id", "..")], &[], undeclared("GET /members/v1/members/..")),
            (&[MEMBER], "GET /members/v1/members/{id}", &[("id", "a%2Fb")], &[], undeclared("GET /members/v1/members/a%2Fb")),
            (&[MEMBER], "GET /members/v1/members/{id}", &[("id", "a?b=c")], &[], undeclared("GET /members/v1/members/a?b=c")),
            (&[MEMBER], "GET /members/v1/members/{subjectId}", &[], &[], ok("/members/v1/members/m-1")),
            (&[MEMBER], "GET /members/v1/members/{id}", &[("id", "m-2")], &[("fieldsets", "FULL")], undeclared("GET /members/v1/members/m-2?fieldsets=FULL")),
            (&[PUBLIC], "GET /members/v1/members/{id}", &[("id", "m-2")], &[("fieldsets", "PUBLIC")], ok("/members/v1/members/m-2?fieldsets=PUBLIC")),
            (&[PUBLIC], "GET /members/v1/members/{id}", &[("id", "m-2")], &[("fieldsets", "FULL")], undeclared("GET /members/v1/members/m-2?fieldsets=FULL")),
            (&[PUBLIC], "GET /members/v1/members/{id}", &[("id", "m-2")], &[("fieldsets", "PUBLIC"), ("fieldsets", "PUBLIC")], undeclared("GET /members/v1/members/m-2?fieldsets=PUBLIC&fieldsets=PUBLIC")),
            // Caller-bound in the query: filled in, and no other value.
            (&[OWN], "GET /items/v1/items", &[], &[], ok("/items/v1/items?memberId=m-1")),
            (&[OWN], "GET /items/v1/items", &[], &[("memberId", "m-1")], ok("/items/v1/items?memberId=m-1")),
            (&[OWN], "GET /items/v1/items", &[], &[("memberId", "m-2")], undeclared("GET /items/v1/items?memberId=m-2")),
            // The first operation that allows the call wins.
            (&[INSTANCE, MEMBER], "GET /members/v1/members/{id}", &[("id", "x")], &[], ok("/members/v1/members/x")),
        ];
        for (declared, call, args, query, expected) in cases {
            assert_eq!(
                &resolved(declared, call, args, query),
                expected,
                "{declared:?} {call} {args:?} {query:?}"
            );
        }
    }

    #[test]
    fn a_call_that_cannot_be_built_names_what_is_wrong() {
        let member = ["GET /members/v1/members/{id}"];
        let missing = resolved(&member, "GET /members/v1/members/{id}", &[("ID", "x")], &[]);
        let missing = missing.unwrap_err();
        assert!(
            missing.starts_with("invalid:") && missing.contains("`{id}`") && missing.contains("ID"),
            "{missing}"
        );
        let unused = resolved(
            &member,
            "GET /members/v1/members/{id}",
            &[("id", "x"), ("other", "y")],
            &[],
        );
        assert!(unused.unwrap_err().contains("other"));
        let relative = resolved(&member, "GET members/v1/members/x", &[], &[]);
        assert!(relative.unwrap_err().contains("must start with `/`"));
    }
}
