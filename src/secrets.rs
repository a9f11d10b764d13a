//! Server-side secrets: random keys kept in the data directory, and tokens signed with
//! them (HLS/DASH session tokens, SQS receipt handles).
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(key, base64url(payload)))`:
//! whoever lacks the key can neither mint one nor change a byte of one.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(format!("no randomness from the OS: {e}")))?;
    Ok(b)
}

/// The 32-byte key in `path`, created (random, mode 0600, synced) if missing.
pub fn load_or_create_key(path: &Path) -> std::io::Result<[u8; 32]> {
    match std::fs::read(path) {
        Ok(b) if b.len() == 32 => {
            let mut key = [0u8; 32];
            key.copy_from_slice(&b);
            return Ok(key);
        }
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is not 32 bytes; delete it to make a new one",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key = random_bytes::<32>()?;
    crate::durable_file::replace(path, &key, 0o600)?;
    Ok(key)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature does not match")]
    BadSignature,
}

/// Signs payloads into tokens and opens them again.
#[derive(Clone)]
pub struct TokenSigner {
    key: [u8; 32],
}

impl TokenSigner {
    pub fn new(key: [u8; 32]) -> Self {
        TokenSigner { key }
    }

    pub fn sign(&self, payload: &[u8]) -> String {
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let tag = URL_SAFE_NO_PAD.encode(self.mac(payload.as_bytes()).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// The payload of a token this signer made.
    pub fn open(&self, token: &str) -> Result<Vec<u8>, TokenError> {
        let (payload, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Malformed)?;
        self.mac(payload.as_bytes()).verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
        URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)
    }

    /// A value derived from `input` with the key (HMAC-SHA-256). Inputs should carry a
    /// label with a NUL (`b"purpose\0…"`): tokens sign base64 text, which has none, so
    /// a derived value is never a token's tag.
    pub fn derive(&self, input: &[u8]) -> [u8; 32] {
        self.mac(input).finalize().into_bytes().into()
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_tampering() {
        let s = TokenSigner::new([1; 32]);
        let t = s.sign(b"hello");
        assert_eq!(s.open(&t).unwrap(), b"hello");
        let (p, tag) = t.split_once('.').unwrap();
        let other = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(b"hellO"));
        assert_eq!(s.open(&other), Err(TokenError::BadSignature));
        assert_eq!(TokenSigner::new([2; 32]).open(&t), Err(TokenError::BadSignature));
        assert_eq!(s.open(p), Err(TokenError::Malformed));
    }

    #[test]
    fn the_key_file_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let a = load_or_create_key(&path).unwrap();
        assert_eq!(a, load_or_create_key(&path).unwrap());
        std::fs::write(&path, b"short").unwrap();
        assert!(load_or_create_key(&path).is_err());
    }
}

/// Values the operator keeps in the config file's `[secrets]` table, by the ARN that
/// names them where AWS would read AWS Secrets Manager (an edge configuration's camera
/// URL). Debug output never shows a value.
#[derive(Clone, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretValues(std::collections::BTreeMap<String, String>);

impl SecretValues {
    pub fn new(values: std::collections::BTreeMap<String, String>) -> Self {
        SecretValues(values)
    }

    /// The value kept under `arn`.
    pub fn get(&self, arn: &str) -> Option<&str> {
        self.0.get(arn).map(String::as_str)
    }
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, "<redacted>"))).finish()
    }
}
