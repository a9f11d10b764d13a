//! SQS over the AWS JSON 1.0 protocol (`X-Amz-Target: AmazonSQS.<Op>`) and the older
//! Query protocol: a thin typed adapter over [`crate::queues::QueueEngine`], one
//! function per operation, grouped by resource:
//!
//! - [`queues`]: create, delete, list, URLs, attributes, purge, tags, permissions,
//!   dead-letter sources;
//! - [`messages`]: send, receive, delete, change visibility (single and batch);
//! - [`move_tasks`]: StartMessageMoveTask, ListMessageMoveTasks, CancelMessageMoveTask;
//! - [`query`]: the Query protocol: forms in, XML out, over the same functions.
//!
//! Requests name queues by URL (`http://HOST:PORT/ACCOUNT/NAME`); errors carry `__type`
//! `com.amazonaws.sqs#Code` and the `x-amzn-query-error` legacy code, as SQS sends them.

pub mod messages;
pub mod move_tasks;
pub mod query;
pub mod queues;

use axum::http::StatusCode;
use serde::Deserialize;

use super::error::ApiError;
use super::page_token::PageTokens;
use super::protocol::Protocol;
use super::registry::{ForCaller, InputError, Operations};
use crate::credentials::Caller;
use crate::queues::{QueueEngine, QueueError, QueueId};
use crate::scope::Scope;

pub const TARGET_PREFIX: &str = "AmazonSQS";
const NAMESPACE: &str = "com.amazonaws.sqs";
pub const XML_NAMESPACE: &str = "http://queue.amazonaws.com/doc/2012-11-05/";
/// The `Version` an SQS Query form carries.
pub const API_VERSION: &str = "2012-11-05";

/// What the SQS operations reach.
#[derive(Clone)]
pub struct SqsState {
    pub engine: QueueEngine,
    /// `http://HOST:PORT`, the base of queue URLs.
    pub base_url: String,
    pub pages: PageTokens,
    /// The caller's account and region (the server's default until a call sets it).
    pub scope: Scope,
}

impl ForCaller for SqsState {
    fn for_caller(&self, caller: &Caller) -> Self {
        SqsState { scope: caller.scope.clone(), ..self.clone() }
    }
}

/// The operation table registered under [`TARGET_PREFIX`], answering Query forms too.
pub fn operations(state: SqsState) -> Operations<SqsState> {
    Operations::new(state, Protocol::AwsJson10)
        .query(XML_NAMESPACE, query::result_element)
        .input_error(input_error)
        .unknown(|op| QueueError::UnsupportedOperation(format!("Unknown operation {op}")).into())
        .op("CreateQueue", queues::create_queue)
        .op("GetQueueUrl", queues::get_queue_url)
        .op("DeleteQueue", queues::delete_queue)
        .op("ListQueues", queues::list_queues)
        .op("GetQueueAttributes", queues::get_queue_attributes)
        .op("SetQueueAttributes", queues::set_queue_attributes)
        .op("PurgeQueue", queues::purge_queue)
        .op("TagQueue", queues::tag_queue)
        .op("UntagQueue", queues::untag_queue)
        .op("ListQueueTags", queues::list_queue_tags)
        .op("AddPermission", queues::add_permission)
        .op("RemovePermission", queues::remove_permission)
        .op("ListDeadLetterSourceQueues", queues::list_dead_letter_source_queues)
        .op("SendMessage", messages::send_message)
        .op("SendMessageBatch", messages::send_message_batch)
        .op("ReceiveMessage", messages::receive_message)
        .op("DeleteMessage", messages::delete_message)
        .op("DeleteMessageBatch", messages::delete_message_batch)
        .op("ChangeMessageVisibility", messages::change_message_visibility)
        .op("ChangeMessageVisibilityBatch", messages::change_message_visibility_batch)
        .op("StartMessageMoveTask", move_tasks::start)
        .op("ListMessageMoveTasks", move_tasks::list)
        .op("CancelMessageMoveTask", move_tasks::cancel)
}

/// The engine's errors as SQS writes them, once.
impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
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
            EmptyBatchRequest(_) => (bad, "EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest"),
            BatchEntryIdsNotDistinct(_) => {
                (bad, "BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct")
            }
            InvalidBatchEntryId(_) => (bad, "InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId"),
            BatchRequestTooLong(_) => (bad, "BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong"),
            ResourceNotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFoundException", "ResourceNotFoundException"),
            UnsupportedOperation(_) => (bad, "UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation"),
            Storage(f) if f.unavailable => {
                let message =
                    "The service's storage cannot be reached right now; nothing was changed. Please try again.";
                return ApiError::query_compatible(
                    StatusCode::SERVICE_UNAVAILABLE,
                    NAMESPACE,
                    "ServiceUnavailable",
                    "ServiceUnavailable",
                    message,
                )
                .with_detail(&e);
            }
            Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "InternalError"),
            DiskFull(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "ServiceUnavailable"),
        };
        if matches!(e, Storage(_)) {
            // The cause is for the log; the client learns only that it failed inside.
            let message = "We encountered an internal error. Please try again.";
            return ApiError::query_compatible(status, NAMESPACE, code, legacy, message).with_detail(&e);
        }
        ApiError::query_compatible(status, NAMESPACE, code, legacy, e.to_string())
    }
}

fn missing(name: &str) -> QueueError {
    QueueError::MissingParameter(format!("The request must contain the parameter {name}."))
}

fn invalid(name: &str, why: &str) -> QueueError {
    QueueError::InvalidParameterValue(format!("Value for parameter {name} is invalid. Reason: {why}"))
}

/// A body that does not fit an input shape: MissingParameter for a missing member,
/// InvalidParameterValue naming the member otherwise, as SQS answers.
fn input_error(e: InputError) -> ApiError {
    let last = |p: &str| p.rsplit(['.', '[']).next().unwrap_or(p).trim_end_matches(']').to_string();
    if let Some(m) = &e.missing {
        return missing(&last(m)).into();
    }
    if e.path.is_empty() {
        return QueueError::InvalidParameterValue("The request body is not a JSON object".into()).into();
    }
    let reason = e.message.split(" at line ").next().unwrap_or(&e.message);
    invalid(&last(&e.path), reason).into()
}

impl SqsState {
    /// `BASE/ACCOUNT/NAME` for a queue of the caller's scope.
    pub fn queue_url(&self, name: &str) -> String {
        format!("{}/{}/{name}", self.base_url.trim_end_matches('/'), self.scope.account)
    }

    /// The queue a QueueUrl names: `…/ACCOUNT/NAME` (the account must be the caller's;
    /// a queue of another account does not exist for it), or a bare queue name, which
    /// SQS also accepts. The region is the caller's.
    pub fn queue_name(&self, url: &str) -> Result<QueueId, QueueError> {
        if !url.contains('/') {
            return if url.is_empty() {
                Err(QueueError::QueueDoesNotExist)
            } else {
                Ok(QueueId::new(&self.scope, url))
            };
        }
        let path = url.split_once("://").map_or(url, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
        let mut parts = path.trim_matches('/').rsplitn(2, '/');
        let name = parts.next().unwrap_or_default();
        match parts.next() {
            Some(account) if account == self.scope.account && !name.is_empty() => Ok(QueueId::new(&self.scope, name)),
            _ => Err(QueueError::QueueDoesNotExist),
        }
    }

    /// One page of `items` for `op` (ListQueues, ListDeadLetterSourceQueues): a
    /// NextToken only when MaxResults was given and more remain.
    fn page(
        &self,
        op: &str,
        items: Vec<String>,
        max: Option<i64>,
        token: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), QueueError> {
        if let Some(m) = max.filter(|m| !(1..=1000).contains(m)) {
            return Err(crate::queues::invalid_value(
                m,
                "MaxResults",
                "MaxResults must be an integer between 1 and 1000.",
            ));
        }
        let now = self.engine.now_ms();
        let start = match token {
            Some(t) => self
                .pages
                .open::<usize>(op, t, now, None)
                .map_err(|_| invalid("NextToken", "not a token this server issued"))?,
            None => 0,
        };
        let end = start.saturating_add(max.map_or(1000, |m| m as usize)).min(items.len());
        let chunk = items.get(start..end).map(<[String]>::to_vec).unwrap_or_default();
        let next = (max.is_some() && end < items.len()).then(|| self.pages.issue(op, &end, now));
        Ok((chunk, next))
    }
}

/// Lenient readers for members the Query protocol sends as strings.
pub mod lenient {
    use std::collections::BTreeMap;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    /// An integer: a JSON number or a string holding one.
    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| D::Error::custom("must be an integer")),
            Some(Value::String(s)) => s.parse().map(Some).map_err(|_| D::Error::custom("must be an integer")),
            Some(_) => Err(D::Error::custom("must be an integer")),
        }
    }

    /// A map of strings, numbers and booleans written as strings.
    pub fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k, s)),
                    Value::Number(n) => Ok((k, n.to_string())),
                    Value::Bool(b) => Ok((k, b.to_string())),
                    _ => Err(D::Error::custom("values must be strings")),
                })
                .collect(),
            Some(_) => Err(D::Error::custom("must be a map")),
        }
    }

    /// A map that is there (even empty or null) as `Some`; a missing member stays
    /// `None` through `#[serde(default)]`.
    pub fn some_string_map<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BTreeMap<String, String>>, D::Error> {
        string_map(d).map(Some)
    }

    /// A list of strings (missing or null: empty).
    pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
    }
}

/// The member every queue operation has.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueRef {
    pub queue_url: String,
}

impl QueueRef {
    fn name(&self, s: &SqsState) -> Result<QueueId, QueueError> {
        s.queue_name(&self.queue_url)
    }
}
