//! Firehose's HTTP endpoint delivery protocol (pure): the request a batch becomes and
//! the response that acknowledges it.
//!
//! ```text
//! POST <url>
//! Content-Type: application/json            Content-Encoding: gzip (if GZIP)
//! X-Amz-Firehose-Protocol-Version: 1.0      X-Amz-Firehose-Request-Id: <uuid>
//! X-Amz-Firehose-Source-Arn: <stream ARN>   X-Amz-Firehose-Access-Key: <AccessKey>
//! X-Amz-Firehose-Common-Attributes: {"commonAttributes":{...}}
//!
//! {"requestId":"<uuid>","timestamp":<ms>,"records":[{"data":"<base64>"},...]}
//! ```
//!
//! The endpoint acknowledges with status 200 and `{"requestId":"<uuid>","timestamp":
//! <ms>}`; any other status, or a body whose requestId is not ours, is a failure to be
//! retried.

use base64::Engine;

use super::settings::HttpDestination;

pub const PROTOCOL_VERSION: &str = "1.0";

/// One delivery request: headers and body.
pub struct EndpointRequest {
    pub request_id: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The request delivering `records` at `now_ms` for the stream `source_arn`.
pub fn build_request(
    d: &HttpDestination,
    source_arn: &str,
    request_id: &str,
    now_ms: i64,
    records: &[Vec<u8>],
) -> std::io::Result<EndpointRequest> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut body = Vec::with_capacity(records.iter().map(|r| r.len() * 4 / 3 + 16).sum::<usize>() + 96);
    body.extend_from_slice(format!("{{\"requestId\":\"{request_id}\",\"timestamp\":{now_ms},\"records\":[").as_bytes());
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"data\":\"");
        body.extend_from_slice(b64.encode(r).as_bytes());
        body.extend_from_slice(b"\"}");
    }
    body.extend_from_slice(b"]}");
    let mut headers = vec![
        ("Content-Type", "application/json".to_string()),
        ("X-Amz-Firehose-Protocol-Version", PROTOCOL_VERSION.to_string()),
        ("X-Amz-Firehose-Request-Id", request_id.to_string()),
        ("X-Amz-Firehose-Source-Arn", source_arn.to_string()),
    ];
    if let Some(key) = &d.endpoint.access_key {
        headers.push(("X-Amz-Firehose-Access-Key", key.clone()));
    }
    if !d.common_attributes.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> =
            d.common_attributes.iter().map(|(name, value)| (name.clone(), value.clone().into())).collect();
        headers.push(("X-Amz-Firehose-Common-Attributes", serde_json::json!({ "commonAttributes": map }).to_string()));
    }
    if d.gzip {
        body = super::compression::compress(super::settings::Compression::Gzip, body)?;
        headers.push(("Content-Encoding", "gzip".to_string()));
    }
    Ok(EndpointRequest { request_id: request_id.to_string(), headers, body })
}

/// Whether the endpoint's answer acknowledges the request; the reason if not.
pub fn check_response(request_id: &str, status: u16, body: &[u8]) -> Result<(), String> {
    if status != 200 {
        let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
        return Err(format!("the endpoint answered {status}: {text}"));
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the endpoint's 200 response is not JSON".to_string())?;
    match v.get("requestId").and_then(|r| r.as_str()) {
        Some(r) if r == request_id => Ok(()),
        Some(r) => Err(format!("the endpoint acknowledged request {r}, not {request_id}")),
        None => Err("the endpoint's response has no requestId".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::settings::*;
    use super::*;

    fn destination(gzip: bool) -> HttpDestination {
        HttpDestination {
            endpoint: HttpEndpoint { url: "https://example.com/in".into(), name: None, access_key: Some("k3y".into()) },
            buffering: BufferingHints::default(),
            gzip,
            common_attributes: vec![("camera".into(), "door".into())],
            processing: None,
            role_arn: None,
            retry_secs: None,
            backup_mode: None,
            bucket: BucketDestination::default(),
            error_logging: None,
        }
    }

    #[test]
    fn a_batch_becomes_firehoses_request() {
        let r =
            build_request(&destination(false), "arn:x", "rid-1", 1234, &[b"{\"a\":1}".to_vec(), vec![0, 255]]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["requestId"], "rid-1");
        assert_eq!(v["timestamp"], 1234);
        assert_eq!(v["records"][0]["data"], "eyJhIjoxfQ==");
        assert_eq!(v["records"][1]["data"], "AP8=");
        let h = |name: &str| r.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        assert_eq!(h("X-Amz-Firehose-Access-Key").as_deref(), Some("k3y"));
        assert_eq!(h("X-Amz-Firehose-Common-Attributes").as_deref(), Some(r#"{"commonAttributes":{"camera":"door"}}"#));
        assert!(h("Content-Encoding").is_none());
        let gz = build_request(&destination(true), "arn:x", "rid-1", 1234, &[b"x".to_vec()]).unwrap();
        assert_eq!(&gz.body[..2], &[0x1f, 0x8b]);
    }

    #[test]
    fn only_a_matching_200_acknowledges() {
        assert!(check_response("r", 200, br#"{"requestId":"r","timestamp":1}"#).is_ok());
        assert!(check_response("r", 200, br#"{"requestId":"other"}"#).is_err());
        assert!(check_response("r", 200, b"ok").is_err());
        assert!(check_response("r", 503, br#"{"requestId":"r"}"#).unwrap_err().contains("503"));
    }
}
