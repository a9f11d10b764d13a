//! Message operations: SendMessage(Batch), ReceiveMessage, DeleteMessage(Batch),
//! ChangeMessageVisibility(Batch).

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{invalid, lenient, missing, SqsState};
use crate::api::error::ApiError;
use crate::api::protocol::Empty;
use crate::queues::message::{AttributeValue, MessageAttribute, StoredMessage};
use crate::queues::{invalid_value, QueueError, QueueId, ReceiveRequest, SendRequest, SendResult};

type Result<T> = std::result::Result<T, QueueError>;

/// Message attributes as sent (`{"name": {"DataType": …, "StringValue": …}}`), checked
/// as SQS checks them.
fn message_attributes(v: Option<&Value>, name: &str) -> Result<BTreeMap<String, MessageAttribute>> {
    let Some(Value::Object(m)) = v else {
        return match v {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            _ => Err(invalid(name, "must be a map")),
        };
    };
    let mut out = BTreeMap::new();
    for (k, a) in m {
        let data_type = a.get("DataType").and_then(Value::as_str).ok_or_else(|| {
            QueueError::InvalidParameterValue(format!("The message attribute '{k}' must contain a non-empty DataType."))
        })?;
        if a.get("StringListValues").is_some_and(|v| !v.is_null())
            || a.get("BinaryListValues").is_some_and(|v| !v.is_null())
        {
            return Err(QueueError::UnsupportedOperation(
                "StringListValues and BinaryListValues are not implemented".into(),
            ));
        }
        let value = if data_type.starts_with("Binary") {
            let b64 = a.get("BinaryValue").and_then(Value::as_str).ok_or_else(|| {
                QueueError::InvalidParameterValue(format!(
                    "The message attribute '{k}' with type 'Binary' must use field 'Binary'."
                ))
            })?;
            AttributeValue::Binary(BASE64.decode(b64).map_err(|_| invalid(name, "BinaryValue is not base64"))?)
        } else {
            let s = a.get("StringValue").and_then(Value::as_str).ok_or_else(|| {
                QueueError::InvalidParameterValue(format!("The message attribute '{k}' must contain a non-empty message attribute value for message attribute type '{data_type}'."))
            })?;
            AttributeValue::String(s.to_string())
        };
        out.insert(k.clone(), MessageAttribute { data_type: data_type.to_string(), value });
    }
    Ok(out)
}

/// A message to send: SendMessage's input (with its QueueUrl), and each
/// SendMessageBatch entry (with its Id). No `flatten`, so a bad member is named in
/// the error.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageInput {
    queue_url: Option<String>,
    id: Option<String>,
    message_body: Option<String>,
    #[serde(default, deserialize_with = "lenient::int")]
    delay_seconds: Option<i64>,
    message_attributes: Option<Value>,
    message_system_attributes: Option<Value>,
    message_group_id: Option<String>,
    message_deduplication_id: Option<String>,
}

impl MessageInput {
    fn request(self) -> Result<SendRequest> {
        let body = self.message_body.ok_or_else(|| missing("MessageBody"))?;
        let delay_s = self
            .delay_seconds
            .map(|d| {
                u32::try_from(d).map_err(|_| invalid_value(d, "DelaySeconds", "DelaySeconds must be >= 0 and <= 900."))
            })
            .transpose()?;
        Ok(SendRequest {
            body,
            delay_s,
            attributes: message_attributes(self.message_attributes.as_ref(), "MessageAttributes")?,
            system_attributes: message_attributes(self.message_system_attributes.as_ref(), "MessageSystemAttributes")?,
            group_id: self.message_group_id,
            dedup_id: self.message_deduplication_id,
        })
    }

    /// What counts against the batch's 1 MiB: the body and the attributes as sent.
    fn size(&self) -> usize {
        self.message_body.as_ref().map_or(0, String::len)
            + self.message_attributes.as_ref().map_or(0, |a| a.to_string().len())
    }
}

/// What a send answers (SendMessage, and each successful batch entry with its Id).
#[derive(Serialize)]
pub struct SendOutput {
    #[serde(rename = "MessageId")]
    message_id: String,
    #[serde(rename = "MD5OfMessageBody")]
    md5_of_message_body: String,
    #[serde(rename = "MD5OfMessageAttributes", skip_serializing_if = "Option::is_none")]
    md5_of_message_attributes: Option<String>,
    #[serde(rename = "MD5OfMessageSystemAttributes", skip_serializing_if = "Option::is_none")]
    md5_of_message_system_attributes: Option<String>,
    #[serde(rename = "SequenceNumber", skip_serializing_if = "Option::is_none")]
    sequence_number: Option<String>,
}

impl From<SendResult> for SendOutput {
    fn from(r: SendResult) -> Self {
        SendOutput {
            message_id: r.message_id,
            md5_of_message_body: r.md5_of_body,
            md5_of_message_attributes: r.md5_of_attributes,
            md5_of_message_system_attributes: r.md5_of_system_attributes,
            sequence_number: r.sequence_number,
        }
    }
}

pub async fn send_message(s: SqsState, i: MessageInput) -> Result<SendOutput> {
    let name = s.queue_name(i.queue_url.as_deref().ok_or_else(|| missing("QueueUrl"))?)?;
    Ok(s.engine.send(&name, i.request()?).await?.into())
}

/// A batch entry's answer: success with its Id, or failure with its error.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchFailure {
    id: String,
    sender_fault: bool,
    code: &'static str,
    message: String,
}

impl BatchFailure {
    fn of(id: &str, e: QueueError) -> Self {
        // A batch names the handle it refuses; the single operations do not.
        let message = match &e {
            QueueError::ReceiptHandleIsInvalid(h) => {
                Some(format!("The input receipt handle \"{h}\" is not a valid receipt handle."))
            }
            _ => None,
        };
        let w = ApiError::from(e);
        let message = message.unwrap_or(w.message);
        BatchFailure { id: id.to_string(), sender_fault: !w.status.is_server_error(), code: w.code, message }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchOutput<T> {
    successful: Vec<T>,
    failed: Vec<BatchFailure>,
}

#[derive(Serialize)]
pub struct SentEntry {
    #[serde(rename = "Id")]
    id: String,
    #[serde(flatten)]
    sent: SendOutput,
}

/// The entries of batch operation `op`: 1 to 10, with distinct, well-formed ids.
fn check_entries<T>(op: &'static str, entries: Option<Vec<T>>, id: impl Fn(&T) -> Option<&str>) -> Result<Vec<T>> {
    let entries = entries.ok_or_else(|| missing("Entries"))?;
    if entries.is_empty() {
        return Err(QueueError::EmptyBatchRequest(op));
    }
    if entries.len() > 10 {
        return Err(QueueError::TooManyEntriesInBatchRequest(entries.len()));
    }
    for (n, e) in entries.iter().enumerate() {
        let i = id(e).ok_or_else(|| missing("Id"))?;
        if i.is_empty() || i.len() > 80 || !i.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(QueueError::InvalidBatchEntryId(i.to_string()));
        }
        if entries[..n].iter().any(|other| id(other) == Some(i)) {
            return Err(QueueError::BatchEntryIdsNotDistinct(i.to_string()));
        }
    }
    Ok(entries)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendMessageBatchInput {
    queue_url: String,
    entries: Option<Vec<MessageInput>>,
}

pub async fn send_message_batch(s: SqsState, i: SendMessageBatchInput) -> Result<BatchOutput<SentEntry>> {
    let name = s.queue_name(&i.queue_url)?;
    let mut entries = check_entries("SendMessageBatch", i.entries, |e| e.id.as_deref())?;
    let total: usize = entries.iter().map(MessageInput::size).sum();
    if total > crate::queues::MAX_BATCH_BYTES {
        return Err(QueueError::BatchRequestTooLong(total));
    }
    let (mut ids, mut requests, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for mut e in entries.drain(..) {
        let id = e.id.take().unwrap_or_default();
        match e.request() {
            Ok(r) => {
                ids.push(id);
                requests.push(r);
            }
            Err(err) => failed.push(BatchFailure::of(&id, err)),
        }
    }
    let mut successful = Vec::new();
    for (id, r) in ids.into_iter().zip(s.engine.send_batch(&name, requests).await?) {
        match r {
            Ok(r) => successful.push(SentEntry { id, sent: r.into() }),
            Err(err) => failed.push(BatchFailure::of(&id, err)),
        }
    }
    Ok(BatchOutput { successful, failed })
}

const SYSTEM_ATTRIBUTES: [&str; 10] = [
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageDeduplicationId",
    "MessageGroupId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
    "All",
];

/// Whether a received message attribute is asked for: `All`, `.*`, `prefix.*` (every
/// name that starts with the prefix), or its exact name.
fn wanted(name: &str, asked: &[String]) -> bool {
    asked
        .iter()
        .any(|a| a == "All" || a == ".*" || a == name || a.strip_suffix(".*").is_some_and(|p| name.starts_with(p)))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReceiveMessageInput {
    queue_url: String,
    #[serde(default, deserialize_with = "lenient::int")]
    max_number_of_messages: Option<i64>,
    #[serde(default, deserialize_with = "lenient::int")]
    visibility_timeout: Option<i64>,
    #[serde(default, deserialize_with = "lenient::int")]
    wait_time_seconds: Option<i64>,
    #[serde(default, deserialize_with = "lenient::strings")]
    message_system_attribute_names: Vec<String>,
    #[serde(default, deserialize_with = "lenient::strings")]
    attribute_names: Vec<String>,
    #[serde(default, deserialize_with = "lenient::strings")]
    message_attribute_names: Vec<String>,
    receive_request_attempt_id: Option<String>,
}

#[derive(Serialize)]
pub struct AttributeOut {
    #[serde(rename = "DataType")]
    data_type: String,
    #[serde(rename = "StringValue", skip_serializing_if = "Option::is_none")]
    string_value: Option<String>,
    #[serde(rename = "BinaryValue", skip_serializing_if = "Option::is_none")]
    binary_value: Option<String>,
}

impl From<&MessageAttribute> for AttributeOut {
    fn from(a: &MessageAttribute) -> Self {
        let (string_value, binary_value) = match &a.value {
            AttributeValue::String(s) => (Some(s.clone()), None),
            AttributeValue::Binary(b) => (None, Some(BASE64.encode(b))),
        };
        AttributeOut { data_type: a.data_type.clone(), string_value, binary_value }
    }
}

#[derive(Serialize)]
pub struct MessageOut {
    #[serde(rename = "MessageId")]
    message_id: String,
    #[serde(rename = "ReceiptHandle")]
    receipt_handle: String,
    #[serde(rename = "MD5OfBody")]
    md5_of_body: String,
    #[serde(rename = "Body")]
    body: String,
    #[serde(rename = "Attributes", skip_serializing_if = "BTreeMap::is_empty")]
    attributes: BTreeMap<&'static str, String>,
    #[serde(rename = "MD5OfMessageAttributes", skip_serializing_if = "Option::is_none")]
    md5_of_message_attributes: Option<String>,
    #[serde(rename = "MessageAttributes", skip_serializing_if = "BTreeMap::is_empty")]
    message_attributes: BTreeMap<String, AttributeOut>,
}

impl MessageOut {
    /// The message with the system attributes in `system` and the user attributes
    /// `user` asks for.
    fn of(m: &StoredMessage, handle: &str, system: &[String], user: &[String]) -> Self {
        let all = system.iter().any(|s| s == "All");
        let mut attributes = BTreeMap::new();
        let mut put = |k: &'static str, v: Option<String>| {
            if let Some(v) = v.filter(|_| all || system.iter().any(|s| s == k)) {
                attributes.insert(k, v);
            }
        };
        put("SenderId", Some(m.sender_id.clone()));
        put("SentTimestamp", Some(m.sent_ms.to_string()));
        put("ApproximateReceiveCount", Some(m.receive_count.to_string()));
        put("ApproximateFirstReceiveTimestamp", m.first_receive_ms.map(|t| t.to_string()));
        put("SequenceNumber", m.sequence_number.clone());
        put("MessageDeduplicationId", m.dedup_id.clone());
        put("MessageGroupId", m.group_id.clone());
        put("DeadLetterQueueSourceArn", m.dead_letter_source_arn.clone());
        if let Some(AttributeValue::String(t)) = m.system_attributes.get("AWSTraceHeader").map(|a| &a.value) {
            put("AWSTraceHeader", Some(t.clone()));
        }
        let chosen: BTreeMap<String, MessageAttribute> =
            m.attributes.iter().filter(|(k, _)| wanted(k, user)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let md5_of_message_attributes = (!chosen.is_empty())
            .then(|| StoredMessage { attributes: chosen.clone(), ..m.clone() }.md5_of_attributes())
            .flatten();
        MessageOut {
            message_id: m.id.clone(),
            receipt_handle: handle.to_string(),
            md5_of_body: m.md5_of_body(),
            body: m.body.clone(),
            attributes,
            md5_of_message_attributes,
            message_attributes: chosen.iter().map(|(k, a)| (k.clone(), a.into())).collect(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReceiveMessageOutput {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    messages: Vec<MessageOut>,
}

pub async fn receive_message(s: SqsState, i: ReceiveMessageInput) -> Result<ReceiveMessageOutput> {
    let name = s.queue_name(&i.queue_url)?;
    let max = i.max_number_of_messages.unwrap_or(1);
    if let Some(v) = i.visibility_timeout.filter(|v| !(0..=43_200).contains(v)) {
        return Err(invalid_value(v, "VisibilityTimeout", "Must be >= 0 and <= 43200, if provided."));
    }
    if let Some(w) = i.wait_time_seconds.filter(|w| !(0..=20).contains(w)) {
        return Err(QueueError::InvalidParameterValue(format!(
            "Value {w} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
        )));
    }
    let mut system = i.message_system_attribute_names;
    system.extend(i.attribute_names);
    if let Some(bad) = system.iter().find(|s| !SYSTEM_ATTRIBUTES.contains(&s.as_str())) {
        return Err(QueueError::InvalidAttributeName(format!("Unknown Attribute {bad}.")));
    }
    let request = ReceiveRequest {
        max_messages: u32::try_from(max).unwrap_or(0),
        visibility_timeout_s: i.visibility_timeout.map(|v| v as u32),
        wait_time_s: i.wait_time_seconds.map(|w| w as u32),
        attempt_id: i.receive_request_attempt_id,
    };
    let got = s.engine.receive(&name, request).await?;
    let user = &i.message_attribute_names;
    Ok(ReceiveMessageOutput {
        messages: got.iter().map(|r| MessageOut::of(&r.message, &r.receipt_handle, &system, user)).collect(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteMessageInput {
    queue_url: String,
    receipt_handle: String,
}

pub async fn delete_message(s: SqsState, i: DeleteMessageInput) -> Result<Empty> {
    s.engine.delete_message(&s.queue_name(&i.queue_url)?, &i.receipt_handle)?;
    Ok(Empty {})
}

/// A DeleteMessageBatch or ChangeMessageVisibilityBatch entry.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandleEntry {
    id: String,
    receipt_handle: Option<String>,
    #[serde(default, deserialize_with = "lenient::int")]
    visibility_timeout: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandleBatchInput {
    queue_url: String,
    entries: Option<Vec<HandleEntry>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EntryId {
    id: String,
}

/// Runs `f` on each entry's receipt handle; a missing queue fails the whole batch.
fn handle_batch(
    s: &SqsState,
    op: &'static str,
    i: HandleBatchInput,
    f: impl Fn(&QueueId, &str, &HandleEntry) -> Result<()>,
) -> Result<BatchOutput<EntryId>> {
    let name = s.queue_name(&i.queue_url)?;
    let entries = check_entries(op, i.entries, |e| Some(e.id.as_str()))?;
    let (mut successful, mut failed) = (Vec::new(), Vec::new());
    for e in entries {
        let r = e.receipt_handle.as_deref().ok_or_else(|| missing("ReceiptHandle")).and_then(|h| f(&name, h, &e));
        match r {
            Ok(()) => successful.push(EntryId { id: e.id }),
            Err(QueueError::QueueDoesNotExist) => return Err(QueueError::QueueDoesNotExist),
            Err(err) => failed.push(BatchFailure::of(&e.id, err)),
        }
    }
    Ok(BatchOutput { successful, failed })
}

pub async fn delete_message_batch(s: SqsState, i: HandleBatchInput) -> Result<BatchOutput<EntryId>> {
    handle_batch(&s, "DeleteMessageBatch", i, |queue, handle, _| s.engine.delete_message(queue, handle))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChangeMessageVisibilityInput {
    queue_url: String,
    receipt_handle: String,
    #[serde(default, deserialize_with = "lenient::int")]
    visibility_timeout: Option<i64>,
}

pub async fn change_message_visibility(s: SqsState, i: ChangeMessageVisibilityInput) -> Result<Empty> {
    let name = s.queue_name(&i.queue_url)?;
    let timeout = i.visibility_timeout.ok_or_else(|| missing("VisibilityTimeout"))?;
    s.engine.change_visibility(&name, &i.receipt_handle, timeout)?;
    Ok(Empty {})
}

pub async fn change_message_visibility_batch(s: SqsState, i: HandleBatchInput) -> Result<BatchOutput<EntryId>> {
    handle_batch(&s, "ChangeMessageVisibilityBatch", i, |queue, handle, e| {
        let timeout = e.visibility_timeout.ok_or_else(|| missing("VisibilityTimeout"))?;
        s.engine.change_visibility(queue, handle, timeout)
    })
}
