//! CBOR (RFC 8949) for `application/x-amz-cbor-1.1`, the encoding the AWS SDK for Java
//! (and so the KCL/KPL) uses for Kinesis by default. Pure.
//!
//! Requests are turned into the JSON the handlers already read: byte strings (blobs)
//! become base64 strings, and tag-1 timestamps, which the Java SDK writes as epoch
//! milliseconds, become epoch seconds. Responses go the other way: members named
//! `Data` are written as byte strings, members whose names end in `Timestamp` as tag 1
//! with epoch milliseconds.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{Map, Number, Value};

const MAX_DEPTH: usize = 64;
/// Items one body may hold. A JSON value costs ~50 bytes of memory whatever its CBOR
/// size (one byte for a small integer), so without a cap a 16 MiB body of one-byte
/// items would cost ~800 MB; AWS requests hold a few thousand items at most.
pub const MAX_ITEMS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    #[error("the body ends in the middle of an item")]
    Truncated,
    #[error("malformed CBOR: {0}")]
    Malformed(&'static str),
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("more than {MAX_ITEMS} items")]
    TooManyItems,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    items: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, CborError> {
        let v = *self.b.get(self.at).ok_or(CborError::Truncated)?;
        self.at += 1;
        Ok(v)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], CborError> {
        let n = usize::try_from(n).map_err(|_| CborError::Truncated)?;
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len()).ok_or(CborError::Truncated)?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// The argument of an item head; `None` for indefinite length.
    fn argument(&mut self, info: u8) -> Result<Option<u64>, CborError> {
        let n = |r: &mut Self, k: u64| -> Result<u64, CborError> {
            Ok(r.take(k)?.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
        };
        Ok(Some(match info {
            0..=23 => u64::from(info),
            24 => n(self, 1)?,
            25 => n(self, 2)?,
            26 => n(self, 4)?,
            27 => n(self, 8)?,
            31 => return Ok(None),
            _ => return Err(CborError::Malformed("reserved additional information")),
        }))
    }

    fn string_chunks(&mut self, major: u8, info: u8) -> Result<Vec<u8>, CborError> {
        match self.argument(info)? {
            Some(len) => Ok(self.take(len)?.to_vec()),
            None => {
                let mut out = Vec::new();
                loop {
                    let head = self.byte()?;
                    if head == 0xff {
                        return Ok(out);
                    }
                    if head >> 5 != major || head & 31 == 31 {
                        return Err(CborError::Malformed("bad chunk in an indefinite string"));
                    }
                    let len = self.argument(head & 31)?.ok_or(CborError::Malformed("nested indefinite string"))?;
                    out.extend_from_slice(self.take(len)?);
                }
            }
        }
    }

    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        self.items += 1;
        if self.items > MAX_ITEMS {
            return Err(CborError::TooManyItems);
        }
        let head = self.byte()?;
        let (major, info) = (head >> 5, head & 31);
        Ok(match major {
            0 => Value::from(self.argument(info)?.ok_or(CborError::Malformed("indefinite integer"))?),
            1 => {
                let n = self.argument(info)?.ok_or(CborError::Malformed("indefinite integer"))?;
                let v = -1i128 - i128::from(n);
                i64::try_from(v).map(Value::from).unwrap_or_else(|_| Value::from(v as f64))
            }
            2 => Value::String(BASE64.encode(self.string_chunks(2, info)?)),
            3 => Value::String(
                String::from_utf8(self.string_chunks(3, info)?)
                    .map_err(|_| CborError::Malformed("text is not UTF-8"))?,
            ),
            4 => {
                let mut v = Vec::new();
                match self.argument(info)? {
                    Some(n) => {
                        for _ in 0..n {
                            v.push(self.item(depth + 1)?);
                        }
                    }
                    None => {
                        while self.b.get(self.at) != Some(&0xff) {
                            v.push(self.item(depth + 1)?);
                        }
                        self.at += 1;
                    }
                }
                Value::Array(v)
            }
            5 => {
                let mut m = Map::new();
                let mut pair = |r: &mut Self| -> Result<(), CborError> {
                    let k = match r.item(depth + 1)? {
                        Value::String(s) => s,
                        _ => return Err(CborError::Malformed("a map key is not a string")),
                    };
                    let v = r.item(depth + 1)?;
                    m.insert(k, v);
                    Ok(())
                };
                match self.argument(info)? {
                    Some(n) => {
                        for _ in 0..n {
                            pair(self)?;
                        }
                    }
                    None => {
                        while self.b.get(self.at) != Some(&0xff) {
                            pair(self)?;
                        }
                        self.at += 1;
                    }
                }
                Value::Object(m)
            }
            6 => {
                let tag = self.argument(info)?.ok_or(CborError::Malformed("indefinite tag"))?;
                let inner = self.item(depth + 1)?;
                match (tag, inner.as_f64()) {
                    // Epoch milliseconds from the Java SDK → epoch seconds.
                    (1, Some(ms)) => Number::from_f64(ms / 1000.0).map_or(Value::Null, Value::Number),
                    _ => inner,
                }
            }
            _ => match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 | 23 => Value::Null,
                25 => {
                    let h = self.take(2)?;
                    float_value(half_to_f64(u16::from_be_bytes([h[0], h[1]])))
                }
                26 => {
                    let f = self.take(4)?;
                    float_value(f64::from(f32::from_be_bytes([f[0], f[1], f[2], f[3]])))
                }
                27 => {
                    let f = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(f);
                    float_value(f64::from_be_bytes(a))
                }
                _ => return Err(CborError::Malformed("unsupported simple value")),
            },
        })
    }
}

fn float_value(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn half_to_f64(h: u16) -> f64 {
    let exp = (h >> 10) & 0x1f;
    let mant = f64::from(h & 0x3ff);
    let v = match exp {
        0 => mant * 2f64.powi(-24),
        31 if mant == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (mant + 1024.0) * 2f64.powi(i32::from(e) - 25),
    };
    if h & 0x8000 != 0 {
        -v
    } else {
        v
    }
}

/// A CBOR request body as the JSON value the handlers read.
pub fn to_json(bytes: &[u8]) -> Result<Value, CborError> {
    if bytes.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let mut r = Reader { b: bytes, at: 0, items: 0 };
    let v = r.item(0)?;
    if r.at != bytes.len() {
        return Err(CborError::Malformed("bytes after the top-level item"));
    }
    Ok(v)
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn write_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        head(out, 0, u);
    } else if let Some(i) = n.as_i64() {
        head(out, 1, (-1 - i) as u64);
    } else {
        out.push(0xfb);
        out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_be_bytes());
    }
}

fn write(out: &mut Vec<u8>, v: &Value, key: Option<&str>) {
    match v {
        Value::Null => out.push(0xf6),
        Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Value::Number(n) if key.is_some_and(|k| k.ends_with("Timestamp")) => {
            head(out, 6, 1);
            let ms = (n.as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
            write_number(out, &Number::from(ms));
        }
        Value::Number(n) => write_number(out, n),
        Value::String(s) => match (key, BASE64.decode(s)) {
            (Some("Data"), Ok(bytes)) => {
                head(out, 2, bytes.len() as u64);
                out.extend_from_slice(&bytes);
            }
            _ => {
                head(out, 3, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
        },
        Value::Array(a) => {
            head(out, 4, a.len() as u64);
            for x in a {
                write(out, x, None);
            }
        }
        Value::Object(m) => {
            head(out, 5, m.len() as u64);
            for (k, x) in m {
                head(out, 3, k.len() as u64);
                out.extend_from_slice(k.as_bytes());
                write(out, x, Some(k));
            }
        }
    }
}

/// A JSON response as CBOR, blobs and timestamps typed as the Java SDK reads them.
pub fn from_json(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, v, None);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_response_round_trips_with_blobs_and_timestamps_typed() {
        let v = json!({"Records": [{"Data": "aGVsbG8=", "ApproximateArrivalTimestamp": 1700000000.123, "PartitionKey": "k"}],
                       "MillisBehindLatest": 0, "Neg": -5, "Ok": true, "None": null});
        let bytes = from_json(&v);
        // The blob is a byte string, the timestamp tag 1.
        assert!(bytes.windows(6).any(|w| w == [0x45, b'h', b'e', b'l', b'l', b'o']));
        assert!(bytes.windows(2).any(|w| w == [0xc1, 0x1b]));
        assert_eq!(to_json(&bytes).unwrap(), v);
    }

    #[test]
    fn reads_what_jackson_writes() {
        // {"StreamName": "s", "Limit": 1000} with an indefinite map, as Jackson streams it.
        let mut b = vec![0xbf, 0x6a];
        b.extend_from_slice(b"StreamName");
        b.extend_from_slice(&[0x61, b's', 0x65]);
        b.extend_from_slice(b"Limit");
        b.extend_from_slice(&[0x19, 0x03, 0xe8, 0xff]);
        assert_eq!(to_json(&b).unwrap(), json!({"StreamName": "s", "Limit": 1000}));
        assert_eq!(to_json(&[0xf9, 0x3c, 0x00]).unwrap(), json!(1.0));
        assert_eq!(to_json(&[]).unwrap(), json!({}));
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        for bad in [&[0x5f, 0x01][..], &[0x7a, 0xff, 0xff, 0xff, 0xff], &[0xa1, 0x01, 0x02], &[0x1c], &[0x01, 0x02]] {
            assert!(to_json(bad).is_err(), "{bad:?}");
        }
        let deep = vec![0x81; 1000];
        assert_eq!(to_json(&deep), Err(CborError::TooDeep));
        // An indefinite array of a million one-byte nulls: refused at the item cap,
        // before it costs a JSON value each.
        let mut many = vec![0x9f];
        many.extend(std::iter::repeat_n(0xf6, 1_000_000));
        many.push(0xff);
        assert_eq!(to_json(&many), Err(CborError::TooManyItems));
        let mut fine = vec![0x9f];
        fine.extend(std::iter::repeat_n(0xf6, MAX_ITEMS - 1));
        fine.push(0xff);
        assert_eq!(to_json(&fine).unwrap().as_array().map(Vec::len), Some(MAX_ITEMS - 1));
    }
}
