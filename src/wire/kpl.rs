//! Records aggregated by the Kinesis Producer Library (KPL), which Kinesis producers
//! send and Firehose splits back into the user records ("de-aggregation").
//!
//! ```text
//! record = F3 89 9A C2 | AggregatedRecord (protobuf) | MD5 of the protobuf bytes (16)
//!
//! message AggregatedRecord {
//!   repeated string partition_key_table = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes data = 3;
//!   repeated Tag tags = 4;
//! }
//! ```
//!
//! A record without the magic, or whose digest does not match, is not aggregated and is
//! passed on whole (as the KCL and Firehose do). [`encode`] writes the format, for tests
//! and for producers written against Kinescope.

use md5::{Digest, Md5};

pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// The user records in `record`, or `None` if it is not a (valid) aggregated record.
pub fn deaggregate(record: &[u8]) -> Option<Vec<&[u8]>> {
    let body = record.strip_prefix(&MAGIC)?;
    if body.len() < 16 {
        return None;
    }
    let (proto, digest) = body.split_at(body.len() - 16);
    if Md5::digest(proto).as_slice() != digest {
        return None;
    }
    let mut out = Vec::new();
    for field in Fields::new(proto) {
        let (number, value) = field?;
        if let (3, Value::Bytes(record)) = (number, value) {
            let mut data = None;
            for inner in Fields::new(record) {
                if let (3, Value::Bytes(d)) = inner? {
                    data = Some(d);
                }
            }
            out.push(data?);
        }
    }
    Some(out)
}

/// `records` aggregated (one partition key, `key`, for all of them).
pub fn encode(key: &str, records: &[&[u8]]) -> Vec<u8> {
    let mut proto = Vec::new();
    put_len(&mut proto, 1, key.as_bytes());
    for r in records {
        let mut inner = Vec::new();
        put_varint_field(&mut inner, 1, 0);
        put_len(&mut inner, 3, r);
        put_len(&mut proto, 3, &inner);
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&proto);
    out.extend_from_slice(&Md5::digest(&proto));
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, number: u64, v: u64) {
    put_varint(out, number << 3);
    put_varint(out, v);
}

fn put_len(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

enum Value<'a> {
    Varint,
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of a protobuf message: (number, value), `None` on malformed input.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields { rest: bytes }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.rest.split_first()?;
            self.rest = rest;
            v |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Option<(u64, Value<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let field = (|| {
            let key = self.varint()?;
            let value = match key & 7 {
                0 => {
                    self.varint()?;
                    Value::Varint
                }
                1 | 5 => {
                    let n = if key & 7 == 1 { 8 } else { 4 };
                    self.rest = self.rest.get(n..)?;
                    Value::Fixed
                }
                2 => {
                    let len = usize::try_from(self.varint()?).ok()?;
                    let bytes = self.rest.get(..len)?;
                    self.rest = &self.rest[len..];
                    Value::Bytes(bytes)
                }
                _ => return None,
            };
            Some((key >> 3, value))
        })();
        if field.is_none() {
            // Malformed: report once, then stop.
            self.rest = &[];
        }
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_records_split_back() {
        let agg = encode("cam-1", &[b"{\"a\":1}", b"", b"{\"a\":3}"]);
        assert_eq!(deaggregate(&agg), Some(vec![&b"{\"a\":1}"[..], b"", b"{\"a\":3}"]));
    }

    #[test]
    fn anything_else_is_not_aggregated() {
        assert_eq!(deaggregate(b"plain record"), None);
        let mut agg = encode("k", &[b"x"]);
        let n = agg.len();
        agg[n - 1] ^= 1;
        assert_eq!(deaggregate(&agg), None, "a wrong digest");
        let mut short = MAGIC.to_vec();
        short.extend_from_slice(&[1, 2, 3]);
        assert_eq!(deaggregate(&short), None);
        // A digest that matches over bytes that are not a message.
        let junk = [0xFFu8, 0xFF, 0xFF];
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&junk);
        bad.extend_from_slice(&Md5::digest(junk));
        assert_eq!(deaggregate(&bad), None);
    }
}
