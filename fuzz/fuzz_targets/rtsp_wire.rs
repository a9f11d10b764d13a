//! The RTSP push path on arbitrary bytes: message and interleaved-frame parsing (fed in
//! arbitrary pieces, as a socket delivers them), Transport headers, SDP and the codec
//! parameters taken from it, RTP parsing and every depacketizer, and the sample muxer
//! on what comes out. No panic.
#![no_main]

use std::collections::BTreeMap;

use kinescope::ingest::rtp_depacketize::{Depacketizer, ReorderBuffer};
use kinescope::media::fmp4_mux::FragmentMuxer;
use kinescope::media::{CodecParams, Sample};
use kinescope::wire::{rtp, rtsp, sdp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // RTSP messages, parsed from a buffer grown in pieces.
    let split = data.first().map_or(1, |b| usize::from(*b).max(1));
    let mut buf = Vec::new();
    for piece in data.chunks(split) {
        buf.extend_from_slice(piece);
        while let Ok(Some((msg, n))) = rtsp::parse(&buf) {
            assert!(n > 0 && n <= buf.len());
            if let rtsp::Message::Request(r) = &msg {
                if let Some(t) = r.header("transport") {
                    let _ = rtsp::parse_transport(t);
                }
                let _ = rtsp::path_of(&r.uri);
                if let Ok(media) = sdp::parse(&r.body) {
                    for m in &media {
                        let _ = sdp::codec_params(m);
                    }
                }
            }
            buf.drain(..n);
        }
    }
    if let Ok(media) = sdp::parse(data) {
        for m in &media {
            let _ = sdp::codec_params(m);
        }
    }

    // RTP through the reorder buffer and every depacketizer, then the muxer.
    let mut fmtp = BTreeMap::new();
    fmtp.insert("sizelength".to_string(), "13".to_string());
    fmtp.insert("indexlength".to_string(), "3".to_string());
    let kinds = [
        CodecParams::H264 { sps: vec![], pps: vec![] },
        CodecParams::H265 { vps: vec![], sps: vec![], pps: vec![] },
        CodecParams::Aac { config: vec![0x12, 0x10], sample_rate: 44_100, channels: 2 },
        CodecParams::Opus { channels: 2 },
    ];
    let mut reorder = ReorderBuffer::new(8);
    let packets: Vec<&[u8]> = data.split(|b| *b == 0xA5).collect();
    for (k, kind) in kinds.iter().enumerate() {
        let mut d = Depacketizer::new(kind, &fmtp);
        let mut mux = FragmentMuxer::new(vec![CodecParams::Opus { channels: 2 }]);
        let mut dts = 0i64;
        for (i, p) in packets.iter().enumerate() {
            if k == 0 {
                if let Ok(pkt) = rtp::parse(p) {
                    let _ = reorder.push(pkt.sequence, p.to_vec());
                }
            }
            if let Ok(pkt) = rtp::parse(p) {
                for u in d.push(&pkt, (i % 3) as u64) {
                    dts += 960;
                    let _ = mux.push(Sample { track: 0, dts, cts_offset: 0, keyframe: u.keyframe, data: u.data });
                }
            }
        }
        let _ = mux.flush();
    }
    // Init segments (what DESCRIBE reads) and the RTP packetizers for viewers.
    for (_, params) in kinescope::media::from_init::codec_params_of_init(data) {
        let _ = kinescope::wire::sdp::write("fuzz", &[(params.clone(), 96)]);
        let _ = kinescope::playback::rtp_packetize::payloads(&params, data);
    }
    // SPS parsers on raw bytes.
    let _ = kinescope::media::h264::parse_sps(data);
    let _ = kinescope::media::h264::parse_hevc_sps_size(data);
});
