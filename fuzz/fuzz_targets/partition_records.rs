//! A record as dynamic partitioning reads it, on arbitrary bytes: the nesting scan,
//! then jaq under a fixed query (only below the nesting limit), and the query worker's
//! loop over the same bytes as its framed input. No panic, no stack overflow, no input
//! slower than the run's per-input timeout.
#![no_main]

use kinescope::delivery_streams::{jq, query_sandbox};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static QUERY: jq::PartitionQuery =
        jq::PartitionQuery::compile("{cam: .cam, day: (.ts // 0 | tostring)}").expect("the query compiles");
}

fuzz_target!(|data: &[u8]| {
    let deep = jq::nesting_exceeds(data, jq::MAX_RECORD_DEPTH);
    QUERY.with(|q| {
        let keys = q.keys(data);
        if deep {
            assert!(keys.is_err());
        }
    });
    // The worker's loop: a benign query, then whatever the bytes frame as records.
    let query = b"{c: .c}";
    let mut framed = (query.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(query);
    framed.extend_from_slice(data);
    let _ = query_sandbox::serve(&framed[..], Vec::new());
    // And the bytes as a query's text: compiled (never run) within the text limits.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = jq::PartitionQuery::compile(text);
    }
});
