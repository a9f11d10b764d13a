//! The access keys the server accepts, shared by every listener that authenticates
//! (SigV4 on HTTP, Digest on RTSP), and the scope (account, region) a request acts in.
//!
//! Each key belongs to an account (`account_id` in its `[[access_keys]]` entry, else the
//! server's `--account-id`); a signed request's region is the one in its credential
//! scope. No keys means anonymous mode, which `app` allows on loopback addresses only;
//! there an access key id of twelve digits names the account (as LocalStack takes it),
//! so tests can act as several accounts without configuring keys.

use std::collections::HashMap;

use crate::scope::{is_account, is_region, Scope};

#[derive(Debug, Clone)]
struct Key {
    secret: String,
    account: String,
}

/// Access key id → secret and account; the default scope.
#[derive(Debug, Clone)]
pub struct Credentials {
    keys: HashMap<String, Key>,
    default: Scope,
}

/// What a request proved about itself: its access key and the region it signed for,
/// and, for a key STS issued, what the session acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub access_key_id: Option<String>,
    pub scope: Scope,
    pub session: Option<SessionPrincipal>,
}

/// What a temporary session (STS) acts as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SessionPrincipal {
    /// GetSessionToken: the user of the long-term key it was asked with.
    User { name: String },
    /// AssumeRole: the role, and the session's name.
    AssumedRole { role_arn: String, session_name: String },
}

impl Credentials {
    /// No keys yet: anonymous mode in `default`.
    pub fn new(default: Scope) -> Self {
        Credentials { keys: HashMap::new(), default }
    }

    /// Accepts `id` with `secret`, acting in `account` (the default account if `None`).
    pub fn with_key(mut self, id: impl Into<String>, secret: impl Into<String>, account: Option<String>) -> Self {
        let account = account.unwrap_or_else(|| self.default.account.clone());
        self.keys.insert(id.into(), Key { secret: secret.into(), account });
        self
    }

    /// No keys configured: requests are not authenticated.
    pub fn is_anonymous(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn secret(&self, access_key_id: &str) -> Option<String> {
        self.keys.get(access_key_id).map(|k| k.secret.clone())
    }

    pub fn default_scope(&self) -> &Scope {
        &self.default
    }

    /// Whether requests signed for `region` are served: AWS's regions and the server's
    /// own.
    pub fn serves_region(&self, region: &str) -> bool {
        region == self.default.region || crate::scope::is_aws_region(region)
    }

    /// Who a request acts as: the account of its (verified, or in anonymous mode
    /// given) access key and the region of its credential scope; the defaults for
    /// what it does not say.
    pub fn caller(&self, access_key_id: Option<&str>, region: Option<&str>) -> Caller {
        let account = match access_key_id {
            Some(id) => match self.keys.get(id) {
                Some(k) => k.account.clone(),
                None if self.is_anonymous() && is_account(id) => id.to_string(),
                None => self.default.account.clone(),
            },
            None => self.default.account.clone(),
        };
        let region = region.filter(|r| is_region(r)).unwrap_or(&self.default.region).to_string();
        Caller { access_key_id: access_key_id.map(str::to_string), scope: Scope::new(account, region), session: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_comes_from_the_key_and_the_region_from_the_signature() {
        let default = Scope::new("000000000000", "us-east-1");
        let creds = Credentials::new(default.clone())
            .with_key("AK1", "s1", Some("111111111111".into()))
            .with_key("AK2", "s2", None);
        assert_eq!(creds.caller(Some("AK1"), Some("eu-west-1")).scope, Scope::new("111111111111", "eu-west-1"));
        assert_eq!(creds.caller(Some("AK2"), None).scope, default);
        assert_eq!(creds.caller(Some("AK1"), Some("nonsense")).scope.region, "us-east-1");
        let anonymous = Credentials::new(default.clone());
        assert_eq!(
            anonymous.caller(Some("222222222222"), Some("ap-south-1")).scope,
            Scope::new("222222222222", "ap-south-1")
        );
        assert_eq!(anonymous.caller(Some("testing"), None).scope, default);
    }
}
