//! Codec-neutral media: encoded frames with timestamps, and the muxer that turns them
//! into the store's unit (an init segment and keyframe-aligned fMP4 fragments). No
//! I/O; RTSP ingest uses it, WebRTC will. What a codec's parameters and bytes mean is
//! [`crate::codec`]'s.
//!
//! - [`fmp4_mux`]: frames → `ftyp`+`moov` and `moof`+`mdat` per GOP.
//! - [`timeline`]: a live track's clock anchored on the producer's, RTP timestamps
//!   extended, presentation order turned into decode order.
//! - [`audio_mix`]: the voices of a multi-party session summed, each listener hearing
//!   everyone but itself; [`opus_pcm`]: Opus ⇄ PCM for it (libavcodec).

pub mod audio_mix;
pub mod fmp4_mux;
pub mod opus_pcm;
pub mod timeline;

pub use opus_pcm::init_ffmpeg;

/// One encoded frame (an access unit or an audio frame) on its track's timeline, as the
/// muxer takes it. (Frames already inside an MP4 fragment are described by
/// [`crate::wire::fmp4::Sample`] instead: timing and position, no bytes of their own.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
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
