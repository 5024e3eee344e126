//! Nothing in Redis is readable or trusted without the app secret.
//!
//! Every replica derives the same keys from the app secret with HKDF-SHA256
//! (salt `wix-elevate fleet v1`, one `info` per purpose, so the keys are
//! domain-separated and the secret itself is never used directly):
//!
//! * the token digest's keys (POLYVAL `H`, AES-128 `K`), so a token's
//!   Redis key is the same keyed MAC on every replica, never the token or an
//!   unkeyed hash of it;
//! * an AES-256-GCM-SIV key for values. Each value is sealed with a random
//!   nonce and the Redis key it is stored under (and, for app tokens, the
//!   instance) as associated data: a value cannot be read, altered, or moved
//!   to another key or instance. A value that does not open is a miss.

use aes_gcm_siv::{
    Aes256GcmSiv, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

const SALT: &[u8] = b"wix-elevate fleet v1";
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// Derive `N` bytes for `purpose` from the app secret.
pub(crate) fn derive<const N: usize>(app_secret: &[u8], purpose: &[u8]) -> Zeroizing<[u8; N]> {
    let mut out = Zeroizing::new([0u8; N]);
    // N is at most 32 here, far below HKDF-SHA256's 8160-byte limit.
    let _ = Hkdf::<Sha256>::new(Some(SALT), app_secret).expand(purpose, out.as_mut_slice());
    out
}

/// Seals and opens values with the fleet's value key.
pub(crate) struct Sealer {
    cipher: Aes256GcmSiv,
}

impl Sealer {
    pub(crate) fn from_secret(app_secret: &[u8]) -> Self {
        let key = derive::<32>(app_secret, b"redis value key");
        Self {
            cipher: Aes256GcmSiv::new(&(*key).into()),
        }
    }

    /// `version ‖ nonce ‖ ciphertext`, bound to `aad`.
    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).ok()?;
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .ok()?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// The plaintext, if `value` was sealed by this key for this `aad`.
    pub(crate) fn open(&self, value: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (&version, rest) = value.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).ok()?;
        self.cipher
            .decrypt(&nonce, Payload { msg: sealed, aad })
            .ok()
            .map(Zeroizing::new)
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_aad() {
        let sealer = Sealer::from_secret(b"secret-a");
        let sealed = sealer.seal(b"hello", b"key-1").unwrap();
        assert_eq!(&**sealer.open(&sealed, b"key-1").unwrap(), b"hello");
        assert!(
            sealer.open(&sealed, b"key-2").is_none(),
            "moved to another key"
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(sealer.open(&flipped, b"key-1").is_none(), "altered");
        let other_app = Sealer::from_secret(b"secret-b");
        assert!(
            other_app.open(&sealed, b"key-1").is_none(),
            "another app's secret"
        );
        assert!(sealer.open(b"", b"key-1").is_none());
        assert!(sealer.open(&[1; 5], b"key-1").is_none());
        assert_ne!(
            sealer.seal(b"hello", b"key-1").unwrap(),
            sealed,
            "a fresh nonce every time"
        );
    }

    #[test]
    fn derived_keys_are_domain_separated_and_per_secret() {
        let a = derive::<16>(b"secret", b"one");
        assert_ne!(*a, *derive::<16>(b"secret", b"two"));
        assert_ne!(*a, *derive::<16>(b"other", b"one"));
        assert_eq!(*a, *derive::<16>(b"secret", b"one"));
    }
}
