//! Reading Wix's answers: bounded bodies, throttling, `Retry-After` and
//! `x-wix-request-id`, and transport failures without a URL's secrets.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, header};

use super::MAX_BODY;
use crate::error::{Endpoint, UpstreamError};

pub(super) fn transport_error(endpoint: Endpoint, source: reqwest::Error) -> UpstreamError {
    if source.is_timeout() {
        UpstreamError::timeout(endpoint)
    } else {
        // reqwest's text names the URL (the base URL and a path), never a
        // token or the secret, which travel in headers and bodies.
        UpstreamError::transport(endpoint, source)
    }
}

/// The body of a 200 answer, or the typed error for any other status.
pub(super) async fn read_ok_body(
    endpoint: Endpoint,
    response: reqwest::Response,
) -> Result<Bytes, UpstreamError> {
    let status = response.status();
    if let Some(throttled) = throttled(endpoint, &response) {
        return Err(throttled);
    }
    let request_id = request_id(response.headers());
    if status != StatusCode::OK {
        return Err(UpstreamError::bad_status(endpoint, status, request_id));
    }
    read_body(endpoint, response, MAX_BODY).await
}

/// Wix's 429, with its `Retry-After` and request id.
pub(super) fn throttled(endpoint: Endpoint, response: &reqwest::Response) -> Option<UpstreamError> {
    (response.status() == StatusCode::TOO_MANY_REQUESTS).then(|| {
        UpstreamError::throttled(
            endpoint,
            retry_after(response.headers()),
            request_id(response.headers()),
        )
    })
}

/// The whole body, refusing more than `max` bytes.
pub(super) async fn read_body(
    endpoint: Endpoint,
    mut response: reqwest::Response,
    max: usize,
) -> Result<Bytes, UpstreamError> {
    let too_large = || UpstreamError::malformed(endpoint, "the body is too large");
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(endpoint, e))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `Retry-After` in delay-seconds form, capped at one hour.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

/// Wix's `x-wix-request-id`, if it is short, printable ASCII (it reaches
/// logs and error values).
pub(super) fn request_id(headers: &HeaderMap) -> Option<Box<str>> {
    let id = headers.get("x-wix-request-id")?.to_str().ok()?;
    (id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())).then(|| id.into())
}
