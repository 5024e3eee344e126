//! The one verifier of the JWTs Wix signs with the app's key (webhooks,
//! service-plugin requests, payment-provider `Digest` headers): the token's
//! shape and header, the RS256 signature against the configured keys, and
//! the time claims, then each door's own claim rules ([`ClaimRules`]).
//!
//! The signature is checked by `jsonwebtoken` (ring); everything about the
//! claims is checked here, so every door refuses the same things the same
//! way: a time claim that is not a number, an unknown `crit` extension, an
//! `exp` past the leeway, whatever the door.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use crate::{error::ConfigError, webhook::WebhookKeys};

/// The largest body a verifier reads by default: 256 KiB.
pub(crate) const DEFAULT_MAX_BODY: usize = 256 * 1024;

/// The largest leeway a verifier accepts: five minutes. A clock further
/// off than that is a broken clock, and a longer leeway would keep an
/// expired token valid for longer than anyone configuring it means.
pub(crate) const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// The leeway on `exp` and `nbf` unless configured: 5 s.
pub(crate) const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);

/// What one door requires of the claims, beyond a valid signature.
#[derive(Clone, Debug)]
pub(crate) struct ClaimRules {
    /// `iss` must be exactly this.
    pub(crate) issuer: Option<&'static str>,
    /// `aud` must name this: the string itself, or a list holding it.
    pub(crate) audience: Option<Box<str>>,
    /// Whether `iss` and `aud` are checked only when the token has them
    /// (a door whose documentation names neither); otherwise they are
    /// required.
    pub(crate) iss_aud_if_present: bool,
    /// Whether a token without `exp` is refused.
    pub(crate) require_exp: bool,
    /// Slack on `exp` and `nbf`, in whole seconds (at most [`MAX_LEEWAY`]).
    pub(crate) leeway_secs: u64,
}

/// One door's verifier: the app's keys, the door's claim rules and the
/// largest body it reads. Each door's public verifier wraps one, so the
/// settings mean the same everywhere.
#[derive(Clone, Debug)]
pub(crate) struct JwtVerifier {
    keys: WebhookKeys,
    rules: ClaimRules,
    max_body: usize,
}

impl JwtVerifier {
    pub(crate) fn new(keys: WebhookKeys, rules: ClaimRules) -> Self {
        Self {
            keys,
            rules,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    pub(crate) fn rules(&self) -> &ClaimRules {
        &self.rules
    }

    /// The leeway on `exp` and `nbf`, at most [`MAX_LEEWAY`].
    pub(crate) fn set_leeway(&mut self, leeway: Duration) -> Result<(), ConfigError> {
        self.rules.leeway_secs = leeway_secs(leeway).ok_or(ConfigError::LeewayTooLong)?;
        Ok(())
    }

    pub(crate) fn set_max_body(&mut self, max: usize) {
        self.max_body = max;
    }

    pub(crate) fn max_body(&self) -> usize {
        self.max_body
    }

    /// A body that is the token: refused unread past the limit, then
    /// verified (surrounding white space aside).
    pub(crate) fn verify_body(&self, body: &[u8]) -> Result<Map<String, Value>, JwtRefusal> {
        if body.len() > self.max_body {
            return Err(JwtRefusal::TooLarge);
        }
        let token = std::str::from_utf8(body).map_err(|_| JwtRefusal::NotAJwt)?;
        self.verify_token(token.trim())
    }

    /// A token from elsewhere (a header).
    pub(crate) fn verify_token(&self, token: &str) -> Result<Map<String, Value>, JwtRefusal> {
        verify(token, &self.keys, &self.rules)
    }
}

/// Why a token was refused, before each door names it in its own words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JwtRefusal {
    /// The body is larger than the verifier reads; never parsed.
    TooLarge,
    /// Not three base64url parts with a JSON header naming an algorithm,
    /// or signed claims that are not a JSON object.
    NotAJwt,
    /// No configured key verifies it, it is not RS256, or its header asks
    /// for an extension (`crit`) this verifier does not implement.
    BadSignature,
    /// Past `exp`, or before `nbf`, beyond the leeway.
    Expired,
    /// A time claim that is not a number, a missing required `exp`, or an
    /// `iss`/`aud` other than the door requires.
    BadClaims,
}

/// The leeway for `leeway`, or `None` past [`MAX_LEEWAY`].
fn leeway_secs(leeway: Duration) -> Option<u64> {
    (leeway <= MAX_LEEWAY).then_some(leeway.as_secs())
}

/// Verify `token` against `keys` and `rules`: its claims, or why not.
fn verify(
    token: &str,
    keys: &WebhookKeys,
    rules: &ClaimRules,
) -> Result<Map<String, Value>, JwtRefusal> {
    check_header(token)?;
    let validation = signature_only();
    let mut refused = JwtRefusal::BadSignature;
    for key in keys.iter() {
        match jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation) {
            Ok(data) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                check_claims(&data.claims, rules, now)?;
                return Ok(data.claims);
            }
            // The signature held (it is checked first): the claims are
            // not a JSON object.
            Err(e) if matches!(e.kind(), ErrorKind::Json(_) | ErrorKind::Utf8(_)) => {
                refused = JwtRefusal::NotAJwt;
            }
            // Another key may verify it.
            Err(_) => {}
        }
    }
    Err(refused)
}

/// jsonwebtoken checks the RS256 signature and nothing else: every claim
/// is checked by [`check_claims`], the same way for every door.
fn signature_only() -> Validation {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation
}

/// A JWT's shape and header, checked before any key is tried: anything
/// that is not three base64url parts with a JSON header is not a JWT;
/// another algorithm, or a `crit` header (this verifier implements no
/// extension, so RFC 7515 §4.1.11 says refuse), is a bad signature.
/// `kid`, `jku`, `jwk` and `x5u` are ignored: they never select or fetch a
/// key.
fn check_header(token: &str) -> Result<(), JwtRefusal> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtRefusal::NotAJwt);
    };
    let header = URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| JwtRefusal::NotAJwt)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&header).map_err(|_| JwtRefusal::NotAJwt)?;
    if header.contains_key("crit") {
        return Err(JwtRefusal::BadSignature);
    }
    match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => Ok(()),
        Some(_) => Err(JwtRefusal::BadSignature),
        None => Err(JwtRefusal::NotAJwt),
    }
}

/// The claims of a token whose signature held, at `now` (Unix seconds).
fn check_claims(
    claims: &Map<String, Value>,
    rules: &ClaimRules,
    now: f64,
) -> Result<(), JwtRefusal> {
    let time = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(value) => value.as_f64().map(Some).ok_or(JwtRefusal::BadClaims),
    };
    let (exp, nbf, _iat) = (time("exp")?, time("nbf")?, time("iat")?);
    // Whole seconds at most 300: exact in an f64, and no overflow.
    let leeway = rules.leeway_secs.min(MAX_LEEWAY.as_secs()) as f64;
    match exp {
        None if rules.require_exp => return Err(JwtRefusal::BadClaims),
        Some(exp) if exp + leeway < now => return Err(JwtRefusal::Expired),
        _ => {}
    }
    if nbf.is_some_and(|nbf| nbf > now + leeway) {
        return Err(JwtRefusal::Expired);
    }
    let optional = |name: &str| rules.iss_aud_if_present && !claims.contains_key(name);
    if let Some(issuer) = rules.issuer
        && !optional("iss")
        && claims.get("iss").and_then(Value::as_str) != Some(issuer)
    {
        return Err(JwtRefusal::BadClaims);
    }
    if let Some(audience) = rules.audience.as_deref()
        && !optional("aud")
    {
        let named = match claims.get("aud") {
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(audience)),
            _ => false,
        };
        if !named {
            return Err(JwtRefusal::BadClaims);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: Some("wix.com"),
            audience: Some("app".into()),
            iss_aud_if_present: false,
            require_exp: true,
            leeway_secs: 5,
        }
    }

    fn verdict(claims: Value, rules: &ClaimRules) -> Result<(), JwtRefusal> {
        let Value::Object(claims) = claims else {
            unreachable!("an object")
        };
        check_claims(&claims, rules, 1_000_000.0)
    }

    #[test]
    fn claims_get_the_verdicts_the_rules_say() {
        use JwtRefusal::*;
        let r = rules();
        let ok = json!({"iss": "wix.com", "aud": "app", "exp": 1_000_100});
        let with = |key: &str, value: Value| {
            let mut claims = ok.clone();
            claims[key] = value;
            claims
        };
        let without = |key: &str| {
            let mut claims = ok.clone();
            claims.as_object_mut().unwrap().remove(key);
            claims
        };
        for (case, claims, want) in [
            ("valid", ok.clone(), Ok(())),
            (
                "aud a list holding the app",
                with("aud", json!(["x", "app"])),
                Ok(()),
            ),
            (
                "aud another app",
                with("aud", json!("other")),
                Err(BadClaims),
            ),
            (
                "aud a list without the app",
                with("aud", json!(["x"])),
                Err(BadClaims),
            ),
            ("aud a number", with("aud", json!(1)), Err(BadClaims)),
            ("no aud", without("aud"), Err(BadClaims)),
            ("iss another", with("iss", json!("wix.co")), Err(BadClaims)),
            ("no iss", without("iss"), Err(BadClaims)),
            ("no exp", without("exp"), Err(BadClaims)),
            (
                "exp a string",
                with("exp", json!("1000100")),
                Err(BadClaims),
            ),
            ("exp null", with("exp", Value::Null), Err(BadClaims)),
            ("exp false", with("exp", json!(false)), Err(BadClaims)),
            ("nbf a string", with("nbf", json!("0")), Err(BadClaims)),
            ("iat null", with("iat", Value::Null), Err(BadClaims)),
            ("iat a number", with("iat", json!(999_999)), Ok(())),
            ("exp within the leeway", with("exp", json!(999_995)), Ok(())),
            (
                "exp past the leeway",
                with("exp", json!(999_994.5)),
                Err(Expired),
            ),
            (
                "nbf within the leeway",
                with("nbf", json!(1_000_005)),
                Ok(()),
            ),
            (
                "nbf past the leeway",
                with("nbf", json!(1_000_005.5)),
                Err(Expired),
            ),
        ] {
            assert_eq!(verdict(claims, &r), want, "{case}");
        }
        let webhook = ClaimRules {
            issuer: None,
            audience: None,
            iss_aud_if_present: false,
            require_exp: false,
            leeway_secs: 5,
        };
        assert_eq!(
            verdict(json!({"data": "x"}), &webhook),
            Ok(()),
            "no exp, no iss, no aud"
        );
        assert_eq!(verdict(json!({"exp": "soon"}), &webhook), Err(BadClaims));
        let payment = ClaimRules {
            iss_aud_if_present: true,
            ..rules()
        };
        for (case, claims, want) in [
            (
                "neither",
                without("aud")
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| *k != "iss")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
                Ok(()),
            ),
            ("both right", ok.clone(), Ok(())),
            (
                "aud another app",
                with("aud", json!("other")),
                Err(BadClaims),
            ),
            ("iss another", with("iss", json!("evil")), Err(BadClaims)),
            ("no exp", without("exp"), Err(BadClaims)),
        ] {
            assert_eq!(verdict(claims, &payment), want, "payment: {case}");
        }
    }

    #[test]
    fn the_leeway_is_bounded_and_never_overflows() {
        assert_eq!(leeway_secs(Duration::from_secs(300)), Some(300));
        assert_eq!(leeway_secs(Duration::from_secs(301)), None);
        assert_eq!(leeway_secs(Duration::MAX), None);
        // Even a rule built by hand with a huge leeway is capped, never a panic.
        let huge = ClaimRules {
            leeway_secs: u64::MAX,
            ..rules()
        };
        assert_eq!(
            verdict(
                json!({"iss": "wix.com", "aud": "app", "exp": 999_000}),
                &huge
            ),
            Err(JwtRefusal::Expired)
        );
    }

    #[test]
    fn a_crit_header_or_another_algorithm_is_refused_before_any_key() {
        let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let token = |header: Value| format!("{}.{}.c2ln", b64(header), b64(json!({})));
        for (case, header, want) in [
            ("RS256", json!({"alg": "RS256"}), Ok(())),
            (
                "kid and jku",
                json!({"alg": "RS256", "kid": "k", "jku": "https://x"}),
                Ok(()),
            ),
            (
                "crit unknown",
                json!({"alg": "RS256", "crit": ["exp"], "exp": 1}),
                Err(JwtRefusal::BadSignature),
            ),
            (
                "crit empty",
                json!({"alg": "RS256", "crit": []}),
                Err(JwtRefusal::BadSignature),
            ),
            (
                "none",
                json!({"alg": "none"}),
                Err(JwtRefusal::BadSignature),
            ),
            (
                "HS256",
                json!({"alg": "HS256"}),
                Err(JwtRefusal::BadSignature),
            ),
            (
                "RS512",
                json!({"alg": "RS512"}),
                Err(JwtRefusal::BadSignature),
            ),
            ("no alg", json!({"typ": "JWT"}), Err(JwtRefusal::NotAJwt)),
            ("header a list", json!([1]), Err(JwtRefusal::NotAJwt)),
        ] {
            assert_eq!(check_header(&token(header)), want, "{case}");
        }
        assert_eq!(check_header("a.b"), Err(JwtRefusal::NotAJwt));
        assert_eq!(check_header("a.b.c.d"), Err(JwtRefusal::NotAJwt));
        assert_eq!(check_header("!!.b.c"), Err(JwtRefusal::NotAJwt));
    }
}
