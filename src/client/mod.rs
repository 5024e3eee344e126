//! The one client for every HTTP call to Wix: the two OAuth calls and the
//! Wix APIs handlers call through [`WixApi`](crate::WixApi), over one reused
//! `reqwest::Client`.
//!
//! Every call has a timeout, never follows redirects (neither the app
//! secret nor an app token may travel anywhere but the configured base
//! URL), checks the status before decoding, reads a bounded body, keeps
//! Wix's `x-wix-request-id`, and maps every failure to a typed
//! [`UpstreamError`] whose text holds no token and no body. Each endpoint
//! family has its own [`UpstreamGuard`] (breaker, retries, concurrency cap):
//! a flood of garbage caller tokens cannot stop app tokens being created.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};
use tokio::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

mod read;

#[cfg(test)]
use read::retry_after;
use read::{read_body, read_ok_body, request_id, throttled, transport_error};

use crate::{
    error::{CallOutcome, ConfigError, Endpoint, UpstreamError},
    metrics::WixMetrics,
    trace::{self, Outbound},
    upstream::{GuardSettings, MAX_ATTEMPTS, UpstreamGuard},
    wire::{self, AccessTokenGrant, TokenInfo},
};

/// OAuth answers are a few hundred bytes; anything past this is not Wix.
const MAX_BODY: usize = 64 * 1024;

/// Wix API answers larger than this are refused.
const MAX_API_BODY: usize = 4 * 1024 * 1024;

/// Wix's OAuth endpoints, under the base URL.
const TOKEN_INFO_PATH: &str = "/oauth2/token-info";
const TOKEN_PATH: &str = "/oauth2/token";

/// What Token Info said about a caller token.
#[derive(Debug)]
pub(crate) enum TokenInfoAnswer {
    /// 200 with a well-formed body (still to be validated).
    Info(TokenInfo),
    /// 400, 401, 403 or 404: Wix refuses the token. Any other 4xx is a
    /// failure of the call, never a verdict on the token.
    Refused(StatusCode),
}

/// Create Access Token's answer, checked.
pub(crate) struct AppTokenGrant {
    pub(crate) access_token: String,
    pub(crate) expires_in: Duration,
}

/// A Wix API's final answer: any 2xx or 4xx except 429 (those are Wix's
/// answer about this request; 429 and 5xx are failures of the call).
pub(crate) struct ApiAnswer {
    pub(crate) status: StatusCode,
    pub(crate) request_id: Option<Box<str>>,
    pub(crate) body: Bytes,
}

/// The longest app-token lifetime believed, whatever Wix says (it documents
/// 4 hours).
pub(crate) const MAX_APP_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Whether a Token Info status is Wix's verdict that the token is no good.
/// Every other 4xx (408, 409, 425, 429, ...) says nothing about the token.
fn is_refusal(status: StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 401 | 403 | 404)
}

/// The lifetime to believe for a grant's `expires_in`: positive seconds,
/// clamped to [`MAX_APP_TOKEN_LIFETIME`]; `None` when Wix's value is
/// missing, zero, negative or unreadable (the caller then uses its
/// fallback).
pub(crate) fn believed_lifetime(expires_in: Option<i64>) -> Option<Duration> {
    let secs = u64::try_from(expires_in?).ok().filter(|secs| *secs > 0)?;
    Some(Duration::from_secs(secs).min(MAX_APP_TOKEN_LIFETIME))
}

/// One guard per endpoint family.
struct Guards {
    token_info: UpstreamGuard,
    create_access_token: UpstreamGuard,
    api: UpstreamGuard,
}

pub(crate) struct WixClient {
    metrics: WixMetrics,
    guards: Guards,
    http: reqwest::Client,
    base_url: Box<str>,
    /// The host of `base_url`, for spans.
    server: Box<str>,
    token_info_url: Box<str>,
    token_url: Box<str>,
    /// App-token lifetime assumed when Wix's `expires_in` is unusable.
    fallback_lifetime: Duration,
    /// Set once the fallback lifetime was first needed (warned once).
    warned_fallback: AtomicBool,
}

#[derive(Serialize)]
struct TokenInfoRequest<'a> {
    token: &'a str,
}

#[derive(Serialize)]
struct CreateAccessTokenRequest<'a> {
    grant_type: &'static str,
    client_id: &'a str,
    client_secret: &'a str,
    instance_id: &'a str,
}

impl WixClient {
    pub(crate) fn new(
        base_url: &str,
        timeout: Duration,
        guard: GuardSettings,
        fallback_lifetime: Duration,
        metrics: WixMetrics,
    ) -> Result<Self, ConfigError> {
        let base_url = normalize_base_url(base_url)?;
        check_tls(
            base_url,
            cfg!(any(feature = "rustls", feature = "native-tls")),
        )?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::HttpClient(Box::new(e)))?;
        Ok(Self {
            token_info_url: format!("{base_url}{TOKEN_INFO_PATH}").into(),
            token_url: format!("{base_url}{TOKEN_PATH}").into(),
            server: server_address(base_url).into(),
            base_url: base_url.into(),
            http,
            metrics,
            fallback_lifetime,
            warned_fallback: AtomicBool::new(false),
            guards: Guards {
                token_info: UpstreamGuard::new("Wix token_info", guard),
                create_access_token: UpstreamGuard::new("Wix create_access_token", guard),
                api: UpstreamGuard::new("Wix API", guard),
            },
        })
    }

    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(crate) fn metrics(&self) -> &WixMetrics {
        &self.metrics
    }

    /// Whether each endpoint family's circuit lets calls through, in the
    /// order Token Info, Create Access Token, Wix APIs.
    pub(crate) fn circuits_closed(&self) -> [(Endpoint, bool); 3] {
        [
            (Endpoint::TokenInfo, self.guards.token_info.is_closed()),
            (
                Endpoint::CreateAccessToken,
                self.guards.create_access_token.is_closed(),
            ),
            (Endpoint::Api, self.guards.api.is_closed()),
        ]
    }

    /// `POST /oauth2/token-info` with the bare caller token, guarded and
    /// retried until `deadline`.
    pub(crate) async fn token_info(
        &self,
        token: &str,
        deadline: Instant,
    ) -> Result<TokenInfoAnswer, UpstreamError> {
        let outbound = self.outbound(Endpoint::TokenInfo, "POST", TOKEN_INFO_PATH);
        self.guards
            .token_info
            .call(outbound, deadline, MAX_ATTEMPTS, || async {
                let started = Instant::now();
                let answer = self.ask_token_info(token).await;
                let outcome = match &answer {
                    Ok(TokenInfoAnswer::Info(_)) => CallOutcome::Ok,
                    Ok(TokenInfoAnswer::Refused(_)) => CallOutcome::ClientError,
                    Err(error) => error.classify().1,
                };
                self.metrics.token_info.record(outcome, started.elapsed());
                answer
            })
            .await
    }

    async fn ask_token_info(&self, token: &str) -> Result<TokenInfoAnswer, UpstreamError> {
        let endpoint = Endpoint::TokenInfo;
        let body = json_body(&TokenInfoRequest { token });
        let response = self.post(endpoint, &self.token_info_url, body).await?;
        let status = response.status();
        if is_refusal(status) {
            return Ok(TokenInfoAnswer::Refused(status));
        }
        let body = read_ok_body(endpoint, response).await?;
        wire::decode::<TokenInfo>(&body)
            .map(TokenInfoAnswer::Info)
            .ok_or_else(|| {
                UpstreamError::malformed(endpoint, "the body is not a Token Info object")
            })
    }

    /// `POST /oauth2/token` with the client-credentials grant, guarded and
    /// retried until `deadline`.
    pub(crate) async fn create_access_token(
        &self,
        app_id: &str,
        app_secret: &SecretString,
        instance_id: &str,
        deadline: Instant,
    ) -> Result<AppTokenGrant, UpstreamError> {
        self.guards
            .create_access_token
            .call(
                self.outbound(Endpoint::CreateAccessToken, "POST", TOKEN_PATH),
                deadline,
                MAX_ATTEMPTS,
                || async {
                    let started = Instant::now();
                    let grant = self.grant(app_id, app_secret, instance_id).await;
                    let outcome = grant
                        .as_ref()
                        .map_or_else(|e| e.classify().1, |_| CallOutcome::Ok);
                    self.metrics
                        .create_access_token
                        .record(outcome, started.elapsed());
                    grant
                },
            )
            .await
    }

    async fn grant(
        &self,
        app_id: &str,
        app_secret: &SecretString,
        instance_id: &str,
    ) -> Result<AppTokenGrant, UpstreamError> {
        let endpoint = Endpoint::CreateAccessToken;
        let body = json_body(&CreateAccessTokenRequest {
            grant_type: "client_credentials",
            client_id: app_id,
            client_secret: app_secret.expose_secret(),
            instance_id,
        });
        let response = self.post(endpoint, &self.token_url, body).await?;
        let body = read_ok_body(endpoint, response).await?;
        let grant: AccessTokenGrant = wire::decode(&body).ok_or_else(|| {
            UpstreamError::malformed(endpoint, "the body is not an access token grant")
        })?;
        if grant.access_token.is_empty()
            || http::HeaderValue::from_str(&grant.access_token).is_err()
        {
            return Err(UpstreamError::malformed(
                endpoint,
                "access_token is empty or not header-safe",
            ));
        }
        let expires_in = believed_lifetime(grant.expires_in).unwrap_or_else(|| {
            if !self.warned_fallback.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "wix_elevate",
                    fallback_secs = self.fallback_lifetime.as_secs(),
                    "Wix Create Access Token sent no usable expires_in; assuming the fallback lifetime (warned once)"
                );
            }
            self.fallback_lifetime
        });
        Ok(AppTokenGrant {
            access_token: grant.access_token,
            expires_in,
        })
    }

    /// How a call to `path` (as declared) appears in its spans.
    fn outbound<'a>(&'a self, endpoint: Endpoint, method: &'a str, path: &'a str) -> Outbound<'a> {
        Outbound {
            endpoint,
            method,
            path,
            server: &self.server,
        }
    }

    /// Call a Wix API with the app token, as `call` describes it. Guarded
    /// like the OAuth calls; retried (transient failures, a 429 whose
    /// `Retry-After` fits) only when it is idempotent.
    pub(crate) async fn api(
        &self,
        call: &ApiCall<'_>,
        authorization: &HeaderValue,
        deadline: Instant,
    ) -> Result<ApiAnswer, UpstreamError> {
        let url = format!("{}{}", self.base_url, call.path_and_query);
        let attempts = if call.idempotent { MAX_ATTEMPTS } else { 1 };
        let outbound = self.outbound(Endpoint::Api, call.method.as_str(), call.declared_path);
        let (method, json) = (call.method, call.json);
        self.guards
            .api
            .call(outbound, deadline, attempts, || async {
                let started = Instant::now();
                let answer = self.api_attempt(method, &url, authorization, json).await;
                let outcome = match &answer {
                    Ok(answer) => CallOutcome::of_status(answer.status),
                    Err(error) => error.classify().1,
                };
                self.metrics.api.record(outcome, started.elapsed());
                answer
            })
            .await
    }

    async fn api_attempt(
        &self,
        method: &Method,
        url: &str,
        authorization: &HeaderValue,
        json: Option<&Bytes>,
    ) -> Result<ApiAnswer, UpstreamError> {
        let endpoint = Endpoint::Api;
        let mut request = self
            .http
            .request(method.clone(), url)
            .header(header::AUTHORIZATION, authorization.clone())
            .header(header::ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(json) = json {
            request = request
                .header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )
                .body(json.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(endpoint, e))?;
        let status = response.status();
        let request_id = request_id(response.headers());
        trace::answered(status, request_id.as_deref());
        if let Some(throttled) = throttled(endpoint, &response) {
            return Err(throttled);
        }
        if status.is_server_error() || !(status.is_success() || status.is_client_error()) {
            return Err(UpstreamError::bad_status(endpoint, status, request_id));
        }
        let body = read_body(endpoint, response, MAX_API_BODY).await?;
        Ok(ApiAnswer {
            status,
            request_id,
            body,
        })
    }

    async fn post(
        &self,
        endpoint: Endpoint,
        url: &str,
        body: Bytes,
    ) -> Result<reqwest::Response, UpstreamError> {
        self.http
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .inspect(|response| {
                let request_id = request_id(response.headers());
                trace::answered(response.status(), request_id.as_deref());
            })
            .map_err(|e| transport_error(endpoint, e))
    }
}

/// A call to a Wix API, checked against its route's declaration.
pub(crate) struct ApiCall<'a> {
    pub(crate) method: &'a Method,
    /// Encoded, ready to send.
    pub(crate) path_and_query: &'a str,
    /// The declared path (placeholders unfilled, no query): what spans show.
    pub(crate) declared_path: &'a str,
    pub(crate) json: Option<&'a Bytes>,
    pub(crate) idempotent: bool,
}

/// The host (and port) of a normalized base URL.
fn server_address(base_url: &str) -> &str {
    let rest = base_url
        .split_once("://")
        .map_or(base_url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

fn json_body<T: Serialize>(value: &T) -> Bytes {
    // Serializing plain string fields into a Vec cannot fail.
    serde_json::to_vec(value).unwrap_or_default().into()
}

impl std::fmt::Debug for WixClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WixClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// An `https` base URL needs a TLS backend: without one, every call would
/// fail later as a retried transport error, so it is a build-time error.
fn check_tls(base_url: &str, tls_built_in: bool) -> Result<(), ConfigError> {
    if base_url.starts_with("https://") && !tls_built_in {
        return Err(ConfigError::NoTls);
    }
    Ok(())
}

/// `scheme://host[:port][/path]` without a trailing slash.
fn normalize_base_url(url: &str) -> Result<&str, ConfigError> {
    let trimmed = url.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or(ConfigError::InvalidBaseUrl)?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty()
        || host.contains('@')
        || trimmed.contains(['?', '#'])
        || trimmed.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError::InvalidBaseUrl);
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_is_normalized_and_checked() {
        assert_eq!(
            normalize_base_url("https://www.wixapis.com/").unwrap(),
            "https://www.wixapis.com"
        );
        assert_eq!(
            normalize_base_url("http://127.0.0.1:8080/x").unwrap(),
            "http://127.0.0.1:8080/x"
        );
        for bad in [
            "",
            "www.wixapis.com",
            "ftp://x",
            "https://",
            "https://u:p@x",
            "https://x?a=1",
            "https://x y",
        ] {
            assert!(normalize_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_https_base_url_without_tls_is_a_config_error() {
        assert!(matches!(
            check_tls("https://www.wixapis.com", false),
            Err(ConfigError::NoTls)
        ));
        assert!(check_tls("https://www.wixapis.com", true).is_ok());
        assert!(check_tls("http://127.0.0.1:9", false).is_ok());
    }

    #[test]
    fn only_400_401_403_and_404_refuse_a_token() {
        for code in [400, 401, 403, 404] {
            assert!(is_refusal(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [
            402, 405, 408, 409, 410, 418, 422, 425, 429, 451, 499, 200, 500,
        ] {
            assert!(!is_refusal(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }

    #[test]
    fn grant_lifetimes_are_positive_and_clamped() {
        assert_eq!(
            believed_lifetime(Some(14_400)),
            Some(Duration::from_secs(14_400))
        );
        assert_eq!(
            believed_lifetime(Some(i64::MAX)),
            Some(MAX_APP_TOKEN_LIFETIME)
        );
        assert_eq!(believed_lifetime(Some(0)), None);
        assert_eq!(believed_lifetime(Some(-5)), None);
        assert_eq!(believed_lifetime(None), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_caps() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(header::RETRY_AFTER, "99999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3600)));
        h.insert(
            header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
