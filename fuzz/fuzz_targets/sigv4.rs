//! SigV4 parsing and verification on arbitrary header values and request lines: no
//! panic, and nothing verifies without the secret.
#![no_main]

use kinescope::wire::sigv4;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let auth = parts.next().unwrap_or("").to_string();
    let date = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let query = parts.next().unwrap_or("").to_string();
    let _ = sigv4::parse_authorization(&auth);
    let _ = sigv4::parse_amz_date(&date);
    let _ = sigv4::canonical_query(&query, &["X-Amz-Signature"]);
    let _ = sigv4::percent_decode(&query, true);
    let headers = vec![
        ("host".to_string(), "example".to_string()),
        ("x-amz-date".to_string(), date.clone()),
        ("authorization".to_string(), auth),
    ];
    let req = sigv4::RequestParts {
        method: "POST",
        path: &path,
        query: &query,
        headers: &headers,
        payload_hash: sigv4::UNSIGNED_PAYLOAD,
    };
    let now = sigv4::parse_amz_date(&date).unwrap_or(0);
    // The fuzzer cannot know the secret: a signature it made up must never pass.
    assert!(sigv4::verify(&req, now, &["service", "kinesisvideo"], |_| Some("secret-the-fuzzer-never-sees".into()))
        .is_err());
});
