//! Shapes several AWS services share: which stream (`StreamName` / `StreamARN`), a
//! resource ARN, a tag, and timestamps (botocore sends them as epoch seconds, possibly
//! fractional, or ISO 8601 strings, and reads back epoch seconds). Each service resolves
//! a [`StreamRef`] against its own engine, in its own module.

use serde::{Deserialize, Deserializer, Serialize};

/// Which stream an operation is about, by name or by ARN.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct StreamRef {
    pub stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    pub stream_arn: Option<String>,
}

/// An operation naming a resource by its ARN alone.
#[derive(Debug, Deserialize)]
pub struct ResourceArn {
    #[serde(rename = "ResourceARN")]
    pub resource_arn: String,
}

/// `{"Key": …, "Value": …}`, as tag lists carry tags.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// A timestamp from a request body, in microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub i64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) if n.is_finite() => Ok(Timestamp((n * 1e6).round() as i64)),
            Raw::Num(_) => Err(serde::de::Error::custom("timestamp is not a finite number")),
            Raw::Str(s) => parse_timestamp_str(&s)
                .map(Timestamp)
                .ok_or_else(|| serde::de::Error::custom(format!("invalid timestamp '{s}'"))),
        }
    }
}

/// Epoch seconds as a string, or ISO 8601 `YYYY-MM-DDTHH:MM:SS[.fff][Z]`.
pub fn parse_timestamp_str(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<f64>() {
        return n.is_finite().then(|| (n * 1e6).round() as i64);
    }
    let s = s.trim_end_matches('Z');
    let (date, time) = s.split_once('T')?;
    let (time, frac) = match time.split_once('.') {
        Some((t, f)) => (t, f),
        None => (time, ""),
    };
    let compact = format!("{}T{}Z", date.replace('-', ""), time.replace(':', ""));
    let secs = crate::wire::sigv4::parse_amz_date(&compact)?;
    let frac_us = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(6).collect();
        digits.parse::<i64>().ok()? * 10i64.pow(6 - digits.len() as u32)
    };
    Some(secs * 1_000_000 + frac_us)
}

/// A timestamp for a response body: epoch seconds with millisecond precision.
pub fn epoch_seconds(us: i64) -> f64 {
    (us / 1000) as f64 / 1000.0
}

/// What a `Range` header asks of a body of known length.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range (RFC 9110 14.1.2); several ranges or a malformed header get the
/// whole body, as the RFC allows.
pub fn parse_range(v: &str, len: u64) -> RangeAsk {
    let Some(spec) = v.trim().strip_prefix("bytes=") else { return RangeAsk::Whole };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeAsk::Whole };
    let (first, last) = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(a), Some(b)) if a <= b => (a, b.min(len.saturating_sub(1))),
        (Some(_), Some(_)) => return RangeAsk::Whole,
        (Some(a), None) if b.is_empty() => (a, len.saturating_sub(1)),
        (None, Some(n)) if a.is_empty() => {
            if n == 0 {
                return RangeAsk::Unsatisfiable;
            }
            (len.saturating_sub(n), len.saturating_sub(1))
        }
        _ => return RangeAsk::Whole,
    };
    if len == 0 || first >= len {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Part(first, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_form() {
        let t: Timestamp = serde_json::from_str("1700000000.5").unwrap();
        assert_eq!(t.0, 1_700_000_000_500_000);
        let t: Timestamp = serde_json::from_str("\"2023-11-14T22:13:20.25Z\"").unwrap();
        assert_eq!(t.0, 1_700_000_000_250_000);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
        assert_eq!(epoch_seconds(1_700_000_000_123_999), 1_700_000_000.123);
    }
}
