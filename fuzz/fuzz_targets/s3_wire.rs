//! What S3 requests bring that no other service does, on arbitrary text: version 2
//! presigned URLs (parsing, the string to sign, verification), S3's canonical request
//! (the path encoded once), and the DeleteObjects document reader. No panic, and
//! nothing verifies without the secret.
#![no_main]

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
});
