//! Entry points for `cargo fuzz` (compiled only with `--cfg fuzzing`): each
//! runs one parser on arbitrary input and must never panic.

use tokio::time::Instant;

use http::Method;

use crate::{
    caller::{Caller, SubjectType},
    client::believed_lifetime,
    identity::verify,
    operation::Operation,
    token,
    wire::{self, AccessTokenGrant, TokenInfo},
};

/// An `Authorization` header value, as the layer reads it.
pub fn authorization(value: &[u8]) {
    let _ = token::parse_authorization(value, token::DEFAULT_MAX_TOKEN_LEN);
}

/// A Token Info body, decoded and verified.
pub fn token_info(body: &[u8]) {
    if let Some(info) = wire::decode::<TokenInfo>(body) {
        let _ = verify(info, "app", 1_800_000_000, Instant::now());
    }
}

/// A Create Access Token body, decoded, with the lifetime it implies.
pub fn grant(body: &[u8]) {
    if let Some(grant) = wire::decode::<AccessTokenGrant>(body) {
        let _ = believed_lifetime(grant.expires_in);
    }
}

/// An operation declaration, then a call (path, query pairs) checked
/// against it: `declaration \n path \n key=value&...`.
pub fn operation(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let (Some(declared), Some(path)) = (parts.next(), parts.next()) else {
        return;
    };
    let Ok(operation) = declared.parse::<Operation>() else {
        return;
    };
    let query: Vec<(&str, &str)> = parts
        .next()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let caller = Caller::new(SubjectType::Member, "m-1", "i-1");
    let segments = path.strip_prefix('/').unwrap_or(path).split('/');
    let _ = operation.permits(&Method::GET, segments, &query, &caller);
    let _ = operation.matches(&Method::GET, path, &caller);
    let _ = operation.allows_query(&query, &caller);
}
