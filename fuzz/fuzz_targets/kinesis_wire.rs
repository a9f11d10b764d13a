//! The data-stream wire and storage formats on arbitrary bytes: the event-stream
//! decoder (and a round trip of what it accepts), CBOR → JSON → CBOR, and the record
//! frame decoder that recovery runs over whatever a crash left on disk, and KPL
//! de-aggregation (with a valid digest over the input, so the protobuf reader is
//! reached). No panic.
#![no_main]

use kinescope::data_streams::record_log::{decode_frame, encode_frame};
use kinescope::wire::{cbor, eventstream, kpl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((m, n))) = eventstream::decode_message(data) {
        assert!(n <= data.len());
        let strings: Vec<(String, String)> = m
            .headers
            .iter()
            .filter_map(|(k, v)| match v {
                eventstream::HeaderValue::String(s) => Some((k.clone(), s.clone())),
                _ => None,
            })
            .collect();
        let refs: Vec<(&str, &str)> = strings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let again = eventstream::encode_message(&refs, &m.payload);
        let (back, _) = eventstream::decode_message(&again).expect("own message").expect("whole");
        assert_eq!(back.payload, m.payload);
    }

    if let Ok(v) = cbor::to_json(data) {
        let bytes = cbor::from_json(&v);
        assert!(cbor::to_json(&bytes).is_ok());
    }

    let mut at = 0;
    while let Ok(Some((f, n))) = decode_frame(&data[at..]) {
        let mut out = Vec::new();
        encode_frame(&mut out, &f);
        assert_eq!(&out[..], &data[at..at + n]);
        at += n;
    }

    // KPL: whatever the bytes, no panic; with a matching digest, what splits out
    // aggregates and splits back the same.
    let _ = kpl::deaggregate(data);
    let mut framed = kpl::MAGIC.to_vec();
    framed.extend_from_slice(data);
    framed.extend_from_slice(&md5_of(data));
    if let Some(records) = kpl::deaggregate(&framed) {
        let again = kpl::encode("k", &records);
        assert_eq!(kpl::deaggregate(&again).expect("own aggregate"), records);
    }
});

fn md5_of(data: &[u8]) -> [u8; 16] {
    use md5::{Digest, Md5};
    Md5::digest(data).into()
}
