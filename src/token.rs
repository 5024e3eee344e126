//! Reading the caller's token from `Authorization` (and, on routes that
//! opt in, a query parameter), before any network call.
//!
//! Accepted: the raw token (what Wix's `fetchWithAuth` sends) or
//! `Bearer <token>` with the scheme in any case. The token itself must be
//! 1 to `max_len` characters of the RFC 7235 `token68` alphabet
//! (`A-Z a-z 0-9 - . _ ~ + / =`). Everything else is refused here, so
//! garbage never reaches Wix, a cache or a log.

use aes::{
    Aes128,
    cipher::{BlockCipherEncrypt, KeyInit},
};
use std::borrow::Cow;

use http::{HeaderMap, Uri, header::AUTHORIZATION};
use polyval::{Polyval, universal_hash::UniversalHash};
use zeroize::Zeroizing;

use crate::error::{ConfigError, RejectionKind};

/// Default cap on a caller token's length: 8 KiB.
pub(crate) const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

/// The bare token's bytes: one `Authorization` header, a raw token or
/// `Bearer <token>`, within `max_len`. O(1) in the token's length, so the
/// warm path can hash it at once; the alphabet is checked by [`checked`]
/// before anything leaves the process. (A token with a bad character can
/// never be in the identity cache, which holds only checked tokens, so a
/// cache hit needs no second check.)
pub(crate) fn bare_token(headers: &HeaderMap, max_len: usize) -> Result<&[u8], RejectionKind> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(RejectionKind::MissingToken)?;
    if values.next().is_some() {
        return Err(RejectionKind::MalformedToken);
    }
    split_authorization(value.as_bytes(), max_len)
}

/// The request's bare credential: `Authorization`, or, where `query_param`
/// names one (dashboard pages opened with `?instance=`), that query
/// parameter. Both present and different: refused (400), never guessed.
/// The parameter given twice is malformed. Borrowed unless the parameter
/// was percent-encoded.
pub(crate) fn request_token<'r>(
    headers: &'r HeaderMap,
    uri: &'r Uri,
    query_param: Option<&str>,
    max_len: usize,
) -> Result<Cow<'r, [u8]>, RejectionKind> {
    let Some(name) = query_param else {
        return bare_token(headers, max_len).map(Cow::Borrowed);
    };
    let from_header = match bare_token(headers, max_len) {
        Ok(token) => Some(token),
        Err(RejectionKind::MissingToken) => None,
        Err(refused) => return Err(refused),
    };
    let from_query = query_value(uri, name, max_len)?;
    match (from_header, from_query) {
        (Some(header), Some(query)) if header != &*query => {
            Err(RejectionKind::ConflictingCredentials)
        }
        (Some(header), _) => Ok(Cow::Borrowed(header)),
        (None, Some(query)) => Ok(query),
        (None, None) => Err(RejectionKind::MissingToken),
    }
}

/// The query parameter `name`, decoded: `None` if absent or empty.
fn query_value<'r>(
    uri: &'r Uri,
    name: &str,
    max_len: usize,
) -> Result<Option<Cow<'r, [u8]>>, RejectionKind> {
    let Some(query) = uri.query() else {
        return Ok(None);
    };
    let mut found = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != name {
            continue;
        }
        if found.is_some() {
            return Err(RejectionKind::MalformedToken);
        }
        found = Some(value);
    }
    match found {
        None => Ok(None),
        Some(value) if value.is_empty() => Ok(None),
        Some(value) if value.len() > max_len => Err(RejectionKind::MalformedToken),
        Some(Cow::Borrowed(value)) => Ok(Some(Cow::Borrowed(value.as_bytes()))),
        Some(Cow::Owned(value)) => Ok(Some(Cow::Owned(value.into_bytes()))),
    }
}

/// The token in an `Authorization` value: raw, or after `Bearer `.
pub(crate) fn split_authorization(value: &[u8], max_len: usize) -> Result<&[u8], RejectionKind> {
    const BEARER: &[u8] = b"bearer ";
    let value = value.trim_ascii();
    if value.is_empty() {
        return Err(RejectionKind::MissingToken);
    }
    let token = match value.split_at_checked(BEARER.len()) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case(BEARER) => rest.trim_ascii_start(),
        _ if value.eq_ignore_ascii_case(b"bearer") => return Err(RejectionKind::MalformedToken),
        _ => value,
    };
    if token.is_empty() || token.len() > max_len {
        return Err(RejectionKind::MalformedToken);
    }
    Ok(token)
}

/// The token as text if every byte is in the RFC 7235 `token68` alphabet.
/// This also refuses a second scheme or word (`Basic x`, `Bearer Bearer x`),
/// since a space is not in the alphabet.
pub(crate) fn checked(token: &[u8]) -> Result<&str, RejectionKind> {
    // Branch-free so the compiler vectorises it: six times faster than a
    // `matches!` per byte on a 1 KiB token.
    let valid = token.iter().fold(true, |ok, &b| {
        let alnum =
            (b.wrapping_sub(b'A') < 26) | (b.wrapping_sub(b'a') < 26) | (b.wrapping_sub(b'0') < 10);
        let punct = (b == b'-')
            | (b == b'.')
            | (b == b'_')
            | (b == b'~')
            | (b == b'+')
            | (b == b'/')
            | (b == b'=');
        ok & (alnum | punct)
    });
    if !valid {
        return Err(RejectionKind::MalformedToken);
    }
    // Every byte is ASCII, so this cannot fail; map it anyway rather than panic.
    std::str::from_utf8(token).map_err(|_| RejectionKind::MalformedToken)
}

#[cfg(any(test, fuzzing))]
pub(crate) fn parse_authorization(value: &[u8], max_len: usize) -> Result<&str, RejectionKind> {
    checked(split_authorization(value, max_len)?)
}

/// The identity cache's key for a caller token: a keyed digest of it, so
/// the cache never holds a usable token.
///
/// The digest is `AES-128_K(POLYVAL_H(token ‖ length))` with `H` and `K`
/// drawn from the operating system's CSPRNG when the [`Elevator`] is built
/// and never exposed: a universal hash followed by a block cipher, the
/// construction of AES-GCM-SIV's tag and a pseudorandom function
/// (Wegman–Carter, Shoup). Without the keys, nobody can compute a token's
/// digest or find two tokens that share one: for any two distinct tokens
/// of up to 8 KiB the odds of a collision are below 2^-118, so below 2^-84
/// among 100 000 cached tokens. A collision is what would let one token
/// pass for another, which is why the key must be cryptographic.
///
/// Why not SHA-256: on a 1 KiB token this costs about a quarter as much
/// (POLYVAL runs four carry-less multiplications in parallel, AES runs
/// once), and it is paid on every request. `benches/layer.rs` times both.
///
/// [`Elevator`]: crate::Elevator
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TokenDigest(u128);

impl TokenDigest {
    /// Lowercase hex, for fleet keys and messages.
    pub(crate) fn hex(self) -> String {
        format!("{:032x}", self.0)
    }

    pub(crate) fn from_hex(hex: &str) -> Option<Self> {
        (hex.len() == 32)
            .then(|| u128::from_str_radix(hex, 16).ok())
            .flatten()
            .map(TokenDigest)
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

/// Computes [`TokenDigest`]s under one pair of secret keys. The keys, and
/// each digest's working copy of the POLYVAL state, are zeroized on drop
/// (the `zeroize` features of `aes` and `polyval`; no measurable cost).
pub(crate) struct TokenHasher {
    /// POLYVAL keyed with `H`, cloned for each token.
    polyval: Polyval,
    cipher: Aes128,
}

impl TokenHasher {
    /// A hasher with fresh keys from the operating system's CSPRNG.
    pub(crate) fn random() -> Result<Self, ConfigError> {
        // Wiped when dropped, on every path: the keys then live only in
        // the cipher and the hash, which wipe themselves.
        let (mut h, mut k) = (Zeroizing::new([0; 16]), Zeroizing::new([0; 16]));
        getrandom::fill(&mut *h).map_err(|e| ConfigError::Randomness(e.into()))?;
        getrandom::fill(&mut *k).map_err(|e| ConfigError::Randomness(e.into()))?;
        Self::from_keys(h, k)
    }

    /// A hasher with these keys (fleet mode derives them from the app
    /// secret, so that every replica computes the same digests).
    pub(crate) fn from_keys(
        h: Zeroizing<[u8; 16]>,
        k: Zeroizing<[u8; 16]>,
    ) -> Result<Self, ConfigError> {
        // `H = 0` would give every token the same digest. A working CSPRNG
        // draws it with odds of 2^-128, so take it for a broken one.
        if *h == [0; 16] {
            let zero = std::io::Error::other("the random key came out all zero");
            return Err(ConfigError::Randomness(zero));
        }
        Ok(Self {
            polyval: Polyval::new(&(*h).into()),
            cipher: Aes128::new(&(*k).into()),
        })
    }

    pub(crate) fn digest(&self, token: &[u8]) -> TokenDigest {
        let mut polyval = self.polyval.clone();
        polyval.update_padded(token);
        // The length block makes zero padding unambiguous: `a` and `a\0`
        // are different polynomials.
        let mut length = polyval::Block::default();
        length[..8].copy_from_slice(&(token.len() as u64).to_le_bytes());
        polyval.update(&[length]);
        let mut block = polyval.finalize();
        self.cipher.encrypt_block(&mut block);
        TokenDigest(u128::from_le_bytes(block.into()))
    }
}

impl std::fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHasher(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RejectionKind::{ConflictingCredentials, MalformedToken, MissingToken};

    #[test]
    fn a_query_credential_of_exactly_the_longest_length_is_read_and_one_byte_more_is_not() {
        let uri =
            |len: usize| -> Uri { format!("/x?instance={}", "a".repeat(len)).parse().unwrap() };
        let at_limit = uri(16);
        assert_eq!(
            query_value(&at_limit, "instance", 16)
                .unwrap()
                .unwrap()
                .len(),
            16
        );
        let over = uri(17);
        assert_eq!(query_value(&over, "instance", 16), Err(MalformedToken));
    }

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
            "tok en",
            "Bearer\ttok",
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
        assert_eq!(bare_token(&headers, 64), Err(MalformedToken));
        assert_eq!(bare_token(&HeaderMap::new(), 64), Err(MissingToken));
    }

    #[test]
    fn a_route_may_also_read_its_credential_from_a_query_parameter() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        let header = |v: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, v.parse().unwrap());
            headers
        };
        let none = HeaderMap::new();
        let read = |headers: &HeaderMap, u: &str, param: Option<&str>| {
            request_token(headers, &uri(u), param, 64).map(|t| t.into_owned())
        };
        let from_query = Some("instance");
        // Not opted in: the query is never read.
        assert_eq!(read(&none, "/p?instance=abc", None), Err(MissingToken));
        // Opted in: either source, or both when they agree.
        assert_eq!(
            read(&none, "/p?instance=abc.def", from_query),
            Ok(b"abc.def".to_vec())
        );
        assert_eq!(read(&header("abc"), "/p", from_query), Ok(b"abc".to_vec()));
        assert_eq!(
            read(&header("Bearer abc"), "/p?instance=abc", from_query),
            Ok(b"abc".to_vec())
        );
        // Both, differently: refused, never guessed.
        assert_eq!(
            read(&header("abc"), "/p?instance=xyz", from_query),
            Err(ConflictingCredentials)
        );
        // Decoded, once, within the cap.
        assert_eq!(
            read(&none, "/p?instance=a%2Eb", from_query),
            Ok(b"a.b".to_vec())
        );
        assert_eq!(
            read(&none, "/p?instance=a&instance=a", from_query),
            Err(MalformedToken)
        );
        let long = format!("/p?instance={}", "a".repeat(65));
        assert_eq!(read(&none, &long, from_query), Err(MalformedToken));
        assert_eq!(read(&none, "/p?instance=", from_query), Err(MissingToken));
        assert_eq!(read(&none, "/p?other=abc", from_query), Err(MissingToken));
        // A malformed header is refused even with a good parameter.
        assert_eq!(
            read(&header("Bearer"), "/p?instance=abc", from_query),
            Err(MalformedToken)
        );
    }

    #[test]
    fn the_alphabet_check_agrees_with_the_rfc_for_every_byte() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
            assert_eq!(checked(&[b]).is_ok(), want, "byte {b:#04x}");
        }
    }

    #[test]
    fn digest_differs_per_token_and_is_stable() {
        let hasher = TokenHasher::random().unwrap();
        // Zero padding and the length block: prefixes and padded forms differ.
        let digests = [
            &b""[..],
            b"a",
            b"a\0",
            b"a\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            b"aa",
        ]
        .map(|token| hasher.digest(token));
        for (i, a) in digests.iter().enumerate() {
            for b in &digests[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(hasher.digest(b"a"), hasher.digest(b"a"));
        assert_ne!(hasher.digest(b"a"), hasher.digest(b"b"));
        // Keyed: another hasher (another process) gives another digest.
        let other = TokenHasher::random().unwrap();
        assert_ne!(hasher.digest(b"a"), other.digest(b"a"));
        assert_eq!(format!("{:?}", hasher.digest(b"a")), "TokenDigest(..)");
        assert_eq!(format!("{hasher:?}"), "TokenHasher(..)");
    }
}
