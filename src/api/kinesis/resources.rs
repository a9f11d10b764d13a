//! Tags and resource policies: the stream-named tag calls (AddTagsToStream,
//! RemoveTagsFromStream, ListTagsForStream), the ARN-named ones for streams and
//! consumers, stream queues and channels (TagResource, UntagResource, ListTagsForResource), and
//! Put/Get/DeleteResourcePolicy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{check_limit, invalid, tag_list, KinesisState, StreamRef, Tag};
use crate::api::error::ApiError;
use crate::api::protocol::Empty;
use crate::api::shapes::ResourceArn;
use crate::data_streams::{DataStreamError, DataStreamId};

/// What an ARN names: a stream, a consumer of one, a stream queue or a channel.
enum Resource {
    Stream(DataStreamId),
    Consumer(DataStreamId, String),
    Queue(String),
    Channel(String),
}

impl Resource {
    fn of(s: &KinesisState, arn: &str) -> Result<Self, ApiError> {
        let resource = crate::scope::Scope::parse_arn(arn, "kinesis").map(|(_, r)| r);
        if resource.is_some_and(|r| r.starts_with("queue/")) {
            Ok(Resource::Queue(arn.to_string()))
        } else if resource.is_some_and(|r| r.starts_with("channel/")) {
            Ok(Resource::Channel(arn.to_string()))
        } else if arn.contains("/consumer/") {
            let (stream, consumer) = s.consumer_by_arn(arn)?;
            Ok(Resource::Consumer(stream, consumer))
        } else {
            Ok(Resource::Stream(s.stream_by_arn(arn)?))
        }
    }

    fn tags(&self, s: &KinesisState) -> Result<BTreeMap<String, String>, ApiError> {
        Ok(match self {
            Resource::Stream(stream) => s.engine.describe(stream)?.meta.tags,
            Resource::Consumer(stream, c) => s.engine.consumer_tags(stream, c)?,
            Resource::Queue(arn) => s.stream_queues.tags(&s.scope, arn)?,
            Resource::Channel(arn) => s.channels.describe(&s.scope, arn)?.tags,
        })
    }

    /// Whether the resource exists; a stream named by ARN is reported by its ARN.
    fn exists(&self, s: &KinesisState, arn: &str) -> Result<(), ApiError> {
        match self {
            Resource::Stream(stream) => s.engine.describe(stream).map(|_| ()).map_err(|e| match e {
                DataStreamError::ResourceNotFound(_) => s.stream_not_found(arn),
                e => e,
            })?,
            Resource::Consumer(stream, c) => s.engine.describe_consumer(stream, c).map(|_| ())?,
            Resource::Queue(arn) => s.stream_queues.describe(&s.scope, arn).map(|_| ())?,
            Resource::Channel(arn) => s.channels.describe(&s.scope, arn).map(|_| ())?,
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddTagsToStreamInput {
    #[serde(flatten)]
    s: StreamRef,
    tags: BTreeMap<String, String>,
}

pub async fn add_tags_to_stream(s: KinesisState, i: AddTagsToStreamInput) -> Result<Empty, ApiError> {
    if i.tags.len() > 10 {
        return Err(invalid("AddTagsToStream takes at most 10 tags per call."));
    }
    s.engine.add_tags(&i.s.id(&s)?, i.tags)?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RemoveTagsFromStreamInput {
    #[serde(flatten)]
    s: StreamRef,
    tag_keys: Vec<String>,
}

pub async fn remove_tags_from_stream(s: KinesisState, i: RemoveTagsFromStreamInput) -> Result<Empty, ApiError> {
    s.engine.remove_tags(&i.s.id(&s)?, &i.tag_keys)?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForStreamInput {
    #[serde(flatten)]
    s: StreamRef,
    exclusive_start_tag_key: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForStreamOutput {
    tags: Vec<Tag>,
    has_more_tags: bool,
}

pub async fn list_tags_for_stream(
    s: KinesisState,
    i: ListTagsForStreamInput,
) -> Result<ListTagsForStreamOutput, ApiError> {
    let limit = check_limit(i.limit, 50, "limit")?.unwrap_or(50) as usize;
    let v = s.engine.describe(&i.s.id(&s)?)?;
    let after = i.exclusive_start_tag_key.as_ref();
    let tags: Vec<(&String, &String)> = v.meta.tags.iter().filter(|(k, _)| after.is_none_or(|a| *k > a)).collect();
    Ok(ListTagsForStreamOutput { has_more_tags: tags.len() > limit, tags: tag_list(tags.into_iter().take(limit)) })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    tags: Option<BTreeMap<String, String>>,
}

pub async fn tag_resource(s: KinesisState, i: TagResourceInput) -> Result<Empty, ApiError> {
    let resource = Resource::of(&s, &i.resource_arn)?;
    let tags = i.tags.ok_or_else(|| invalid("Tags is required."))?;
    match resource {
        Resource::Stream(stream) => s.engine.add_tags(&stream, tags)?,
        Resource::Consumer(stream, c) => s.engine.update_consumer_tags(&stream, &c, |t| {
            t.extend(tags);
            Ok(())
        })?,
        Resource::Queue(arn) => s.stream_queues.update_tags(&s.scope, &arn, tags, &[])?,
        Resource::Channel(arn) => s.channels.update_tags(&s.scope, &arn, tags, &[])?,
    }
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    tag_keys: Option<Vec<String>>,
}

pub async fn untag_resource(s: KinesisState, i: UntagResourceInput) -> Result<Empty, ApiError> {
    let resource = Resource::of(&s, &i.resource_arn)?;
    let keys = i.tag_keys.ok_or_else(|| invalid("TagKeys is required."))?;
    match resource {
        Resource::Stream(stream) => s.engine.remove_tags(&stream, &keys)?,
        Resource::Consumer(stream, c) => s.engine.update_consumer_tags(&stream, &c, |t| {
            keys.iter().for_each(|k| {
                t.remove(k);
            });
            Ok(())
        })?,
        Resource::Queue(arn) => s.stream_queues.update_tags(&s.scope, &arn, BTreeMap::new(), &keys)?,
        Resource::Channel(arn) => s.channels.update_tags(&s.scope, &arn, BTreeMap::new(), &keys)?,
    }
    Ok(Empty {})
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForResourceOutput {
    tags: Vec<Tag>,
}

pub async fn list_tags_for_resource(s: KinesisState, i: ResourceArn) -> Result<ListTagsForResourceOutput, ApiError> {
    let tags = Resource::of(&s, &i.resource_arn)?.tags(&s)?;
    Ok(ListTagsForResourceOutput { tags: tag_list(&tags) })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutResourcePolicyInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    policy: Option<String>,
}

pub async fn put_resource_policy(s: KinesisState, i: PutResourcePolicyInput) -> Result<Empty, ApiError> {
    Resource::of(&s, &i.resource_arn)?.exists(&s, &i.resource_arn)?;
    let p = i.policy.ok_or_else(|| invalid("Policy is required."))?;
    if serde_json::from_str::<serde_json::Value>(&p).is_err() {
        return Err(invalid("Policy is not a JSON document."));
    }
    s.engine.set_resource_policy(&i.resource_arn, Some(&p))?;
    Ok(Empty {})
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetResourcePolicyOutput {
    policy: String,
}

pub async fn get_resource_policy(s: KinesisState, i: ResourceArn) -> Result<GetResourcePolicyOutput, ApiError> {
    Resource::of(&s, &i.resource_arn)?.exists(&s, &i.resource_arn)?;
    let policy = s.engine.resource_policy(&i.resource_arn)?.unwrap_or_else(|| "{}".into());
    Ok(GetResourcePolicyOutput { policy })
}

pub async fn delete_resource_policy(s: KinesisState, i: ResourceArn) -> Result<Empty, ApiError> {
    Resource::of(&s, &i.resource_arn)?.exists(&s, &i.resource_arn)?;
    if s.engine.resource_policy(&i.resource_arn)?.is_none() {
        return Err(DataStreamError::ResourceNotFound(format!(
            "No resource policy found for resource ARN {}.",
            i.resource_arn
        ))
        .into());
    }
    s.engine.set_resource_policy(&i.resource_arn, None)?;
    Ok(Empty {})
}
