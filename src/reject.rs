//! How a route answers a refusal: the response (its [`OnRejection`], with
//! the [`Rejection`] in its extensions and, where the route reads a URL
//! credential, `Referrer-Policy`), the log line, the metrics and the
//! audit event. The request path ([`Elevate`](crate::Elevate)) and
//! handlers' own refusals come here; the route's rules stay in
//! [`route`](crate::route).

use bytes::Bytes;
use http::{Extensions, Response};

use crate::{
    audit::{self, CleanText, MAX_FIELD, MAX_TEXT, clean_str},
    error::{Rejection, RejectionKind},
    route::RouteConfig,
};

/// Log `rejection`, count it, audit a denial, and build its response,
/// with the rejection in the response's extensions.
pub(crate) fn respond(route: &RouteConfig, rejection: Rejection) -> Response<Bytes> {
    let rejection = match rejection.kind() {
        RejectionKind::PlanRequired => rejection.with_app_id(route.elevator.app_id_arc()),
        _ => rejection,
    };
    route.metrics.rejected(rejection.kind());
    let outcome = match rejection.kind() {
        RejectionKind::Forbidden => Some("policy_denied"),
        RejectionKind::PlanRequired => Some("plan_required"),
        _ => None,
    };
    if let Some(outcome) = outcome {
        audit::denied(route.audit_scope(), rejection.caller(), None, outcome);
    }
    log(route, &rejection);
    let mut response = route.on_rejection.response(&rejection);
    route.protect_referrer(response.headers_mut());
    response.extensions_mut().insert(rejection);
    response
}

/// A handler answered with a [`Rejection`] of its own (such as
/// [`Caller::require_subject_id`]'s): audit it under this route.
pub(crate) fn audit_handler_rejection(route: &RouteConfig, extensions: &Extensions) {
    if let Some(rejection) = extensions.get::<Rejection>()
        && rejection.kind() == RejectionKind::Forbidden
    {
        audit::denied(
            route.audit_scope(),
            rejection.caller(),
            None,
            "caller_mismatch",
        );
    }
}

/// One event per rejection on target `wix_elevate::rejection`: `debug`
/// for a refused caller, `warn` with the cause when Wix failed. A
/// failure that never reached Wix (circuit open, overloaded, budget
/// spent) writes at most one line per kind every ten seconds, with the
/// count held back (`suppressed`). Never a token; text from outside
/// (the cause, Wix's request id) is escaped.
fn log(route: &RouteConfig, rejection: &Rejection) {
    let (name, policy) = (&*route.route_name, route.policy.name());
    let (code, status) = (rejection.kind().code(), rejection.status().as_u16());
    match rejection.upstream_error() {
        Some(error) => {
            let Some(suppressed) = route.elevator.log_throttle().admit(error.kind()) else {
                return;
            };
            tracing::warn!(
                target: "wix_elevate::rejection",
                route = name,
                policy,
                code,
                status,
                endpoint = error.endpoint().as_str(),
                wix_status = error.status().map(|s| s.as_u16()),
                wix_request_id = error.request_id().map(|id| clean_str(id, MAX_FIELD)).as_deref(),
                error = %CleanText(error),
                cause = error_chain(error).as_deref().map(|cause| clean_str(cause, MAX_TEXT)).as_deref(),
                suppressed = (suppressed > 0).then_some(suppressed),
                "request rejected: Wix failed"
            )
        }
        None => {
            tracing::debug!(target: "wix_elevate::rejection", route = name, policy, code, status, "request rejected")
        }
    }
}

/// The sources below `error`, joined: "connection refused", "timed out".
/// reqwest's text names the URL, never a header or a body.
fn error_chain(error: &dyn std::error::Error) -> Option<String> {
    let mut chain = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push(cause.to_string());
        source = cause.source();
    }
    (!chain.is_empty()).then(|| chain.join(": "))
}
