//! The RTSP push path on arbitrary bytes: message and interleaved-frame parsing (fed in
//! arbitrary pieces, as a socket delivers them), Transport headers, SDP and the codec
//! parameters taken from it, RTP parsing and every depacketizer, and the sample muxer
//! on what comes out, with chunks inside each fragment (LL-HLS parts) that must make up
//! the fragment and split back at its `moof`s; every packetizer on the same bytes; and
//! what the WebRTC paths read of SDP and signalling (WHIP offers, public candidates,
//! storage-session deliveries, Opus packet durations, port ranges). No panic.
#![no_main]

use std::collections::BTreeMap;

use kinescope::codec::{self, h264, h265, opus, CodecKind, CodecParams, Depacketizer};
use kinescope::media::fmp4_mux::FragmentMuxer;
use kinescope::media::Frame;
use kinescope::webrtc::{peer as webrtc_peer, recorder};
use kinescope::wire::fmp4::chunk_ranges;
use kinescope::wire::rtp::ReorderBuffer;
use kinescope::wire::{kvs_signaling, rtp, rtsp, sdp};
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
                        let _ = codec::from_sdp(m);
                    }
                }
            }
            buf.drain(..n);
        }
    }
    if let Ok(media) = sdp::parse(data) {
        for m in &media {
            if let Ok((_, Some(params))) = codec::from_sdp(m) {
                // What we would write back for it parses to the same parameters.
                let written = sdp::write("fuzz", &[params.sdp_media(96)]);
                let again = sdp::parse(written.as_bytes()).expect("written SDP parses");
                assert_eq!(codec::from_sdp(&again[0]).ok().and_then(|(_, p)| p), Some(params));
            }
        }
    }

    // RTP through the reorder buffer and every depacketizer, then the muxer.
    let mut fmtp = BTreeMap::new();
    fmtp.insert("sizelength".to_string(), "13".to_string());
    fmtp.insert("indexlength".to_string(), "3".to_string());
    let kinds = [CodecKind::H264, CodecKind::H265, CodecKind::Aac, CodecKind::Opus];
    let mut reorder = ReorderBuffer::new(8);
    let packets: Vec<&[u8]> = data.split(|b| *b == 0xA5).collect();
    for (k, kind) in kinds.iter().enumerate() {
        let mut d = Depacketizer::new(*kind, &fmtp);
        let mut mux =
            FragmentMuxer::new(vec![CodecParams::Opus(opus::Params { channels: 2 })]).with_chunk_duration(100_000);
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
                    if let Ok(m) =
                        mux.push_frame(Frame { track: 0, dts, cts_offset: 0, keyframe: u.keyframe, data: u.data })
                    {
                        if let Some(f) = m.fragment {
                            let bytes = f.bytes();
                            let ranges = chunk_ranges(&bytes).expect("a muxed fragment splits at its moofs");
                            assert_eq!(ranges.len(), f.chunks.len());
                        }
                    }
                }
            }
        }
        let _ = mux.flush();
    }
    // The RTP packetizers for viewers, on the same bytes as a sample.
    for kind in kinds {
        let _ = codec::packetize(kind, data);
    }
    // SPS parsers on raw bytes.
    let _ = h264::parse_sps(data);
    let _ = h265::parse_sps_size(data);

    // What the WebRTC paths read.
    let text = String::from_utf8_lossy(data);
    let _ = recorder::offered_media(&text);
    let with = webrtc_peer::with_public_candidates(&text, &[std::net::IpAddr::from([203, 0, 113, 7])]);
    assert!(with.len() >= text.len(), "candidates are only added");
    if let Ok(m) = kvs_signaling::parse_client_message(&text) {
        let _ = kvs_signaling::session_description(m.message_payload.as_bytes(), "answer");
    }
    let _ = kvs_signaling::session_description(data, "offer");
    if let Some(us) = opus::packet_duration_us(data) {
        assert!(us > 0 && us <= 120_000);
    }
    let _ = webrtc_peer::parse_port_range(&text);
    let _ = chunk_ranges(data);
});
