//! The access keys the server accepts, shared by every listener that authenticates
//! (SigV4 on HTTP, Digest on RTSP). No keys means anonymous mode, which `app` allows on
//! loopback addresses only.

use std::collections::HashMap;

/// Access key id → secret.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    keys: HashMap<String, String>,
}

impl Credentials {
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Credentials { keys: pairs.into_iter().collect() }
    }

    /// No keys configured: requests are not authenticated.
    pub fn is_anonymous(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn secret(&self, access_key_id: &str) -> Option<String> {
        self.keys.get(access_key_id).cloned()
    }
}
