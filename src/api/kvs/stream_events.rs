//! Kinesis Video control plane (`kinesisvideo`): Update/DescribeNotificationConfiguration
//! and Update/DescribeImageGenerationConfiguration. The settings live on the stream's
//! record; [`crate::stream_events`] acts on them.
//!
//! AWS sends notifications to an SNS topic. Kinescope takes the ARN of one of its own
//! queues (`arn:aws:sqs:…`), data streams (`arn:aws:kinesis:…:stream/NAME`) or
//! delivery streams (`arn:aws:firehose:…:deliverystream/NAME`) in the same account
//! and region as the video stream.

use std::collections::BTreeMap;

use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::images::{output_spec, selector_clock, MIN_SAMPLING_INTERVAL_MS};
use super::{KvsState, StreamRef};
use crate::api::error::ApiError;
use crate::api::protocol::{Empty, RestJson};
use crate::api::registry::Scoped;
use crate::video_store::{EventDestination, ImageGenerationSettings, NotificationSettings, StreamRecord};

pub fn routes() -> Router<KvsState> {
    Router::new()
        .route("/updateNotificationConfiguration", post(update_notification_configuration))
        .route("/describeNotificationConfiguration", post(describe_notification_configuration))
        .route("/updateImageGenerationConfiguration", post(update_image_generation_configuration))
        .route("/describeImageGenerationConfiguration", post(describe_image_generation_configuration))
}

type Answer<T> = Result<RestJson<T>, ApiError>;

/// The longest sampling interval image generation takes (a day).
const MAX_SAMPLING_INTERVAL_MS: i64 = 86_400_000;

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NotificationDestinationConfig {
    uri: String,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NotificationConfiguration {
    status: String,
    destination_config: NotificationDestinationConfig,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateNotificationInput {
    #[serde(flatten)]
    stream: StreamRef,
    notification_configuration: Option<NotificationConfiguration>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeNotificationOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    notification_configuration: Option<NotificationConfiguration>,
}

fn check_status(status: &str) -> Result<(), ApiError> {
    match status {
        "ENABLED" | "DISABLED" => Ok(()),
        other => Err(ApiError::invalid_argument(format!("Status '{other}' must be ENABLED or DISABLED"))),
    }
}

fn keeps_data(record: &StreamRecord) -> Result<(), ApiError> {
    super::playback::no_retention(record)
}

async fn update_notification_configuration(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<UpdateNotificationInput>,
) -> Answer<Empty> {
    let record = i.stream.resolve(&s)?;
    let settings = match i.notification_configuration {
        None => None,
        Some(c) => {
            check_status(&c.status)?;
            let uri = c.destination_config.uri;
            if uri.is_empty() || uri.len() > 255 {
                return Err(ApiError::invalid_argument("DestinationConfig.Uri must be 1 to 255 characters"));
            }
            let destination = EventDestination::parse(&uri).ok_or_else(|| {
                ApiError::invalid_argument(format!(
                    "DestinationConfig.Uri '{uri}' must be the ARN of a queue, data stream or delivery stream \
                     of this server (AWS takes an SNS topic; Kinescope has none)"
                ))
            })?;
            let scope = match &destination {
                EventDestination::Queue { scope, .. }
                | EventDestination::DataStream { scope, .. }
                | EventDestination::DeliveryStream { scope, .. } => scope,
            };
            if *scope != record.scope {
                return Err(ApiError::invalid_argument(format!(
                    "DestinationConfig.Uri '{uri}' must be in the stream's account and region"
                )));
            }
            keeps_data(&record)?;
            Some(NotificationSettings { status: c.status, uri })
        }
    };
    let r = &i.stream;
    s.store.set_notification(&s.scope, r.stream_name.as_deref(), r.stream_arn.as_deref(), settings).await?;
    Ok(RestJson(Empty {}))
}

async fn describe_notification_configuration(
    Scoped(s): Scoped<KvsState>,
    RestJson(stream): RestJson<StreamRef>,
) -> Answer<DescribeNotificationOutput> {
    let record = stream.resolve(&s)?;
    Ok(RestJson(DescribeNotificationOutput {
        notification_configuration: record.notification.map(|n| NotificationConfiguration {
            status: n.status,
            destination_config: NotificationDestinationConfig { uri: n.uri },
        }),
    }))
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageDestinationConfig {
    uri: String,
    destination_region: String,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageGenerationConfiguration {
    status: String,
    image_selector_type: String,
    destination_config: ImageDestinationConfig,
    sampling_interval: i64,
    format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format_config: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    width_pixels: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    height_pixels: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateImageGenerationInput {
    #[serde(flatten)]
    stream: StreamRef,
    image_generation_configuration: Option<ImageGenerationConfiguration>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeImageGenerationOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    image_generation_configuration: Option<ImageGenerationConfiguration>,
}

async fn update_image_generation_configuration(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<UpdateImageGenerationInput>,
) -> Answer<Empty> {
    let record = i.stream.resolve(&s)?;
    let settings = match i.image_generation_configuration {
        None => None,
        Some(c) => {
            check_status(&c.status)?;
            selector_clock(Some(&c.image_selector_type))?;
            let output = output_spec(Some(&c.format), c.format_config.as_ref(), c.width_pixels, c.height_pixels)?;
            if !(MIN_SAMPLING_INTERVAL_MS..=MAX_SAMPLING_INTERVAL_MS).contains(&c.sampling_interval) {
                return Err(ApiError::invalid_argument(format!(
                    "SamplingInterval {} must be {MIN_SAMPLING_INTERVAL_MS} to {MAX_SAMPLING_INTERVAL_MS} milliseconds",
                    c.sampling_interval
                )));
            }
            let d = c.destination_config;
            if d.uri.is_empty() || d.uri.len() > 255 || crate::video_store::parse_bucket_uri(&d.uri).is_none() {
                return Err(ApiError::invalid_argument(format!(
                    "DestinationConfig.Uri '{}' must be s3://BUCKET or s3://BUCKET/PREFIX",
                    d.uri
                )));
            }
            if d.destination_region != record.scope.region {
                return Err(ApiError::invalid_argument(format!(
                    "DestinationRegion '{}' must be the stream's region, {}",
                    d.destination_region, record.scope.region
                )));
            }
            keeps_data(&record)?;
            // The images go into a bucket of the stream's account, or nowhere.
            if let Some((bucket, _)) = crate::video_store::parse_bucket_uri(&d.uri) {
                let (buckets, account) = (s.buckets.clone(), record.scope.account.clone());
                let claimed = tokio::task::spawn_blocking(move || buckets.claim(&account, &bucket))
                    .await
                    .map_err(ApiError::internal)?;
                match claimed {
                    Ok(()) => {}
                    Err(e @ crate::buckets::BucketError::AccessDenied { .. }) => {
                        return Err(ApiError::new(
                            axum::http::StatusCode::UNAUTHORIZED,
                            "AccessDeniedException",
                            format!("DestinationConfig.Uri '{}': {e}", d.uri),
                        ))
                    }
                    Err(e) => return Err(ApiError::internal(e)),
                }
            }
            Some(ImageGenerationSettings {
                status: c.status,
                image_selector_type: c.image_selector_type,
                uri: d.uri,
                region: d.destination_region,
                sampling_interval_ms: c.sampling_interval,
                format: c.format,
                format_config: c.format_config.unwrap_or_default(),
                width: output.width,
                height: output.height,
            })
        }
    };
    let r = &i.stream;
    s.store.set_image_generation(&s.scope, r.stream_name.as_deref(), r.stream_arn.as_deref(), settings).await?;
    Ok(RestJson(Empty {}))
}

async fn describe_image_generation_configuration(
    Scoped(s): Scoped<KvsState>,
    RestJson(stream): RestJson<StreamRef>,
) -> Answer<DescribeImageGenerationOutput> {
    let record = stream.resolve(&s)?;
    Ok(RestJson(DescribeImageGenerationOutput {
        image_generation_configuration: record.image_generation.map(|g| ImageGenerationConfiguration {
            status: g.status,
            image_selector_type: g.image_selector_type,
            destination_config: ImageDestinationConfig { uri: g.uri, destination_region: g.region },
            sampling_interval: g.sampling_interval_ms,
            format: g.format,
            format_config: (!g.format_config.is_empty()).then_some(g.format_config),
            width_pixels: g.width.map(i64::from),
            height_pixels: g.height.map(i64::from),
        }),
    }))
}
