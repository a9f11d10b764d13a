//! Codec-neutral media: encoded samples with timestamps, the parameters of each track,
//! and the muxer that turns them into the store's unit (an init segment and
//! keyframe-aligned fMP4 fragments). No I/O; RTSP ingest uses it, WebRTC will.
//!
//! - [`h264`]: NAL unit helpers and the SPS fields an init segment needs.
//! - [`fmp4_mux`]: samples → `ftyp`+`moov` and `moof`+`mdat` per GOP.

pub mod fmp4_mux;
pub mod from_init;
pub mod h264;

/// What a track carries, with the parameters its sample entry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecParams {
    /// H.264; parameter sets without start codes.
    H264 { sps: Vec<u8>, pps: Vec<u8> },
    /// H.265; parameter sets without start codes.
    H265 { vps: Vec<u8>, sps: Vec<u8>, pps: Vec<u8> },
    /// AAC with its AudioSpecificConfig.
    Aac { config: Vec<u8>, sample_rate: u32, channels: u16 },
    /// Opus (RFC 7587: always 48 kHz on the wire).
    Opus { channels: u16 },
}

impl CodecParams {
    pub fn is_video(&self) -> bool {
        matches!(self, CodecParams::H264 { .. } | CodecParams::H265 { .. })
    }

    /// The timescale samples of this track are counted in.
    pub fn timescale(&self) -> u32 {
        match self {
            CodecParams::H264 { .. } | CodecParams::H265 { .. } => 90_000,
            CodecParams::Aac { sample_rate, .. } => *sample_rate,
            CodecParams::Opus { .. } => 48_000,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            CodecParams::H264 { .. } => "H264",
            CodecParams::H265 { .. } => "H265",
            CodecParams::Aac { .. } => "AAC",
            CodecParams::Opus { .. } => "OPUS",
        }
    }
}

/// One encoded sample (an access unit or an audio frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Index of the track in the muxer's track list.
    pub track: usize,
    /// Decode time in the track's timescale, from any origin common to the track.
    pub dts: i64,
    /// Presentation minus decode time.
    pub cts_offset: i32,
    pub keyframe: bool,
    /// Video: NAL units each prefixed by a 4-byte big-endian length (AVCC/HVCC);
    /// audio: one raw frame.
    pub data: Vec<u8>,
}
