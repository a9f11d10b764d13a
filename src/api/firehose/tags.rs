//! A delivery stream's tags: TagDeliveryStream, UntagDeliveryStream,
//! ListTagsForDeliveryStream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{invalid, page_limit, FirehoseState};
use crate::api::error::ApiError;
use crate::api::protocol::Empty;
use crate::delivery_streams::DeliveryStreamError;

/// A tag as Firehose carries it (its value is optional).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FirehoseTag {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
}

pub(super) fn tag_map(tags: Option<Vec<FirehoseTag>>) -> Result<BTreeMap<String, String>, ApiError> {
    let tags = tags.unwrap_or_default();
    if tags.len() > crate::delivery_streams::MAX_TAGS {
        return Err(DeliveryStreamError::Validation(format!(
            "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to {}",
            crate::delivery_streams::MAX_TAGS
        ))
        .into());
    }
    Ok(tags.into_iter().map(|t| (t.key, t.value.unwrap_or_default())).collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagInput {
    delivery_stream_name: String,
    tags: Vec<FirehoseTag>,
}

pub async fn tag_delivery_stream(s: FirehoseState, i: TagInput) -> Result<Empty, ApiError> {
    if i.tags.is_empty() {
        return Err(invalid("Tags must hold 1 to 50 tags."));
    }
    s.engine.tag(&s.id(&i.delivery_stream_name), tag_map(Some(i.tags))?)?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagInput {
    delivery_stream_name: String,
    tag_keys: Vec<String>,
}

pub async fn untag_delivery_stream(s: FirehoseState, i: UntagInput) -> Result<Empty, ApiError> {
    if i.tag_keys.is_empty() || i.tag_keys.len() > 50 {
        return Err(invalid("TagKeys must hold 1 to 50 keys."));
    }
    s.engine.untag(&s.id(&i.delivery_stream_name), &i.tag_keys)?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsInput {
    delivery_stream_name: String,
    exclusive_start_tag_key: Option<String>,
    limit: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsOutput {
    tags: Vec<FirehoseTag>,
    has_more_tags: bool,
}

pub async fn list_tags_for_delivery_stream(s: FirehoseState, i: ListTagsInput) -> Result<ListTagsOutput, ApiError> {
    let limit = page_limit(i.limit, 50, 50)?;
    let view = s.engine.describe(&s.id(&i.delivery_stream_name))?;
    let mut tags: Vec<FirehoseTag> = view
        .meta
        .tags
        .into_iter()
        .filter(|(k, _)| i.exclusive_start_tag_key.as_ref().is_none_or(|after| k > after))
        .map(|(key, value)| FirehoseTag { key, value: Some(value) })
        .collect();
    let more = tags.len() > limit;
    tags.truncate(limit);
    Ok(ListTagsOutput { tags, has_more_tags: more })
}
