//! Temporary credentials, as STS issues them (GetSessionToken, AssumeRole): an access
//! key id (`ASIA…`), a secret and a session token that expire together.
//!
//! Nothing is stored. The session token carries what the session is (its key id, the
//! account, the principal, the expiry) signed with the server's key (`data/sts.key`),
//! and the secret is derived from the key id with the same key. So a request signed with
//! a session is verified from the request alone, any node holding the key verifies any
//! session (the cluster needs nothing more), and no number of sessions costs memory.
//! A session cannot be revoked before it expires, as in AWS (short of changing the key,
//! which ends them all).

use serde::{Deserialize, Serialize};

pub use crate::credentials::SessionPrincipal as Principal;
use crate::secrets::{TokenError, TokenSigner};

/// A session as its token says it is, once verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    #[serde(rename = "k")]
    pub access_key_id: String,
    #[serde(rename = "a")]
    pub account: String,
    #[serde(rename = "p")]
    pub principal: Principal,
    /// Seconds since the epoch.
    #[serde(rename = "e")]
    pub expires_s: i64,
}

/// Temporary credentials, as handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub claims: SessionClaims,
    pub secret_access_key: String,
    pub session_token: String,
}

/// Why a request's session was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("a temporary access key needs its session token (X-Amz-Security-Token)")]
    MissingToken,
    #[error("the security token included in the request is invalid")]
    Invalid,
    #[error("the security token included in the request is expired")]
    Expired,
}

/// A temporary access key id: `ASIA` and 16 characters of base32, as AWS's look.
pub fn is_temporary_key(access_key_id: &str) -> bool {
    access_key_id.len() == 20 && access_key_id.starts_with("ASIA")
}

const KEY_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Sessions are at least 15 minutes: SDKs refresh credentials that have less left.
pub const MIN_DURATION_S: i64 = 900;

/// Issues and verifies sessions with one key.
#[derive(Clone)]
pub struct SessionIssuer {
    signer: TokenSigner,
}

impl SessionIssuer {
    pub fn new(key: [u8; 32]) -> Self {
        SessionIssuer { signer: TokenSigner::new(key) }
    }

    /// A new session for `account` acting as `principal`, from `now_s` for `duration_s`.
    /// `random` supplies the key id's randomness (10 bytes).
    pub fn issue(&self, account: &str, principal: Principal, now_s: i64, duration_s: i64, random: [u8; 10]) -> Session {
        let mut id = String::from("ASIA");
        // 80 random bits as 16 base32 characters.
        let bits = random.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
        for i in (0..16).rev() {
            id.push(char::from(KEY_ALPHABET[((bits >> (i * 5)) & 31) as usize]));
        }
        let claims =
            SessionClaims { access_key_id: id, account: account.to_string(), principal, expires_s: now_s + duration_s };
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let session_token = self.signer.sign(&payload);
        Session { secret_access_key: self.secret(&claims.access_key_id), claims, session_token }
    }

    /// The session a request's key id and token prove, and its secret (to check the
    /// signature with), at `now_s`.
    pub fn verify(
        &self,
        access_key_id: &str,
        token: Option<&str>,
        now_s: i64,
    ) -> Result<(SessionClaims, String), SessionError> {
        let token = token.ok_or(SessionError::MissingToken)?;
        let payload = self.signer.open(token).map_err(|_: TokenError| SessionError::Invalid)?;
        let claims: SessionClaims = serde_json::from_slice(&payload).map_err(|_| SessionError::Invalid)?;
        if claims.access_key_id != access_key_id {
            return Err(SessionError::Invalid);
        }
        if now_s >= claims.expires_s {
            return Err(SessionError::Expired);
        }
        let secret = self.secret(access_key_id);
        Ok((claims, secret))
    }

    fn secret(&self, access_key_id: &str) -> String {
        let derived = self.signer.derive(format!("sts-secret\0{access_key_id}").as_bytes());
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &derived[..30])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_verifies_until_it_expires_and_only_with_its_own_key_id() {
        let issuer = SessionIssuer::new([7; 32]);
        let s = issuer.issue("123456789012", Principal::User { name: "ci".into() }, 1_000, 900, [0xAB; 10]);
        assert!(is_temporary_key(&s.claims.access_key_id), "{}", s.claims.access_key_id);
        assert_eq!(s.secret_access_key.len(), 40);
        let (claims, secret) = issuer.verify(&s.claims.access_key_id, Some(&s.session_token), 1_899).unwrap();
        assert_eq!((claims.account.as_str(), secret), ("123456789012", s.secret_access_key.clone()));
        assert_eq!(issuer.verify(&s.claims.access_key_id, Some(&s.session_token), 1_900), Err(SessionError::Expired));
        assert_eq!(issuer.verify(&s.claims.access_key_id, None, 1_000), Err(SessionError::MissingToken));
        let other = issuer.issue("123456789012", Principal::User { name: "ci".into() }, 1_000, 900, [1; 10]);
        assert_ne!(other.claims.access_key_id, s.claims.access_key_id);
        assert_ne!(other.secret_access_key, s.secret_access_key);
        assert_eq!(
            issuer.verify(&other.claims.access_key_id, Some(&s.session_token), 1_000),
            Err(SessionError::Invalid),
            "a token belongs to its key id"
        );
        assert_eq!(
            SessionIssuer::new([8; 32]).verify(&s.claims.access_key_id, Some(&s.session_token), 1_000),
            Err(SessionError::Invalid),
            "another server's key"
        );
        let forged = s.session_token.replace('.', "x.");
        assert_eq!(issuer.verify(&s.claims.access_key_id, Some(&forged), 1_000), Err(SessionError::Invalid));
        assert_eq!(issuer.verify(&s.claims.access_key_id, Some("not a token"), 1_000), Err(SessionError::Invalid));
    }
}
