//! Server-side encryption as Firehose reports it: Start/StopDeliveryStreamEncryption,
//! and the configuration Create takes (Kinescope records it; it does not encrypt the
//! backlog).

use serde::Deserialize;

use super::{invalid, FirehoseState, NameInput};
use crate::api::error::ApiError;
use crate::api::protocol::Empty;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionInput {
    key_type: String,
    #[serde(rename = "KeyARN")]
    key_arn: Option<String>,
}

impl EncryptionInput {
    /// The key type and key, once they agree with each other.
    pub(super) fn checked(self) -> Result<(String, Option<String>), ApiError> {
        check_key_type(&self)?;
        Ok((self.key_type, self.key_arn))
    }
}

fn check_key_type(e: &EncryptionInput) -> Result<(), ApiError> {
    match (e.key_type.as_str(), &e.key_arn) {
        ("AWS_OWNED_CMK", None) => Ok(()),
        ("AWS_OWNED_CMK", Some(_)) => Err(invalid("KeyARN must not be given with KeyType AWS_OWNED_CMK.")),
        ("CUSTOMER_MANAGED_CMK", Some(_)) => Ok(()),
        ("CUSTOMER_MANAGED_CMK", None) => Err(invalid("KeyARN is required with KeyType CUSTOMER_MANAGED_CMK.")),
        (other, _) => Err(invalid(format!("KeyType '{other}' is not AWS_OWNED_CMK or CUSTOMER_MANAGED_CMK."))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartEncryptionInput {
    delivery_stream_name: String,
    delivery_stream_encryption_configuration_input: Option<EncryptionInput>,
}

pub async fn start_encryption(s: FirehoseState, i: StartEncryptionInput) -> Result<Empty, ApiError> {
    let e = i
        .delivery_stream_encryption_configuration_input
        .unwrap_or(EncryptionInput { key_type: "AWS_OWNED_CMK".into(), key_arn: None });
    s.engine.set_encryption(&s.id(&i.delivery_stream_name), Some(e.checked()?))?;
    Ok(Empty {})
}

pub async fn stop_encryption(s: FirehoseState, i: NameInput) -> Result<Empty, ApiError> {
    s.engine.set_encryption(&s.id(&i.delivery_stream_name), None)?;
    Ok(Empty {})
}
