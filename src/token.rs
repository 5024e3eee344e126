//! Reading the caller's token from `Authorization`, before any network call.
//!
//! Accepted: the raw token (what Wix's `fetchWithAuth` sends) or
//! `Bearer <token>` with the scheme in any case. The token itself must be
//! 1 to `max_len` characters of the RFC 7235 `token68` alphabet
//! (`A-Z a-z 0-9 - . _ ~ + / =`). Everything else is refused here, so
//! garbage never reaches Wix, a cache or a log.

use http::{HeaderMap, header::AUTHORIZATION};
use sha2::{Digest, Sha256};

use crate::error::RejectionKind;

/// Default cap on a caller token's length: 8 KiB.
pub(crate) const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

/// The bare caller token from the request headers, or why there is none.
pub(crate) fn caller_token(headers: &HeaderMap, max_len: usize) -> Result<&str, RejectionKind> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(RejectionKind::MissingToken)?;
    if values.next().is_some() {
        return Err(RejectionKind::MalformedToken);
    }
    parse_authorization(value.as_bytes(), max_len)
}

/// Parse one `Authorization` value into the bare token.
pub(crate) fn parse_authorization(value: &[u8], max_len: usize) -> Result<&str, RejectionKind> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return Err(RejectionKind::MissingToken);
    }
    // A header can be far longer than any token: refuse before scanning it.
    if value.len() > max_len + "Bearer ".len() {
        return Err(RejectionKind::MalformedToken);
    }
    let token = match value.iter().position(|&b| b == b' ') {
        None if value.eq_ignore_ascii_case(b"bearer") => return Err(RejectionKind::MalformedToken),
        None => value,
        Some(space) => {
            let (scheme, rest) = value.split_at(space);
            if !scheme.eq_ignore_ascii_case(b"bearer") {
                return Err(RejectionKind::MalformedToken);
            }
            rest.trim_ascii_start()
        }
    };
    if token.is_empty() || token.len() > max_len || !token.iter().all(|&b| is_token68(b)) {
        return Err(RejectionKind::MalformedToken);
    }
    // Every byte is ASCII, so this cannot fail; map it anyway rather than panic.
    std::str::from_utf8(token).map_err(|_| RejectionKind::MalformedToken)
}

const fn is_token68(b: u8) -> bool {
    matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// SHA-256 of a caller token: the identity cache's key, so the cache never
/// holds a usable token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub(crate) fn of(token: &str) -> Self {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RejectionKind::{MalformedToken, MissingToken};

    fn parse(value: &str) -> Result<&str, RejectionKind> {
        parse_authorization(value.as_bytes(), 64)
    }

    #[test]
    fn accepts_raw_and_bearer_in_any_case() {
        assert_eq!(parse("OauthNG.JWS.abc-_=="), Ok("OauthNG.JWS.abc-_=="));
        assert_eq!(parse("Bearer OauthNG.JWS.abc"), Ok("OauthNG.JWS.abc"));
        assert_eq!(parse("bEaReR   tok"), Ok("tok"));
        assert_eq!(parse("  tok  "), Ok("tok"));
    }

    #[test]
    fn missing_when_empty_or_blank() {
        assert_eq!(parse(""), Err(MissingToken));
        assert_eq!(parse(" \t "), Err(MissingToken));
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "Bearer",
            "bearer ",
            "Bearer    ",
            "Basic dXNlcjpwYXNz",
            "Bearer Bearer tok",
            "Bearer tok extra",
            "tok\u{7f}",
            "tok\tother",
            "tök",
            "tok\"",
            "to,k",
        ] {
            assert_eq!(parse(bad), Err(MalformedToken), "{bad:?}");
        }
    }

    #[test]
    fn refuses_tokens_over_the_cap() {
        let at_cap = "a".repeat(64);
        assert_eq!(parse(&at_cap), Ok(at_cap.as_str()));
        assert_eq!(parse(&"a".repeat(65)), Err(MalformedToken));
        assert_eq!(
            parse(&format!("Bearer {}", "a".repeat(65))),
            Err(MalformedToken)
        );
        assert_eq!(parse(&"a".repeat(10_000)), Err(MalformedToken));
    }

    #[test]
    fn refuses_two_authorization_headers() {
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, "a".parse().unwrap());
        headers.append(AUTHORIZATION, "b".parse().unwrap());
        assert_eq!(caller_token(&headers, 64), Err(MalformedToken));
        assert_eq!(caller_token(&HeaderMap::new(), 64), Err(MissingToken));
    }

    #[test]
    fn digest_differs_per_token_and_is_stable() {
        assert!(TokenDigest::of("a") == TokenDigest::of("a"));
        assert!(TokenDigest::of("a") != TokenDigest::of("b"));
    }
}
