//! ISO BMFF (MP4) boxes, as far as fragmented MP4 ingest and serving need them.
//!
//! Pure functions over byte slices: nothing here does I/O or allocates per sample, so a
//! hostile input costs at most one pass over the bytes it sent. Every length read from
//! the input is checked against what is actually there before it is used (ISO/IEC
//! 14496-12 gives the layouts cited below).

use std::fmt;

/// Why a box or a sequence of boxes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fmp4Error {
    #[error("box '{kind}' at byte {offset} declares size {size}, smaller than its header")]
    SizeTooSmall { kind: FourCc, offset: u64, size: u64 },
    #[error("box '{kind}' at byte {offset} declares size {size}, larger than the limit of {limit} bytes")]
    SizeTooLarge { kind: FourCc, offset: u64, size: u64, limit: u64 },
    #[error("box '{kind}' at byte {offset} runs to the end of the file (size 0), which a stream cannot have")]
    SizeToEnd { kind: FourCc, offset: u64 },
    #[error("box '{kind}' is truncated: needs {needed} bytes, has {available}")]
    Truncated { kind: FourCc, needed: u64, available: u64 },
    #[error("required box '{child}' missing inside '{parent}'")]
    Missing { parent: FourCc, child: FourCc },
    #[error("box '{kind}' is malformed: {detail}")]
    Malformed { kind: FourCc, detail: &'static str },
}

/// A four-character box type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FourCc(pub [u8; 4]);

impl FourCc {
    pub const fn new(s: &[u8; 4]) -> Self {
        FourCc(*s)
    }
}

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FourCc({self})")
    }
}

pub mod kinds {
    use super::FourCc;
    pub const FTYP: FourCc = FourCc::new(b"ftyp");
    pub const MOOV: FourCc = FourCc::new(b"moov");
    pub const MOOF: FourCc = FourCc::new(b"moof");
    pub const MDAT: FourCc = FourCc::new(b"mdat");
    pub const MFHD: FourCc = FourCc::new(b"mfhd");
    pub const TRAF: FourCc = FourCc::new(b"traf");
    pub const TFHD: FourCc = FourCc::new(b"tfhd");
    pub const TFDT: FourCc = FourCc::new(b"tfdt");
    pub const TRUN: FourCc = FourCc::new(b"trun");
    pub const TRAK: FourCc = FourCc::new(b"trak");
    pub const TKHD: FourCc = FourCc::new(b"tkhd");
    pub const MDIA: FourCc = FourCc::new(b"mdia");
    pub const MDHD: FourCc = FourCc::new(b"mdhd");
    pub const HDLR: FourCc = FourCc::new(b"hdlr");
    pub const MINF: FourCc = FourCc::new(b"minf");
    pub const STBL: FourCc = FourCc::new(b"stbl");
    pub const STSD: FourCc = FourCc::new(b"stsd");
    pub const MVEX: FourCc = FourCc::new(b"mvex");
    pub const TREX: FourCc = FourCc::new(b"trex");
    pub const UUID: FourCc = FourCc::new(b"uuid");
    pub const AVCC: FourCc = FourCc::new(b"avcC");
    pub const HVCC: FourCc = FourCc::new(b"hvcC");
    pub const ESDS: FourCc = FourCc::new(b"esds");
    pub const VIDE: FourCc = FourCc::new(b"vide");
    pub const SOUN: FourCc = FourCc::new(b"soun");
}
use kinds::*;

/// The header of one box: its type, the length of the header and the whole box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    pub kind: FourCc,
    pub header_len: usize,
    pub size: u64,
}

/// Reads the box header at the start of `buf`.
///
/// `Ok(None)` means more bytes are needed to know. `offset` is where `buf` starts in the
/// whole stream (for error messages); `limit` caps the declared size, so a hostile
/// header cannot make the caller buffer gigabytes.
pub fn parse_box_header(buf: &[u8], offset: u64, limit: u64) -> Result<Option<BoxHeader>, Fmp4Error> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let size32 = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let kind = FourCc([buf[4], buf[5], buf[6], buf[7]]);
    let (size, mut header_len) = match size32 {
        0 => return Err(Fmp4Error::SizeToEnd { kind, offset }),
        1 => {
            if buf.len() < 16 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[8..16]);
            (u64::from_be_bytes(b), 16usize)
        }
        n => (u64::from(n), 8usize),
    };
    if kind == UUID {
        header_len += 16;
    }
    if size < header_len as u64 {
        return Err(Fmp4Error::SizeTooSmall { kind, offset, size });
    }
    if size > limit {
        return Err(Fmp4Error::SizeTooLarge { kind, offset, size, limit });
    }
    Ok(Some(BoxHeader { kind, header_len, size }))
}

/// Iterates over the boxes laid end to end in a complete buffer.
pub struct BoxIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BoxIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BoxIter { buf, pos: 0 }
    }
}

impl<'a> Iterator for BoxIter<'a> {
    /// The box type and its body (the bytes after the header).
    type Item = Result<(FourCc, &'a [u8]), Fmp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return None;
        }
        let header = match parse_box_header(rest, self.pos as u64, rest.len() as u64) {
            Ok(Some(h)) => h,
            Ok(None) => {
                self.pos = self.buf.len();
                return Some(Err(Fmp4Error::Truncated {
                    kind: FourCc(*b"????"),
                    needed: 8,
                    available: rest.len() as u64,
                }));
            }
            Err(Fmp4Error::SizeTooLarge { kind, size, .. }) => {
                self.pos = self.buf.len();
                return Some(Err(Fmp4Error::Truncated { kind, needed: size, available: rest.len() as u64 }));
            }
            Err(e) => {
                self.pos = self.buf.len();
                return Some(Err(e));
            }
        };
        // parse_box_header bounded size by rest.len(), so these casts and slices hold.
        let size = header.size as usize;
        let body = &rest[header.header_len..size];
        self.pos += size;
        Some(Ok((header.kind, body)))
    }
}

/// Finds the first child box of `kind` in `buf` (a box body holding child boxes).
pub fn find_child(buf: &[u8], kind: FourCc) -> Result<Option<&[u8]>, Fmp4Error> {
    for item in BoxIter::new(buf) {
        let (k, body) = item?;
        if k == kind {
            return Ok(Some(body));
        }
    }
    Ok(None)
}

pub(crate) fn require_child(buf: &[u8], parent: FourCc, child: FourCc) -> Result<&[u8], Fmp4Error> {
    find_child(buf, child)?.ok_or(Fmp4Error::Missing { parent, child })
}

/// A bounds-checked big-endian reader over a box body.
pub(crate) struct Reader<'a> {
    kind: FourCc,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(kind: FourCc, buf: &'a [u8]) -> Self {
        Reader { kind, buf, pos: 0 }
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Fmp4Error> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(Fmp4Error::Truncated {
            kind: self.kind,
            needed: (self.pos as u64).saturating_add(n as u64),
            available: self.buf.len() as u64,
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub(crate) fn skip(&mut self, n: usize) -> Result<(), Fmp4Error> {
        self.take(n).map(|_| ())
    }
    pub(crate) fn u16(&mut self) -> Result<u16, Fmp4Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, Fmp4Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, Fmp4Error> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    /// Version (1 byte) and flags (3 bytes) of a full box.
    pub(crate) fn full_box(&mut self) -> Result<(u8, u32), Fmp4Error> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
}

/// What a track carries, from its handler (`hdlr`) box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TrackKind {
    Video,
    Audio,
    Other,
}

/// Default sample values a `trex` box gives for the fragments of one track.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackDefaults {
    pub sample_duration: u32,
    pub sample_size: u32,
    pub sample_flags: u32,
}

/// One track of an init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub track_id: u32,
    pub kind: TrackKind,
    pub timescale: u32,
    /// The sample entry type, e.g. `avc1`, `hev1`, `mp4a`.
    pub sample_entry: FourCc,
    /// An RFC 6381 codec string where the codec is known (`avc1.64001f`, `mp4a.40.2`).
    pub codec: String,
    pub width: u16,
    pub height: u16,
    pub channels: u16,
    pub sample_rate: u32,
    pub defaults: TrackDefaults,
}

/// What an init segment (`ftyp` + `moov`) says about the tracks that follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitInfo {
    pub tracks: Vec<TrackInfo>,
}

impl InitInfo {
    pub fn track(&self, track_id: u32) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.track_id == track_id)
    }

    /// The track whose sync samples decide where fragments start and whose clock
    /// timestamps the fragment: the first video track, else the first track.
    pub fn timing_track(&self) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.kind == TrackKind::Video).or_else(|| self.tracks.first())
    }
}

/// Parses the body of a `moov` box.
pub fn parse_moov(moov: &[u8]) -> Result<InitInfo, Fmp4Error> {
    let mut tracks = Vec::new();
    let mut defaults = Vec::new();
    for item in BoxIter::new(moov) {
        let (kind, body) = item?;
        if kind == TRAK {
            tracks.push(parse_trak(body)?);
        } else if kind == MVEX {
            for item in BoxIter::new(body) {
                let (k, b) = item?;
                if k == TREX {
                    defaults.push(parse_trex(b)?);
                }
            }
        }
    }
    for (track_id, d) in defaults {
        if let Some(t) = tracks.iter_mut().find(|t| t.track_id == track_id) {
            t.defaults = d;
        }
    }
    Ok(InitInfo { tracks })
}

fn parse_trex(body: &[u8]) -> Result<(u32, TrackDefaults), Fmp4Error> {
    // ISO/IEC 14496-12 8.8.3: full box, track_ID, default_sample_description_index,
    // default_sample_duration, default_sample_size, default_sample_flags.
    let mut r = Reader::new(TREX, body);
    r.full_box()?;
    let track_id = r.u32()?;
    r.u32()?;
    let d = TrackDefaults { sample_duration: r.u32()?, sample_size: r.u32()?, sample_flags: r.u32()? };
    Ok((track_id, d))
}

fn parse_trak(trak: &[u8]) -> Result<TrackInfo, Fmp4Error> {
    let tkhd = require_child(trak, TRAK, TKHD)?;
    let mut r = Reader::new(TKHD, tkhd);
    let (version, _) = r.full_box()?;
    r.skip(if version == 1 { 16 } else { 8 })?; // creation and modification times
    let track_id = r.u32()?;

    let mdia = require_child(trak, TRAK, MDIA)?;
    let mdhd = require_child(mdia, MDIA, MDHD)?;
    let mut r = Reader::new(MDHD, mdhd);
    let (version, _) = r.full_box()?;
    r.skip(if version == 1 { 16 } else { 8 })?;
    let timescale = r.u32()?;
    if timescale == 0 {
        return Err(Fmp4Error::Malformed { kind: MDHD, detail: "timescale is 0" });
    }

    let hdlr = require_child(mdia, MDIA, HDLR)?;
    let mut r = Reader::new(HDLR, hdlr);
    r.full_box()?;
    r.u32()?; // pre_defined
    let handler = FourCc(r.take(4)?.try_into().map_err(|_| Fmp4Error::Malformed { kind: HDLR, detail: "handler" })?);
    let kind = match handler {
        VIDE => TrackKind::Video,
        SOUN => TrackKind::Audio,
        _ => TrackKind::Other,
    };

    let minf = require_child(mdia, MDIA, MINF)?;
    let stbl = require_child(minf, MINF, STBL)?;
    let stsd = require_child(stbl, STBL, STSD)?;
    let mut r = Reader::new(STSD, stsd);
    r.full_box()?;
    let entries = r.u32()?;
    let mut info = TrackInfo {
        track_id,
        kind,
        timescale,
        sample_entry: FourCc(*b"\0\0\0\0"),
        codec: String::new(),
        width: 0,
        height: 0,
        channels: 0,
        sample_rate: 0,
        defaults: TrackDefaults::default(),
    };
    if entries == 0 {
        return Err(Fmp4Error::Malformed { kind: STSD, detail: "no sample entry" });
    }
    if let Some(first) = BoxIter::new(r.rest()).next() {
        let (entry_kind, entry) = first?;
        info.sample_entry = entry_kind;
        info.codec = entry_kind.to_string();
        parse_sample_entry(&mut info, entry)?;
    }
    Ok(info)
}

fn parse_sample_entry(info: &mut TrackInfo, entry: &[u8]) -> Result<(), Fmp4Error> {
    let kind = info.sample_entry;
    let mut r = Reader::new(kind, entry);
    r.skip(8)?; // reserved(6) + data_reference_index(2)
    match info.kind {
        TrackKind::Video => {
            // VisualSampleEntry (14496-12 12.1.3): 16 bytes pre_defined/reserved, then
            // width, height; the child boxes start 78 bytes into the entry.
            r.skip(16)?;
            info.width = r.u16()?;
            info.height = r.u16()?;
            r.skip(50)?;
            for item in BoxIter::new(r.rest()) {
                let (k, body) = item?;
                if k == AVCC && body.len() >= 4 {
                    // AVCDecoderConfigurationRecord (14496-15 5.3.3.1): version, profile,
                    // compatibility, level.
                    info.codec = format!("{}.{:02x}{:02x}{:02x}", kind, body[1], body[2], body[3]);
                } else if k == HVCC {
                    info.codec = hevc_codec_string(kind, body).unwrap_or_else(|| kind.to_string());
                }
            }
        }
        TrackKind::Audio => {
            // AudioSampleEntry (14496-12 12.2.3): reserved(8), channelcount, samplesize,
            // pre_defined(2), reserved(2), samplerate (16.16); children after 28 bytes.
            r.skip(8)?;
            info.channels = r.u16()?;
            r.skip(6)?;
            info.sample_rate = r.u32()? >> 16;
            for item in BoxIter::new(r.rest()) {
                let (k, body) = item?;
                if k == ESDS {
                    if let Some((oti, aot)) = esds_audio_object_type(body) {
                        info.codec = match aot {
                            Some(aot) => format!("mp4a.{oti:02x}.{aot}"),
                            None => format!("mp4a.{oti:02x}"),
                        };
                    }
                }
            }
        }
        TrackKind::Other => {}
    }
    Ok(())
}

/// RFC 6381 / ISO/IEC 14496-15 annex E codec string for HEVC, e.g. `hvc1.1.6.L93.B0`.
fn hevc_codec_string(kind: FourCc, hvcc: &[u8]) -> Option<String> {
    if hvcc.len() < 13 {
        return None;
    }
    let space = ["", "A", "B", "C"][usize::from(hvcc[1] >> 6)];
    let tier = if hvcc[1] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = hvcc[1] & 0x1f;
    let compat = u32::from_be_bytes([hvcc[2], hvcc[3], hvcc[4], hvcc[5]]).reverse_bits();
    let constraints = &hvcc[6..12];
    let level = hvcc[12];
    let mut s = format!("{kind}.{space}{profile}.{compat:x}.{tier}{level}");
    let last = constraints.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    for b in &constraints[..last] {
        s.push_str(&format!(".{b:X}"));
    }
    Some(s)
}

/// The MPEG-4 objectTypeIndication and, for AAC, the audio object type from an `esds`.
fn esds_audio_object_type(esds: &[u8]) -> Option<(u8, Option<u8>)> {
    // 14496-1 7.2.6: descriptors are tag, variable-length size, body.
    fn descriptor(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *buf.first()?;
        let mut len = 0usize;
        let mut i = 1;
        loop {
            let b = *buf.get(i)?;
            len = (len << 7) | usize::from(b & 0x7f);
            i += 1;
            if b & 0x80 == 0 || i > 4 {
                break;
            }
        }
        let body = buf.get(i..i.checked_add(len)?)?;
        Some((tag, body, &buf[i + len..]))
    }
    let (tag, es, _) = descriptor(esds.get(4..)?)?;
    if tag != 0x03 {
        return None;
    }
    let flags = *es.get(2)?;
    let mut skip = 3;
    if flags & 0x80 != 0 {
        skip += 2;
    }
    if flags & 0x40 != 0 {
        skip += 1 + usize::from(*es.get(skip)?);
    }
    if flags & 0x20 != 0 {
        skip += 2;
    }
    let (tag, dcd, _) = descriptor(es.get(skip..)?)?;
    if tag != 0x04 {
        return None;
    }
    let oti = *dcd.first()?;
    let aot = descriptor(dcd.get(13..)?).and_then(|(tag, dsi, _)| {
        if tag != 0x05 {
            return None;
        }
        let first = *dsi.first()?;
        let aot = first >> 3;
        if aot == 31 {
            let second = *dsi.get(1)?;
            Some(32 + (((first & 0x07) << 3) | (second >> 5)))
        } else {
            Some(aot)
        }
    });
    Some((oti, if oti == 0x40 { aot } else { None }))
}

/// The timing of one track fragment (`traf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafInfo {
    pub track_id: u32,
    /// `tfdt` baseMediaDecodeTime, in the track's timescale.
    pub base_decode_time: Option<u64>,
    pub sample_count: u64,
    /// Sum of the sample durations, in the track's timescale.
    pub duration: u64,
    /// Sum of the sample sizes in bytes.
    pub data_size: u64,
    /// Whether the first sample is a sync sample (a keyframe). `None` without samples.
    pub first_sample_sync: Option<bool>,
    /// `tfhd` carries an explicit base-data-offset (absolute file position).
    pub explicit_base_offset: bool,
    /// The smallest and largest byte any `trun` reaches, relative to the base offset.
    pub data_start: i64,
    pub data_end: i64,
}

/// What a `moof` box says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoofInfo {
    pub sequence_number: u32,
    pub trafs: Vec<TrafInfo>,
}

const TFHD_BASE_DATA_OFFSET: u32 = 0x01;
const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x02;
const TFHD_DEFAULT_DURATION: u32 = 0x08;
const TFHD_DEFAULT_SIZE: u32 = 0x10;
const TFHD_DEFAULT_FLAGS: u32 = 0x20;
const TRUN_DATA_OFFSET: u32 = 0x01;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x04;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_CTO: u32 = 0x800;
/// sample_is_non_sync_sample (14496-12 8.8.3.1).
const SAMPLE_NON_SYNC: u32 = 0x0001_0000;

/// Parses the body of a `moof` box; `init` supplies the `trex` defaults.
pub fn parse_moof(moof: &[u8], init: &InitInfo) -> Result<MoofInfo, Fmp4Error> {
    let mfhd = require_child(moof, MOOF, MFHD)?;
    let mut r = Reader::new(MFHD, mfhd);
    r.full_box()?;
    let sequence_number = r.u32()?;
    let mut trafs = Vec::new();
    for item in BoxIter::new(moof) {
        let (kind, body) = item?;
        if kind == TRAF {
            trafs.push(parse_traf(body, init)?);
        }
    }
    if trafs.is_empty() {
        return Err(Fmp4Error::Missing { parent: MOOF, child: TRAF });
    }
    Ok(MoofInfo { sequence_number, trafs })
}

fn parse_traf(traf: &[u8], init: &InitInfo) -> Result<TrafInfo, Fmp4Error> {
    let mut info = TrafInfo {
        track_id: 0,
        base_decode_time: None,
        sample_count: 0,
        duration: 0,
        data_size: 0,
        first_sample_sync: None,
        explicit_base_offset: false,
        data_start: i64::MAX,
        data_end: i64::MIN,
    };
    let header = walk_traf(traf, init, &mut |s: &SampleRef| {
        if info.first_sample_sync.is_none() {
            info.first_sample_sync = Some(s.is_sync());
        }
        info.sample_count += 1;
        info.duration = info.duration.saturating_add(u64::from(s.duration));
        info.data_size = info.data_size.saturating_add(u64::from(s.size));
        info.data_start = info.data_start.min(s.data_offset);
        info.data_end = info.data_end.max(s.data_offset.saturating_add(i64::from(s.size)));
    })?;
    info.track_id = header.track_id;
    info.base_decode_time = header.base_decode_time;
    info.explicit_base_offset = header.explicit_base_offset;
    Ok(info)
}

/// What a `traf`'s header boxes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrafHeader {
    pub track_id: u32,
    /// `tfdt` baseMediaDecodeTime, in the track's timescale.
    pub base_decode_time: Option<u64>,
    /// `tfhd` carries an explicit base-data-offset (absolute file position).
    pub explicit_base_offset: bool,
}

/// One sample as a `trun` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRef {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
    /// Composition time offset (signed in `trun` version 1).
    pub composition_offset: i32,
    /// Where the sample's bytes start, relative to the base data offset (the `moof`'s
    /// first byte for default-base-is-moof).
    pub data_offset: i64,
}

impl SampleRef {
    pub fn is_sync(&self) -> bool {
        self.flags & SAMPLE_NON_SYNC == 0
    }
}

/// Walks the samples of one `traf` in order, calling `visit` for each.
///
/// The sample count of every `trun` is checked against the bytes the box has before
/// the first sample is read, so a lying count costs nothing.
pub fn walk_traf(traf: &[u8], init: &InitInfo, visit: &mut dyn FnMut(&SampleRef)) -> Result<TrafHeader, Fmp4Error> {
    let tfhd = require_child(traf, TRAF, TFHD)?;
    let mut r = Reader::new(TFHD, tfhd);
    let (_, flags) = r.full_box()?;
    let track_id = r.u32()?;
    let track =
        init.track(track_id).ok_or(Fmp4Error::Malformed { kind: TFHD, detail: "track_ID not in the init segment" })?;
    let mut defaults = track.defaults;
    let explicit_base_offset = flags & TFHD_BASE_DATA_OFFSET != 0;
    if explicit_base_offset {
        r.u64()?;
    }
    if flags & TFHD_SAMPLE_DESCRIPTION_INDEX != 0 {
        r.u32()?;
    }
    if flags & TFHD_DEFAULT_DURATION != 0 {
        defaults.sample_duration = r.u32()?;
    }
    if flags & TFHD_DEFAULT_SIZE != 0 {
        defaults.sample_size = r.u32()?;
    }
    if flags & TFHD_DEFAULT_FLAGS != 0 {
        defaults.sample_flags = r.u32()?;
    }

    let base_decode_time = match find_child(traf, TFDT)? {
        Some(tfdt) => {
            let mut r = Reader::new(TFDT, tfdt);
            let (version, _) = r.full_box()?;
            Some(if version == 1 { r.u64()? } else { u64::from(r.u32()?) })
        }
        None => None,
    };

    // Without a data_offset, a trun's data follows the previous trun's (8.8.8.3).
    let mut next_data: i64 = 0;
    for item in BoxIter::new(traf) {
        let (kind, body) = item?;
        if kind != TRUN {
            continue;
        }
        let mut r = Reader::new(TRUN, body);
        let (version, flags) = r.full_box()?;
        let count = r.u32()?;
        if flags & TRUN_DATA_OFFSET != 0 {
            next_data = i64::from(r.u32()? as i32);
        }
        let first_flags = if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 { Some(r.u32()?) } else { None };
        let per_sample =
            4 * [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTO].iter().filter(|&&f| flags & f != 0).count();
        if (count as usize).saturating_mul(per_sample) > r.remaining() {
            return Err(Fmp4Error::Truncated {
                kind: TRUN,
                needed: u64::from(count) * per_sample as u64,
                available: r.remaining() as u64,
            });
        }
        for i in 0..count {
            let duration = if flags & TRUN_DURATION != 0 { r.u32()? } else { defaults.sample_duration };
            let size = if flags & TRUN_SIZE != 0 { r.u32()? } else { defaults.sample_size };
            let mut sample_flags = if flags & TRUN_FLAGS != 0 { r.u32()? } else { defaults.sample_flags };
            if i == 0 && flags & TRUN_FLAGS == 0 {
                sample_flags = first_flags.unwrap_or(sample_flags);
            }
            let composition_offset = if flags & TRUN_CTO != 0 {
                let v = r.u32()?;
                if version == 0 {
                    i32::try_from(v).unwrap_or(i32::MAX)
                } else {
                    v as i32
                }
            } else {
                0
            };
            visit(&SampleRef { duration, size, flags: sample_flags, composition_offset, data_offset: next_data });
            next_data = next_data.saturating_add(i64::from(size));
        }
    }
    Ok(TrafHeader { track_id, base_decode_time, explicit_base_offset })
}

/// Appends a box with `body` to `out`.
pub fn write_box(out: &mut Vec<u8>, kind: FourCc, body: &[u8]) {
    let size = 8 + body.len();
    if let Ok(size32) = u32::try_from(size) {
        out.extend_from_slice(&size32.to_be_bytes());
        out.extend_from_slice(&kind.0);
    } else {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&kind.0);
        out.extend_from_slice(&(size as u64 + 8).to_be_bytes());
    }
    out.extend_from_slice(body);
}

/// Appends a `uuid` box with the given 16-byte user type and payload.
pub fn write_uuid_box(out: &mut Vec<u8>, user_type: &[u8; 16], payload: &[u8]) {
    let mut body = Vec::with_capacity(16 + payload.len());
    body.extend_from_slice(user_type);
    body.extend_from_slice(payload);
    // The header length for uuid already counts the user type; write_box counts it as body.
    write_box(out, UUID, &body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(version: u8, flags: u32) -> Vec<u8> {
        ((u32::from(version) << 24) | flags).to_be_bytes().to_vec()
    }

    #[test]
    fn header_needs_more_then_parses() {
        let mut b = Vec::new();
        write_box(&mut b, MDAT, &[1, 2, 3]);
        assert_eq!(parse_box_header(&b[..7], 0, 100), Ok(None));
        let h = parse_box_header(&b, 0, 100).unwrap().unwrap();
        assert_eq!(h, BoxHeader { kind: MDAT, header_len: 8, size: 11 });
    }

    #[test]
    fn header_rejects_absurd_sizes() {
        let b = [0, 0, 0, 4, b'm', b'd', b'a', b't'];
        assert!(matches!(parse_box_header(&b, 0, 100), Err(Fmp4Error::SizeTooSmall { .. })));
        let b = [0xff, 0xff, 0xff, 0xff, b'm', b'd', b'a', b't'];
        assert!(matches!(parse_box_header(&b, 0, 1000), Err(Fmp4Error::SizeTooLarge { .. })));
        let b = [0, 0, 0, 0, b'm', b'd', b'a', b't'];
        assert!(matches!(parse_box_header(&b, 0, 1000), Err(Fmp4Error::SizeToEnd { .. })));
        let mut b = vec![0, 0, 0, 1];
        b.extend_from_slice(b"mdat");
        b.extend_from_slice(&8u64.to_be_bytes());
        assert!(matches!(parse_box_header(&b, 0, 1000), Err(Fmp4Error::SizeTooSmall { .. })));
    }

    #[test]
    fn large_size_header() {
        let mut b = vec![0, 0, 0, 1];
        b.extend_from_slice(b"mdat");
        b.extend_from_slice(&20u64.to_be_bytes());
        let h = parse_box_header(&b, 0, 1000).unwrap().unwrap();
        assert_eq!((h.header_len, h.size), (16, 20));
    }

    #[test]
    fn iter_reports_truncation() {
        let mut b = Vec::new();
        write_box(&mut b, FTYP, b"isom");
        b.extend_from_slice(&[0, 0, 0, 50, b'm', b'o', b'o', b'v', 1]);
        let items: Vec<_> = BoxIter::new(&b).collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert!(matches!(items[1], Err(Fmp4Error::Truncated { .. })));
    }

    fn init_with_one_video_track() -> InitInfo {
        InitInfo {
            tracks: vec![TrackInfo {
                track_id: 1,
                kind: TrackKind::Video,
                timescale: 90_000,
                sample_entry: FourCc(*b"avc1"),
                codec: "avc1".into(),
                width: 0,
                height: 0,
                channels: 0,
                sample_rate: 0,
                defaults: TrackDefaults { sample_duration: 3000, sample_size: 0, sample_flags: SAMPLE_NON_SYNC },
            }],
        }
    }

    fn moof(first_flags: Option<u32>, sizes: &[u32], tfdt: u64) -> Vec<u8> {
        let mut mfhd = full(0, 0);
        mfhd.extend_from_slice(&7u32.to_be_bytes());
        let mut tfhd = full(0, 0x020000);
        tfhd.extend_from_slice(&1u32.to_be_bytes());
        let mut tfdt_b = full(1, 0);
        tfdt_b.extend_from_slice(&tfdt.to_be_bytes());
        let mut flags = TRUN_DATA_OFFSET | TRUN_SIZE;
        if first_flags.is_some() {
            flags |= TRUN_FIRST_SAMPLE_FLAGS;
        }
        let mut trun = full(0, flags);
        trun.extend_from_slice(&(sizes.len() as u32).to_be_bytes());
        trun.extend_from_slice(&100u32.to_be_bytes());
        if let Some(f) = first_flags {
            trun.extend_from_slice(&f.to_be_bytes());
        }
        for s in sizes {
            trun.extend_from_slice(&s.to_be_bytes());
        }
        let mut traf = Vec::new();
        write_box(&mut traf, TFHD, &tfhd);
        write_box(&mut traf, TFDT, &tfdt_b);
        write_box(&mut traf, TRUN, &trun);
        let mut body = Vec::new();
        write_box(&mut body, MFHD, &mfhd);
        write_box(&mut body, TRAF, &traf);
        body
    }

    #[test]
    fn moof_timing_and_sync() {
        let init = init_with_one_video_track();
        let m = parse_moof(&moof(Some(0), &[10, 20, 30], 90_000), &init).unwrap();
        assert_eq!(m.sequence_number, 7);
        let t = &m.trafs[0];
        assert_eq!(t.base_decode_time, Some(90_000));
        assert_eq!((t.sample_count, t.duration, t.data_size), (3, 9000, 60));
        assert_eq!(t.first_sample_sync, Some(true));
        assert_eq!((t.data_start, t.data_end), (100, 160));
        // Without first-sample flags the trex default (non-sync) applies.
        let m = parse_moof(&moof(None, &[10], 0), &init).unwrap();
        assert_eq!(m.trafs[0].first_sample_sync, Some(false));
    }

    #[test]
    fn moof_with_lying_sample_count_is_rejected_without_allocating() {
        let init = init_with_one_video_track();
        let mut b = moof(Some(0), &[10], 0);
        // Overwrite the trun sample_count (first field after the full box header).
        let pos = b.windows(4).position(|w| w == b"trun").unwrap() + 8;
        b[pos..pos + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(parse_moof(&b, &init), Err(Fmp4Error::Truncated { kind: TRUN, .. })));
    }

    #[test]
    fn moof_for_unknown_track_is_rejected() {
        let mut init = init_with_one_video_track();
        init.tracks[0].track_id = 2;
        assert!(matches!(parse_moof(&moof(Some(0), &[1], 0), &init), Err(Fmp4Error::Malformed { kind: TFHD, .. })));
    }

    #[test]
    fn esds_aac_lc() {
        // ES_Descriptor with DecoderConfigDescriptor(OTI 0x40) and AudioSpecificConfig 0x1210 (AAC-LC).
        let esds = [
            0, 0, 0, 0, 0x03, 0x19, 0x00, 0x01, 0x00, 0x04, 0x11, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05,
            0x02, 0x12, 0x10, 0x06, 0x01, 0x02,
        ];
        assert_eq!(esds_audio_object_type(&esds), Some((0x40, Some(2))));
    }

    #[test]
    fn uuid_box_round_trip() {
        let mut out = Vec::new();
        write_uuid_box(&mut out, &[7; 16], b"{}");
        let h = parse_box_header(&out, 0, 100).unwrap().unwrap();
        assert_eq!((h.kind, h.header_len, h.size), (UUID, 24, 26));
    }
}
