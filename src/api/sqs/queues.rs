//! Queue operations: CreateQueue, GetQueueUrl, DeleteQueue, ListQueues,
//! Get/SetQueueAttributes, PurgeQueue, Tag/Untag/ListQueueTags, Add/RemovePermission,
//! ListDeadLetterSourceQueues.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{lenient, missing, QueueRef, SqsState};
use crate::api::protocol::Empty;
use crate::queues::{QueueError, QueueId};

type Result<T> = std::result::Result<T, QueueError>;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateQueueInput {
    queue_name: String,
    #[serde(default, deserialize_with = "lenient::string_map")]
    attributes: BTreeMap<String, String>,
    /// SQS spells this member in lower case.
    #[serde(default, rename = "tags", deserialize_with = "lenient::string_map")]
    tags: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueUrlOutput {
    queue_url: String,
}

pub async fn create_queue(s: SqsState, i: CreateQueueInput) -> Result<QueueUrlOutput> {
    s.engine.create_queue(&QueueId::new(&s.scope, &i.queue_name), &i.attributes, &i.tags).await?;
    Ok(QueueUrlOutput { queue_url: s.queue_url(&i.queue_name) })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetQueueUrlInput {
    queue_name: String,
    #[serde(rename = "QueueOwnerAWSAccountId")]
    queue_owner_aws_account_id: Option<String>,
}

pub async fn get_queue_url(s: SqsState, i: GetQueueUrlInput) -> Result<QueueUrlOutput> {
    let e = &s.engine;
    let id = QueueId::new(&s.scope, &i.queue_name);
    if i.queue_owner_aws_account_id.as_deref().is_some_and(|a| a != s.scope.account) || !e.exists(&id) {
        return Err(QueueError::QueueDoesNotExist);
    }
    Ok(QueueUrlOutput { queue_url: s.queue_url(&i.queue_name) })
}

pub async fn delete_queue(s: SqsState, i: QueueRef) -> Result<Empty> {
    s.engine.delete_queue(&i.name(&s)?).await?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListQueuesInput {
    queue_name_prefix: Option<String>,
    #[serde(default, deserialize_with = "lenient::int")]
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListQueuesOutput {
    /// Left out when there are none, as SQS does (clients test for the member).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    queue_urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub async fn list_queues(s: SqsState, i: ListQueuesInput) -> Result<ListQueuesOutput> {
    let names = s.engine.list_queues(&s.scope, i.queue_name_prefix.as_deref().unwrap_or(""));
    let urls = names.iter().map(|n| s.queue_url(n)).collect();
    let (queue_urls, next_token) = s.page("ListQueues", urls, i.max_results, i.next_token.as_deref())?;
    Ok(ListQueuesOutput { queue_urls, next_token })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetQueueAttributesInput {
    queue_url: String,
    #[serde(default, deserialize_with = "lenient::strings")]
    attribute_names: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributesOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<BTreeMap<String, String>>,
}

pub async fn get_queue_attributes(s: SqsState, i: GetQueueAttributesInput) -> Result<AttributesOutput> {
    let name = s.queue_name(&i.queue_url)?;
    let mut attrs = s.engine.get_attributes(&name, &i.attribute_names)?;
    if i.attribute_names.iter().any(|a| a == "All" || a == "Policy") {
        if let Some(p) = s.engine.policy(&name)? {
            attrs.entry("Policy".into()).or_insert(p);
        }
    }
    Ok(AttributesOutput { attributes: (!attrs.is_empty()).then_some(attrs) })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SetQueueAttributesInput {
    queue_url: String,
    #[serde(default, deserialize_with = "lenient::some_string_map")]
    attributes: Option<BTreeMap<String, String>>,
}

pub async fn set_queue_attributes(s: SqsState, i: SetQueueAttributesInput) -> Result<Empty> {
    let name = s.queue_name(&i.queue_url)?;
    let attributes = i.attributes.ok_or_else(|| missing("Attributes"))?;
    s.engine.set_attributes(&name, &attributes).await?;
    Ok(Empty {})
}

pub async fn purge_queue(s: SqsState, i: QueueRef) -> Result<Empty> {
    s.engine.purge_queue(&i.name(&s)?).await?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagQueueInput {
    queue_url: String,
    #[serde(default, deserialize_with = "lenient::string_map")]
    tags: BTreeMap<String, String>,
}

pub async fn tag_queue(s: SqsState, i: TagQueueInput) -> Result<Empty> {
    s.engine.tag_queue(&s.queue_name(&i.queue_url)?, &i.tags).await?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagQueueInput {
    queue_url: String,
    #[serde(default, deserialize_with = "lenient::strings")]
    tag_keys: Vec<String>,
}

pub async fn untag_queue(s: SqsState, i: UntagQueueInput) -> Result<Empty> {
    s.engine.untag_queue(&s.queue_name(&i.queue_url)?, &i.tag_keys).await?;
    Ok(Empty {})
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListQueueTagsOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<BTreeMap<String, String>>,
}

pub async fn list_queue_tags(s: SqsState, i: QueueRef) -> Result<ListQueueTagsOutput> {
    let tags = s.engine.list_tags(&i.name(&s)?)?;
    Ok(ListQueueTagsOutput { tags: (!tags.is_empty()).then_some(tags) })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddPermissionInput {
    queue_url: String,
    label: String,
    #[serde(rename = "AWSAccountIds", default, deserialize_with = "lenient::strings")]
    aws_account_ids: Vec<String>,
    #[serde(default, deserialize_with = "lenient::strings")]
    actions: Vec<String>,
}

pub async fn add_permission(s: SqsState, i: AddPermissionInput) -> Result<Empty> {
    let name = s.queue_name(&i.queue_url)?;
    s.engine.add_permission(&name, &i.label, &i.aws_account_ids, &i.actions).await?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RemovePermissionInput {
    queue_url: String,
    label: String,
}

pub async fn remove_permission(s: SqsState, i: RemovePermissionInput) -> Result<Empty> {
    s.engine.remove_permission(&s.queue_name(&i.queue_url)?, &i.label).await?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListDeadLetterSourceQueuesInput {
    queue_url: String,
    #[serde(default, deserialize_with = "lenient::int")]
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Serialize)]
pub struct ListDeadLetterSourceQueuesOutput {
    /// SQS spells this member in lower case.
    #[serde(rename = "queueUrls")]
    queue_urls: Vec<String>,
    #[serde(rename = "NextToken", skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub async fn list_dead_letter_source_queues(
    s: SqsState,
    i: ListDeadLetterSourceQueuesInput,
) -> Result<ListDeadLetterSourceQueuesOutput> {
    let sources = s.engine.dead_letter_sources(&s.queue_name(&i.queue_url)?)?;
    let urls = sources.iter().map(|n| s.queue_url(n)).collect();
    let (queue_urls, next_token) =
        s.page("ListDeadLetterSourceQueues", urls, i.max_results, i.next_token.as_deref())?;
    Ok(ListDeadLetterSourceQueuesOutput { queue_urls, next_token })
}
