//! One page-token scheme for every paginated operation (ListStreams, ListFragments,
//! ListQueues, ListShards, ListStreamConsumers, …): the cursor a page ended at, as
//! JSON, with the time it was issued, signed ([`crate::secrets::TokenSigner`]) so a
//! client can neither forge nor edit one. Opaque to clients, as AWS's are.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::secrets::TokenSigner;

#[derive(Clone)]
pub struct PageTokens {
    signer: TokenSigner,
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    /// The operation the token continues (a ListQueues token is no ListShards token).
    op: String,
    /// Issued at, ms since the epoch.
    t: i64,
    c: T,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageTokenError {
    /// Not one this server issued for this operation (or edited).
    Invalid,
    /// Older than the operation allows.
    Expired,
}

impl PageTokens {
    pub fn new(key: [u8; 32]) -> Self {
        PageTokens { signer: TokenSigner::new(key) }
    }

    /// A token for `op` continuing after `cursor`, issued at `now_ms`.
    pub fn issue<T: Serialize>(&self, op: &str, cursor: &T, now_ms: i64) -> String {
        let envelope = Envelope { op: op.to_string(), t: now_ms, c: cursor };
        self.signer.sign(&serde_json::to_vec(&envelope).unwrap_or_default())
    }

    /// The cursor of a token issued for `op`; `max_age_ms` bounds its age where the
    /// operation's tokens expire.
    pub fn open<T: DeserializeOwned>(
        &self,
        op: &str,
        token: &str,
        now_ms: i64,
        max_age_ms: Option<i64>,
    ) -> Result<T, PageTokenError> {
        let raw = self.signer.open(token).map_err(|_| PageTokenError::Invalid)?;
        let envelope: Envelope<T> = serde_json::from_slice(&raw).map_err(|_| PageTokenError::Invalid)?;
        if envelope.op != op {
            return Err(PageTokenError::Invalid);
        }
        if max_age_ms.is_some_and(|max| now_ms - envelope.t > max) {
            return Err(PageTokenError::Expired);
        }
        Ok(envelope.c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_edits_other_operations_and_age() {
        let t = PageTokens::new([5; 32]);
        let token = t.issue("ListQueues", &("q-17", 3u32), 1_000);
        assert_eq!(t.open::<(String, u32)>("ListQueues", &token, 2_000, None), Ok(("q-17".to_string(), 3)));
        assert_eq!(t.open::<(String, u32)>("ListShards", &token, 2_000, None), Err(PageTokenError::Invalid));
        assert_eq!(t.open::<(String, u32)>("ListQueues", &token, 400_000, Some(300_000)), Err(PageTokenError::Expired));
        let mut edited = token.clone();
        edited.insert(3, 'x');
        assert_eq!(t.open::<(String, u32)>("ListQueues", &edited, 2_000, None), Err(PageTokenError::Invalid));
        assert_eq!(
            PageTokens::new([6; 32]).open::<(String, u32)>("ListQueues", &token, 2_000, None),
            Err(PageTokenError::Invalid)
        );
    }
}
