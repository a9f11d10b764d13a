//! The EBML and Matroska readers on arbitrary bytes: no panic, no unbounded holding.
//! The same bytes fed whole and cut into the chunk sizes the input's first byte picks
//! give the same events (or the same first error), and the reader never holds more
//! than its limits plus one element header. Then PutMedia's Matroska path (reader,
//! codec layer, reorder, muxer) on the same pieces: never a panic.
#![no_main]

use kinescope::ingest::fragmenter::FragmentLimits;
use kinescope::ingest::mkv_fragmenter::MkvFragmenter;
use kinescope::wire::ebml;
use kinescope::wire::matroska::{MkvLimits, MkvReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ebml::read_header(data);
    let _ = ebml::read_uint(data);
    let _ = ebml::read_int(data);
    let _ = ebml::read_float(data);
    let _ = ebml::read_string(data);
    let Some((&first, rest)) = data.split_first() else { return };
    let limits = MkvLimits { max_header_element: 1 << 16, max_frame: 1 << 16 };
    let whole = MkvReader::new(limits).push(rest);
    let chunk = usize::from(first % 31) + 1;
    let mut r = MkvReader::new(limits);
    let mut events = Vec::new();
    let mut err = None;
    for piece in rest.chunks(chunk) {
        match r.push(piece) {
            Ok(e) => events.extend(e),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
        assert!(r.buffered() <= (1 << 16) + 16 + chunk, "held {}", r.buffered());
    }
    let mut fragmenter = MkvFragmenter::new(FragmentLimits { max_fragment_bytes: 1 << 20, ..Default::default() });
    let mut out = Vec::new();
    for piece in rest.chunks(chunk) {
        if fragmenter.push(piece, &mut out).is_err() {
            break;
        }
        out.clear();
    }
    let _ = fragmenter.finish(&mut out);
    match (whole, err) {
        (Ok(all), None) => assert_eq!(all, events),
        (Err(a), Some(b)) => assert_eq!(a, b),
        (a, b) => panic!("the chunking changed the outcome: whole {a:?}, chunked error {b:?}"),
    }
});
