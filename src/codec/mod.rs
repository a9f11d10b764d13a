//! Codecs: everything about one codec lives in its file, chosen through a closed enum
//! (as retina's `src/codec/` does), so adding one is its file plus one arm per `match`
//! here.
//!
//! - [`h264`], [`h265`], [`aac`], [`opus`]: parameter sets ⇄ sample entry (`avcC`,
//!   `hvcC`, `esds`, `dOps`), SDP `rtpmap`/`fmtp` in and out, the RFC 6381 codec
//!   string, RTP depacketizing and packetizing, keyframe detection, what WebRTC
//!   negotiates for it ([`RtpCapability`]) and which FFmpeg decoder reads it.
//! - [`nal`]: what H.264 and H.265 share (length-prefixed NAL units, emulation
//!   prevention, Exp-Golomb, the RTP access-unit assembler).
//!
//! Pure: bytes in, bytes out. Built on [`crate::wire`] (boxes, SDP, RTP) and nothing
//! else of the crate.

pub mod aac;
pub mod h264;
pub mod h265;
pub mod nal;
pub mod opus;

use std::collections::BTreeMap;

use crate::wire::bmff::FourCc;
use crate::wire::fmp4::TrackInfo;
use crate::wire::rtp::RtpPacket;
use crate::wire::sdp::MediaDescription;

/// The codecs Kinescope ingests, stores and serves.
///
/// Adding one (VP8, say) means: a `vp8.rs` beside these files with its `Params`,
/// sample entry (`vp08` + `vpcC`), codec string, SDP and RTP (RFC 7741) functions, and
/// one arm in each `match` of this file. Nothing outside `codec/` names a codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    H264,
    H265,
    Aac,
    Opus,
}

impl CodecKind {
    pub fn is_video(self) -> bool {
        matches!(self, CodecKind::H264 | CodecKind::H265)
    }

    /// The name used in logs and status (`H264`, `AAC`, …).
    pub fn name(self) -> &'static str {
        match self {
            CodecKind::H264 => "H264",
            CodecKind::H265 => "H265",
            CodecKind::Aac => "AAC",
            CodecKind::Opus => "OPUS",
        }
    }

    /// The name people know it by, for messages (`H.264`, `Opus`, …).
    pub fn label(self) -> &'static str {
        match self {
            CodecKind::H264 => "H.264",
            CodecKind::H265 => "H.265",
            CodecKind::Aac => "AAC",
            CodecKind::Opus => "Opus",
        }
    }

    /// From an SDP `a=rtpmap` encoding name (any case).
    /// The codec a Matroska CodecID names (`V_MPEG4/ISO/AVC`, `A_AAC/MPEG4/LC`, …).
    pub fn from_matroska_codec_id(id: &str) -> Option<Self> {
        match id {
            h264::MATROSKA_CODEC_ID => Some(CodecKind::H264),
            h265::MATROSKA_CODEC_ID => Some(CodecKind::H265),
            opus::MATROSKA_CODEC_ID => Some(CodecKind::Opus),
            _ if id == aac::MATROSKA_CODEC_ID || id.starts_with("A_AAC/") => Some(CodecKind::Aac),
            _ => None,
        }
    }

    /// The Matroska CodecID of this codec.
    pub fn matroska_codec_id(self) -> &'static str {
        match self {
            CodecKind::H264 => h264::MATROSKA_CODEC_ID,
            CodecKind::H265 => h265::MATROSKA_CODEC_ID,
            CodecKind::Aac => aac::MATROSKA_CODEC_ID,
            CodecKind::Opus => opus::MATROSKA_CODEC_ID,
        }
    }

    pub fn from_sdp_encoding(encoding: &str) -> Option<Self> {
        match encoding.to_ascii_uppercase().as_str() {
            "H264" => Some(CodecKind::H264),
            "H265" => Some(CodecKind::H265),
            "MPEG4-GENERIC" => Some(CodecKind::Aac),
            "OPUS" => Some(CodecKind::Opus),
            _ => None,
        }
    }

    /// From an MP4 sample entry type.
    pub fn from_sample_entry(entry: FourCc) -> Option<Self> {
        match entry {
            h264::AVC1 | h264::AVC3 => Some(CodecKind::H264),
            h265::HVC1 | h265::HEV1 => Some(CodecKind::H265),
            aac::MP4A => Some(CodecKind::Aac),
            opus::OPUS => Some(CodecKind::Opus),
            _ => None,
        }
    }

    /// From a codec name as the PutMedia / retina side calls it (`h264`, `aac`, …).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "h264" => Some(CodecKind::H264),
            "h265" | "hevc" => Some(CodecKind::H265),
            "aac" | "mpeg4-generic" => Some(CodecKind::Aac),
            "opus" => Some(CodecKind::Opus),
            _ => None,
        }
    }
}

/// What a WebRTC peer negotiates for a codec: its `rtpmap` and `fmtp`, and the payload
/// type Kinescope's offers and answers give it. The WebRTC layer builds its own codec
/// description from this; nothing above `codec/` spells a codec's SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpCapability {
    /// The SDP media type: `video` or `audio`.
    pub media: &'static str,
    /// The `rtpmap` encoding name, as Kinescope writes it.
    pub encoding: &'static str,
    pub clock_rate: u32,
    /// Audio channels (0 for video).
    pub channels: u16,
    pub fmtp: &'static str,
    pub payload_type: u8,
}

impl RtpCapability {
    /// The MIME type WebRTC stacks name it by (`video/H264`).
    pub fn mime_type(&self) -> String {
        format!("{}/{}", self.media, self.encoding)
    }

    /// `encoding/clock`, as an offer's `a=rtpmap` lines name it (compared without case).
    pub fn rtpmap(&self) -> String {
        format!("{}/{}", self.encoding, self.clock_rate)
    }

    /// The `fmtp` parameters as a map.
    pub fn fmtp_map(&self) -> BTreeMap<String, String> {
        self.fmtp
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }
}

impl CodecKind {
    /// The codecs WebRTC carries between browsers and Kinescope, video first.
    pub const WEBRTC: [CodecKind; 2] = [CodecKind::H264, CodecKind::Opus];

    /// What WebRTC negotiates for this codec; `None` when Kinescope's WebRTC sessions do
    /// not carry it.
    pub fn webrtc(self) -> Option<RtpCapability> {
        match self {
            CodecKind::H264 => Some(h264::WEBRTC),
            CodecKind::Opus => Some(opus::WEBRTC),
            CodecKind::H265 | CodecKind::Aac => None,
        }
    }

    /// The codec WebRTC sessions use for `media` (`video` or `audio`).
    pub fn webrtc_for(media: &str) -> Option<CodecKind> {
        Self::WEBRTC.into_iter().find(|k| k.webrtc().is_some_and(|c| c.media == media))
    }

    /// From a WebRTC MIME type (`video/H264`, any case).
    pub fn from_mime_type(mime: &str) -> Option<Self> {
        Self::WEBRTC.into_iter().find(|k| k.webrtc().is_some_and(|c| c.mime_type().eq_ignore_ascii_case(mime)))
    }

    /// The FFmpeg decoder that reads it (`avcodec_find_decoder_by_name`).
    pub fn decoder_name(self) -> &'static str {
        match self {
            CodecKind::H264 => "h264",
            CodecKind::H265 => "hevc",
            CodecKind::Aac => "aac",
            CodecKind::Opus => "opus",
        }
    }

    /// A stored sample as a decoder or an RTP packetizer takes it: for the NAL codecs,
    /// Annex B led by `parameter_sets` (give them on keyframes); others as they are.
    pub fn elementary_sample(self, parameter_sets: &[Vec<u8>], sample: &[u8]) -> Vec<u8> {
        match self {
            CodecKind::H264 | CodecKind::H265 => nal::to_annex_b(parameter_sets, sample),
            CodecKind::Aac | CodecKind::Opus => sample.to_vec(),
        }
    }

    /// How long an audio packet of this codec plays (µs), when its bytes say.
    pub fn packet_duration_us(self, packet: &[u8]) -> Option<u32> {
        match self {
            CodecKind::Opus => opus::packet_duration_us(packet),
            CodecKind::H264 | CodecKind::H265 | CodecKind::Aac => None,
        }
    }

    /// The MPEG-TS `stream_type` that carries this codec in HLS segments; `None` for
    /// Opus, which HLS's transport streams do not carry.
    pub fn mpegts_stream_type(self) -> Option<u8> {
        match self {
            CodecKind::H264 => Some(0x1B),
            CodecKind::H265 => Some(0x24),
            CodecKind::Aac => Some(0x0F),
            CodecKind::Opus => None,
        }
    }

    /// Whether a stream holding only this codec plays over HLS (an audio-only
    /// rendition: players take AAC alone, not Opus).
    pub fn plays_alone_in_hls(self) -> bool {
        self.is_video() || self == CodecKind::Aac
    }
}

/// Why codec parameters cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("the {0} parameters are malformed")]
    BadParameters(&'static str),
    #[error("codec {0} (Kinescope takes H264, H265, MPEG4-GENERIC AAC and OPUS)")]
    Unsupported(String),
    #[error("{0}")]
    Sdp(String),
}

/// What a track carries, with the parameters its sample entry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecParams {
    H264(h264::Params),
    H265(h265::Params),
    Aac(aac::Params),
    Opus(opus::Params),
}

impl CodecParams {
    pub fn kind(&self) -> CodecKind {
        match self {
            CodecParams::H264(_) => CodecKind::H264,
            CodecParams::H265(_) => CodecKind::H265,
            CodecParams::Aac(_) => CodecKind::Aac,
            CodecParams::Opus(_) => CodecKind::Opus,
        }
    }

    pub fn is_video(&self) -> bool {
        self.kind().is_video()
    }

    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The timescale samples of this track are counted in (its RTP clock too).
    pub fn timescale(&self) -> u32 {
        match self {
            CodecParams::H264(_) | CodecParams::H265(_) => 90_000,
            CodecParams::Aac(p) => p.sample_rate,
            CodecParams::Opus(_) => opus::CLOCK_RATE,
        }
    }

    /// Picture size for video (from the SPS); `(0, 0)` for audio.
    pub fn dimensions(&self) -> Result<(u32, u32), CodecError> {
        match self {
            CodecParams::H264(p) => p.dimensions(),
            CodecParams::H265(p) => p.dimensions(),
            CodecParams::Aac(_) | CodecParams::Opus(_) => Ok((0, 0)),
        }
    }

    /// Whether frames can come in another order than they are decoded (B-frames), so
    /// a depacketized stream must be reordered before it is muxed.
    pub fn can_reorder(&self) -> bool {
        match self {
            CodecParams::H264(p) => p.can_reorder(),
            CodecParams::H265(_) => true,
            CodecParams::Aac(_) | CodecParams::Opus(_) => false,
        }
    }

    /// The sample entry box (`avc1`, `hvc1`, `mp4a`, `Opus`) for an init segment's `stsd`.
    pub fn sample_entry(&self) -> Result<Vec<u8>, CodecError> {
        match self {
            CodecParams::H264(p) => p.sample_entry(),
            CodecParams::H265(p) => p.sample_entry(),
            CodecParams::Aac(p) => p.sample_entry(),
            CodecParams::Opus(p) => p.sample_entry(),
        }
    }

    /// The parameters a stored track's sample entry gives, if its codec is one of ours
    /// and its configuration box reads.
    pub fn from_track(track: &TrackInfo) -> Option<Self> {
        match CodecKind::from_sample_entry(track.sample_entry)? {
            CodecKind::H264 => h264::Params::from_avcc(track.sample_entry_child(h264::AVCC)?).map(CodecParams::H264),
            CodecKind::H265 => h265::Params::from_hvcc(track.sample_entry_child(h265::HVCC)?).map(CodecParams::H265),
            CodecKind::Aac => aac::Params::from_track(track).map(CodecParams::Aac),
            CodecKind::Opus => opus::Params::from_track(track).map(CodecParams::Opus),
        }
    }

    /// The parameters of a Matroska track: its CodecPrivate (`avcC`, `hvcC`,
    /// AudioSpecificConfig, `OpusHead`) and, for audio, its sampling frequency and
    /// channels; `None` if the private data does not read.
    pub fn from_matroska(kind: CodecKind, private: &[u8], sample_rate: u32, channels: u16) -> Option<Self> {
        match kind {
            CodecKind::H264 => h264::Params::from_avcc(private).map(CodecParams::H264),
            CodecKind::H265 => h265::Params::from_hvcc(private).map(CodecParams::H265),
            CodecKind::Aac => Self::from_audio_config(kind, private, sample_rate, channels),
            CodecKind::Opus => opus::Params::from_opus_head(private).map(CodecParams::Opus),
        }
    }

    /// What a Matroska track's CodecPrivate carries for these parameters.
    pub fn matroska_private(&self) -> Result<Vec<u8>, CodecError> {
        match self {
            CodecParams::H264(p) => Ok(p.avcc()),
            CodecParams::H265(p) => p.hvcc(),
            CodecParams::Aac(p) => Ok(p.config.clone()),
            CodecParams::Opus(p) => Ok(p.opus_head()),
        }
    }

    /// The parameters complete in-band parameter sets give a video track.
    pub fn from_parameter_sets(kind: CodecKind, sets: &[Vec<u8>]) -> Option<Self> {
        if sets.is_empty() {
            return None;
        }
        match kind {
            CodecKind::H264 => h264::Params::from_parameter_sets(sets).map(CodecParams::H264),
            CodecKind::H265 => h265::Params::from_parameter_sets(sets).map(CodecParams::H265),
            CodecKind::Aac | CodecKind::Opus => None,
        }
    }

    /// The parameters of an audio track from its decoder configuration (AAC's
    /// AudioSpecificConfig; nothing for Opus), clock rate and channel count; `None` for
    /// video or a configuration that is missing.
    pub fn from_audio_config(kind: CodecKind, config: &[u8], clock_rate: u32, channels: u16) -> Option<Self> {
        match kind {
            CodecKind::Aac if !config.is_empty() => {
                Some(CodecParams::Aac(aac::Params { config: config.to_vec(), sample_rate: clock_rate, channels }))
            }
            CodecKind::Opus => Some(CodecParams::Opus(opus::Params { channels: channels.clamp(1, 2) })),
            CodecKind::Aac | CodecKind::H264 | CodecKind::H265 => None,
        }
    }

    /// The parameters a track received over WebRTC starts with: audio has all it needs
    /// from the negotiation (`channels`); video waits for the parameter sets that come
    /// in band with its keyframes.
    pub fn for_webrtc(kind: CodecKind, channels: u16) -> Option<Self> {
        match kind.is_video() {
            true => None,
            false => Self::from_audio_config(kind, &[], kind.webrtc()?.clock_rate, channels),
        }
    }

    /// What the storage sessions' audio mixer records: one channel of the codec WebRTC
    /// carries audio in (the mix is decoded and encoded again).
    pub fn mixed_audio() -> Option<Self> {
        Self::for_webrtc(CodecKind::webrtc_for("audio")?, 1)
    }

    /// A stored sample as an MPEG-TS access unit carries it: H.264 and H.265 in Annex B
    /// led by an access unit delimiter (and on keyframes the parameter sets), AAC with
    /// an ADTS header.
    pub fn mpegts_access_unit(&self, sample: &[u8], keyframe: bool) -> Vec<u8> {
        let annex_b = |delimiter: &[u8]| {
            let sets = if keyframe { self.parameter_sets() } else { Vec::new() };
            let mut out = Vec::with_capacity(sample.len() + 64);
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(delimiter);
            out.extend_from_slice(&nal::to_annex_b(&sets, sample));
            out
        };
        match self {
            CodecParams::H264(_) => annex_b(&h264::ACCESS_UNIT_DELIMITER),
            CodecParams::H265(_) => annex_b(&h265::ACCESS_UNIT_DELIMITER),
            CodecParams::Aac(p) => p.adts_frame(sample),
            CodecParams::Opus(_) => sample.to_vec(),
        }
    }

    /// The parameter sets of a video track, as they would come in band.
    pub fn parameter_sets(&self) -> Vec<Vec<u8>> {
        match self {
            CodecParams::H264(p) => vec![p.sps.clone(), p.pps.clone()],
            CodecParams::H265(p) => vec![p.vps.clone(), p.sps.clone(), p.pps.clone()],
            CodecParams::Aac(_) | CodecParams::Opus(_) => Vec::new(),
        }
    }

    /// An SDP media section describing the track (control attribute left to the caller).
    pub fn sdp_media(&self, payload_type: u8) -> MediaDescription {
        match self {
            CodecParams::H264(p) => p.sdp_media(payload_type),
            CodecParams::H265(p) => p.sdp_media(payload_type),
            CodecParams::Aac(p) => p.sdp_media(payload_type),
            CodecParams::Opus(p) => p.sdp_media(payload_type),
        }
    }
}

/// What an SDP media section announces: the codec, and its parameters when the SDP
/// carries them (video parameter sets may come in band instead).
pub fn from_sdp(m: &MediaDescription) -> Result<(CodecKind, Option<CodecParams>), CodecError> {
    let kind = CodecKind::from_sdp_encoding(&m.encoding).ok_or_else(|| CodecError::Unsupported(m.encoding.clone()))?;
    let params = match kind {
        CodecKind::H264 => h264::Params::from_sdp(m).map(CodecParams::H264),
        CodecKind::H265 => h265::Params::from_sdp(m).map(CodecParams::H265),
        CodecKind::Aac => Some(CodecParams::Aac(aac::Params::from_sdp(m).map_err(CodecError::Sdp)?)),
        CodecKind::Opus => Some(CodecParams::Opus(opus::Params::from_sdp(m))),
    };
    Ok((kind, params))
}

/// The RFC 6381 codec string of a stored track (`avc1.64001f`, `mp4a.40.2`), or the
/// sample entry type when the codec or its configuration is unknown.
pub fn codec_string(track: &TrackInfo) -> String {
    let known = match CodecKind::from_sample_entry(track.sample_entry) {
        Some(CodecKind::H264) => h264::codec_string(track),
        Some(CodecKind::H265) => h265::codec_string(track),
        Some(CodecKind::Aac) => aac::codec_string(track),
        Some(CodecKind::Opus) => opus::codec_string(track),
        None => None,
    };
    known.unwrap_or_else(|| track.sample_entry.to_string())
}

/// Whether a stored track carries its decoder configuration (a players needs it).
pub fn has_decoder_config(track: &TrackInfo) -> bool {
    CodecParams::from_track(track).is_some()
}

/// One access unit (video) or frame (audio) at its RTP timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub rtp_ts: u32,
    /// Video: length-prefixed NAL units; audio: the raw frame.
    pub data: Vec<u8>,
    pub keyframe: bool,
    /// Parameter sets seen in band (H.264: SPS, PPS; H.265: VPS, SPS, PPS).
    pub parameter_sets: Vec<Vec<u8>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DepacketizeStats {
    pub packets: u64,
    /// Packets missing from the sequence.
    pub lost: u64,
    /// Units dropped because a packet of theirs was lost or malformed.
    pub dropped_units: u64,
    pub malformed: u64,
}

impl std::ops::AddAssign for DepacketizeStats {
    fn add_assign(&mut self, o: Self) {
        self.packets += o.packets;
        self.lost += o.lost;
        self.dropped_units += o.dropped_units;
        self.malformed += o.malformed;
    }
}

enum DepacketizerInner {
    /// H.264 and H.265: the shared assembler with the codec's payload parser and NAL
    /// classifier.
    Nal {
        asm: nal::NalAssembler,
        classify: fn(&[u8]) -> nal::NalClass,
        depacketize: fn(&mut nal::NalAssembler, &[u8]) -> bool,
    },
    Aac(aac::Depacketizer),
    Opus,
}

/// RTP payloads back into access units, for one track. Sans-IO: packets in (in
/// sequence order), units out.
pub struct Depacketizer {
    inner: DepacketizerInner,
    pub stats: DepacketizeStats,
}

impl Depacketizer {
    /// A depacketizer for `kind`; AAC takes its `sizelength`/`indexlength` from `fmtp`.
    pub fn new(kind: CodecKind, fmtp: &BTreeMap<String, String>) -> Self {
        let inner = match kind {
            CodecKind::H264 => DepacketizerInner::Nal {
                asm: nal::NalAssembler::default(),
                classify: h264::classify,
                depacketize: h264::depacketize,
            },
            CodecKind::H265 => DepacketizerInner::Nal {
                asm: nal::NalAssembler::default(),
                classify: h265::classify,
                depacketize: h265::depacketize,
            },
            CodecKind::Aac => DepacketizerInner::Aac(aac::Depacketizer::new(fmtp)),
            CodecKind::Opus => DepacketizerInner::Opus,
        };
        Depacketizer { inner, stats: DepacketizeStats::default() }
    }

    /// Feeds one packet; `lost_before` says packets were missing just before it.
    /// Returns the units it completed.
    pub fn push(&mut self, p: &RtpPacket, lost_before: u64) -> Vec<AccessUnit> {
        self.stats.packets += 1;
        self.stats.lost += lost_before;
        let (asm, classify, depacketize) = match &mut self.inner {
            DepacketizerInner::Opus => return vec![opus::depacketize(p.timestamp, p.payload)],
            DepacketizerInner::Aac(d) => {
                return d.push(p.timestamp, p.payload).unwrap_or_else(|| {
                    self.stats.malformed += 1;
                    self.stats.dropped_units += 1;
                    Vec::new()
                })
            }
            DepacketizerInner::Nal { asm, classify, depacketize } => (asm, *classify, *depacketize),
        };
        let mut out = Vec::new();
        let mut take = |done: Option<nal::Assembled>, stats: &mut DepacketizeStats| match done {
            Some(nal::Assembled::Unit(u)) => out.push(u),
            Some(nal::Assembled::Dropped) => stats.dropped_units += 1,
            None => {}
        };
        take(asm.begin(p.timestamp, lost_before, classify), &mut self.stats);
        if !depacketize(asm, p.payload) {
            self.stats.malformed += 1;
            asm.mark_broken();
        }
        if p.marker {
            take(asm.finish(classify), &mut self.stats);
        }
        out
    }
}

/// Largest RTP payload we send, so packets fit a 1500-byte path with headers.
pub const MAX_RTP_PAYLOAD: usize = 1400;

/// The RTP payloads of one stored sample, in order (the last one carries the marker).
pub fn packetize(kind: CodecKind, sample: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    match kind {
        CodecKind::H264 => h264::packetize(&mut out, sample, MAX_RTP_PAYLOAD),
        CodecKind::H265 => h265::packetize(&mut out, sample, MAX_RTP_PAYLOAD),
        CodecKind::Aac => aac::packetize(&mut out, sample),
        CodecKind::Opus => opus::packetize(&mut out, sample),
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::fmp4::TrackKind;
    use crate::wire::rtp;

    #[test]
    fn matroska_tracks_read_through_the_codec_layer_and_write_back() {
        use crate::wire::matroska::{MkvEvent, MkvLimits, MkvReader};
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/av.mkv")).unwrap();
        let events = MkvReader::new(MkvLimits::default()).push(&bytes).unwrap();
        let Some(MkvEvent::Tracks(tracks)) = events.into_iter().find(|e| matches!(e, MkvEvent::Tracks(_))) else {
            panic!("no Tracks")
        };
        let mut kinds = Vec::new();
        for t in &tracks {
            let kind = CodecKind::from_matroska_codec_id(&t.codec_id).unwrap();
            assert_eq!(kind.matroska_codec_id(), t.codec_id);
            let rate = t.sampling_frequency.unwrap_or(0.0) as u32;
            let channels = t.channels.unwrap_or(0) as u16;
            let params = CodecParams::from_matroska(kind, &t.codec_private, rate, channels).unwrap();
            params.sample_entry().unwrap();
            let again = CodecParams::from_matroska(kind, &params.matroska_private().unwrap(), rate, channels);
            assert_eq!(again.as_ref(), Some(&params), "{}", t.codec_id);
            kinds.push(kind);
        }
        assert_eq!(kinds, [CodecKind::H264, CodecKind::Aac]);
        assert_eq!(CodecKind::from_matroska_codec_id("A_AAC/MPEG4/LC"), Some(CodecKind::Aac));
        assert_eq!(CodecKind::from_matroska_codec_id("V_VP8"), None);
        let opus = CodecParams::Opus(opus::Params { channels: 2 });
        let head = opus.matroska_private().unwrap();
        assert_eq!(CodecParams::from_matroska(CodecKind::Opus, &head, 48_000, 0), Some(opus));
    }

    /// A stored track whose sample entry is `entry` (a whole box, as `sample_entry` writes it).
    pub(crate) fn track_with_entry(kind: TrackKind, entry: &[u8]) -> TrackInfo {
        let (sample_entry, body) = crate::wire::bmff::BoxIter::new(entry).next().unwrap().unwrap();
        let (channels, sample_rate) = match kind {
            TrackKind::Audio => {
                (u16::from_be_bytes([body[16], body[17]]), u32::from_be_bytes(body[24..28].try_into().unwrap()) >> 16)
            }
            _ => (0, 0),
        };
        TrackInfo {
            track_id: 1,
            kind,
            timescale: 90_000,
            sample_entry,
            sample_entry_body: body.to_vec(),
            width: 0,
            height: 0,
            channels,
            sample_rate,
            defaults: Default::default(),
        }
    }

    fn pkt(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        rtp::write(&mut v, 96, marker, seq, ts, 1, payload);
        v
    }

    fn push(d: &mut Depacketizer, seq: u16, ts: u32, marker: bool, payload: &[u8], lost: u64) -> Vec<AccessUnit> {
        d.push(&rtp::parse(&pkt(seq, ts, marker, payload)).unwrap(), lost)
    }

    #[test]
    fn h264_single_stap_and_fu() {
        let mut d = Depacketizer::new(CodecKind::H264, &BTreeMap::new());
        // STAP-A with SPS and PPS, then an IDR in three FU-A pieces.
        assert!(push(&mut d, 1, 100, false, &[24, 0, 2, 0x67, 1, 0, 2, 0x68, 2], 0).is_empty());
        push(&mut d, 2, 100, false, &[0x7c, 0x85, 1, 2], 0);
        push(&mut d, 3, 100, false, &[0x7c, 0x05, 3], 0);
        let out = push(&mut d, 4, 100, true, &[0x7c, 0x45, 4], 0);
        assert_eq!(out.len(), 1);
        let u = &out[0];
        assert!(u.keyframe);
        assert_eq!(u.parameter_sets, vec![vec![0x67, 1], vec![0x68, 2]]);
        assert_eq!(&u.data[u.data.len() - 9..], &[0, 0, 0, 5, 0x65, 1, 2, 3, 4]);
        // A P-frame whose middle piece is lost is dropped, the next one is whole.
        push(&mut d, 5, 200, false, &[0x5c, 0x81, 1], 0);
        assert!(push(&mut d, 7, 200, true, &[0x5c, 0x41, 2], 1).is_empty());
        let out = push(&mut d, 8, 300, true, &[0x41, 9], 0);
        assert_eq!(out.len(), 1);
        assert!(!out[0].keyframe);
        assert_eq!((d.stats.lost, d.stats.dropped_units), (1, 1));
        // Garbage is counted, not a panic.
        push(&mut d, 9, 400, true, &[0x5c], 0);
        push(&mut d, 10, 500, true, &[24, 0, 50, 1], 0);
        assert_eq!(d.stats.malformed, 2);
    }

    #[test]
    fn packetize_then_depacketize_gives_the_sample_back() {
        for kind in [CodecKind::H264, CodecKind::H265] {
            let (sps, pps, idr) = if kind == CodecKind::H264 {
                (vec![0x67, 1, 2], vec![0x68, 3], vec![0x65])
            } else {
                (vec![33 << 1, 1, 2], vec![34 << 1, 1, 3], vec![19 << 1, 1])
            };
            let mut sample = Vec::new();
            let mut big = idr;
            big.extend((0..5000).map(|i| i as u8));
            for n in [&sps, &pps, &big] {
                nal::push_length_prefixed(&mut sample, n);
            }
            let ps = packetize(kind, &sample);
            assert!(ps.len() > 4 && ps.iter().all(|p| p.len() <= MAX_RTP_PAYLOAD));
            let mut d = Depacketizer::new(kind, &BTreeMap::new());
            let mut units = Vec::new();
            for (i, p) in ps.iter().enumerate() {
                units.extend(push(&mut d, i as u16, 9000, i + 1 == ps.len(), p, 0));
            }
            assert_eq!(units.len(), 1, "{kind:?}");
            assert_eq!(units[0].data, sample);
            assert!(units[0].keyframe);
            assert_eq!(units[0].parameter_sets.len(), 2);
        }
        let mut d = Depacketizer::new(CodecKind::Aac, &BTreeMap::new());
        let p = packetize(CodecKind::Aac, &[9, 8, 7]);
        assert_eq!(push(&mut d, 1, 0, true, &p[0], 0)[0].data, vec![9, 8, 7]);
    }

    #[test]
    fn the_enum_maps_every_name_to_its_codec() {
        for kind in [CodecKind::H264, CodecKind::H265, CodecKind::Aac, CodecKind::Opus] {
            assert_eq!(CodecKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(CodecKind::from_sdp_encoding("mpeg4-generic"), Some(CodecKind::Aac));
        assert_eq!(CodecKind::from_sdp_encoding("PCMU"), None);
        assert_eq!(CodecKind::from_sample_entry(FourCc::new(b"hev1")), Some(CodecKind::H265));
    }

    #[test]
    fn inits_of_ffmpeg_read_back_to_parameters() {
        use crate::wire::fmp4::parse_init;
        let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/av.mp4")).unwrap();
        let info = parse_init(&file).unwrap();
        let got: Vec<_> = info.tracks.iter().filter_map(CodecParams::from_track).collect();
        assert!(matches!(&got[0], CodecParams::H264(p) if p.sps[0] == 0x67));
        assert!(matches!(&got[1], CodecParams::Aac(p) if p.sample_rate == 48_000));
        assert!(codec_string(&info.tracks[0]).starts_with("avc1.4d"));
        assert_eq!(codec_string(&info.tracks[1]), "mp4a.40.2");
        let hevc = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hevc.mp4")).unwrap();
        let info = parse_init(&hevc).unwrap();
        assert!(matches!(CodecParams::from_track(&info.tracks[0]), Some(CodecParams::H265(_))));
    }

    #[test]
    fn sdp_of_each_codec_parses_back() {
        let all = [
            CodecParams::H264(h264::Params { sps: h264::tests::SPS.to_vec(), pps: h264::tests::PPS.to_vec() }),
            CodecParams::Aac(aac::Params { config: vec![0x11, 0x90], sample_rate: 48_000, channels: 1 }),
            CodecParams::Opus(opus::Params { channels: 2 }),
        ];
        for p in all {
            let (kind, back) = from_sdp(&p.sdp_media(96)).unwrap();
            assert_eq!((kind, back), (p.kind(), Some(p)));
        }
        let pcmu = MediaDescription::new("audio", 0, "PCMU", 8000, 1);
        assert!(matches!(from_sdp(&pcmu), Err(CodecError::Unsupported(_))));
    }
}
