//! STS over the Query protocol, as SDK credential chains use it:
//!
//! - GetCallerIdentity: the account and principal the request acts as (the key's user,
//!   the account's root in anonymous mode, or the session's user or assumed role).
//! - GetSessionToken and AssumeRole: temporary credentials ([`crate::sts`]), accepted
//!   by every service (`X-Amz-Security-Token` in a header or a presigned URL).
//!   Kinescope has no IAM: a role is any `arn:aws:iam::ACCOUNT:role/NAME` of the caller's
//!   own account (another account's is AccessDenied), and a session may do what its
//!   caller may do.
//! - GetAccessKeyInfo: the account of a key id.
//!
//! Other actions are refused with AWS's `InvalidAction`; AssumeRoleWithWebIdentity and
//! AssumeRoleWithSAML need an identity provider Kinescope does not have.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;

use super::error::ApiError;
use super::protocol::{self, RequestId};
use super::registry::{BoxFuture, Operation, QueryService};
use crate::clock::SharedClock;
use crate::credentials::{Caller, SessionPrincipal};
use crate::sts::{SessionIssuer, MIN_DURATION_S};
use crate::wire::xml::Element;

pub const XML_NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// The `Version` an STS Query form carries (how unsigned forms are told from SQS's).
pub const API_VERSION: &str = "2011-06-15";

/// GetSessionToken's durations (AWS: 15 min to 36 h, 12 h by default).
const SESSION_TOKEN_MAX_S: i64 = 129_600;
const SESSION_TOKEN_DEFAULT_S: i64 = 43_200;
/// AssumeRole's (15 min to 12 h, 1 h by default; 1 h at most when a role's session
/// assumes a role: role chaining).
const ASSUME_ROLE_MAX_S: i64 = 43_200;
const ASSUME_ROLE_DEFAULT_S: i64 = 3_600;
const ROLE_CHAINING_MAX_S: i64 = 3_600;

/// The STS Query service.
pub struct Sts {
    pub sessions: Arc<SessionIssuer>,
    pub clock: SharedClock,
    /// Anonymous mode (no keys): any caller may act as any account already, so a role
    /// of another account may be assumed too (as LocalStack and moto allow).
    pub any_account_roles: bool,
}

/// `Arn`, `UserId` and `Account` of GetCallerIdentity for `caller`.
pub fn identity(caller: &Caller) -> (String, String, String) {
    let account = caller.scope.account.clone();
    let partition = caller.scope.partition();
    match (&caller.session, &caller.access_key_id) {
        (Some(SessionPrincipal::AssumedRole { role_arn, session_name }), _) => {
            let role = role_arn.rsplit('/').next().unwrap_or_default();
            (
                format!("arn:{partition}:sts::{account}:assumed-role/{role}/{session_name}"),
                format!("{}:{session_name}", role_id(role_arn)),
                account,
            )
        }
        (Some(SessionPrincipal::User { name }), _) => {
            (format!("arn:{partition}:iam::{account}:user/{name}"), name.clone(), account)
        }
        (None, Some(key)) => (format!("arn:{partition}:iam::{account}:user/{key}"), key.clone(), account),
        (None, None) => (format!("arn:{partition}:iam::{account}:root"), account.clone(), account),
    }
}

/// A role's id, as AWS shows it in `AssumedRoleId` (`AROA…`): stable for the role's ARN.
fn role_id(role_arn: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(role_arn.as_bytes());
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut id = String::from("AROA");
    id.extend(digest.iter().take(17).map(|b| char::from(alphabet[usize::from(b & 31)])));
    id
}

/// AWS's validation error of STS (Query: `ValidationError`, 400).
fn validation(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "ValidationError", message)
}

fn access_denied(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "AccessDenied", message)
}

/// The form's members, once each.
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `DurationSeconds`: `default` when absent, else `MIN_DURATION_S` to `max`.
    fn duration(&self, default: i64, max: i64) -> Result<i64, ApiError> {
        let Some(v) = self.get("DurationSeconds") else { return Ok(default) };
        match v.parse::<i64>() {
            Ok(d) if (MIN_DURATION_S..=max).contains(&d) => Ok(d),
            _ => Err(validation(format!(
                "1 validation error detected: Value '{v}' at 'durationSeconds' failed to satisfy constraint: Member must have value between {MIN_DURATION_S} and {max}"
            ))),
        }
    }
}

impl Sts {
    fn get_session_token(&self, form: &Form, caller: &Caller) -> Result<Element, ApiError> {
        let Some(key) = &caller.access_key_id else {
            return Err(access_denied("GetSessionToken needs a long-term access key; none signed this request."));
        };
        if caller.session.is_some() {
            return Err(access_denied("Cannot call GetSessionToken with session credentials"));
        }
        let duration = form.duration(SESSION_TOKEN_DEFAULT_S, SESSION_TOKEN_MAX_S)?;
        let principal = SessionPrincipal::User { name: key.clone() };
        Ok(self.issue(&caller.scope.account, principal, duration, "GetSessionTokenResult", None))
    }

    fn assume_role(&self, form: &Form, caller: &Caller) -> Result<Element, ApiError> {
        let role_arn = form.get("RoleArn").ok_or_else(|| validation("RoleArn is required."))?;
        let session_name = form.get("RoleSessionName").ok_or_else(|| validation("RoleSessionName is required."))?;
        let name_ok = (2..=64).contains(&session_name.len())
            && session_name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
        if !name_ok {
            return Err(validation(format!(
                "1 validation error detected: Value '{session_name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64"
            )));
        }
        let role_account = role_arn
            .strip_prefix("arn:")
            .and_then(|r| r.split_once(":iam::"))
            .and_then(|(_, rest)| rest.split_once(":role/"))
            .filter(|(account, name)| crate::scope::is_account(account) && !name.is_empty() && name.len() <= 64)
            .map(|(account, _)| account);
        let Some(role_account) = role_account else {
            return Err(validation(format!(
                "RoleArn '{role_arn}' is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)."
            )));
        };
        let (caller_arn, _, _) = identity(caller);
        if role_account != caller.scope.account && !self.any_account_roles {
            return Err(access_denied(format!(
                "User: {caller_arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn} (Kinescope's roles are the caller's own account's)"
            )));
        }
        let chained = matches!(caller.session, Some(SessionPrincipal::AssumedRole { .. }));
        let max = if chained { ROLE_CHAINING_MAX_S } else { ASSUME_ROLE_MAX_S };
        let duration = form.duration(ASSUME_ROLE_DEFAULT_S, ASSUME_ROLE_MAX_S)?;
        if duration > max {
            return Err(validation(
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
            ));
        }
        let principal =
            SessionPrincipal::AssumedRole { role_arn: role_arn.to_string(), session_name: session_name.to_string() };
        // The session acts in the role's account (the caller's own, but in anonymous mode).
        let mut user = Caller { session: Some(principal.clone()), ..caller.clone() };
        user.scope.account = role_account.to_string();
        let (arn, id, _) = identity(&user);
        let assumed =
            Element::new("AssumedRoleUser").child(Element::text("Arn", arn)).child(Element::text("AssumedRoleId", id));
        Ok(self.issue(role_account, principal, duration, "AssumeRoleResult", Some(assumed)))
    }

    fn issue(
        &self,
        account: &str,
        principal: SessionPrincipal,
        duration_s: i64,
        result: &str,
        extra: Option<Element>,
    ) -> Element {
        let now_s = self.clock.now_ms() / 1000;
        let random = crate::secrets::random_bytes::<10>().unwrap_or_else(|_| {
            // No randomness from the OS: the clock keeps ids apart (and the token is
            // still signed, so nothing can be forged from a guessed id).
            let n = self.clock.now_us().to_be_bytes();
            [n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], 0, 0]
        });
        let s = self.sessions.issue(account, principal, now_s, duration_s, random);
        let expiration = chrono::DateTime::from_timestamp(s.claims.expires_s, 0)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        let credentials = Element::new("Credentials")
            .child(Element::text("AccessKeyId", s.claims.access_key_id))
            .child(Element::text("SecretAccessKey", s.secret_access_key))
            .child(Element::text("SessionToken", s.session_token))
            .child(Element::text("Expiration", expiration));
        Element::new(result).child(credentials).children(extra)
    }
}

impl QueryService for Sts {
    fn call_query(&self, _path: &str, form: &[u8], request_id: RequestId, caller: Caller) -> BoxFuture<Response> {
        let form = Form(form_urlencoded::parse(form).map(|(k, v)| (k.into_owned(), v.into_owned())).collect());
        let action = form.get("Action").map(str::to_string);
        let result = match action.as_deref() {
            Some("GetCallerIdentity") => {
                let (arn, user_id, account) = identity(&caller);
                Ok(Element::new("GetCallerIdentityResult")
                    .child(Element::text("Arn", arn))
                    .child(Element::text("UserId", user_id))
                    .child(Element::text("Account", account)))
            }
            Some("GetSessionToken") => self.get_session_token(&form, &caller),
            Some("AssumeRole") => self.assume_role(&form, &caller),
            Some("GetAccessKeyInfo") => match form.get("AccessKeyId") {
                // Kinescope answers for the caller's own keys: its keys' accounts are
                // not for any caller to learn.
                Some(id) if Some(id) == caller.access_key_id.as_deref() => Ok(Element::new("GetAccessKeyInfoResult")
                    .child(Element::text("Account", caller.scope.account.clone()))),
                Some(_) => Err(access_denied("Kinescope tells a key's account to that key's holder only.")),
                None => Err(validation("AccessKeyId is required.")),
            },
            Some(other) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                format!(
                    "The action {other} is not valid for this web service. Kinescope's STS answers GetCallerIdentity, GetSessionToken, AssumeRole and GetAccessKeyInfo."
                ),
            )),
            None => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, "MissingAction", "The request must contain the parameter Action."))
            }
        };
        let response = match (result, action) {
            (Ok(result), Some(action)) => {
                let op: &'static str = match action.as_str() {
                    "GetCallerIdentity" => "GetCallerIdentity",
                    "GetSessionToken" => "GetSessionToken",
                    "AssumeRole" => "AssumeRole",
                    _ => "GetAccessKeyInfo",
                };
                let mut resp = protocol::query_response(op, XML_NAMESPACE, result, &request_id);
                resp.extensions_mut().insert(Operation(op));
                resp
            }
            (Err(e), _) => protocol::query_error(&e, XML_NAMESPACE, Some(&request_id)),
            (Ok(_), None) => {
                protocol::query_error(&validation("Action is required."), XML_NAMESPACE, Some(&request_id))
            }
        };
        Box::pin(async move { response })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scope;

    #[test]
    fn the_identity_is_the_keys_user_the_sessions_role_or_the_accounts_root() {
        let keyed = Caller {
            access_key_id: Some("AKID1".into()),
            scope: Scope::new("111111111111", "eu-west-1"),
            session: None,
        };
        assert_eq!(
            identity(&keyed),
            ("arn:aws:iam::111111111111:user/AKID1".into(), "AKID1".into(), "111111111111".into())
        );
        let unsigned = Caller { access_key_id: None, scope: Scope::new("222222222222", "cn-north-1"), session: None };
        assert_eq!(identity(&unsigned).0, "arn:aws-cn:iam::222222222222:root");
        let role = Caller {
            access_key_id: Some("ASIAAAAAAAAAAAAAAAAA".into()),
            scope: Scope::new("111111111111", "eu-west-1"),
            session: Some(SessionPrincipal::AssumedRole {
                role_arn: "arn:aws:iam::111111111111:role/reader".into(),
                session_name: "job-7".into(),
            }),
        };
        let (arn, id, _) = identity(&role);
        assert_eq!(arn, "arn:aws:sts::111111111111:assumed-role/reader/job-7");
        assert!(id.starts_with("AROA") && id.ends_with(":job-7"), "{id}");
        assert_eq!(identity(&role).1, id, "stable");
    }
}
