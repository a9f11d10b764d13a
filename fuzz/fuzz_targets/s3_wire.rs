//! What S3 requests bring that no other service does, on arbitrary text: version 2
//! presigned URLs (parsing, the string to sign, verification), S3's canonical request
//! (the path encoded once), the DeleteObjects document reader, and aws-chunked upload
//! bodies (each variant, fed in pieces whose sizes the input picks). No panic, nothing
//! verifies without the secret, and a decoder never gives more payload than declared.
#![no_main]

use kinescope::wire::aws_chunked::{ChunkSigner, Decoder, Mode};
use kinescope::wire::{sigv2, sigv4, xml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let path = parts.next().unwrap_or("/").to_string();
    let query = parts.next().unwrap_or("").to_string();
    let doc = parts.next().unwrap_or("").to_string();
    let headers = vec![("x-amz-meta-a".to_string(), doc.chars().take(64).collect::<String>())];
    let _ = sigv2::presigned_key(&query);
    let _ = sigv2::string_to_sign("GET", &path, &query, &headers, "1");
    let verified = sigv2::verify_presigned("GET", &path, &query, &headers, 1_000_000_000, |_| None);
    assert!(verified.is_err(), "verified without a key");
    let req = sigv4::RequestParts { method: "GET", path: &path, query: &query, headers: &headers, payload_hash: "x" };
    let _ = sigv4::canonical_request_for(&req, &["x-amz-meta-a".to_string()], &[], "s3");
    if let Ok(keys) = xml::texts_of(&doc, "Key", 1000) {
        assert!(keys.len() <= 1000);
    }
    let _ = xml::texts_of(&doc, "Quiet", 1);
    // aws-chunked: the first byte picks the variant and the piece size; the declared
    // length is the input's own, so a well-formed body is possible.
    if let Some((&pick, body)) = data.split_first() {
        let mode = [Mode::Signed, Mode::SignedTrailer, Mode::UnsignedTrailer][pick as usize % 3];
        let step = 1 + (pick as usize >> 2);
        let signer = (pick & 0x80 != 0).then(|| ChunkSigner::new([1; 32], "20130524T000000Z", "scope", "seed"));
        let declared = body.len() as u64;
        let mut decoder = Decoder::new(mode, signer, declared);
        let mut payload = 0u64;
        for piece in body.chunks(step) {
            match decoder.feed(piece) {
                Ok(ranges) => payload += ranges.iter().map(|r| (r.end - r.start) as u64).sum::<u64>(),
                Err(_) => return,
            }
        }
        assert!(payload <= decoder.decoded() && decoder.decoded() <= declared);
        if decoder.finish().is_ok() {
            assert_eq!(payload, declared, "a whole body gives exactly its declared payload");
        }
    }
});
