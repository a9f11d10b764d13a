//! The PutMedia fragmenter fed arbitrary bytes in arbitrary pieces: no panic, and the
//! fragments it emits never hold more bytes than it was given.
#![no_main]

use kinescope::ingest::fragmenter::{FragmentLimits, Fragmenter, FragmenterEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let piece = usize::from(split).max(1);
    let limits = FragmentLimits { max_fragment_bytes: 1 << 20, max_fragment_duration_us: 20_000_000, max_tracks: 3 };
    let mut f = Fragmenter::new(limits);
    let mut out = Vec::new();
    let mut fatal = false;
    for p in rest.chunks(piece) {
        if f.push(p, &mut out).is_err() {
            fatal = true;
            f.flush(&mut out);
            break;
        }
    }
    if !fatal {
        let _ = f.finish(&mut out);
    }
    let emitted: u64 = out
        .iter()
        .map(|e| match e {
            FragmenterEvent::Fragment(frag) => {
                assert_eq!(frag.size, frag.chunks.iter().map(|c| c.len() as u64).sum::<u64>());
                frag.size
            }
            FragmenterEvent::Init(i) => i.bytes.len() as u64,
            _ => 0,
        })
        .sum();
    assert!(emitted <= rest.len() as u64);
});
