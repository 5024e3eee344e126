//! Spans for the calls to Wix, named and described after OpenTelemetry's
//! HTTP client conventions, so that a trace shows how much of a slow
//! request was Wix.
//!
//! Every attempt at a Wix call (retries included) is a DEBUG span
//! `wix_elevate.wix_call`, a child of whatever span is current: the
//! layer's `wix_elevate.authorize` for Token Info and Create Access Token,
//! the handler's for a [`WixApi`](crate::WixApi) call. Its fields:
//!
//! | field | value |
//! |---|---|
//! | `otel.name` | `{method} {path}`, e.g. `POST /oauth2/token-info` |
//! | `otel.kind` | `client` |
//! | `http.request.method` | `POST`, `GET`... |
//! | `server.address` | the Wix host |
//! | `url.path` | the path as declared, placeholders unfilled: the values (ids, an instance) and the query never become fields |
//! | `wix.endpoint` | `token_info`, `create_access_token` or `api` |
//! | `http.request.resend_count` | 0 for the first attempt, then 1, 2... |
//! | `http.response.status_code` | Wix's status, once it answers |
//! | `wix.request_id` | Wix's `x-wix-request-id`, if it sent one |
//! | `error.type`, `otel.status_code` | on failure: `timeout`, `transport`, the status (`503`)..., and `ERROR` |
//!
//! Refusals that spare Wix a call are events in the current span: a
//! request that joined a call already in flight (`coalesced`), an open
//! circuit, a spent new-token budget. No token, secret or signed
//! `instance` value is ever a field. With no subscriber, or one that
//! leaves DEBUG off for `wix_elevate`, a span costs one relaxed load; the
//! warm path (no Wix call) opens none.

use http::StatusCode;
use tracing::Span;

use crate::error::{Endpoint, UpstreamError, UpstreamErrorKind};

/// A call to Wix, as its span describes it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outbound<'a> {
    pub(crate) endpoint: Endpoint,
    pub(crate) method: &'a str,
    /// The path as declared: placeholders unfilled, no query.
    pub(crate) path: &'a str,
    /// The Wix host.
    pub(crate) server: &'a str,
}

impl From<Endpoint> for Outbound<'static> {
    /// An OAuth call with no host named (unit tests of the guards).
    fn from(endpoint: Endpoint) -> Self {
        Outbound {
            endpoint,
            method: "POST",
            path: "",
            server: "",
        }
    }
}

impl Outbound<'_> {
    /// The span of one attempt.
    pub(crate) fn span(&self, resend_count: u32) -> Span {
        tracing::debug_span!(
            target: "wix_elevate",
            "wix_elevate.wix_call",
            otel.name = %format_args!("{} {}", self.method, self.path),
            otel.kind = "client",
            http.request.method = self.method,
            server.address = self.server,
            url.path = self.path,
            wix.endpoint = self.endpoint.as_str(),
            http.request.resend_count = resend_count,
            http.response.status_code = tracing::field::Empty,
            wix.request_id = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        )
    }
}

/// Record Wix's answer on the current attempt's span.
pub(crate) fn answered(status: StatusCode, request_id: Option<&str>) {
    let span = Span::current();
    span.record("http.response.status_code", status.as_u16());
    if let Some(id) = request_id {
        span.record("wix.request_id", id);
    }
}

/// Record a failed attempt on its span.
pub(crate) fn failed(span: &Span, error: &UpstreamError) {
    if span.is_disabled() {
        return;
    }
    let status = error.status();
    let kind = match error.kind() {
        UpstreamErrorKind::Status | UpstreamErrorKind::Throttled => match &status {
            Some(status) => status.as_str(),
            None => "status",
        },
        UpstreamErrorKind::Timeout => "timeout",
        UpstreamErrorKind::Transport => "transport",
        UpstreamErrorKind::Malformed => "malformed",
        UpstreamErrorKind::CircuitOpen => "circuit_open",
        UpstreamErrorKind::Overloaded => "overloaded",
        UpstreamErrorKind::BudgetSpent => "budget_spent",
    };
    span.record("error.type", kind);
    span.record("otel.status_code", "ERROR");
}
