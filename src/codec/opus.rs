//! Opus: everything Kinescope knows about it in one place.
//!
//! - the `Opus` sample entry with its `dOps` box ("Encapsulation of Opus in ISO Base
//!   Media File Format" 4.3.2), read and written; Opus is always 48 kHz inside;
//! - the codec string `opus` (same document, 4.4);
//! - SDP `opus/48000/<channels>` (RFC 7587 7);
//! - RTP: one Opus packet per RTP payload, nothing to reassemble (RFC 7587 4.2).

use super::{AccessUnit, CodecError};
use crate::wire::bmff::{write_box, FourCc};
use crate::wire::fmp4::{audio_sample_entry, TrackInfo};
use crate::wire::sdp::MediaDescription;

pub const OPUS: FourCc = FourCc::new(b"Opus");
pub const DOPS: FourCc = FourCc::new(b"dOps");
/// The clock of every Opus stream (RFC 7587 4.1).
pub const CLOCK_RATE: u32 = 48_000;
/// What WebRTC peers negotiate: 48 kHz stereo with in-band FEC (RFC 7587 6).
pub const WEBRTC: super::RtpCapability = super::RtpCapability {
    media: "audio",
    encoding: "opus",
    clock_rate: CLOCK_RATE,
    channels: 2,
    fmtp: "minptime=10;useinbandfec=1",
    payload_type: 111,
};
/// What encoders typically skip at the start, in 48 kHz samples (3.25 ms is libopus's).
const PRE_SKIP: u16 = 312;

/// Matroska's CodecID (CodecPrivate: the `OpusHead` identification header, RFC 7845).
pub const MATROSKA_CODEC_ID: &str = "A_OPUS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub channels: u16,
}

impl Params {
    pub fn from_track(track: &TrackInfo) -> Option<Self> {
        // The dOps channel count wins over the entry's (which muxers set to 2).
        let channels = match track.sample_entry_child(DOPS) {
            Some(d) if d.len() >= 2 => u16::from(d[1]),
            _ => track.channels,
        };
        Some(Params { channels: if channels == 0 { track.channels } else { channels } })
    }

    /// The parameters an `OpusHead` gives (its channel count), if it is one.
    pub fn from_opus_head(head: &[u8]) -> Option<Self> {
        (head.len() >= 19 && head.starts_with(b"OpusHead")).then(|| Params { channels: u16::from(head[9]) })
    }

    /// The `OpusHead` Matroska's CodecPrivate carries: version 1, channels, pre-skip,
    /// input rate, no gain, mapping family 0.
    pub fn opus_head(&self) -> Vec<u8> {
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, self.channels as u8]);
        head.extend_from_slice(&PRE_SKIP.to_le_bytes());
        head.extend_from_slice(&CLOCK_RATE.to_le_bytes());
        head.extend_from_slice(&[0, 0, 0]);
        head
    }

    /// The `Opus` sample entry with a `dOps` of channel mapping family 0.
    pub fn sample_entry(&self) -> Result<Vec<u8>, CodecError> {
        if self.channels == 0 || self.channels > 2 {
            return Err(CodecError::BadParameters("Opus channel count (mapping family 0 takes 1 or 2)"));
        }
        let mut entry = audio_sample_entry(self.channels, CLOCK_RATE);
        // Version 0, OutputChannelCount, PreSkip, InputSampleRate, OutputGain,
        // ChannelMappingFamily 0.
        let mut dops = vec![0, self.channels as u8];
        dops.extend_from_slice(&PRE_SKIP.to_be_bytes());
        dops.extend_from_slice(&CLOCK_RATE.to_be_bytes());
        dops.extend_from_slice(&[0, 0, 0]);
        write_box(&mut entry, DOPS, &dops);
        let mut out = Vec::with_capacity(entry.len() + 8);
        write_box(&mut out, OPUS, &entry);
        Ok(out)
    }

    pub fn sdp_media(&self, payload_type: u8) -> MediaDescription {
        MediaDescription::new("audio", payload_type, "opus", CLOCK_RATE, self.channels)
    }

    pub fn from_sdp(m: &MediaDescription) -> Self {
        Params { channels: m.channels.max(1) }
    }
}

pub fn codec_string(_track: &TrackInfo) -> Option<String> {
    Some("opus".into())
}

/// RFC 7587 4.2: the payload is one Opus packet.
pub fn depacketize(rtp_ts: u32, payload: &[u8]) -> AccessUnit {
    AccessUnit { rtp_ts, data: payload.to_vec(), keyframe: true, parameter_sets: Vec::new() }
}

pub fn packetize(out: &mut Vec<Vec<u8>>, frame: &[u8]) {
    out.push(frame.to_vec());
}

/// How long an Opus packet plays, µs, from its TOC byte and frame count (RFC 6716 3.1
/// and 3.2); `None` for an empty or malformed packet.
pub fn packet_duration_us(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame sizes: SILK 10/20/40/60 ms, hybrid 10/20 ms, CELT 2.5/5/10/20 ms.
    let frame_us: u32 = match config {
        0..=11 => [10_000, 20_000, 40_000, 60_000][usize::from(config % 4)],
        12..=15 => [10_000, 20_000][usize::from(config % 2)],
        _ => [2_500, 5_000, 10_000, 20_000][usize::from(config % 4)],
    };
    let frames = match toc & 0b11 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0b0011_1111),
    };
    // A packet holds at most 120 ms (RFC 6716 3.2.5).
    let total = frame_us.checked_mul(frames)?;
    (frames > 0 && total <= 120_000).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_durations_come_from_the_toc() {
        assert_eq!(packet_duration_us(&[0xfc, 1, 2]), Some(20_000), "CELT FB 20 ms, one frame (browsers)");
        assert_eq!(packet_duration_us(&[0x79]), Some(40_000), "hybrid FB 20 ms, two frames (code 1)");
        assert_eq!(packet_duration_us(&[0xfd, 0]), Some(40_000), "CELT 20 ms, two frames");
        assert_eq!(packet_duration_us(&[0xd3, 0x03]), Some(30_000), "code 3: three CELT 10 ms frames");
        assert_eq!(packet_duration_us(&[0x1b, 0x03]), None, "three SILK 60 ms frames: over 120 ms");
        assert_eq!(packet_duration_us(&[0xfb, 0x00]), None, "code 3 with no frames");
        assert_eq!(packet_duration_us(&[]), None);
    }

    #[test]
    fn entry_reads_back() {
        let p = Params { channels: 2 };
        let track =
            crate::codec::tests::track_with_entry(crate::wire::fmp4::TrackKind::Audio, &p.sample_entry().unwrap());
        assert_eq!(Params::from_track(&track), Some(p.clone()));
        assert_eq!(Params::from_sdp(&p.sdp_media(111)), p);
        assert!(Params { channels: 6 }.sample_entry().is_err());
    }
}
