//! A queue's attributes: parsed from and rendered to SQS's string map, with SQS's
//! ranges and defaults. Pure: no I/O, no clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::QueueError;

pub const DEFAULT_VISIBILITY_S: u32 = 30;
pub const DEFAULT_RETENTION_S: u32 = 345_600;
pub const MAX_MESSAGE_SIZE: u32 = 1_048_576;

/// Where messages go after too many receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedrivePolicy {
    pub dead_letter_target_arn: String,
    pub max_receive_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfig {
    pub fifo: bool,
    pub delay_s: u32,
    pub visibility_timeout_s: u32,
    pub maximum_message_size: u32,
    pub retention_s: u32,
    pub receive_wait_s: u32,
    pub content_based_deduplication: bool,
    pub redrive: Option<RedrivePolicy>,
    /// The attributes kept as given (policies, encryption, FIFO throughput settings).
    pub passthrough: BTreeMap<String, String>,
}

/// Attributes stored and returned as given, after a check of their values.
const PASSTHROUGH: [&str; 7] = [
    "Policy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

/// Attributes only GetQueueAttributes returns.
pub const READ_ONLY: [&str; 6] = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
];

fn ranged(name: &str, value: &str, lo: u32, hi: u32) -> Result<u32, QueueError> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|v| (lo..=hi).contains(v))
        .ok_or_else(|| QueueError::InvalidAttributeValue(format!("Invalid value for the parameter {name}.")))
}

fn boolean(name: &str, value: &str) -> Result<bool, QueueError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(QueueError::InvalidAttributeValue(format!("Invalid value for the parameter {name}."))),
    }
}

impl QueueConfig {
    pub fn new(fifo: bool) -> Self {
        QueueConfig {
            fifo,
            delay_s: 0,
            visibility_timeout_s: DEFAULT_VISIBILITY_S,
            maximum_message_size: MAX_MESSAGE_SIZE,
            retention_s: DEFAULT_RETENTION_S,
            receive_wait_s: 0,
            content_based_deduplication: false,
            redrive: None,
            passthrough: BTreeMap::new(),
        }
    }

    /// Applies attributes from CreateQueue (`creating`) or SetQueueAttributes. Either
    /// all apply or none: the caller gets a changed copy only on success.
    pub fn with(&self, attrs: &BTreeMap<String, String>, creating: bool) -> Result<QueueConfig, QueueError> {
        let mut c = self.clone();
        for (name, value) in attrs {
            match name.as_str() {
                "DelaySeconds" => c.delay_s = ranged(name, value, 0, 900)?,
                "VisibilityTimeout" => c.visibility_timeout_s = ranged(name, value, 0, 43_200)?,
                "MaximumMessageSize" => c.maximum_message_size = ranged(name, value, 1024, MAX_MESSAGE_SIZE)?,
                "MessageRetentionPeriod" => c.retention_s = ranged(name, value, 60, 1_209_600)?,
                "ReceiveMessageWaitTimeSeconds" => c.receive_wait_s = ranged(name, value, 0, 20)?,
                // A standard queue has no FifoQueue attribute at all: SQS refuses even
                // `false` (why Terraform leaves it out of standard queues).
                "FifoQueue" if creating && !c.fifo => {
                    return Err(QueueError::InvalidAttributeName("Unknown Attribute FifoQueue.".into()))
                }
                "FifoQueue" if creating => {
                    if boolean(name, value)? != c.fifo {
                        return Err(QueueError::InvalidAttributeValue(
                            "FifoQueue must be true exactly when the queue name ends in .fifo".into(),
                        ));
                    }
                }
                "FifoQueue" => {
                    return Err(QueueError::InvalidAttributeName(
                        "FifoQueue can only be set when the queue is created".into(),
                    ))
                }
                "ContentBasedDeduplication" if c.fifo => c.content_based_deduplication = boolean(name, value)?,
                "RedrivePolicy" => c.redrive = parse_redrive(value)?,
                "DeduplicationScope" | "FifoThroughputLimit" if !c.fifo => {
                    return Err(QueueError::InvalidAttributeName(format!("{name} is only for FIFO queues")))
                }
                "DeduplicationScope" if !matches!(value.as_str(), "messageGroup" | "queue") => {
                    return Err(QueueError::InvalidAttributeValue(
                        "DeduplicationScope must be messageGroup or queue".into(),
                    ))
                }
                "FifoThroughputLimit" if !matches!(value.as_str(), "perQueue" | "perMessageGroupId") => {
                    return Err(QueueError::InvalidAttributeValue(
                        "FifoThroughputLimit must be perQueue or perMessageGroupId".into(),
                    ))
                }
                "KmsDataKeyReusePeriodSeconds" => {
                    ranged(name, value, 60, 86_400)?;
                    c.passthrough.insert(name.clone(), value.clone());
                }
                "SqsManagedSseEnabled" => {
                    boolean(name, value)?;
                    c.passthrough.insert(name.clone(), value.to_ascii_lowercase());
                }
                "RedriveAllowPolicy" => {
                    check_redrive_allow(value)?;
                    c.passthrough.insert(name.clone(), value.clone());
                }
                "Policy" if !value.is_empty() && serde_json::from_str::<serde_json::Value>(value).is_err() => {
                    return Err(QueueError::InvalidAttributeValue("Policy is not valid JSON".into()))
                }
                n if PASSTHROUGH.contains(&n) => {
                    if value.is_empty() {
                        c.passthrough.remove(n);
                    } else {
                        c.passthrough.insert(name.clone(), value.clone());
                    }
                }
                other => {
                    return Err(QueueError::InvalidAttributeName(format!("Unknown Attribute {other}.")));
                }
            }
        }
        if c.passthrough.get("FifoThroughputLimit").map(String::as_str) == Some("perMessageGroupId")
            && c.passthrough.get("DeduplicationScope").map(String::as_str) == Some("queue")
        {
            return Err(QueueError::InvalidAttributeValue(
                "FifoThroughputLimit perMessageGroupId needs DeduplicationScope messageGroup".into(),
            ));
        }
        Ok(c)
    }

    /// The settable attributes with their current values.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("DelaySeconds".into(), self.delay_s.to_string());
        m.insert("VisibilityTimeout".into(), self.visibility_timeout_s.to_string());
        m.insert("MaximumMessageSize".into(), self.maximum_message_size.to_string());
        m.insert("MessageRetentionPeriod".into(), self.retention_s.to_string());
        m.insert("ReceiveMessageWaitTimeSeconds".into(), self.receive_wait_s.to_string());
        if self.fifo {
            m.insert("FifoQueue".into(), "true".into());
            m.insert("ContentBasedDeduplication".into(), self.content_based_deduplication.to_string());
            // FIFO queues report the (non-high-throughput) defaults until set.
            m.insert("DeduplicationScope".into(), "queue".into());
            m.insert("FifoThroughputLimit".into(), "perQueue".into());
        }
        if let Some(r) = &self.redrive {
            m.insert(
                "RedrivePolicy".into(),
                serde_json::json!({ "deadLetterTargetArn": r.dead_letter_target_arn, "maxReceiveCount": r.max_receive_count })
                    .to_string(),
            );
        }
        m.extend(self.passthrough.clone());
        m
    }
}

fn parse_redrive(value: &str) -> Result<Option<RedrivePolicy>, QueueError> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| {
        QueueError::InvalidAttributeValue(format!(
            "Value {value} for parameter RedrivePolicy is invalid. Reason: {why}"
        ))
    };
    let v: serde_json::Value = serde_json::from_str(value).map_err(|_| bad("not valid JSON"))?;
    let arn =
        v.get("deadLetterTargetArn").and_then(|a| a.as_str()).ok_or_else(|| bad("deadLetterTargetArn is required"))?;
    let count = match v.get("maxReceiveCount") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse::<u64>().ok(),
        _ => None,
    }
    .filter(|n| (1..=1000).contains(n))
    .ok_or_else(|| bad("maxReceiveCount must be 1 to 1000"))?;
    Ok(Some(RedrivePolicy { dead_letter_target_arn: arn.to_string(), max_receive_count: count as u32 }))
}

fn check_redrive_allow(value: &str) -> Result<(), QueueError> {
    let bad = |why: &str| QueueError::InvalidAttributeValue(format!("RedriveAllowPolicy is invalid: {why}"));
    let v: serde_json::Value = serde_json::from_str(value).map_err(|_| bad("not valid JSON"))?;
    let permission =
        v.get("redrivePermission").and_then(|p| p.as_str()).ok_or_else(|| bad("redrivePermission is required"))?;
    let sources = v.get("sourceQueueArns").and_then(|s| s.as_array());
    match (permission, sources) {
        ("allowAll" | "denyAll", None) => Ok(()),
        ("byQueue", Some(s)) if (1..=10).contains(&s.len()) => Ok(()),
        ("byQueue", _) => Err(bad("byQueue needs 1 to 10 sourceQueueArns")),
        ("allowAll" | "denyAll", Some(_)) => Err(bad("sourceQueueArns is only for byQueue")),
        _ => Err(bad("redrivePermission must be allowAll, denyAll or byQueue")),
    }
}

impl QueueConfig {
    /// Whether the RedriveAllowPolicy lets `source_arn` use this queue as its DLQ.
    pub fn allows_source(&self, source_arn: &str) -> bool {
        let Some(p) = self.passthrough.get("RedriveAllowPolicy") else { return true };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(p) else { return true };
        match v.get("redrivePermission").and_then(|p| p.as_str()) {
            Some("denyAll") => false,
            Some("byQueue") => v
                .get("sourceQueueArns")
                .and_then(|s| s.as_array())
                .is_some_and(|s| s.iter().any(|a| a.as_str() == Some(source_arn))),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_ranges_and_all_or_nothing() {
        let c = QueueConfig::new(false);
        assert_eq!(c.to_map()["VisibilityTimeout"], "30");
        assert_eq!(c.to_map()["MaximumMessageSize"], "1048576");
        let d = c.with(&attrs(&[("VisibilityTimeout", "60"), ("DelaySeconds", "5")]), true).unwrap();
        assert_eq!((d.visibility_timeout_s, d.delay_s), (60, 5));
        let e = c.with(&attrs(&[("VisibilityTimeout", "60"), ("DelaySeconds", "901")]), false);
        assert!(matches!(e, Err(QueueError::InvalidAttributeValue(_))));
        assert!(matches!(c.with(&attrs(&[("Bogus", "1")]), false), Err(QueueError::InvalidAttributeName(_))));
        assert!(matches!(c.with(&attrs(&[("FifoQueue", "true")]), false), Err(QueueError::InvalidAttributeName(_))));
        assert!(c.with(&attrs(&[("ContentBasedDeduplication", "true")]), true).is_err());
    }

    #[test]
    fn redrive_policies() {
        let c = QueueConfig::new(false);
        let r = c
            .with(
                &attrs(&[(
                    "RedrivePolicy",
                    r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":"3"}"#,
                )]),
                false,
            )
            .unwrap();
        assert_eq!(r.redrive.as_ref().unwrap().max_receive_count, 3);
        assert!(r.to_map()["RedrivePolicy"].contains("\"maxReceiveCount\":3"));
        assert!(c.with(&attrs(&[("RedrivePolicy", r#"{"maxReceiveCount":3}"#)]), false).is_err());
        let allow = c
            .with(
                &attrs(&[("RedriveAllowPolicy", r#"{"redrivePermission":"byQueue","sourceQueueArns":["arn:a"]}"#)]),
                false,
            )
            .unwrap();
        assert!(allow.allows_source("arn:a") && !allow.allows_source("arn:b"));
    }
}
