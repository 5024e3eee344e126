//! [`WixResponse`]: Wix's answer to a call the route declared, and how a
//! non-2xx answer becomes a [`WixApiError`].

use bytes::Bytes;
use http::StatusCode;
use serde::de::DeserializeOwned;

use super::{WixApiError, WixApiErrorKind, error::ErrorInner};
use crate::{
    client::ApiAnswer,
    error::{Endpoint, UpstreamError},
};

/// Wix's answer to an API call, as the handler sees it: 2xx a response,
/// anything else an error carrying Wix's status, code and message.
pub(super) fn answer_result(answer: ApiAnswer) -> Result<WixResponse, WixApiError> {
    if answer.status.is_success() {
        return Ok(WixResponse {
            status: answer.status,
            request_id: answer.request_id,
            body: answer.body,
        });
    }
    let error: WixErrorBody = serde_json::from_slice(&answer.body).unwrap_or_default();
    let kind = if answer.status == StatusCode::NOT_FOUND {
        WixApiErrorKind::NotFound
    } else {
        WixApiErrorKind::Refused
    };
    Err(WixApiError::from(ErrorInner {
        wix_status: Some(answer.status),
        message: error.message,
        code: error
            .details
            .and_then(|d| d.application_error)
            .and_then(|e| e.code),
        request_id: answer.request_id,
        ..ErrorInner::new(kind)
    }))
}

/// Wix's standard error body, `{message, details: {applicationError: {code}}}`.
#[derive(Default, serde::Deserialize)]
struct WixErrorBody {
    message: Option<String>,
    details: Option<WixErrorDetails>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WixErrorDetails {
    application_error: Option<WixApplicationError>,
}

#[derive(serde::Deserialize)]
struct WixApplicationError {
    code: Option<String>,
}

/// A successful answer from a Wix API.
#[derive(Clone, Debug)]
pub struct WixResponse {
    status: StatusCode,
    request_id: Option<Box<str>>,
    body: Bytes,
}

impl WixResponse {
    /// The HTTP status (2xx).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Wix's `x-wix-request-id`, for support tickets.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The raw body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body decoded as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, WixApiError> {
        serde_json::from_slice(&self.body).map_err(|_| {
            UpstreamError::malformed(Endpoint::Api, "the body is not the expected JSON").into()
        })
    }
}
