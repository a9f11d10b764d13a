//! Messages as the engine stores them, and the checks SQS makes of what a sender gives.
//! Pure: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::QueueError;
pub use crate::wire::sqs_md5::AttributeValue;
use crate::wire::sqs_md5::{attributes_md5, md5_hex};

/// A message attribute: its data type (`String`, `Number`, `Binary`, optionally with a
/// custom `.suffix`) and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAttribute {
    pub data_type: String,
    pub value: AttributeValue,
}

impl MessageAttribute {
    /// Bytes counted toward the message size: name, type and value.
    fn size(&self, name: &str) -> usize {
        name.len()
            + self.data_type.len()
            + match &self.value {
                AttributeValue::String(s) => s.len(),
                AttributeValue::Binary(b) => b.len(),
            }
    }
}

/// One stored message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub seq: u64,
    pub id: String,
    pub body: String,
    pub attributes: BTreeMap<String, MessageAttribute>,
    /// `AWSTraceHeader`, the one system attribute a sender may set.
    pub system_attributes: BTreeMap<String, MessageAttribute>,
    /// When the message was first sent (kept when it moves to a dead-letter queue).
    pub sent_ms: i64,
    pub sender_id: String,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub sequence_number: Option<String>,
    pub receive_count: u32,
    pub first_receive_ms: Option<i64>,
    /// Hidden (delayed or in flight) until this time.
    pub visible_at_ms: i64,
    pub dead_letter_source_arn: Option<String>,
    /// Where the store keeps its payload, if apart from this record (see
    /// [`super::store::PayloadRef`]; the embedded store's format-2 records held the
    /// payload inline instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_ref: Option<super::store::PayloadRef>,
}

/// What the sender sent: body and attributes. Kept in the payload log only (the engine
/// holds messages without it, so a backlog costs memory per message, not per byte) and
/// read back when the message is received.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePayload {
    pub body: String,
    pub attributes: BTreeMap<String, MessageAttribute>,
    pub system_attributes: BTreeMap<String, MessageAttribute>,
}

impl StoredMessage {
    /// The message without its payload: what the engine keeps in memory and what the
    /// store's metadata record holds.
    pub fn without_payload(&self) -> StoredMessage {
        StoredMessage {
            body: String::new(),
            attributes: BTreeMap::new(),
            system_attributes: BTreeMap::new(),
            ..self.clone()
        }
    }

    /// Whether the payload is here (a message just sent, or read back).
    pub fn has_payload(&self) -> bool {
        !self.body.is_empty()
    }

    pub fn payload(&self) -> MessagePayload {
        MessagePayload {
            body: self.body.clone(),
            attributes: self.attributes.clone(),
            system_attributes: self.system_attributes.clone(),
        }
    }

    pub fn with_payload(self, p: MessagePayload) -> StoredMessage {
        StoredMessage { body: p.body, attributes: p.attributes, system_attributes: p.system_attributes, ..self }
    }

    pub fn md5_of_body(&self) -> String {
        md5_hex(self.body.as_bytes())
    }

    pub fn md5_of_attributes(&self) -> Option<String> {
        attributes_md5(self.attributes.iter().map(|(n, a)| (n.as_str(), a.data_type.as_str(), &a.value)))
    }

    pub fn md5_of_system_attributes(&self) -> Option<String> {
        attributes_md5(self.system_attributes.iter().map(|(n, a)| (n.as_str(), a.data_type.as_str(), &a.value)))
    }
}

/// Whether a body uses only the characters SQS allows: #x9 #xA #xD #x20-#xD7FF
/// #xE000-#xFFFD #x10000-#x10FFFF.
pub fn check_body(body: &str) -> Result<(), QueueError> {
    if body.is_empty() {
        return Err(QueueError::MissingParameter("The request must contain the parameter MessageBody.".into()));
    }
    if let Some(c) = body
        .chars()
        .find(|&c| !matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF))
    {
        return Err(QueueError::InvalidMessageContents(format!(
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF (found U+{:04X})",
            c as u32
        )));
    }
    Ok(())
}

/// Checks message attributes (names, types, values); returns the bytes they count.
pub fn check_attributes(attrs: &BTreeMap<String, MessageAttribute>) -> Result<usize, QueueError> {
    if attrs.len() > 10 {
        return Err(QueueError::InvalidParameterValue(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [10].",
            attrs.len()
        )));
    }
    let mut size = 0;
    for (name, a) in attrs {
        check_attribute_name(name)?;
        let base = a.data_type.split('.').next().unwrap_or("");
        if !matches!(base, "String" | "Number" | "Binary") || a.data_type.len() > 256 {
            return Err(QueueError::InvalidParameterValue(format!(
                "The message attribute '{name}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String."
            )));
        }
        let ok = match (base, &a.value) {
            ("String" | "Number", AttributeValue::String(s)) => !s.is_empty(),
            ("Binary", AttributeValue::Binary(b)) => !b.is_empty(),
            _ => false,
        };
        if !ok {
            return Err(QueueError::InvalidParameterValue(format!(
                "The message attribute '{name}' must contain a non-empty message attribute value for message attribute type '{base}'."
            )));
        }
        if let ("Number", AttributeValue::String(s)) = (base, &a.value) {
            if !is_number(s) {
                return Err(QueueError::InvalidParameterValue(format!(
                    "Can't cast the value of message (user) attribute '{name}' to a number."
                )));
            }
        }
        if let AttributeValue::String(s) = &a.value {
            check_body(s).map_err(|_| {
                QueueError::InvalidParameterValue(format!("Message attribute '{name}' has invalid characters"))
            })?;
        }
        size += a.size(name);
    }
    Ok(size)
}

fn is_number(s: &str) -> bool {
    s.trim().parse::<f64>().is_ok_and(f64::is_finite)
}

fn check_attribute_name(name: &str) -> Result<(), QueueError> {
    let lower = name.to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 256
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.")
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(QueueError::InvalidParameterValue(format!(
            "The message attribute name '{name}' is invalid. Attribute name can contain A-Z, a-z, 0-9, underscore (_), hyphen (-), and period (.) characters."
        )))
    }
}

/// MessageGroupId and MessageDeduplicationId: 1-128 alphanumerics and punctuation.
pub fn check_fifo_id(what: &str, id: &str) -> Result<(), QueueError> {
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(QueueError::InvalidParameterValue(format!(
            "Value {id} for parameter {what} is invalid. Reason: it must be 1 to 128 alphanumeric or punctuation characters."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert!(check_body("hello\tworld\n✓ 𝄞").is_ok());
        assert!(matches!(check_body("bad\u{1}"), Err(QueueError::InvalidMessageContents(_))));
        assert!(matches!(check_body("\u{FFFE}"), Err(QueueError::InvalidMessageContents(_))));
        assert!(matches!(check_body(""), Err(QueueError::MissingParameter(_))));
    }

    #[test]
    fn attributes() {
        let one = |name: &str, t: &str, v: AttributeValue| {
            let mut m = BTreeMap::new();
            m.insert(name.to_string(), MessageAttribute { data_type: t.into(), value: v });
            check_attributes(&m)
        };
        assert_eq!(one("camera", "String", AttributeValue::String("lobby".into())).unwrap(), 6 + 6 + 5);
        assert!(one("n", "Number.int", AttributeValue::String("42".into())).is_ok());
        assert!(one("n", "Number", AttributeValue::String("forty".into())).is_err());
        assert!(one("b", "Binary", AttributeValue::Binary(vec![1])).is_ok());
        assert!(one("b", "Binary", AttributeValue::String("x".into())).is_err());
        assert!(one("AWS.thing", "String", AttributeValue::String("x".into())).is_err());
        assert!(one("a..b", "String", AttributeValue::String("x".into())).is_err());
        assert!(one("x", "Blob", AttributeValue::String("x".into())).is_err());
    }
}
