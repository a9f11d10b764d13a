//! H.265 / HEVC: everything Kinescope knows about it in one place.
//!
//! - NAL unit types (ITU-T H.265 table 7-1): IRAP pictures (16–21) are keyframes, VPS
//!   (32), SPS (33), PPS (34) the parameter sets;
//! - the picture size from the SPS (H.265 7.3.2.2);
//! - the `hvcC` HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1), read and
//!   written, inside an `hvc1` sample entry;
//! - the RFC 6381 / 14496-15 annex E codec string (`hvc1.1.6.L93.B0`);
//! - SDP `H265/90000` with `sprop-vps`/`sprop-sps`/`sprop-pps` (RFC 7798 7.1);
//! - RTP depacketizing (RFC 7798 4.4.1 single NAL unit, 4.4.2 AP, 4.4.3 FU) and
//!   packetizing (single NAL units, FU above the payload size).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::nal::{self, Bits, NalAssembler, NalClass};
use super::CodecError;
use crate::wire::bmff::{write_box, FourCc};
use crate::wire::fmp4::{visual_sample_entry, TrackInfo};
use crate::wire::sdp::MediaDescription;

pub const HVC1: FourCc = FourCc::new(b"hvc1");
pub const HEV1: FourCc = FourCc::new(b"hev1");
pub const HVCC: FourCc = FourCc::new(b"hvcC");

pub const NAL_VPS: u8 = 32;
pub const NAL_SPS: u8 = 33;
pub const NAL_PPS: u8 = 34;
/// RFC 7798 payload structures.
const AP: u8 = 48;
const FU: u8 = 49;

/// The parameter sets of an H.265 track (without start codes or length prefixes).
/// Matroska's CodecID (CodecPrivate: the `hvcC` record).
pub const MATROSKA_CODEC_ID: &str = "V_MPEGH/ISO/HEVC";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub vps: Vec<u8>,
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
}

/// An access unit delimiter NAL (type 35, layer 0, temporal id 1; any picture types),
/// which MPEG-TS access units start with.
pub const ACCESS_UNIT_DELIMITER: [u8; 3] = [0x46, 0x01, 0x50];

/// The NAL unit type (bits 1..7 of the first header byte).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| (b >> 1) & 0x3f)
}

pub fn classify(nal: &[u8]) -> NalClass {
    let t = nal_type(nal);
    NalClass { keyframe: (16..=21).contains(&t), parameter_set: (NAL_VPS..=NAL_PPS).contains(&t) }
}

/// Width and height from an SPS (H.265 7.3.2.2), `None` if malformed.
pub fn parse_sps_size(nal: &[u8]) -> Option<(u32, u32)> {
    if nal_type(nal) != NAL_SPS || nal.len() < 3 {
        return None;
    }
    let rbsp = nal::unescape(&nal[2..]);
    let mut r = Bits::new(&rbsp);
    r.bits(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)?;
    r.bit()?; // temporal_id_nesting
              // profile_tier_level(1, max_sub_layers_minus1)
    r.bits(8)?;
    r.bits(32)?;
    r.bits(32)?;
    r.bits(16)?;
    r.bits(8)?; // general_level_idc
    let mut present = Vec::new();
    for _ in 0..max_sub_layers_minus1 {
        present.push((r.bit()?, r.bit()?));
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.bits(2)?;
        }
    }
    for (profile, level) in present {
        if profile == 1 {
            r.bits(32)?;
            r.bits(32)?;
            r.bits(24)?;
        }
        if level == 1 {
            r.bits(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma = r.ue()?;
    if chroma == 3 {
        r.bit()?;
    }
    let mut w = r.ue()?;
    let mut h = r.ue()?;
    if r.bit()? == 1 {
        let (sub_w, sub_h) = match chroma {
            1 => (2u32, 2u32),
            2 => (2, 1),
            _ => (1, 1),
        };
        let (l, rr, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        w = w.checked_sub(sub_w.checked_mul(l.checked_add(rr)?)?)?;
        h = h.checked_sub(sub_h.checked_mul(t.checked_add(b)?)?)?;
    }
    Some((w, h))
}

impl Params {
    /// The parameters in-band parameter sets give, if all three are there.
    pub fn from_parameter_sets(sets: &[Vec<u8>]) -> Option<Self> {
        let find = |t: u8| sets.iter().find(|n| nal_type(n) == t).cloned();
        Some(Params { vps: find(NAL_VPS)?, sps: find(NAL_SPS)?, pps: find(NAL_PPS)? })
    }

    pub fn dimensions(&self) -> Result<(u32, u32), CodecError> {
        parse_sps_size(&self.sps).ok_or(CodecError::BadParameters("H.265 SPS"))
    }

    /// The `hvc1` sample entry box with its `hvcC`.
    pub fn sample_entry(&self) -> Result<Vec<u8>, CodecError> {
        let (width, height) = self.dimensions()?;
        let hvcc = self.hvcc()?;
        let mut entry = visual_sample_entry(width, height);
        write_box(&mut entry, HVCC, &hvcc);
        let mut out = Vec::with_capacity(entry.len() + 8);
        write_box(&mut out, HVC1, &entry);
        Ok(out)
    }

    /// HEVCDecoderConfigurationRecord (14496-15 8.3.3.1): what `hvcC` holds and what
    /// Matroska's CodecPrivate carries for `V_MPEGH/ISO/HEVC`.
    pub fn hvcc(&self) -> Result<Vec<u8>, CodecError> {
        // The profile_tier_level's general fields, as the SPS has them after its
        // 2-byte NAL header and first byte.
        let rbsp = nal::unescape(self.sps.get(2..).unwrap_or_default());
        let ptl = rbsp.get(1..13).ok_or(CodecError::BadParameters("H.265 SPS"))?;
        let mut hvcc = vec![1];
        hvcc.extend_from_slice(ptl); // profile byte, 4 compatibility, 6 constraint, level
                                     // min_spatial_segmentation, parallelism, chroma format 4:2:0, 8-bit depths,
                                     // no average frame rate, one temporal layer, 4-byte NAL lengths; 3 arrays.
        hvcc.extend_from_slice(&[0xf0, 0x00, 0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 3]);
        for (kind, nal) in [(NAL_VPS, &self.vps), (NAL_SPS, &self.sps), (NAL_PPS, &self.pps)] {
            hvcc.push(0x80 | kind); // array_completeness
            hvcc.extend_from_slice(&1u16.to_be_bytes());
            hvcc.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            hvcc.extend_from_slice(nal);
        }
        Ok(hvcc)
    }

    /// Reads an `hvcC` body: the first VPS, SPS and PPS of its arrays.
    pub fn from_hvcc(b: &[u8]) -> Option<Self> {
        let arrays = usize::from(*b.get(22)?);
        let mut at = 23;
        let (mut vps, mut sps, mut pps) = (None, None, None);
        for _ in 0..arrays {
            let kind = *b.get(at)? & 0x3f;
            let n = usize::from(u16::from_be_bytes([*b.get(at + 1)?, *b.get(at + 2)?]));
            at += 3;
            for _ in 0..n {
                let len = usize::from(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]));
                let nal = b.get(at + 2..at + 2 + len)?.to_vec();
                at += 2 + len;
                match kind {
                    NAL_VPS => vps = vps.or(Some(nal)),
                    NAL_SPS => sps = sps.or(Some(nal)),
                    NAL_PPS => pps = pps.or(Some(nal)),
                    _ => {}
                }
            }
        }
        Some(Params { vps: vps?, sps: sps?, pps: pps? })
    }

    /// The SDP media section (RFC 7798 7.1).
    pub fn sdp_media(&self, payload_type: u8) -> MediaDescription {
        let mut m = MediaDescription::new("video", payload_type, "H265", 90_000, 0);
        m.fmtp.insert("sprop-vps".into(), BASE64.encode(&self.vps));
        m.fmtp.insert("sprop-sps".into(), BASE64.encode(&self.sps));
        m.fmtp.insert("sprop-pps".into(), BASE64.encode(&self.pps));
        m
    }

    /// The parameters an SDP media section gives; `None` when one is missing.
    pub fn from_sdp(m: &MediaDescription) -> Option<Self> {
        let get = |k: &str| m.fmtp.get(k).and_then(|s| BASE64.decode(s.trim()).ok()).filter(|v| !v.is_empty());
        Some(Params { vps: get("sprop-vps")?, sps: get("sprop-sps")?, pps: get("sprop-pps")? })
    }
}

/// 14496-15 annex E: `hvc1.[space]profile.compat.[tier]level[.constraints]`, e.g.
/// `hvc1.1.6.L93.B0`.
pub fn codec_string(track: &TrackInfo) -> Option<String> {
    let hvcc = track.sample_entry_child(HVCC)?;
    if hvcc.len() < 13 {
        return None;
    }
    let space = ["", "A", "B", "C"][usize::from(hvcc[1] >> 6)];
    let tier = if hvcc[1] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = hvcc[1] & 0x1f;
    let compat = u32::from_be_bytes([hvcc[2], hvcc[3], hvcc[4], hvcc[5]]).reverse_bits();
    let constraints = &hvcc[6..12];
    let level = hvcc[12];
    let mut s = format!("{}.{space}{profile}.{compat:x}.{tier}{level}", track.sample_entry);
    let last = constraints.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    for b in &constraints[..last] {
        s.push_str(&format!(".{b:X}"));
    }
    Some(s)
}

/// One RTP payload into the assembler; `false` if it is malformed.
pub fn depacketize(asm: &mut NalAssembler, p: &[u8]) -> bool {
    if p.len() < 3 {
        return false;
    }
    match nal_type(p) {
        // 4.4.1: a single NAL unit packet.
        0..=47 => asm.push_nal(p),
        // 4.4.2: aggregation packet, 16-bit sizes before each NAL unit.
        AP => {
            let mut at = 2;
            while at + 2 <= p.len() {
                let n = usize::from(u16::from_be_bytes([p[at], p[at + 1]]));
                let Some(nal) = p.get(at + 2..at + 2 + n).filter(|n| n.len() >= 2) else { return false };
                asm.push_nal(nal);
                at += 2 + n;
            }
        }
        // 4.4.3: fragmentation unit; the NAL header is rebuilt with the FU header's type.
        FU => {
            let fu = p[2];
            let header = [(p[0] & 0x81) | ((fu & 0x3f) << 1), p[1]];
            return asm.fragment_piece(fu & 0x80 != 0, fu & 0x40 != 0, &header, &p[3..]);
        }
        _ => return false,
    }
    true
}

/// The RTP payloads of one length-prefixed sample: each NAL unit alone when it fits,
/// else FU pieces (RFC 7798 4.4.3).
pub fn packetize(out: &mut Vec<Vec<u8>>, sample: &[u8], max_payload: usize) {
    for n in nal::nal_units(sample) {
        if n.len() <= max_payload || n.len() < 3 {
            out.push(n.to_vec());
        } else {
            nal::fragment(out, max_payload, &[(n[0] & 0x81) | (FU << 1), n[1]], nal_type(n), &n[2..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fmp4::parse_init;

    fn fixture_params() -> (TrackInfo, Params) {
        let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hevc.mp4")).unwrap();
        let info = parse_init(&file).unwrap();
        let track = info.tracks[0].clone();
        let params = Params::from_hvcc(track.sample_entry_child(HVCC).unwrap()).unwrap();
        (track, params)
    }

    #[test]
    fn ffmpegs_hvcc_reads_and_writes_back() {
        let (track, p) = fixture_params();
        assert_eq!(nal_type(&p.sps), NAL_SPS);
        let (w, h) = p.dimensions().unwrap();
        assert_eq!((w, h), (u32::from(track.width), u32::from(track.height)));
        let ours = codec_string(&track).unwrap();
        assert!(ours.starts_with(&format!("{}.", track.sample_entry)), "{ours}");
        // What we write reads back to the same parameters and codec string.
        let entry = p.sample_entry().unwrap();
        let again = TrackInfo { sample_entry: HVC1, sample_entry_body: entry[8..].to_vec(), ..track.clone() };
        assert_eq!(Params::from_hvcc(again.sample_entry_child(HVCC).unwrap()), Some(p.clone()));
        let theirs = codec_string(&again).unwrap();
        assert_eq!(theirs.split_once('.').map(|x| x.1), ours.split_once('.').map(|x| x.1));
        assert_eq!(Params::from_sdp(&p.sdp_media(96)), Some(p));
    }

    #[test]
    fn keyframes_and_parameter_sets() {
        assert_eq!(classify(&[19 << 1, 1]), NalClass { keyframe: true, parameter_set: false });
        assert_eq!(classify(&[NAL_VPS << 1, 1]), NalClass { keyframe: false, parameter_set: true });
        assert_eq!(classify(&[1 << 1, 1]), NalClass { keyframe: false, parameter_set: false });
        assert_eq!(parse_sps_size(&[NAL_SPS << 1, 1]), None);
    }
}
