//! RTSP 1.0 messages (RFC 2326) and interleaved binary frames (§10.12) on one TCP
//! connection, parsed from a byte buffer without I/O: [`parse`] answers "need more",
//! a message and its length, or where the bytes stopped making sense.

use std::collections::BTreeMap;

/// Limits on what one message may take.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub uri: String,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    pub fn cseq(&self) -> Option<&str> {
        self.header("cseq")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    /// `$`, channel, 16-bit length, payload (RTP or RTCP).
    Interleaved {
        channel: u8,
        payload: Vec<u8>,
    },
    /// A response (a client answering us; we only count it).
    Response {
        status: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtspError {
    #[error("malformed RTSP message: {0}")]
    Malformed(&'static str),
    #[error("RTSP headers longer than {MAX_HEADER_BYTES} bytes")]
    HeadersTooLong,
    #[error("RTSP body of {0} bytes is over the limit")]
    BodyTooLong(usize),
}

/// The message at the start of `buf` and how many bytes it took; `Ok(None)` when
/// `buf` holds only part of one.
pub fn parse(buf: &[u8]) -> Result<Option<(Message, usize)>, RtspError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    if first == b'$' {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if buf.len() < 4 + len {
            return Ok(None);
        }
        return Ok(Some((Message::Interleaved { channel: buf[1], payload: buf[4..4 + len].to_vec() }, 4 + len)));
    }
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEADER_BYTES {
            return Err(RtspError::HeadersTooLong);
        }
        return Ok(None);
    };
    if end > MAX_HEADER_BYTES {
        return Err(RtspError::HeadersTooLong);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| RtspError::Malformed("header is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let start = lines.next().ok_or(RtspError::Malformed("no start line"))?;
    let mut headers = BTreeMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').ok_or(RtspError::Malformed("header line without ':'"))?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let body_len: usize = match headers.get("content-length") {
        Some(v) => v.parse().map_err(|_| RtspError::Malformed("Content-Length is not a number"))?,
        None => 0,
    };
    if body_len > MAX_BODY_BYTES {
        return Err(RtspError::BodyTooLong(body_len));
    }
    let total = end + 4 + body_len;
    if buf.len() < total {
        return Ok(None);
    }
    let mut parts = start.split(' ');
    let (a, b, c) = (parts.next(), parts.next(), parts.next());
    let msg = match (a, b, c) {
        (Some(v), Some(status), _) if v.starts_with("RTSP/") => {
            Message::Response { status: status.parse().map_err(|_| RtspError::Malformed("bad status code"))? }
        }
        (Some(method), Some(uri), Some(version)) if version.starts_with("RTSP/1.") && parts.next().is_none() => {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                return Err(RtspError::Malformed("bad method"));
            }
            Message::Request(Request {
                method: method.to_string(),
                uri: uri.to_string(),
                headers,
                body: buf[end + 4..total].to_vec(),
            })
        }
        _ => return Err(RtspError::Malformed("bad request line")),
    };
    Ok(Some((msg, total)))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A response with the request's CSeq and the given headers and body.
pub fn response(status: u16, reason: &str, cseq: Option<&str>, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("RTSP/1.0 {status} {reason}\r\n");
    if let Some(c) = cseq {
        out.push_str(&format!("CSeq: {c}\r\n"));
    }
    out.push_str("Server: Kinescope\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// An interleaved frame.
pub fn interleaved(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + payload.len());
    v.push(b'$');
    v.push(channel);
    v.extend_from_slice(&(payload.len().min(0xffff) as u16).to_be_bytes());
    v.extend_from_slice(&payload[..payload.len().min(0xffff)]);
    v
}

/// The Transport header's parts we act on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transport {
    pub tcp: bool,
    pub interleaved: Option<(u8, u8)>,
    pub client_port: Option<(u16, u16)>,
    pub record: bool,
}

pub fn parse_transport(value: &str) -> Option<Transport> {
    // Several alternatives may be offered, comma separated; take the first we read.
    let first = value.split(',').next()?;
    let mut parts = first.split(';');
    let proto = parts.next()?.trim();
    let tcp = match proto {
        "RTP/AVP/TCP" => true,
        "RTP/AVP" | "RTP/AVP/UDP" => false,
        _ => return None,
    };
    let pair = |v: &str| -> Option<(u16, u16)> {
        let (a, b) = v.split_once('-').unwrap_or((v, ""));
        let a: u16 = a.parse().ok()?;
        let b: u16 = if b.is_empty() { a.checked_add(1)? } else { b.parse().ok()? };
        Some((a, b))
    };
    let mut t = Transport { tcp, ..Default::default() };
    for p in parts {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "interleaved" => {
                t.interleaved = pair(v).and_then(|(a, b)| Some((u8::try_from(a).ok()?, u8::try_from(b).ok()?)))
            }
            "client_port" => t.client_port = pair(v),
            "mode" => t.record = v.trim_matches('"').eq_ignore_ascii_case("record"),
            _ => {}
        }
    }
    Some(t)
}

/// The stream name an RTSP URL names: its path without the leading `/` (and without
/// a trailing `/streamid=N` or `/trackID=N` control suffix).
pub fn path_of(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| &rest[i + 1..]);
    let path = path.split('?').next().unwrap_or(path);
    path.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_frames_and_partial_input() {
        let req = b"ANNOUNCE rtsp://127.0.0.1:8554/lobby RTSP/1.0\r\nCSeq: 2\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n$\x00\x00\x02ab";
        let (m, n) = parse(req).unwrap().unwrap();
        let Message::Request(r) = m else { panic!("not a request") };
        assert_eq!((r.method.as_str(), r.cseq(), r.body.as_slice()), ("ANNOUNCE", Some("2"), &b"v=0\r\n"[..]));
        let (m, n2) = parse(&req[n..]).unwrap().unwrap();
        assert_eq!(m, Message::Interleaved { channel: 0, payload: b"ab".to_vec() });
        assert_eq!(n + n2, req.len());
        for cut in 0..n {
            assert_eq!(parse(&req[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse(b"GARBAGE\r\n\r\n").is_err());
        assert!(parse(b"OPTIONS * RTSP/1.0\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse(&[b'A'; MAX_HEADER_BYTES + 10]).is_err());
        assert!(matches!(
            parse(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n"),
            Ok(Some((Message::Response { status: 200 }, _)))
        ));
    }

    #[test]
    fn transports_and_paths() {
        let t = parse_transport("RTP/AVP/TCP;unicast;interleaved=0-1;mode=record").unwrap();
        assert_eq!((t.tcp, t.interleaved, t.record), (true, Some((0, 1)), true));
        let u = parse_transport("RTP/AVP/UDP;unicast;client_port=5000-5001;mode=\"RECORD\"").unwrap();
        assert_eq!((u.tcp, u.client_port, u.record), (false, Some((5000, 5001)), true));
        assert_eq!(parse_transport("RAW/RAW/UDP;unicast"), None);
        assert_eq!(path_of("rtsp://127.0.0.1:8554/lobby"), "lobby");
        assert_eq!(path_of("rtsp://h:1/lobby/"), "lobby");
    }
}
