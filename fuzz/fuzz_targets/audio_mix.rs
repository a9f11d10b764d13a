//! A storage session's audio on arbitrary input: Opus packets of any bytes from two
//! participants into `OpusMix` (libavcodec's decoder), steps in between, each listener's
//! and the recording's packets out. No panic, no crash in the codec, and every packet
//! out is a 20 ms Opus packet.
#![no_main]

use kinescope::codec::opus::packet_duration_us;
use kinescope::media::audio_mix::OpusMix;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut mix = OpusMix::<u8>::new();
    for who in [0, 1] {
        mix.listen(who).expect("libopus");
    }
    mix.record(true).expect("libopus");
    // Each item: a byte (who, how long), then that many bytes of packet; a step every
    // fourth item.
    let mut rest = data;
    let mut items = 0;
    while let Some((&head, tail)) = rest.split_first() {
        let len = usize::from(head >> 1).min(tail.len());
        let (packet, after) = tail.split_at(len);
        mix.voice(&(head & 1), packet).expect("a decoder");
        rest = after;
        items += 1;
        if items % 4 == 0 {
            let out = mix.step();
            for p in out.listeners.iter().map(|(_, p)| p).chain(out.recording.as_ref()) {
                assert_eq!(packet_duration_us(p), Some(20_000), "a 20 ms packet");
            }
        }
    }
});
