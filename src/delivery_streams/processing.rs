//! Record processors that transform records inside the server (pure): today
//! `AppendDelimiterToRecord`. (MetadataExtraction leaves records as they are: its keys
//! come from [`super::jq`].)

use super::settings::Processor;

/// `records` after `processors`, one output per record (the bucket writes them one
/// after another; an HTTP endpoint gets them as its request's records).
pub fn process(mut records: Vec<Vec<u8>>, processors: &[Processor]) -> Vec<Vec<u8>> {
    for p in processors {
        if p.kind == "AppendDelimiterToRecord" {
            let delimiter = unescape(p.parameter("Delimiter").unwrap_or("\\n"));
            for r in &mut records {
                r.extend_from_slice(&delimiter);
            }
        }
    }
    records
}

/// A record that failed processing as Firehose writes it under the error prefix: one
/// JSON object per line with the original bytes in base64.
pub fn failure_record(
    raw: &[u8],
    arrival_ms: i64,
    now_ms: i64,
    code: &str,
    message: &str,
    lambda_arn: Option<&str>,
) -> Vec<u8> {
    use base64::Engine;
    let mut v = serde_json::json!({
        "attemptsMade": 1,
        "arrivalTimestamp": arrival_ms,
        "errorCode": code,
        "errorMessage": message,
        "attemptEndingTimestamp": now_ms,
        "rawData": base64::engine::general_purpose::STANDARD.encode(raw),
    });
    if let (Some(arn), Some(o)) = (lambda_arn, v.as_object_mut()) {
        o.insert("lambdaArn".into(), arn.into());
    }
    let mut line = v.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// `\n`, `\t`, `\r` and `\\` in a delimiter parameter, as the console writes them.
fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('r') => out.push(b'\r'),
            Some('\\') | None => out.push(b'\\'),
            Some(other) => {
                out.push(b'\\');
                let mut buf = [0u8; 4];
                out.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::settings::ProcessorParameter;
    use super::*;

    #[test]
    fn records_are_concatenated_or_delimited() {
        let records = || vec![b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()];
        assert_eq!(process(records(), &[]).concat(), b"{\"a\":1}{\"a\":2}");
        let append = Processor { kind: "AppendDelimiterToRecord".into(), parameters: vec![] };
        assert_eq!(process(records(), std::slice::from_ref(&append)).concat(), b"{\"a\":1}\n{\"a\":2}\n");
        let pipe = Processor {
            parameters: vec![ProcessorParameter { parameter_name: "Delimiter".into(), parameter_value: "|\\t".into() }],
            ..append
        };
        assert_eq!(process(records(), &[pipe]).concat(), b"{\"a\":1}|\t{\"a\":2}|\t");
    }
}
