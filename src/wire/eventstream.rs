//! The AWS event-stream framing (`application/vnd.amazon.eventstream`) that
//! SubscribeToShard answers with. Pure.
//!
//! ```text
//! message = total_len u32 | headers_len u32 | prelude_crc u32 (CRC-32 of the 8 bytes before)
//!         | headers | payload | message_crc u32 (CRC-32 of everything before it)
//! header  = name_len u8 | name | type u8 | value
//! ```
//! All integers big-endian. We write only string headers (type 7: u16 length, bytes);
//! the decoder reads every header type the format defines, for tests and fuzzing.

const PRELUDE: usize = 12;
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(Vec<u8>),
    String(String),
    Timestamp(i64),
    Uuid([u8; 16]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Vec<u8>,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| match v {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventStreamError {
    #[error("prelude checksum mismatch")]
    PreludeChecksum,
    #[error("message checksum mismatch")]
    MessageChecksum,
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

/// One message with string headers.
pub fn encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = PRELUDE + h.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out[..8]);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// An event (`:message-type` event) with a JSON payload.
pub fn event(event_type: &str, json: &[u8]) -> Vec<u8> {
    encode_message(
        &[(":message-type", "event"), (":event-type", event_type), (":content-type", "application/json")],
        json,
    )
}

/// An exception inside the stream (`:message-type` exception).
pub fn exception(exception_type: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "message": message }).to_string();
    encode_message(
        &[(":message-type", "exception"), (":exception-type", exception_type), (":content-type", "application/json")],
        body.as_bytes(),
    )
}

fn take<'a>(b: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], EventStreamError> {
    let end =
        at.checked_add(n).filter(|e| *e <= b.len()).ok_or(EventStreamError::Malformed("header runs past its block"))?;
    let s = &b[*at..end];
    *at = end;
    Ok(s)
}

fn decode_headers(b: &[u8]) -> Result<Vec<(String, HeaderValue)>, EventStreamError> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < b.len() {
        let n = take(b, &mut at, 1)?[0] as usize;
        let name = std::str::from_utf8(take(b, &mut at, n)?)
            .map_err(|_| EventStreamError::Malformed("header name is not UTF-8"))?;
        let kind = take(b, &mut at, 1)?[0];
        let mut fixed = |n: usize| -> Result<u64, EventStreamError> {
            Ok(take(b, &mut at, n)?.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
        };
        let value = match kind {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(fixed(1)? as i8),
            3 => HeaderValue::Short(fixed(2)? as i16),
            4 => HeaderValue::Int(fixed(4)? as i32),
            5 => HeaderValue::Long(fixed(8)? as i64),
            8 => HeaderValue::Timestamp(fixed(8)? as i64),
            6 | 7 => {
                let len = fixed(2)? as usize;
                let v = take(b, &mut at, len)?.to_vec();
                if kind == 6 {
                    HeaderValue::Bytes(v)
                } else {
                    HeaderValue::String(
                        String::from_utf8(v).map_err(|_| EventStreamError::Malformed("string header is not UTF-8"))?,
                    )
                }
            }
            9 => {
                let mut u = [0u8; 16];
                u.copy_from_slice(take(b, &mut at, 16)?);
                HeaderValue::Uuid(u)
            }
            _ => return Err(EventStreamError::Malformed("unknown header type")),
        };
        out.push((name.to_string(), value));
    }
    Ok(out)
}

/// The message at the start of `bytes` and its length; `Ok(None)` if incomplete.
pub fn decode_message(bytes: &[u8]) -> Result<Option<(Message, usize)>, EventStreamError> {
    if bytes.len() < PRELUDE {
        return Ok(None);
    }
    let total = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let headers_len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    if crc32fast::hash(&bytes[..8]) != u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) {
        return Err(EventStreamError::PreludeChecksum);
    }
    if !(PRELUDE + 4..=MAX_MESSAGE).contains(&total) || headers_len > total - PRELUDE - 4 {
        return Err(EventStreamError::Malformed("lengths do not fit"));
    }
    if bytes.len() < total {
        return Ok(None);
    }
    let crc = u32::from_be_bytes([bytes[total - 4], bytes[total - 3], bytes[total - 2], bytes[total - 1]]);
    if crc32fast::hash(&bytes[..total - 4]) != crc {
        return Err(EventStreamError::MessageChecksum);
    }
    let headers = decode_headers(&bytes[PRELUDE..PRELUDE + headers_len])?;
    let payload = bytes[PRELUDE + headers_len..total - 4].to_vec();
    Ok(Some((Message { headers, payload }, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_refuse_damage() {
        let m = event("SubscribeToShardEvent", br#"{"Records":[]}"#);
        let (d, n) = decode_message(&m).unwrap().unwrap();
        assert_eq!(n, m.len());
        assert_eq!(d.header(":event-type"), Some("SubscribeToShardEvent"));
        assert_eq!(d.header(":message-type"), Some("event"));
        assert_eq!(d.payload, br#"{"Records":[]}"#);
        for cut in 0..m.len() {
            assert_eq!(decode_message(&m[..cut]), Ok(None), "cut at {cut}");
        }
        let mut bad = m.clone();
        let last = bad.len() - 6;
        bad[last] ^= 1;
        assert_eq!(decode_message(&bad), Err(EventStreamError::MessageChecksum));
        bad = m.clone();
        bad[1] ^= 1;
        assert_eq!(decode_message(&bad), Err(EventStreamError::PreludeChecksum));
    }

    #[test]
    fn a_known_message_matches_the_reference_bytes() {
        // The empty message from the AWS event-stream test suite ("empty_message").
        let m = encode_message(&[], b"");
        assert_eq!(m, [0, 0, 0, 0x10, 0, 0, 0, 0, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff]);
        let e = exception("ResourceNotFoundException", "gone");
        let (d, _) = decode_message(&e).unwrap().unwrap();
        assert_eq!(d.header(":exception-type"), Some("ResourceNotFoundException"));
    }
}
