//! Every box-level parser on arbitrary bytes: no panic, no unbounded allocation, and
//! whatever parses as a box sequence re-serialises to the same bytes. The codec layer
//! reads every track an init parses to: codec strings, decoder configuration, and the
//! sample entry written back from it must read back to the same parameters.
#![no_main]

use kinescope::codec::{self, CodecParams};
use kinescope::wire::bmff::{self as fmp4_boxes, BoxIter};
use kinescope::wire::fmp4::{self, InitInfo, TrackInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fmp4_boxes::parse_box_header(data, 0, u64::MAX);
    let _ = fmp4_boxes::parse_box_header(data, 0, 1 << 20);

    // Round trip: boxes read from the input, written again, read back the same.
    let mut rewritten = Vec::new();
    let mut parsed = Vec::new();
    for item in BoxIter::new(data) {
        match item {
            Ok((kind, body)) => {
                if kind == fmp4_boxes::kinds::UUID {
                    // The reader keeps the 16-byte user type out of the body.
                    continue;
                }
                parsed.push((kind, body.to_vec()));
                fmp4_boxes::write_box(&mut rewritten, kind, body);
            }
            Err(_) => break,
        }
    }
    let again: Vec<_> = BoxIter::new(&rewritten)
        .map(|r| r.map(|(k, b)| (k, b.to_vec())))
        .collect::<Result<_, _>>()
        .expect("rewritten boxes parse");
    assert_eq!(again, parsed);

    // Rebasing decode times keeps the bytes' length and leaves every tfdt at or below
    // where it was.
    if let Ok(before) = fmp4::decode_time_fields(data) {
        let shifted = fmp4::shift_decode_times(data, &|track| u64::from(track) * 1000).expect("fields parsed once");
        assert_eq!(shifted.len(), data.len());
        let after = fmp4::decode_time_fields(&shifted).expect("same boxes");
        assert!(before.iter().zip(&after).all(|(b, a)| a.value <= b.value && a.offset == b.offset));
    }

    // moov and moof parsers on the raw bytes and on each box body.
    if let Ok(init) = fmp4::parse_moov(data) {
        let _ = fmp4::parse_moof(data, &init, data.len() as u64);
        let _ = init.timing_track();
        init.tracks.iter().for_each(codec_round_trip);
    }
    if let Ok(init) = fmp4::parse_init(data) {
        init.tracks.iter().for_each(codec_round_trip);
    }
    let empty = InitInfo { tracks: Vec::new() };
    let _ = fmp4::parse_moof(data, &empty, data.len() as u64);
    for (_, body) in &parsed {
        if let Ok(init) = fmp4::parse_moov(body) {
            for (_, other) in &parsed {
                let _ = fmp4::parse_moof(other, &init, data.len() as u64);
            }
        }
    }
});

/// What the codec layer reads of a track, written back as a sample entry, reads back the same.
fn codec_round_trip(track: &TrackInfo) {
    let _ = codec::codec_string(track);
    let Some(params) = CodecParams::from_track(track) else { return };
    let _ = params.dimensions();
    let _ = params.sdp_media(96);
    let Ok(entry) = params.sample_entry() else { return };
    let Some(Ok((kind, body))) = BoxIter::new(&entry).next() else { panic!("a written sample entry is a box") };
    let again = TrackInfo { sample_entry: kind, sample_entry_body: body.to_vec(), ..track.clone() };
    assert_eq!(CodecParams::from_track(&again).map(|p| p.kind()), Some(params.kind()));
}
