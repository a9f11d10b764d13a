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

/// RecordDeAggregation: each record split into the records it carries, by
/// `SubRecordType`: `JSON` (JSON values one after another, as `{..}{..}` or one per
/// line) or `DELIMITED` (split at `Delimiter`, given base64-encoded as AWS asks). A
/// record that does not split (not JSON, no delimiter) passes whole.
pub fn deaggregate(records: Vec<Vec<u8>>, processor: &Processor) -> Vec<Vec<u8>> {
    use base64::Engine;
    let delimiter = processor
        .parameter("Delimiter")
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .filter(|d| !d.is_empty());
    let json = processor.parameter("SubRecordType").is_none_or(|t| t == "JSON");
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let pieces: Option<Vec<Vec<u8>>> =
            if json { split_json(&r) } else { delimiter.as_ref().map(|d| split_at(&r, d)) };
        match pieces {
            Some(p) if !p.is_empty() => out.extend(p),
            _ => out.push(r),
        }
    }
    out
}

fn split_json(r: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut stream = serde_json::Deserializer::from_slice(r).into_iter::<serde::de::IgnoredAny>();
    let mut pieces = Vec::new();
    let mut start = 0;
    while let Some(item) = stream.next() {
        item.ok()?;
        let end = stream.byte_offset();
        let piece = r[start..end].trim_ascii();
        pieces.push(piece.to_vec());
        start = end;
    }
    Some(pieces)
}

fn split_at(r: &[u8], delimiter: &[u8]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + delimiter.len() <= r.len() {
        if &r[i..i + delimiter.len()] == delimiter {
            pieces.push(r[start..i].to_vec());
            i += delimiter.len();
            start = i;
        } else {
            i += 1;
        }
    }
    if start < r.len() {
        pieces.push(r[start..].to_vec());
    }
    pieces
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
    fn aggregated_records_are_split() {
        let json = Processor {
            kind: "RecordDeAggregation".into(),
            parameters: vec![ProcessorParameter { name: "SubRecordType".into(), value: "JSON".into() }],
        };
        let out = deaggregate(vec![b"{\"a\":1}{\"a\":2}\n {\"a\":3}".to_vec(), b"not json".to_vec()], &json);
        assert_eq!(
            out,
            vec![b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec(), b"{\"a\":3}".to_vec(), b"not json".to_vec()]
        );
        let delimited = Processor {
            kind: "RecordDeAggregation".into(),
            parameters: vec![
                ProcessorParameter { name: "SubRecordType".into(), value: "DELIMITED".into() },
                ProcessorParameter { name: "Delimiter".into(), value: "fHw=".into() },
            ],
        };
        assert_eq!(
            deaggregate(vec![b"a||b||c".to_vec()], &delimited),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
    }

    #[test]
    fn records_are_concatenated_or_delimited() {
        let records = || vec![b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()];
        assert_eq!(process(records(), &[]).concat(), b"{\"a\":1}{\"a\":2}");
        let append = Processor { kind: "AppendDelimiterToRecord".into(), parameters: vec![] };
        assert_eq!(process(records(), std::slice::from_ref(&append)).concat(), b"{\"a\":1}\n{\"a\":2}\n");
        let pipe = Processor {
            parameters: vec![ProcessorParameter { name: "Delimiter".into(), value: "|\\t".into() }],
            ..append
        };
        assert_eq!(process(records(), &[pipe]).concat(), b"{\"a\":1}|\t{\"a\":2}|\t");
    }
}
