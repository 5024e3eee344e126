//! [`WebhookVerifier`]: a webhook body (a JWT signed RS256 with the app's
//! key) checked and parsed, or refused with the reason's status.

use std::{fmt, time::Duration};

use http::StatusCode;
use serde_json::Value;

use super::{WebhookKeys, WixEvent, event};
use crate::{
    error::ConfigError,
    jwt::{self, ClaimRules, JwtRefusal, JwtVerifier},
};

/// The largest webhook body read by default: 256 KiB.
pub const DEFAULT_MAX_BODY: usize = jwt::DEFAULT_MAX_BODY;

/// Checks Wix webhooks against the app's public keys.
///
/// * The algorithm is pinned to RS256: `none`, HS256 (even keyed with the
///   public key's bytes), RS384, RS512 and ES256 are refused. (Wix's
///   JavaScript SDK accepts RS512 signed with the same RSA key; this is
///   stricter on purpose, since Wix signs RS256.)
/// * Only the configured keys are tried; `kid`, `jku`, `jwk` and `x5u`
///   headers never select or fetch a key, and do not by themselves refuse
///   a token. A `crit` header is refused: this verifier implements no JWS
///   extension (RFC 7515, section 4.1.11).
/// * `exp` and `nbf` are checked when present, with a leeway (5 s by
///   default, at most 5 minutes) for clocks that disagree; a token without
///   `exp` is accepted, as Wix's SDK does. `exp`, `nbf` and `iat` that are
///   present but not numbers are refused, as Wix's SDK does.
/// * A body over [`max_body_len`](Self::max_body_len) is refused before it
///   is parsed.
///
/// ```
/// # #[cfg(feature = "test-util")] {
/// use wix_elevate::{test_util::{MockWebhook, WEBHOOK_PUBLIC_KEY}, webhook::{WebhookKeys, WebhookVerifier}};
///
/// let verifier = WebhookVerifier::new(WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap());
/// assert!(verifier.verify(MockWebhook::app_installed("i-1").sign().as_bytes()).is_ok());
/// let refused = verifier.verify(b"{\"eventType\":\"AppRemoved\"}").unwrap_err();
/// assert_eq!(refused.status(), 400);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct WebhookVerifier {
    jwt: JwtVerifier,
}

/// Why a webhook was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WebhookErrorKind {
    /// The body is larger than the verifier reads (413).
    TooLarge,
    /// No configured key verifies it, it is not RS256, or its header
    /// names a `crit` extension (401).
    BadSignature,
    /// Signed, but past `exp` or before `nbf` (401).
    Expired,
    /// Signed, but `exp`, `nbf` or `iat` is not a number (401).
    InvalidClaims,
    /// Not a webhook: not a JWT, or signed claims without a webhook in
    /// them (400).
    NotAWebhook,
}

impl WebhookErrorKind {
    /// The status to answer Wix with.
    pub const fn status(self) -> StatusCode {
        match self {
            WebhookErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookErrorKind::BadSignature
            | WebhookErrorKind::Expired
            | WebhookErrorKind::InvalidClaims => StatusCode::UNAUTHORIZED,
            WebhookErrorKind::NotAWebhook => StatusCode::BAD_REQUEST,
        }
    }

    /// A stable snake_case code, for problem bodies and logs.
    pub const fn code(self) -> &'static str {
        match self {
            WebhookErrorKind::TooLarge => "webhook_too_large",
            WebhookErrorKind::BadSignature => "webhook_bad_signature",
            WebhookErrorKind::Expired => "webhook_expired",
            WebhookErrorKind::InvalidClaims => "webhook_invalid_claims",
            WebhookErrorKind::NotAWebhook => "not_a_webhook",
        }
    }

    /// A fixed sentence, for problem bodies.
    pub const fn detail(self) -> &'static str {
        match self {
            WebhookErrorKind::TooLarge => "The webhook body is too large.",
            WebhookErrorKind::BadSignature => "The webhook's signature is not valid.",
            WebhookErrorKind::Expired => "The webhook has expired or is not yet valid.",
            WebhookErrorKind::InvalidClaims => "The webhook's claims are not valid.",
            WebhookErrorKind::NotAWebhook => "The body is not a Wix webhook.",
        }
    }
}

impl From<JwtRefusal> for WebhookErrorKind {
    fn from(refusal: JwtRefusal) -> Self {
        match refusal {
            JwtRefusal::TooLarge => WebhookErrorKind::TooLarge,
            JwtRefusal::NotAJwt => WebhookErrorKind::NotAWebhook,
            JwtRefusal::BadSignature => WebhookErrorKind::BadSignature,
            JwtRefusal::Expired => WebhookErrorKind::Expired,
            JwtRefusal::BadClaims => WebhookErrorKind::InvalidClaims,
        }
    }
}

/// A refused webhook. Shows its kind, never the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("webhook refused: {}", .kind.code())]
pub struct WebhookError {
    kind: WebhookErrorKind,
}

impl WebhookError {
    /// Why.
    pub fn kind(&self) -> WebhookErrorKind {
        self.kind
    }

    /// The status to answer with.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }
}

impl From<WebhookErrorKind> for WebhookError {
    fn from(kind: WebhookErrorKind) -> Self {
        Self { kind }
    }
}

impl WebhookVerifier {
    /// A verifier for these keys (none: every webhook is refused).
    pub fn new(keys: WebhookKeys) -> Self {
        // Wix's SDK checks no `iss` or `aud` on webhooks, and Wix's own
        // samples send none: require what Wix signs, no more.
        let rules = ClaimRules {
            issuer: None,
            audience: None,
            iss_aud_if_present: false,
            require_exp: false,
            leeway_secs: jwt::DEFAULT_LEEWAY.as_secs(),
        };
        Self {
            jwt: JwtVerifier::new(keys, rules),
        }
    }

    /// The leeway on `exp` and `nbf` (default 5 s; whole seconds). More
    /// than five minutes is refused: that is a broken clock, not a slow
    /// one.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use wix_elevate::webhook::{WebhookKeys, WebhookVerifier};
    /// let verifier = WebhookVerifier::new(WebhookKeys::new());
    /// assert!(verifier.clone().leeway(Duration::from_secs(30)).is_ok());
    /// assert!(verifier.leeway(Duration::MAX).is_err());
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

    /// How long past its `exp` a webhook still verifies.
    pub(super) fn leeway_allowed(&self) -> Duration {
        Duration::from_secs(self.jwt.rules().leeway_secs)
    }

    /// Check a webhook body and parse the event in it.
    pub fn verify(&self, body: &[u8]) -> Result<WixEvent, WebhookError> {
        let claims = self
            .jwt
            .verify_body(body)
            .map_err(|refusal| WebhookError::from(WebhookErrorKind::from(refusal)))?;
        // Numbers, if present: the verifier refused anything else.
        let time = |name| {
            claims
                .get(name)
                .and_then(Value::as_f64)
                .map(|t| t.max(0.0) as u64)
        };
        claims
            .get("data")
            .and_then(Value::as_str)
            .and_then(|data| event::parse(data, time("iat"), time("exp")))
            .ok_or_else(|| WebhookErrorKind::NotAWebhook.into())
    }
}

impl fmt::Display for WebhookErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::test_util::{
        MockWebhook, OTHER_WEBHOOK_PRIVATE_KEY, OTHER_WEBHOOK_PUBLIC_KEY, WEBHOOK_PUBLIC_KEY,
    };

    const PRIVATE: &str = include_str!("../test_util/keys/webhook.key.pem");

    fn verifier() -> WebhookVerifier {
        WebhookVerifier::new(WebhookKeys::new().key(WEBHOOK_PUBLIC_KEY).unwrap())
    }

    fn verdict(verifier: &WebhookVerifier, token: &str) -> Result<String, WebhookErrorKind> {
        verifier
            .verify(token.as_bytes())
            .map(|event| event.event_type().to_owned())
            .map_err(|e| e.kind())
    }

    fn b64(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn signed(header: Header, claims: &serde_json::Value, key: &EncodingKey) -> String {
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    #[test]
    fn the_corpus_gets_the_verdicts_the_rules_say() {
        use WebhookErrorKind::*;
        let v = verifier();
        let webhook = MockWebhook::app_removed("i-1");
        let good = webhook.sign();
        let private = EncodingKey::from_rsa_pem(PRIVATE.as_bytes()).unwrap();
        let claims = webhook.claims();
        let [head, payload, signature]: [&str; 3] =
            good.split('.').collect::<Vec<_>>().try_into().unwrap();
        let mut kid = Header::new(Algorithm::RS256);
        kid.kid = Some("rotated-away".into());
        kid.jku = Some("https://attacker.example/jwks".into());
        let mut future = claims.clone();
        future["nbf"] = json!(9_999_999_999u64);
        let mut exp_text = claims.clone();
        exp_text["exp"] = json!("9999999999");
        let mut nbf_null = claims.clone();
        nbf_null["nbf"] = serde_json::Value::Null;
        let crit = {
            let head = b64(&json!({"alg": "RS256", "typ": "JWT", "crit": ["x-wix"], "x-wix": 1}));
            let signing_input = format!("{head}.{}", b64(&claims));
            let signature =
                jsonwebtoken::crypto::sign(signing_input.as_bytes(), &private, Algorithm::RS256)
                    .unwrap();
            format!("{signing_input}.{signature}")
        };
        let cases: Vec<(&str, String, Result<String, WebhookErrorKind>)> = vec![
            ("valid", good.clone(), Ok("AppRemoved".into())),
            (
                "no exp",
                MockWebhook::app_removed("i-1").without_exp().sign(),
                Ok("AppRemoved".into()),
            ),
            (
                "unknown event type",
                MockWebhook::new("Novel", "i-1", json!({"x": 1})).sign(),
                Ok("Novel".into()),
            ),
            (
                "kid and jku headers",
                signed(kid, &claims, &private),
                Ok("AppRemoved".into()),
            ),
            (
                "expired",
                MockWebhook::app_removed("i-1")
                    .expires_in(Duration::ZERO)
                    .sign(),
                Err(Expired),
            ),
            (
                "nbf in the future",
                signed(Header::new(Algorithm::RS256), &future, &private),
                Err(Expired),
            ),
            ("crit header naming an extension", crit, Err(BadSignature)),
            (
                "exp a string",
                signed(Header::new(Algorithm::RS256), &exp_text, &private),
                Err(InvalidClaims),
            ),
            (
                "nbf null",
                signed(Header::new(Algorithm::RS256), &nbf_null, &private),
                Err(InvalidClaims),
            ),
            (
                "another key",
                webhook.sign_with(OTHER_WEBHOOK_PRIVATE_KEY),
                Err(BadSignature),
            ),
            (
                "alg none",
                format!("{}.{payload}.", b64(&json!({"alg": "none", "typ": "JWT"}))),
                Err(BadSignature),
            ),
            (
                "HS256 keyed with the public key",
                signed(
                    Header::new(Algorithm::HS256),
                    &claims,
                    &EncodingKey::from_secret(WEBHOOK_PUBLIC_KEY.as_bytes()),
                ),
                Err(BadSignature),
            ),
            (
                "RS512 with the same key",
                signed(Header::new(Algorithm::RS512), &claims, &private),
                Err(BadSignature),
            ),
            (
                "truncated signature",
                format!("{head}.{payload}.{}", &signature[..signature.len() - 8]),
                Err(BadSignature),
            ),
            (
                "altered payload",
                format!(
                    "{head}.{}.{signature}",
                    b64(&json!({"data": claims["data"], "exp": 9_999_999_999u64}))
                ),
                Err(BadSignature),
            ),
            (
                "data not a string",
                signed(
                    Header::new(Algorithm::RS256),
                    &json!({"data": {"eventType": "AppRemoved"}}),
                    &private,
                ),
                Err(NotAWebhook),
            ),
            (
                "data not a webhook",
                signed(
                    Header::new(Algorithm::RS256),
                    &json!({"data": "[1,2]"}),
                    &private,
                ),
                Err(NotAWebhook),
            ),
            (
                "not a JWT",
                r#"{"eventType":"AppRemoved"}"#.into(),
                Err(NotAWebhook),
            ),
            ("empty", String::new(), Err(NotAWebhook)),
        ];
        for (case, token, want) in cases {
            assert_eq!(verdict(&v, &token), want, "{case}");
        }
    }

    #[test]
    fn every_key_encoding_verifies_and_a_rotation_tries_each_key() {
        let pem = WEBHOOK_PUBLIC_KEY;
        let escaped = pem.trim().replace('\n', "\\n");
        let base64_pem = base64::engine::general_purpose::STANDARD.encode(pem);
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let token = MockWebhook::app_installed("i-1").sign();
        for (form, key) in [
            ("PEM", pem.to_owned()),
            ("escaped PEM", escaped),
            ("base64 PEM", base64_pem),
            ("base64 DER", body),
        ] {
            let v = WebhookVerifier::new(
                WebhookKeys::new()
                    .key(&key)
                    .unwrap_or_else(|_| panic!("{form}")),
            );
            assert!(v.verify(token.as_bytes()).is_ok(), "{form}");
        }
        for bad in [
            "",
            "not a key",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
        ] {
            assert!(WebhookKeys::new().key(bad).is_err(), "{bad:?}");
        }
        // Old and new key during a rotation: both verify.
        let both = WebhookVerifier::new(
            WebhookKeys::new()
                .key(OTHER_WEBHOOK_PUBLIC_KEY)
                .unwrap()
                .key(pem)
                .unwrap(),
        );
        let old = MockWebhook::app_installed("i-1").sign_with(OTHER_WEBHOOK_PRIVATE_KEY);
        assert!(both.verify(token.as_bytes()).is_ok());
        assert!(both.verify(old.as_bytes()).is_ok());
        // No key: nothing verifies.
        let none = WebhookVerifier::new(WebhookKeys::new());
        assert_eq!(
            none.verify(token.as_bytes()).unwrap_err().kind(),
            WebhookErrorKind::BadSignature
        );
    }

    #[test]
    fn a_body_over_the_limit_is_refused_before_parsing() {
        let v = verifier().max_body_len(100);
        let token = MockWebhook::app_installed("i-1").sign();
        let refused = v.verify(token.as_bytes()).unwrap_err();
        assert_eq!(
            (refused.kind(), refused.status().as_u16()),
            (WebhookErrorKind::TooLarge, 413)
        );
        assert!(!format!("{refused:?} {refused}").contains(&token[..20]));
    }

    #[test]
    fn a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_not() {
        let token = MockWebhook::app_installed("i-1").sign();
        let exact = verifier().max_body_len(token.len());
        assert_eq!(exact.body_limit(), token.len());
        assert!(exact.verify(token.as_bytes()).is_ok());
        let short = verifier().max_body_len(token.len() - 1);
        assert_eq!(
            short.verify(token.as_bytes()).unwrap_err().kind(),
            WebhookErrorKind::TooLarge
        );
        assert_eq!(DEFAULT_MAX_BODY, 262_144);
        assert_eq!(verifier().body_limit(), DEFAULT_MAX_BODY);
    }

    #[test]
    fn each_refusal_has_its_fixed_status_code_and_sentence() {
        use WebhookErrorKind::*;
        for (kind, status, code, detail) in [
            (
                TooLarge,
                413,
                "webhook_too_large",
                "The webhook body is too large.",
            ),
            (
                BadSignature,
                401,
                "webhook_bad_signature",
                "The webhook's signature is not valid.",
            ),
            (
                Expired,
                401,
                "webhook_expired",
                "The webhook has expired or is not yet valid.",
            ),
            (
                InvalidClaims,
                401,
                "webhook_invalid_claims",
                "The webhook's claims are not valid.",
            ),
            (
                NotAWebhook,
                400,
                "not_a_webhook",
                "The body is not a Wix webhook.",
            ),
        ] {
            let error = WebhookError::from(kind);
            assert_eq!(
                (
                    error.kind(),
                    error.status().as_u16(),
                    kind.code(),
                    kind.detail()
                ),
                (kind, status, code, detail)
            );
            assert_eq!(kind.to_string(), code);
            assert_eq!(error.to_string(), format!("webhook refused: {code}"));
        }
    }

    #[test]
    fn the_leeway_covers_a_clock_a_little_behind() {
        let private = EncodingKey::from_rsa_pem(PRIVATE.as_bytes()).unwrap();
        let mut claims = MockWebhook::app_removed("i-1").without_exp().claims();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        claims["exp"] = json!(now - 2);
        let token = signed(Header::new(Algorithm::RS256), &claims, &private);
        assert!(
            verifier().verify(token.as_bytes()).is_ok(),
            "2 s late: within 5 s"
        );
        let strict = verifier().leeway(Duration::ZERO).unwrap();
        assert_eq!(
            strict.verify(token.as_bytes()).unwrap_err().kind(),
            WebhookErrorKind::Expired
        );
    }
}
