//! How a [`Rejection`] becomes a response.
//!
//! The default, [`ProblemJson`], answers RFC 9457 `application/problem+json`
//! with fixed text per [`RejectionKind`]: never upstream text, never a token.
//! 401s carry `WWW-Authenticate: Bearer` (with `error="invalid_token"` when a
//! token was sent), 503s carry `Retry-After`, and every rejection carries
//! `Cache-Control: no-store`.
//!
//! Replace it per layer with [`ElevateLayer::on_rejection`](crate::ElevateLayer::on_rejection):
//! any `Fn(&Rejection) -> Response<Bytes>` works. The layer adds the
//! [`Rejection`] to the response's extensions either way.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Response, StatusCode};
//! use wix_elevate::{OnRejection, ProblemJson, Rejection, RejectionKind};
//!
//! let res = ProblemJson.response(&Rejection::new(RejectionKind::Forbidden));
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//!
//! // A plain-text variant:
//! let plain = |r: &Rejection| {
//!     let mut res = Response::new(Bytes::from_static(b"nope"));
//!     *res.status_mut() = r.status();
//!     res
//! };
//! assert_eq!(plain.response(&Rejection::new(RejectionKind::MissingToken)).status(), 401);
//! ```

use bytes::Bytes;
use http::{
    HeaderValue, Response, StatusCode,
    header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE},
};

use crate::error::{Rejection, RejectionKind};

/// Turns a [`Rejection`] into the response sent to the client.
pub trait OnRejection: Send + Sync + 'static {
    /// The response for `rejection`. Its body must not reveal more than the
    /// rejection's kind.
    fn response(&self, rejection: &Rejection) -> Response<Bytes>;
}

impl<F> OnRejection for F
where
    F: Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static,
{
    fn response(&self, rejection: &Rejection) -> Response<Bytes> {
        self(rejection)
    }
}

/// The default rejection response: `application/problem+json` with a fixed
/// body per kind, e.g.
/// `{"type":"about:blank","title":"Forbidden","status":403,"detail":"...","code":"forbidden"}`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProblemJson;

impl OnRejection for ProblemJson {
    fn response(&self, rejection: &Rejection) -> Response<Bytes> {
        problem_response(rejection)
    }
}

pub(crate) fn problem_response(rejection: &Rejection) -> Response<Bytes> {
    let kind = rejection.kind();
    let mut response: Response<Bytes> = problem(
        kind.status(),
        kind.detail(),
        kind.code(),
        rejection.retry_after(),
    );
    if let (RejectionKind::PlanRequired, Some(caller)) = (kind, rejection.caller()) {
        *response.body_mut() = Bytes::from(upgrade_document(rejection, caller));
    }
    let headers = response.headers_mut();
    if kind.status() == http::StatusCode::UNAUTHORIZED {
        let challenge = if kind.token_was_sent() {
            r#"Bearer error="invalid_token""#
        } else {
            "Bearer"
        };
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    response
}

/// A `plan_required` problem document with what a frontend needs to offer
/// an upgrade: the app (`appId`) and the caller's own site (`instanceId`),
/// both JSON-escaped. The upgrade page's address is the app's to build:
/// Wix's documentation of its form could not be confirmed here.
fn upgrade_document(rejection: &Rejection, caller: &crate::Caller) -> String {
    let kind = rejection.kind();
    let mut document: serde_json::Value =
        serde_json::from_str(&problem_document(kind.status(), kind.detail(), kind.code()))
            .unwrap_or_default();
    document["instanceId"] = caller.instance_id().into();
    if let Some(app_id) = rejection.app_id() {
        document["appId"] = app_id.into();
    }
    document.to_string()
}

/// An RFC 9457 problem document. `detail` and `code` are fixed text of
/// ours (no quotes or backslashes), never upstream or caller data.
pub(crate) fn problem_document(status: StatusCode, detail: &str, code: &str) -> String {
    format!(
        r#"{{"type":"about:blank","title":"{}","status":{},"detail":"{detail}","code":"{code}"}}"#,
        status.canonical_reason().unwrap_or("Error"),
        status.as_u16(),
    )
}

/// A response carrying a problem document, never to be cached, with
/// `Retry-After` (whole seconds, at least 1) when given. Every problem this
/// crate answers is built here.
pub(crate) fn problem<B: From<String>>(
    status: StatusCode,
    detail: &str,
    code: &str,
    retry_after: Option<std::time::Duration>,
) -> Response<B> {
    let mut response = Response::new(B::from(problem_document(status, detail, code)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(after) = retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(after.as_secs().max(1)));
    }
    response
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for Rejection {
    fn into_response(self) -> axum_core::response::Response {
        let mut response = problem_response(&self).map(axum_core::body::Body::from);
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RejectionKind;

    #[test]
    fn every_body_is_valid_json_matching_the_status() {
        for kind in RejectionKind::ALL {
            let body: serde_json::Value =
                serde_json::from_str(&problem_document(kind.status(), kind.detail(), kind.code()))
                    .unwrap();
            assert_eq!(body["status"], kind.status().as_u16());
            assert_eq!(body["code"], kind.code());
            assert_eq!(body["detail"], kind.detail());
        }
    }

    #[test]
    fn challenge_and_retry_headers() {
        let missing = problem_response(&RejectionKind::MissingToken.into());
        assert_eq!(missing.headers()[WWW_AUTHENTICATE], "Bearer");
        let invalid = problem_response(&RejectionKind::InvalidToken.into());
        assert_eq!(
            invalid.headers()[WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token""#
        );
        let forbidden = problem_response(&RejectionKind::Forbidden.into());
        assert!(forbidden.headers().get(WWW_AUTHENTICATE).is_none());
        let throttled = problem_response(&RejectionKind::UpstreamThrottled.into());
        assert_eq!(throttled.headers()[RETRY_AFTER], "1");
        assert_eq!(throttled.status(), 503);
    }
}
