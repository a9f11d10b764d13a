//! Enhanced fan-out consumers: RegisterStreamConsumer, DescribeStreamConsumer,
//! DeregisterStreamConsumer, ListStreamConsumers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{check_limit, invalid, ts, KinesisState};
use crate::api::error::ApiError;
use crate::api::protocol::Empty;
use crate::data_streams::{ConsumerView, DataStreamId};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Consumer {
    consumer_name: String,
    #[serde(rename = "ConsumerARN")]
    consumer_arn: String,
    consumer_status: &'static str,
    consumer_creation_timestamp: f64,
    /// DescribeStreamConsumer's ConsumerDescription names the stream too.
    #[serde(rename = "StreamARN", skip_serializing_if = "Option::is_none")]
    stream_arn: Option<String>,
}

impl Consumer {
    fn of(c: &ConsumerView, with_stream: bool) -> Self {
        Consumer {
            consumer_name: c.name.clone(),
            consumer_arn: c.arn.clone(),
            consumer_status: c.status,
            consumer_creation_timestamp: ts(c.created_s * 1000),
            stream_arn: with_stream.then(|| c.stream_arn.clone()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterInput {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    consumer_name: String,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterOutput {
    consumer: Consumer,
}

pub async fn register(s: KinesisState, i: RegisterInput) -> Result<RegisterOutput, ApiError> {
    let name = s.stream_by_arn(&i.stream_arn)?;
    // Queues take places from the same registered-consumer quota.
    let queues = s.stream_queues.count_for_stream(&name);
    let consumers = s.engine.describe(&name)?.meta.consumers.len();
    if queues > 0 && queues + consumers >= crate::data_streams::MAX_CONSUMERS_PER_STREAM {
        return Err(crate::data_streams::DataStreamError::LimitExceeded(format!(
            "Stream {name} has {consumers} consumers and {queues} queues; together they may be at most {}.",
            crate::data_streams::MAX_CONSUMERS_PER_STREAM
        ))
        .into());
    }
    let c = s.engine.register_consumer(&name, &i.consumer_name, i.tags.unwrap_or_default())?;
    Ok(RegisterOutput { consumer: Consumer::of(&c, false) })
}

/// A consumer named by its ARN, or by its stream's ARN and its name.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConsumerRef {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    consumer_name: Option<String>,
    #[serde(rename = "ConsumerARN")]
    consumer_arn: Option<String>,
}

impl ConsumerRef {
    /// (stream, consumer name).
    fn resolve(&self, s: &KinesisState) -> Result<(DataStreamId, String), ApiError> {
        match (&self.consumer_arn, &self.stream_arn, &self.consumer_name) {
            (Some(arn), _, _) => Ok(s.consumer_by_arn(arn)?),
            (None, Some(stream), Some(c)) => Ok((s.stream_by_arn(stream)?, c.clone())),
            _ => Err(invalid("Give ConsumerARN, or both StreamARN and ConsumerName.")),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeOutput {
    consumer_description: Consumer,
}

pub async fn describe(s: KinesisState, i: ConsumerRef) -> Result<DescribeOutput, ApiError> {
    let (stream, consumer) = i.resolve(&s)?;
    let c = s.engine.describe_consumer(&stream, &consumer)?;
    Ok(DescribeOutput { consumer_description: Consumer::of(&c, true) })
}

pub async fn deregister(s: KinesisState, i: ConsumerRef) -> Result<Empty, ApiError> {
    let (stream, consumer) = i.resolve(&s)?;
    s.engine.deregister_consumer(&stream, &consumer)?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListInput {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    next_token: Option<String>,
    max_results: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListOutput {
    consumers: Vec<Consumer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub async fn list(s: KinesisState, i: ListInput) -> Result<ListOutput, ApiError> {
    let limit = check_limit(i.max_results, 10_000, "maxResults")?.unwrap_or(100).min(100) as usize;
    let name = s.stream_by_arn(&i.stream_arn)?;
    let after = i.next_token.as_deref().map(|t| s.open_page::<String>("ListStreamConsumers", t, true)).transpose()?;
    let all: Vec<_> =
        s.engine.list_consumers(&name)?.into_iter().filter(|c| after.as_ref().is_none_or(|a| c.name > *a)).collect();
    let page = &all[..all.len().min(limit)];
    let next_token =
        page.last().filter(|_| all.len() > limit).map(|last| s.page_token("ListStreamConsumers", &last.name));
    Ok(ListOutput { consumers: page.iter().map(|c| Consumer::of(c, false)).collect(), next_token })
}
