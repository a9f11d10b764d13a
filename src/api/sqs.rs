//! SQS over the AWS JSON 1.0 protocol (`X-Amz-Target: AmazonSQS.<Op>`): a thin adapter
//! over [`crate::queues::QueueEngine`]. Requests name queues by URL
//! (`http://HOST:PORT/ACCOUNT/NAME`); errors carry `__type` `com.amazonaws.sqs#Code`
//! and the `x-amzn-query-error` legacy code, as SQS sends them.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::dispatch::{JsonFuture, JsonService};
use super::error::ApiError;
use crate::queues::message::{AttributeValue, MessageAttribute, StoredMessage};
use crate::queues::{QueueEngine, QueueError, ReceiveRequest, SendRequest};

pub const TARGET_PREFIX: &str = "AmazonSQS";
const NAMESPACE: &str = "com.amazonaws.sqs";

/// Maps an engine error to SQS's wire error, once.
pub fn wire_error(e: QueueError) -> ApiError {
    use QueueError::*;
    let bad = StatusCode::BAD_REQUEST;
    let (status, code, legacy) = match &e {
        QueueDoesNotExist => (bad, "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"),
        QueueNameExists(_) => (bad, "QueueNameExists", "QueueAlreadyExists"),
        QueueDeletedRecently => (bad, "QueueDeletedRecently", "AWS.SimpleQueueService.QueueDeletedRecently"),
        InvalidParameterValue(_) => (bad, "InvalidParameterValue", "InvalidParameterValue"),
        MissingParameter(_) => (bad, "MissingParameter", "MissingParameter"),
        InvalidAttributeName(_) => (bad, "InvalidAttributeName", "InvalidAttributeName"),
        InvalidAttributeValue(_) => (bad, "InvalidAttributeValue", "InvalidAttributeValue"),
        InvalidMessageContents(_) => (bad, "InvalidMessageContents", "InvalidMessageContents"),
        ReceiptHandleIsInvalid(_) => (bad, "ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid"),
        MessageNotInflight => (bad, "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight"),
        PurgeQueueInProgress(_) => {
            (StatusCode::FORBIDDEN, "PurgeQueueInProgress", "AWS.SimpleQueueService.PurgeQueueInProgress")
        }
        OverLimit(_) => (StatusCode::FORBIDDEN, "OverLimit", "OverLimit"),
        TooManyEntriesInBatchRequest(_) => {
            (bad, "TooManyEntriesInBatchRequest", "AWS.SimpleQueueService.TooManyEntriesInBatchRequest")
        }
        EmptyBatchRequest => (bad, "EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest"),
        BatchEntryIdsNotDistinct(_) => {
            (bad, "BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct")
        }
        InvalidBatchEntryId(_) => (bad, "InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId"),
        BatchRequestTooLong(_) => (bad, "BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong"),
        ResourceNotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFoundException", "ResourceNotFoundException"),
        UnsupportedOperation(_) => (bad, "UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation"),
        Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "InternalError"),
    };
    if status.is_server_error() {
        tracing::error!(error = %e, "queue engine failure");
    }
    ApiError::query_compatible(status, NAMESPACE, code, legacy, e.to_string())
}

/// The SQS JSON service, registered under `AmazonSQS`.
pub struct SqsService {
    pub engine: QueueEngine,
    /// `http://HOST:PORT`, the base of queue URLs.
    pub base_url: String,
}

fn ok(v: Value) -> Response {
    let mut resp = (StatusCode::OK, v.to_string()).into_response();
    resp.headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/x-amz-json-1.0"));
    resp
}

fn missing(name: &str) -> QueueError {
    QueueError::MissingParameter(format!("The request must contain the parameter {name}."))
}

fn invalid(name: &str, why: &str) -> QueueError {
    QueueError::InvalidParameterValue(format!("Value for parameter {name} is invalid. Reason: {why}"))
}

/// A request body with typed access to its members.
pub(crate) struct Input(pub(crate) Map<String, Value>);

impl Input {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let body = if body.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { body };
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(Input(m)),
            _ => Err(ApiError::query_compatible(
                StatusCode::BAD_REQUEST,
                NAMESPACE,
                "InvalidParameterValue",
                "InvalidParameterValue",
                "The request body is not a JSON object",
            )),
        }
    }

    fn str(&self, name: &str) -> Result<Option<&str>, QueueError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(name, "must be a string")),
        }
    }

    fn req_str(&self, name: &str) -> Result<&str, QueueError> {
        self.str(name)?.ok_or_else(|| missing(name))
    }

    fn int(&self, name: &str) -> Result<Option<i64>, QueueError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| invalid(name, "must be an integer")),
            Some(Value::String(s)) => s.parse().map(Some).map_err(|_| invalid(name, "must be an integer")),
            Some(_) => Err(invalid(name, "must be an integer")),
        }
    }

    fn string_map(&self, name: &str) -> Result<BTreeMap<String, String>, QueueError> {
        string_map(self.0.get(name), name)
    }

    fn string_list(&self, name: &str) -> Result<Vec<String>, QueueError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| invalid(name, "must be a list of strings")))
                .collect(),
            Some(_) => Err(invalid(name, "must be a list of strings")),
        }
    }

    fn entries(&self) -> Result<Vec<Input>, QueueError> {
        let list = match self.0.get("Entries") {
            None | Some(Value::Null) => return Err(missing("Entries")),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(invalid("Entries", "must be a list")),
        };
        if list.is_empty() {
            return Err(QueueError::EmptyBatchRequest);
        }
        if list.len() > 10 {
            return Err(QueueError::TooManyEntriesInBatchRequest(list.len()));
        }
        let mut out = Vec::with_capacity(list.len());
        let mut ids: Vec<String> = Vec::new();
        for e in list {
            let Value::Object(m) = e else { return Err(invalid("Entries", "each entry must be an object")) };
            let entry = Input(m.clone());
            let id = entry.req_str("Id")?.to_string();
            if id.is_empty() || id.len() > 80 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(QueueError::InvalidBatchEntryId(id));
            }
            if ids.contains(&id) {
                return Err(QueueError::BatchEntryIdsNotDistinct(id));
            }
            ids.push(id);
            out.push(entry);
        }
        Ok(out)
    }
}

fn string_map(v: Option<&Value>, name: &str) -> Result<BTreeMap<String, String>, QueueError> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Number(n) => Ok((k.clone(), n.to_string())),
                Value::Bool(b) => Ok((k.clone(), b.to_string())),
                _ => Err(invalid(name, "values must be strings")),
            })
            .collect(),
        Some(_) => Err(invalid(name, "must be a map")),
    }
}

fn message_attributes(v: Option<&Value>, name: &str) -> Result<BTreeMap<String, MessageAttribute>, QueueError> {
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

fn attribute_json(a: &MessageAttribute) -> Value {
    match &a.value {
        AttributeValue::String(s) => json!({ "DataType": a.data_type, "StringValue": s }),
        AttributeValue::Binary(b) => json!({ "DataType": a.data_type, "BinaryValue": BASE64.encode(b) }),
    }
}

/// Whether a received message attribute is asked for (`All`, `.*`, `prefix.*`, exact).
fn wanted(name: &str, asked: &[String]) -> bool {
    asked.iter().any(|a| {
        a == "All"
            || a == ".*"
            || a == name
            || a.strip_suffix(".*").is_some_and(|p| name.starts_with(p) && name[p.len()..].starts_with('.'))
    })
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

fn message_json(m: &StoredMessage, handle: &str, system: &[String], user: &[String]) -> Value {
    let mut out = json!({
        "MessageId": m.id,
        "ReceiptHandle": handle,
        "MD5OfBody": m.md5_of_body(),
        "Body": m.body,
    });
    let all = system.iter().any(|s| s == "All");
    let mut attrs = Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            if all || system.iter().any(|s| s == k) {
                attrs.insert(k.to_string(), Value::String(v));
            }
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
    if !attrs.is_empty() {
        out["Attributes"] = Value::Object(attrs);
    }
    let chosen: BTreeMap<String, MessageAttribute> =
        m.attributes.iter().filter(|(k, _)| wanted(k, user)).map(|(k, v)| (k.clone(), v.clone())).collect();
    if !chosen.is_empty() {
        let subset = StoredMessage { attributes: chosen.clone(), ..m.clone() };
        out["MD5OfMessageAttributes"] = json!(subset.md5_of_attributes());
        out["MessageAttributes"] = Value::Object(chosen.iter().map(|(k, a)| (k.clone(), attribute_json(a))).collect());
    }
    out
}

fn batch_error(id: &str, e: &QueueError) -> Value {
    let w = wire_error(e.clone());
    json!({ "Id": id, "SenderFault": !w.status.is_server_error(), "Code": w.code, "Message": w.message })
}

impl SqsService {
    fn queue_url(&self, name: &str) -> String {
        format!("{}/{}/{name}", self.base_url.trim_end_matches('/'), self.engine.account())
    }

    /// The queue name a QueueUrl points at (`…/ACCOUNT/NAME`).
    fn queue_name(&self, input: &Input) -> Result<String, QueueError> {
        let url = input.req_str("QueueUrl")?;
        let path = url.split_once("://").map_or(url, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
        let mut parts = path.trim_matches('/').rsplitn(2, '/');
        let name = parts.next().unwrap_or_default();
        match parts.next() {
            Some(account) if account == self.engine.account() && !name.is_empty() => Ok(name.to_string()),
            _ => Err(QueueError::QueueDoesNotExist),
        }
    }

    fn send_request(entry: &Input) -> Result<SendRequest, QueueError> {
        let body = entry.req_str("MessageBody")?.to_string();
        let delay_s = entry
            .int("DelaySeconds")?
            .map(|d| u32::try_from(d).map_err(|_| invalid("DelaySeconds", "must be 0 to 900")))
            .transpose()?;
        Ok(SendRequest {
            body,
            delay_s,
            attributes: message_attributes(entry.0.get("MessageAttributes"), "MessageAttributes")?,
            system_attributes: message_attributes(entry.0.get("MessageSystemAttributes"), "MessageSystemAttributes")?,
            group_id: entry.str("MessageGroupId")?.map(str::to_string),
            dedup_id: entry.str("MessageDeduplicationId")?.map(str::to_string),
        })
    }

    /// Runs one operation; the result is the JSON protocol's body, which the Query
    /// protocol adapter ([`super::sqs_query`]) turns into XML.
    pub(crate) async fn handle(&self, op: &str, input: Input) -> Result<Value, QueueError> {
        let e = &self.engine;
        match op {
            "CreateQueue" => {
                let name = input.req_str("QueueName")?;
                e.create_queue(name, &input.string_map("Attributes")?, &input.string_map("tags")?).await?;
                Ok(json!({ "QueueUrl": self.queue_url(name) }))
            }
            "GetQueueUrl" => {
                let name = input.req_str("QueueName")?;
                if input.str("QueueOwnerAWSAccountId")?.is_some_and(|a| a != e.account()) || !e.exists(name) {
                    return Err(QueueError::QueueDoesNotExist);
                }
                Ok(json!({ "QueueUrl": self.queue_url(name) }))
            }
            "DeleteQueue" => {
                e.delete_queue(&self.queue_name(&input)?).await?;
                Ok(json!({}))
            }
            "ListQueues" => {
                let names = e.list_queues(input.str("QueueNamePrefix")?.unwrap_or(""));
                let urls: Vec<String> = names.iter().map(|n| self.queue_url(n)).collect();
                Ok(page(urls, &input, "QueueUrls")?)
            }
            "GetQueueAttributes" => {
                let name = self.queue_name(&input)?;
                let mut attrs = e.get_attributes(&name, &input.string_list("AttributeNames")?)?;
                let asked = input.string_list("AttributeNames")?;
                if asked.iter().any(|a| a == "All" || a == "Policy") {
                    if let Some(p) = e.policy(&name)? {
                        attrs.entry("Policy".into()).or_insert(p);
                    }
                }
                Ok(if attrs.is_empty() { json!({}) } else { json!({ "Attributes": attrs }) })
            }
            "SetQueueAttributes" => {
                let name = self.queue_name(&input)?;
                if !input.0.contains_key("Attributes") {
                    return Err(missing("Attributes"));
                }
                e.set_attributes(&name, &input.string_map("Attributes")?).await?;
                Ok(json!({}))
            }
            "PurgeQueue" => {
                e.purge_queue(&self.queue_name(&input)?).await?;
                Ok(json!({}))
            }
            "TagQueue" => {
                let name = self.queue_name(&input)?;
                e.tag_queue(&name, &input.string_map("Tags")?).await?;
                Ok(json!({}))
            }
            "UntagQueue" => {
                let name = self.queue_name(&input)?;
                e.untag_queue(&name, &input.string_list("TagKeys")?).await?;
                Ok(json!({}))
            }
            "ListQueueTags" => {
                let tags = e.list_tags(&self.queue_name(&input)?)?;
                Ok(if tags.is_empty() { json!({}) } else { json!({ "Tags": tags }) })
            }
            "AddPermission" => {
                let name = self.queue_name(&input)?;
                e.add_permission(
                    &name,
                    input.req_str("Label")?,
                    &input.string_list("AWSAccountIds")?,
                    &input.string_list("Actions")?,
                )
                .await?;
                Ok(json!({}))
            }
            "RemovePermission" => {
                let name = self.queue_name(&input)?;
                e.remove_permission(&name, input.req_str("Label")?).await?;
                Ok(json!({}))
            }
            "ListDeadLetterSourceQueues" => {
                let sources = e.dead_letter_sources(&self.queue_name(&input)?)?;
                let urls: Vec<String> = sources.iter().map(|n| self.queue_url(n)).collect();
                Ok(page(urls, &input, "queueUrls")?)
            }
            "SendMessage" => {
                let name = self.queue_name(&input)?;
                let r = e.send(&name, Self::send_request(&input)?).await?;
                let mut out = json!({ "MessageId": r.message_id, "MD5OfMessageBody": r.md5_of_body });
                if let Some(m) = r.md5_of_attributes {
                    out["MD5OfMessageAttributes"] = json!(m);
                }
                if let Some(m) = r.md5_of_system_attributes {
                    out["MD5OfMessageSystemAttributes"] = json!(m);
                }
                if let Some(s) = r.sequence_number {
                    out["SequenceNumber"] = json!(s);
                }
                Ok(out)
            }
            "SendMessageBatch" => {
                let name = self.queue_name(&input)?;
                let entries = input.entries()?;
                let total: usize = entries
                    .iter()
                    .map(|en| {
                        en.str("MessageBody").ok().flatten().map_or(0, str::len)
                            + en.0.get("MessageAttributes").map_or(0, |a| a.to_string().len())
                    })
                    .sum();
                if total > crate::queues::MAX_BATCH_BYTES {
                    return Err(QueueError::BatchRequestTooLong(total));
                }
                let mut reqs = Vec::new();
                let mut failed = Vec::new();
                let mut ids = Vec::new();
                for en in &entries {
                    let id = en.req_str("Id")?.to_string();
                    match Self::send_request(en) {
                        Ok(r) => {
                            ids.push(id);
                            reqs.push(r);
                        }
                        Err(err) => failed.push(batch_error(&id, &err)),
                    }
                }
                let results = e.send_batch(&name, reqs).await?;
                let mut successful = Vec::new();
                for (id, r) in ids.iter().zip(results) {
                    match r {
                        Ok(r) => {
                            let mut s =
                                json!({ "Id": id, "MessageId": r.message_id, "MD5OfMessageBody": r.md5_of_body });
                            if let Some(m) = r.md5_of_attributes {
                                s["MD5OfMessageAttributes"] = json!(m);
                            }
                            if let Some(m) = r.md5_of_system_attributes {
                                s["MD5OfMessageSystemAttributes"] = json!(m);
                            }
                            if let Some(q) = r.sequence_number {
                                s["SequenceNumber"] = json!(q);
                            }
                            successful.push(s);
                        }
                        Err(err) => failed.push(batch_error(id, &err)),
                    }
                }
                Ok(json!({ "Successful": successful, "Failed": failed }))
            }
            "ReceiveMessage" => {
                let name = self.queue_name(&input)?;
                let max = input.int("MaxNumberOfMessages")?.unwrap_or(1);
                let visibility = input.int("VisibilityTimeout")?;
                let wait = input.int("WaitTimeSeconds")?;
                if visibility.is_some_and(|v| !(0..=43_200).contains(&v)) {
                    return Err(invalid("VisibilityTimeout", "must be 0 to 43200"));
                }
                if wait.is_some_and(|w| !(0..=20).contains(&w)) {
                    return Err(QueueError::InvalidParameterValue(format!(
                        "Value {} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.",
                        wait.unwrap_or_default()
                    )));
                }
                let mut system = input.string_list("MessageSystemAttributeNames")?;
                system.extend(input.string_list("AttributeNames")?);
                if let Some(bad) = system.iter().find(|s| !SYSTEM_ATTRIBUTES.contains(&s.as_str())) {
                    return Err(QueueError::InvalidAttributeName(format!("Unknown Attribute {bad}.")));
                }
                let user = input.string_list("MessageAttributeNames")?;
                let got = e
                    .receive(
                        &name,
                        ReceiveRequest {
                            max_messages: u32::try_from(max).unwrap_or(0),
                            visibility_timeout_s: visibility.map(|v| v as u32),
                            wait_time_s: wait.map(|w| w as u32),
                            attempt_id: input.str("ReceiveRequestAttemptId")?.map(str::to_string),
                        },
                    )
                    .await?;
                let messages: Vec<Value> =
                    got.iter().map(|r| message_json(&r.message, &r.receipt_handle, &system, &user)).collect();
                Ok(if messages.is_empty() { json!({}) } else { json!({ "Messages": messages }) })
            }
            "DeleteMessage" => {
                let name = self.queue_name(&input)?;
                e.delete_message(&name, input.req_str("ReceiptHandle")?)?;
                Ok(json!({}))
            }
            "DeleteMessageBatch" => {
                let name = self.queue_name(&input)?;
                let entries = input.entries()?;
                let (mut successful, mut failed) = (Vec::new(), Vec::new());
                for en in &entries {
                    let id = en.req_str("Id")?;
                    match en.req_str("ReceiptHandle").and_then(|h| e.delete_message(&name, h)) {
                        Ok(()) => successful.push(json!({ "Id": id })),
                        Err(QueueError::QueueDoesNotExist) => return Err(QueueError::QueueDoesNotExist),
                        Err(err) => failed.push(batch_error(id, &err)),
                    }
                }
                Ok(json!({ "Successful": successful, "Failed": failed }))
            }
            "ChangeMessageVisibility" => {
                let name = self.queue_name(&input)?;
                let timeout = input.int("VisibilityTimeout")?.ok_or_else(|| missing("VisibilityTimeout"))?;
                e.change_visibility(&name, input.req_str("ReceiptHandle")?, timeout)?;
                Ok(json!({}))
            }
            "ChangeMessageVisibilityBatch" => {
                let name = self.queue_name(&input)?;
                let entries = input.entries()?;
                let (mut successful, mut failed) = (Vec::new(), Vec::new());
                for en in &entries {
                    let id = en.req_str("Id")?;
                    let r = en.req_str("ReceiptHandle").and_then(|h| {
                        let t = en.int("VisibilityTimeout")?.ok_or_else(|| missing("VisibilityTimeout"))?;
                        e.change_visibility(&name, h, t)
                    });
                    match r {
                        Ok(()) => successful.push(json!({ "Id": id })),
                        Err(QueueError::QueueDoesNotExist) => return Err(QueueError::QueueDoesNotExist),
                        Err(err) => failed.push(batch_error(id, &err)),
                    }
                }
                Ok(json!({ "Successful": successful, "Failed": failed }))
            }
            "StartMessageMoveTask" => {
                let rate = input
                    .int("MaxNumberOfMessagesPerSecond")?
                    .map(|r| u32::try_from(r).map_err(|_| invalid("MaxNumberOfMessagesPerSecond", "must be 1 to 500")))
                    .transpose()?;
                let handle = e.start_move_task(input.req_str("SourceArn")?, input.str("DestinationArn")?, rate)?;
                Ok(json!({ "TaskHandle": handle }))
            }
            "ListMessageMoveTasks" => {
                let max = input.int("MaxResults")?.unwrap_or(1);
                if !(1..=10).contains(&max) {
                    return Err(invalid("MaxResults", "must be 1 to 10"));
                }
                let tasks = e.list_move_tasks(input.req_str("SourceArn")?, max as usize)?;
                let results: Vec<Value> = tasks
                    .iter()
                    .map(|t| {
                        let (status, reason) = t.status();
                        let mut r = json!({
                            "Status": status.as_str(),
                            "SourceArn": t.source_arn,
                            "ApproximateNumberOfMessagesMoved": t.moved(),
                            "ApproximateNumberOfMessagesToMove": t.to_move,
                            "StartedTimestamp": t.started_ms,
                        });
                        if status == crate::queues::move_task::TaskStatus::Running {
                            r["TaskHandle"] = json!(t.handle);
                        }
                        if let Some(d) = &t.destination_arn {
                            r["DestinationArn"] = json!(d);
                        }
                        if let Some(rate) = t.rate {
                            r["MaxNumberOfMessagesPerSecond"] = json!(rate);
                        }
                        if let Some(reason) = reason {
                            r["FailureReason"] = json!(reason);
                        }
                        r
                    })
                    .collect();
                Ok(json!({ "Results": results }))
            }
            "CancelMessageMoveTask" => {
                let moved = e.cancel_move_task(input.req_str("TaskHandle")?)?;
                Ok(json!({ "ApproximateNumberOfMessagesMoved": moved }))
            }
            other => Err(QueueError::UnsupportedOperation(format!("Unknown operation {other}"))),
        }
    }
}

/// ListQueues / ListDeadLetterSourceQueues paging: a NextToken only when MaxResults
/// was given and more remain.
fn page(items: Vec<String>, input: &Input, key: &str) -> Result<Value, QueueError> {
    let max = input.int("MaxResults")?;
    if max.is_some_and(|m| !(1..=1000).contains(&m)) {
        return Err(invalid("MaxResults", "must be 1 to 1000"));
    }
    let start = match input.str("NextToken")? {
        Some(t) => BASE64
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| invalid("NextToken", "not a token this server issued"))?,
        None => 0,
    };
    let limit = max.map_or(1000, |m| m as usize);
    let end = (start + limit).min(items.len());
    let chunk: Vec<String> = items.get(start..end).map(<[String]>::to_vec).unwrap_or_default();
    let mut out = json!({ key: chunk });
    if max.is_some() && end < items.len() {
        out["NextToken"] = json!(BASE64.encode(end.to_string()));
    }
    Ok(out)
}

impl JsonService for SqsService {
    fn call(&self, operation: &str, body: Bytes) -> JsonFuture {
        let op = operation.to_string();
        let svc = SqsService { engine: self.engine.clone(), base_url: self.base_url.clone() };
        Box::pin(async move {
            let input = Input::parse(&body)?;
            svc.handle(&op, input).await.map(ok).map_err(wire_error)
        })
    }
}
