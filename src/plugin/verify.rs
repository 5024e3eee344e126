//! [`PluginVerifier`]: a service-plugin body (a JWT wrapping
//! `{request, metadata}`) checked against the app's key and Wix's claim
//! rules for plugins; and [`PaymentVerifier`]: a payment-provider request's
//! `Digest: JWT=…` header checked, then the body's SHA-256 against it.

use std::time::Duration;

use http::HeaderMap;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::{PluginEnvelope, PluginError, PluginErrorKind};
use crate::{
    error::ConfigError,
    jwt::{self, ClaimRules, JwtVerifier},
    webhook::WebhookKeys,
};

/// The largest service-plugin body read by default: 256 KiB, as for
/// webhooks.
pub const DEFAULT_MAX_PLUGIN_BODY: usize = jwt::DEFAULT_MAX_BODY;

/// Checks service-plugin calls from Wix against the app's public key (the
/// same key, in the same forms, as webhooks: [`WebhookKeys`]).
///
/// The body is the JWT. It is accepted only when:
///
/// * it is signed **RS256** by a configured key: `none`, HS256 (even keyed
///   with the public key), RS384, **RS512** (which Wix's SDK accepts when
///   made with the same RSA key; Wix signs RS256, so this is stricter on
///   purpose) and every other algorithm are refused, as is a `crit`
///   header; `kid`, `jku`, `jwk` and `x5u` never select or fetch a key;
/// * `iss` is `wix.com` and `aud` names the app id (a string, or a list
///   holding it), as Wix's SDK requires of plugin calls;
/// * it has a numeric `exp` not in the past, and `nbf` and `iat`, when
///   present, are numbers, `nbf` not in the future; 5 s of leeway by
///   default (Wix's SDK has none; at most 5 minutes);
/// * its `data` is an object whose `metadata` has a string
///   `appExtensionType` (as Wix's SDK requires) and a non-empty
///   `instanceId` (the site the call is for; the SDK does not check it,
///   but without it there is no one to act for).
///
/// A body over [`max_body_len`](Self::max_body_len) is refused before it
/// is parsed.
///
/// ```
/// # #[cfg(feature = "test-util")] {
/// use wix_elevate::{plugin::{PluginErrorKind, PluginVerifier}, test_util::{MockServicePlugin, WEBHOOK_PUBLIC_KEY}, webhook::WebhookKeys};
///
/// let verifier = PluginVerifier::new("mock-app-id", WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap());
/// let call = MockServicePlugin::new("ECOM_ADDITIONAL_FEES", "inst-1", serde_json::json!({}));
/// assert!(verifier.verify(call.sign().as_bytes()).is_ok());
/// let for_another_app = call.app_id("another-app").sign();
/// assert_eq!(verifier.verify(for_another_app.as_bytes()).unwrap_err().kind(), PluginErrorKind::InvalidClaims);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PluginVerifier {
    jwt: JwtVerifier,
}

impl PluginVerifier {
    /// A verifier of calls to app `app_id`, signed with one of `keys`.
    pub fn new(app_id: &str, keys: WebhookKeys) -> Self {
        Self {
            jwt: JwtVerifier::new(keys, plugin_rules(app_id)),
        }
    }

    /// The leeway on `exp` and `nbf` (default 5 s; whole seconds; at most
    /// five minutes, else [`ConfigError::LeewayTooLong`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use wix_elevate::{plugin::PluginVerifier, webhook::WebhookKeys};
    /// assert!(PluginVerifier::new("app", WebhookKeys::new()).leeway(Duration::from_secs(600)).is_err());
    /// ```
    pub fn leeway(mut self, leeway: Duration) -> Result<Self, ConfigError> {
        self.jwt.set_leeway(leeway)?;
        Ok(self)
    }

    /// The largest body read (default 256 KiB).
    pub fn max_body_len(mut self, max: usize) -> Self {
        self.jwt.set_max_body(max);
        self
    }

    /// The largest body read.
    pub fn body_limit(&self) -> usize {
        self.jwt.max_body()
    }

    /// The app id calls must be addressed to (`aud`).
    pub fn app_id(&self) -> &str {
        self.jwt.rules().audience.as_deref().unwrap_or_default()
    }

    /// Check a service-plugin body and read the envelope in it.
    pub fn verify(&self, body: &[u8]) -> Result<PluginEnvelope, PluginError> {
        let mut claims = self.jwt.verify_body(body)?;
        PluginEnvelope::parse(claims.remove("data"))
            .ok_or_else(|| PluginErrorKind::NotAPluginRequest.into())
    }
}

/// What Wix's SDK requires of plugin calls, plus a required `exp`.
fn plugin_rules(app_id: &str) -> ClaimRules {
    ClaimRules {
        issuer: Some("wix.com"),
        audience: Some(app_id.into()),
        iss_aud_if_present: false,
        require_exp: true,
        leeway_secs: jwt::DEFAULT_LEEWAY.as_secs(),
    }
}

/// Checks payment-provider requests from Wix: a plain JSON body and a
/// `Digest: JWT=<jwt>` header (name in any case) whose signed `data` is
/// `{"SHA256": "<hex of the body's SHA-256>"}`.
///
/// The JWT is verified as [`PluginVerifier`] does (RS256 only, the
/// configured keys only, no `crit`, numeric time claims, a required
/// `exp`), with one difference: Wix's payment documentation names no
/// `iss` or `aud` for these, so they are not required, but a token that
/// has them must say `wix.com` and this app. Then the body's SHA-256 is
/// compared with the signed one in constant time (hex in either case).
///
/// ```
/// # #[cfg(feature = "test-util")] {
/// use wix_elevate::{plugin::{PaymentVerifier, PluginErrorKind}, test_util::{MockPaymentRequest, WEBHOOK_PUBLIC_KEY}, webhook::WebhookKeys};
///
/// let verifier = PaymentVerifier::new("mock-app-id", WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap());
/// let request = MockPaymentRequest::new(r#"{"wixTransactionId":"t-1"}"#);
/// let mut headers = http::HeaderMap::new();
/// headers.insert("digest", request.digest_header().parse().unwrap());
/// assert!(verifier.verify(&headers, request.body()).is_ok());
/// let refused = verifier.verify(&headers, br#"{"wixTransactionId":"t-2"}"#).unwrap_err();
/// assert_eq!(refused.kind(), PluginErrorKind::DigestMismatch);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PaymentVerifier {
    jwt: JwtVerifier,
}

impl PaymentVerifier {
    /// A verifier of payment requests to app `app_id`, signed with one of
    /// `keys`.
    pub fn new(app_id: &str, keys: WebhookKeys) -> Self {
        let rules = ClaimRules {
            iss_aud_if_present: true,
            ..plugin_rules(app_id)
        };
        Self {
            jwt: JwtVerifier::new(keys, rules),
        }
    }

    /// The leeway on `exp` and `nbf` (default 5 s; at most five minutes).
    pub fn leeway(mut self, leeway: Duration) -> Result<Self, ConfigError> {
        self.jwt.set_leeway(leeway)?;
        Ok(self)
    }

    /// The largest body read (default 256 KiB).
    pub fn max_body_len(mut self, max: usize) -> Self {
        self.jwt.set_max_body(max);
        self
    }

    /// The largest body read.
    pub fn body_limit(&self) -> usize {
        self.jwt.max_body()
    }

    /// Check a payment request's headers and raw body.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), PluginError> {
        if body.len() > self.jwt.max_body() {
            return Err(PluginErrorKind::TooLarge.into());
        }
        let token = digest_token(headers).ok_or(PluginErrorKind::MissingDigest)?;
        let claims = self.jwt.verify_token(token)?;
        let signed = claims
            .get("data")
            .and_then(|data| match data {
                // An object, or (as webhooks carry theirs) a JSON string.
                Value::Object(data) => data
                    .get("SHA256")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                Value::String(text) => serde_json::from_str::<Value>(text)
                    .ok()?
                    .get("SHA256")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            })
            .ok_or(PluginErrorKind::NotAPluginRequest)?;
        let actual = hex_lower(&Sha256::digest(body));
        let signed = signed.to_ascii_lowercase();
        if bool::from(actual.as_bytes().ct_eq(signed.as_bytes())) {
            Ok(())
        } else {
            Err(PluginErrorKind::DigestMismatch.into())
        }
    }
}

/// The JWT of the `Digest` header: `JWT=<token>`, the prefix in any case.
fn digest_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("digest")?.to_str().ok()?.trim();
    let (prefix, token) = value.split_at_checked(4)?;
    prefix.eq_ignore_ascii_case("JWT=").then_some(token.trim())
}

/// Lower-case hex.
fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_header_is_read_with_its_prefix_in_any_case() {
        let read = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("Digest", value.parse().unwrap());
            digest_token(&headers).map(str::to_owned)
        };
        assert_eq!(read("JWT=a.b.c").as_deref(), Some("a.b.c"));
        assert_eq!(read("jwt=a.b.c").as_deref(), Some("a.b.c"));
        assert_eq!(read(" JWT= a.b.c ").as_deref(), Some("a.b.c"));
        assert_eq!(read("SHA-256=abc"), None);
        assert_eq!(read("JW"), None);
        assert_eq!(digest_token(&HeaderMap::new()), None);
    }

    #[test]
    fn hex_is_lower_case_and_complete() {
        assert_eq!(hex_lower(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(
            hex_lower(&Sha256::digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
