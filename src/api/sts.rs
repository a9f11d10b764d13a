//! STS over the Query protocol: GetCallerIdentity, which the aws CLI, Terraform and
//! many SDK set-ups call first to learn the account they act in. Every other STS
//! action is refused with AWS's `InvalidAction`: Kinescope issues no temporary
//! credentials.
//!
//! The answer is the caller the SigV4 layer found: the account of the access key (or of
//! a twelve-digit key id in anonymous mode), an IAM user named after the key, or the
//! account's root when the request carried no key.

use axum::http::StatusCode;
use axum::response::Response;

use super::error::ApiError;
use super::protocol::{self, RequestId};
use super::registry::{BoxFuture, Operation, QueryService};
use crate::credentials::Caller;
use crate::wire::xml::Element;

pub const XML_NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// The `Version` an STS Query form carries (how unsigned forms are told from SQS's).
pub const API_VERSION: &str = "2011-06-15";

/// The STS Query service.
pub struct Sts;

/// `Arn`, `UserId` and `Account` of GetCallerIdentity for `caller`.
pub fn identity(caller: &Caller) -> (String, String, String) {
    let account = caller.scope.account.clone();
    let partition = caller.scope.partition();
    match &caller.access_key_id {
        Some(key) => (format!("arn:{partition}:iam::{account}:user/{key}"), key.clone(), account),
        None => (format!("arn:{partition}:iam::{account}:root"), account.clone(), account),
    }
}

impl QueryService for Sts {
    fn call_query(&self, _path: &str, form: &[u8], request_id: RequestId, caller: Caller) -> BoxFuture<Response> {
        let action = form_urlencoded::parse(form).find(|(k, _)| k == "Action").map(|(_, v)| v.into_owned());
        let response = match action.as_deref() {
            Some("GetCallerIdentity") => {
                let (arn, user_id, account) = identity(&caller);
                let result = Element::new("GetCallerIdentityResult")
                    .child(Element::text("Arn", arn))
                    .child(Element::text("UserId", user_id))
                    .child(Element::text("Account", account));
                let mut resp = protocol::query_response("GetCallerIdentity", XML_NAMESPACE, result, &request_id);
                resp.extensions_mut().insert(Operation("GetCallerIdentity"));
                resp
            }
            Some(other) => {
                let e = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidAction",
                    format!(
                        "The action {other} is not valid for this web service. Kinescope's STS answers GetCallerIdentity only."
                    ),
                );
                protocol::query_error(&e, XML_NAMESPACE, Some(&request_id))
            }
            None => {
                let e = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "MissingAction",
                    "The request must contain the parameter Action.",
                );
                protocol::query_error(&e, XML_NAMESPACE, Some(&request_id))
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
    fn the_identity_is_the_keys_user_or_the_accounts_root() {
        let keyed = Caller { access_key_id: Some("AKID1".into()), scope: Scope::new("111111111111", "eu-west-1") };
        assert_eq!(
            identity(&keyed),
            ("arn:aws:iam::111111111111:user/AKID1".into(), "AKID1".into(), "111111111111".into())
        );
        let unsigned = Caller { access_key_id: None, scope: Scope::new("222222222222", "cn-north-1") };
        assert_eq!(identity(&unsigned).0, "arn:aws-cn:iam::222222222222:root");
    }
}
