//! The Lambda processor's record-transformation contract (pure): the invocation a
//! batch becomes and the reading of the function's answer. The function is any HTTP
//! endpoint: its `LambdaArn` is either a URL (`http://…`, `https://…`) or
//! `arn:aws:lambda:REGION:ACCOUNT:function:NAME`, mapped to a URL by `[functions.NAME]`
//! in the configuration.
//!
//! ```text
//! POST <url>   {"invocationId":"<uuid>","deliveryStreamArn":"…","region":"…",
//!               "records":[{"recordId":"1","approximateArrivalTimestamp":<ms>,"data":"<base64>"}]}
//! 200          {"records":[{"recordId":"1","result":"Ok"|"Dropped"|"ProcessingFailed","data":"<base64>"}]}
//! ```
//!
//! Every record sent must come back once with a result; a record missing, unknown or
//! without data when `Ok` fails the invocation (retried, then processing-failed).

use base64::Engine;
use serde::Deserialize;

/// What the function made of each record, in the batch's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transformed {
    Ok(Vec<u8>),
    Dropped,
    Failed,
}

pub fn invocation(
    invocation_id: &str,
    stream_arn: &str,
    region: &str,
    arrival_ms: i64,
    records: &[Vec<u8>],
) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<serde_json::Value> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            serde_json::json!({"recordId": (i + 1).to_string(), "approximateArrivalTimestamp": arrival_ms, "data": b64.encode(r)})
        })
        .collect();
    serde_json::json!({"invocationId": invocation_id, "deliveryStreamArn": stream_arn, "region": region, "records": records})
        .to_string()
        .into_bytes()
}

#[derive(Deserialize)]
struct Answer {
    records: Vec<AnswerRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerRecord {
    record_id: String,
    result: String,
    #[serde(default)]
    data: Option<String>,
}

/// The function's answer for `sent` records, or why it is not a valid one.
pub fn read_answer(sent: usize, body: &[u8]) -> Result<Vec<Transformed>, String> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| format!("the function's answer is not the transformation format: {e}"))?;
    let mut out: Vec<Option<Transformed>> = vec![None; sent];
    for r in answer.records {
        let index = r
            .record_id
            .parse::<usize>()
            .ok()
            .filter(|i| (1..=sent).contains(i))
            .ok_or_else(|| format!("the function answered for record '{}', which was not sent", r.record_id))?
            - 1;
        if out[index].is_some() {
            return Err(format!("the function answered twice for record {}", r.record_id));
        }
        out[index] = Some(match r.result.as_str() {
            "Ok" => {
                let data = r.data.ok_or_else(|| format!("record {} is Ok but has no data", r.record_id))?;
                Transformed::Ok(
                    base64::engine::general_purpose::STANDARD
                        .decode(data)
                        .map_err(|_| format!("record {}'s data is not base64", r.record_id))?,
                )
            }
            "Dropped" => Transformed::Dropped,
            "ProcessingFailed" => Transformed::Failed,
            other => {
                return Err(format!("record {} has result '{other}' (Ok, Dropped or ProcessingFailed)", r.record_id))
            }
        });
    }
    out.into_iter()
        .enumerate()
        .map(|(i, t)| t.ok_or_else(|| format!("the function did not answer for record {}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invocation_and_its_answer() {
        let body = invocation("inv-1", "arn:s", "us-east-1", 5, &[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["records"][1]["recordId"], "2");
        assert_eq!(v["records"][2]["data"], "Yw==");
        let answer = br#"{"records":[{"recordId":"2","result":"Dropped"},{"recordId":"1","result":"Ok","data":"QQ=="},
            {"recordId":"3","result":"ProcessingFailed","data":"Yw=="}]}"#;
        assert_eq!(
            read_answer(3, answer).unwrap(),
            vec![Transformed::Ok(b"A".to_vec()), Transformed::Dropped, Transformed::Failed]
        );
        assert!(read_answer(3, br#"{"records":[{"recordId":"1","result":"Ok","data":"QQ=="}]}"#).is_err());
        assert!(read_answer(1, br#"{"records":[{"recordId":"9","result":"Ok","data":"QQ=="}]}"#).is_err());
        assert!(read_answer(1, br#"{"records":[{"recordId":"1","result":"Maybe"}]}"#).is_err());
        assert!(read_answer(1, b"oops").is_err());
    }
}
