//! H.264 / AVC: everything Kinescope knows about it in one place.
//!
//! - NAL unit types and what they mean for a sample (ITU-T H.264 table 7-1);
//! - the SPS fields a sample entry and the reorder logic need (H.264 7.3.2.1.1);
//! - the `avcC` AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1), read and
//!   written, inside an `avc1` sample entry;
//! - the RFC 6381 codec string (`avc1.PPCCLL`);
//! - SDP `a=rtpmap:… H264/90000` and its `fmtp` (RFC 6184 8.1: `packetization-mode`,
//!   `profile-level-id`, `sprop-parameter-sets`);
//! - RTP depacketizing (RFC 6184 5.6 single NAL unit, 5.7.1 STAP-A, 5.8 FU-A) and
//!   packetizing (single NAL units, FU-A above the payload size).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::nal::{self, Bits, NalAssembler, NalClass};
use super::CodecError;
use crate::wire::bmff::{write_box, FourCc};
use crate::wire::fmp4::{visual_sample_entry, TrackInfo};
use crate::wire::sdp::MediaDescription;

pub const AVC1: FourCc = FourCc::new(b"avc1");
pub const AVC3: FourCc = FourCc::new(b"avc3");
pub const AVCC: FourCc = FourCc::new(b"avcC");

/// NAL unit types (table 7-1) the server acts on.
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
/// RFC 6184 payload structures.
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// The parameter sets of an H.264 track (without start codes or length prefixes).
/// Matroska's CodecID (CodecPrivate: the `avcC` record).
pub const MATROSKA_CODEC_ID: &str = "V_MPEG4/ISO/AVC";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
}

/// An access unit delimiter NAL (type 9, any slice types), which MPEG-TS access units
/// start with.
pub const ACCESS_UNIT_DELIMITER: [u8; 2] = [0x09, 0xF0];

/// The NAL unit type (low 5 bits of the header byte).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

pub fn classify(nal: &[u8]) -> NalClass {
    let t = nal_type(nal);
    NalClass { keyframe: t == NAL_IDR, parameter_set: t == NAL_SPS || t == NAL_PPS }
}

/// What a sample entry needs from an SPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    pub constraints: u8,
    pub level_idc: u8,
    pub width: u32,
    pub height: u32,
    /// 2 means output order is decode order: no B-frames, nothing to reorder.
    pub pic_order_cnt_type: u32,
}

/// Parses an SPS NAL unit (with its header byte) far enough to know the picture size;
/// `None` if it is not one or is malformed.
pub fn parse_sps(nal: &[u8]) -> Option<SpsInfo> {
    if nal_type(nal) != NAL_SPS || nal.len() < 4 {
        return None;
    }
    let rbsp = nal::unescape(&nal[1..]);
    let [profile_idc, constraints, level_idc, ..] = rbsp[..] else { return None };
    let mut r = Bits::new(&rbsp[3..]);
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135].contains(&profile_idc) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    let pic_order_cnt_type = r.ue()?;
    match pic_order_cnt_type {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_map_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u32, 0u32, 0u32, 0u32);
    if r.bit()? == 1 {
        crop_l = r.ue()?;
        crop_r = r.ue()?;
        crop_t = r.ue()?;
        crop_b = r.ue()?;
    }
    let (sub_w, sub_h) = match chroma_format_idc {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let frame_h_mult = 2 - frame_mbs_only;
    let width = width_mbs.checked_mul(16)?.checked_sub(sub_w * crop_l.checked_add(crop_r)?)?;
    let height = height_map_units
        .checked_mul(16 * frame_h_mult)?
        .checked_sub((sub_h * frame_h_mult).checked_mul(crop_t.checked_add(crop_b)?)?)?;
    Some(SpsInfo { profile_idc, constraints, level_idc, width, height, pic_order_cnt_type })
}

impl Params {
    /// The parameters in-band parameter sets give, if both are there.
    pub fn from_parameter_sets(sets: &[Vec<u8>]) -> Option<Self> {
        let find = |t: u8| sets.iter().find(|n| nal_type(n) == t).cloned();
        Some(Params { sps: find(NAL_SPS)?, pps: find(NAL_PPS)? })
    }

    pub fn dimensions(&self) -> Result<(u32, u32), CodecError> {
        let i = parse_sps(&self.sps).ok_or(CodecError::BadParameters("H.264 SPS"))?;
        Ok((i.width, i.height))
    }

    /// Frames a depacketizer must hold to turn presentation into decode order: none
    /// when the SPS says output order is decode order (`pic_order_cnt_type` 2).
    pub fn can_reorder(&self) -> bool {
        parse_sps(&self.sps).is_none_or(|i| i.pic_order_cnt_type != 2)
    }

    /// The `avc1` sample entry box with its `avcC`.
    pub fn sample_entry(&self) -> Result<Vec<u8>, CodecError> {
        let (width, height) = self.dimensions()?;
        let mut entry = visual_sample_entry(width, height);
        write_box(&mut entry, AVCC, &self.avcc());
        let mut out = Vec::with_capacity(entry.len() + 8);
        write_box(&mut out, AVC1, &entry);
        Ok(out)
    }

    /// AVCDecoderConfigurationRecord (14496-15 5.3.3.1): version 1, profile,
    /// compatibility and level from the SPS, 4-byte NAL lengths, one SPS, one PPS. What
    /// `avcC` holds and what Matroska's CodecPrivate carries for `V_MPEG4/ISO/AVC`.
    pub fn avcc(&self) -> Vec<u8> {
        let sps = &self.sps;
        let mut avcc = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        avcc.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        avcc.extend_from_slice(sps);
        avcc.push(1);
        avcc.extend_from_slice(&(self.pps.len() as u16).to_be_bytes());
        avcc.extend_from_slice(&self.pps);
        avcc
    }

    /// Reads an `avcC` body: the first SPS and the first PPS.
    pub fn from_avcc(b: &[u8]) -> Option<Self> {
        let mut at = 5;
        let sps_count = usize::from(*b.get(at)? & 0x1f);
        at += 1;
        let read = |at: &mut usize| -> Option<Vec<u8>> {
            let n = usize::from(u16::from_be_bytes([*b.get(*at)?, *b.get(*at + 1)?]));
            let v = b.get(*at + 2..*at + 2 + n)?.to_vec();
            *at += 2 + n;
            Some(v)
        };
        let mut sps = None;
        for _ in 0..sps_count {
            let s = read(&mut at)?;
            sps.get_or_insert(s);
        }
        let pps_count = usize::from(*b.get(at)?);
        at += 1;
        let mut pps = None;
        for _ in 0..pps_count {
            let p = read(&mut at)?;
            pps.get_or_insert(p);
        }
        let params = Params { sps: sps?, pps: pps? };
        (params.sps.len() >= 4).then_some(params)
    }

    /// The SDP `fmtp` parameters (RFC 6184 8.1).
    pub fn sdp_media(&self, payload_type: u8) -> MediaDescription {
        let pli = self.sps.get(1..4).map(hex::encode).unwrap_or_else(|| "42e01f".into());
        let mut m = MediaDescription::new("video", payload_type, "H264", 90_000, 0);
        m.fmtp.insert("packetization-mode".into(), "1".into());
        m.fmtp.insert("profile-level-id".into(), pli);
        m.fmtp.insert(
            "sprop-parameter-sets".into(),
            format!("{},{}", BASE64.encode(&self.sps), BASE64.encode(&self.pps)),
        );
        m
    }

    /// The parameters an SDP media section gives; `None` when its parameter sets are
    /// missing (then they come in band).
    pub fn from_sdp(m: &MediaDescription) -> Option<Self> {
        let sets: Vec<Vec<u8>> = m
            .fmtp
            .get("sprop-parameter-sets")
            .map(|s| s.split(',').filter_map(|p| BASE64.decode(p.trim()).ok().filter(|v| !v.is_empty())).collect())
            .unwrap_or_default();
        Self::from_parameter_sets(&sets)
    }
}

/// What WebRTC peers negotiate: constrained baseline, packetization mode 1 (what
/// browsers send and decode without B-frames).
pub const WEBRTC: super::RtpCapability = super::RtpCapability {
    media: "video",
    encoding: "H264",
    clock_rate: 90_000,
    channels: 0,
    fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    payload_type: 102,
};

/// RFC 6381 3.3: `avc1.PPCCLL` from the `avcC`'s profile, compatibility and level.
pub fn codec_string(track: &TrackInfo) -> Option<String> {
    let avcc = track.sample_entry_child(AVCC)?;
    let b = avcc.get(1..4)?;
    Some(format!("{}.{:02x}{:02x}{:02x}", track.sample_entry, b[0], b[1], b[2]))
}

/// One RTP payload into the assembler; `false` if it is malformed.
pub fn depacketize(asm: &mut NalAssembler, p: &[u8]) -> bool {
    let Some(&h) = p.first() else { return false };
    match h & 0x1f {
        // 5.6: a single NAL unit packet.
        1..=23 => asm.push_nal(p),
        // 5.7.1: STAP-A, 16-bit sizes before each NAL unit.
        STAP_A => {
            let mut at = 1;
            while at + 2 <= p.len() {
                let n = usize::from(u16::from_be_bytes([p[at], p[at + 1]]));
                let Some(nal) = p.get(at + 2..at + 2 + n).filter(|n| !n.is_empty()) else { return false };
                asm.push_nal(nal);
                at += 2 + n;
            }
        }
        // 5.8: FU-A; the NAL header is the indicator's F/NRI and the FU header's type.
        FU_A => {
            let Some(&fu) = p.get(1) else { return false };
            return asm.fragment_piece(fu & 0x80 != 0, fu & 0x40 != 0, &[(h & 0xe0) | (fu & 0x1f)], &p[2..]);
        }
        _ => return false,
    }
    true
}

/// The RTP payloads of one length-prefixed sample: each NAL unit alone when it fits,
/// else FU-A pieces (RFC 6184 5.8).
pub fn packetize(out: &mut Vec<Vec<u8>>, sample: &[u8], max_payload: usize) {
    for n in nal::nal_units(sample) {
        if n.len() <= max_payload {
            out.push(n.to_vec());
        } else {
            nal::fragment(out, max_payload, &[(n[0] & 0xe0) | FU_A], n[0] & 0x1f, &n[1..]);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// x264 High profile 640x360 (`ffmpeg -f lavfi -i testsrc2=size=640x360 -c:v libx264`).
    pub(crate) const SPS: [u8; 26] = [
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00,
        0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
    ];
    pub(crate) const PPS: [u8; 6] = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    #[test]
    fn sps_of_a_640x360_x264_stream() {
        let info = parse_sps(&SPS).unwrap();
        assert_eq!((info.profile_idc, info.level_idc, info.width, info.height), (100, 30, 640, 360));
        assert_eq!(info.pic_order_cnt_type, 0);
        assert_eq!(parse_sps(&SPS[..5]), None);
        assert_eq!(parse_sps(&[0x68, 1, 2, 3]), None);
        // x264 without B-frames (-bf 0 -tune zerolatency) signals output order = decode order.
        let no_b = [
            0x67, 0x64, 0x00, 0x1e, 0xac, 0xb2, 0x01, 0x40, 0x5f, 0xf2, 0xe0, 0x22, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00,
            0x00, 0x03, 0x00, 0x65, 0x1e, 0x2c, 0x5c, 0x90,
        ];
        let info = parse_sps(&no_b).unwrap();
        assert_eq!((info.width, info.height, info.pic_order_cnt_type), (640, 360, 2));
        assert!(!Params { sps: no_b.to_vec(), pps: PPS.to_vec() }.can_reorder());
        assert!(Params { sps: SPS.to_vec(), pps: PPS.to_vec() }.can_reorder());
        // Found by the rtsp_wire fuzz target: emulation prevention leaves too few bytes.
        assert_eq!(parse_sps(&[0x67, 0, 0, 3]), None);
    }

    #[test]
    fn avcc_round_trip_and_codec_string() {
        let p = Params { sps: SPS.to_vec(), pps: PPS.to_vec() };
        assert_eq!(Params::from_avcc(&p.avcc()), Some(p.clone()));
        assert_eq!(Params::from_avcc(&[1, 2, 3]), None);
        let track =
            crate::codec::tests::track_with_entry(crate::wire::fmp4::TrackKind::Video, &p.sample_entry().unwrap());
        assert_eq!(codec_string(&track).as_deref(), Some("avc1.64001e"));
    }

    #[test]
    fn sdp_round_trip() {
        let p = Params { sps: SPS.to_vec(), pps: PPS.to_vec() };
        let m = p.sdp_media(96);
        assert_eq!(m.fmtp["profile-level-id"], "64001e");
        assert_eq!(Params::from_sdp(&m), Some(p));
        let mut without = m.clone();
        without.fmtp.remove("sprop-parameter-sets");
        assert_eq!(Params::from_sdp(&without), None);
    }
}
