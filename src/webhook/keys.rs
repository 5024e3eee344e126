//! [`WebhookKeys`]: the app's public keys for webhook signatures, read in
//! every form they are stored in.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD};
use jsonwebtoken::DecodingKey;

/// The app's RSA public keys (Wix's app dashboard: Webhooks, "Get Public
/// Key"). Several at once during a rotation: a webhook verifies if any key
/// does; a `kid`, `jku` or `jwk` header never selects or fetches one.
///
/// A key is accepted as
///
/// * a PEM (`-----BEGIN PUBLIC KEY-----` …), with real newlines
/// * the same PEM with `\n` escapes, as keys are often stored in
///   environment variables (Wix's sample app unescapes them too)
/// * base64 of the whole PEM (what Wix's JavaScript SDK also reads)
/// * base64 of the DER `SubjectPublicKeyInfo`.
///
/// ```
/// use wix_elevate::webhook::WebhookKeys;
///
/// let pem = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAqvuikbL1wnpsm4RYu3dV\n...";
/// assert!(WebhookKeys::new().key(pem).is_err(), "a truncated key is refused at once");
/// ```
#[derive(Clone, Default)]
pub struct WebhookKeys {
    keys: Vec<DecodingKey>,
}

/// A configured webhook key is not an RSA public key in any accepted form.
/// It never shows the key.
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "not an RSA public key as PEM, \\n-escaped PEM, base64 of the PEM, or base64 of the DER SubjectPublicKeyInfo"
)]
pub struct WebhookKeyError {
    _private: (),
}

impl WebhookKeys {
    /// No keys yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a key, in any accepted form.
    pub fn key(mut self, key: &str) -> Result<Self, WebhookKeyError> {
        self.keys
            .push(decoding_key(key).ok_or(WebhookKeyError { _private: () })?);
        Ok(self)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &DecodingKey> {
        self.keys.iter()
    }
}

/// The key, whatever form it came in.
fn decoding_key(key: &str) -> Option<DecodingKey> {
    let key = key.trim();
    if key.contains("-----BEGIN") {
        return pem_key(&key.replace("\\n", "\n"));
    }
    let compact: String = key.split_whitespace().collect();
    let decoded = STANDARD.decode(compact).ok()?;
    match std::str::from_utf8(&decoded) {
        Ok(text) if text.contains("-----BEGIN") => pem_key(text),
        // DER: an ASN.1 SEQUENCE.
        _ if decoded.first() == Some(&0x30) => {
            let pem = format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                STANDARD.encode(&decoded)
            );
            pem_key(&pem)
        }
        _ => None,
    }
}

fn pem_key(pem: &str) -> Option<DecodingKey> {
    DecodingKey::from_rsa_pem(pem.trim().as_bytes()).ok()
}

impl fmt::Debug for WebhookKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}
