//! Fragmented MP4: what an init segment (`ftyp`+`moov`) says about its tracks, and what
//! a `moof` says about the samples that follow. Built on the box reader of
//! [`super::bmff`]; knows no codec (sample entries are handed over as bytes, and
//! `crate::codec` reads their configuration boxes).
//!
//! Pure functions over byte slices; ISO/IEC 14496-12 gives the layouts cited below.

use std::ops::Range;

use super::bmff::{find_child, kinds::*, require_child, BoxError, BoxIter, FourCc, Reader};

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
    /// The first sample entry's type, e.g. `avc1`, `hev1`, `mp4a`.
    pub sample_entry: FourCc,
    /// The first sample entry's body (after its box header), configuration boxes
    /// (`avcC`, `esds`, …) included.
    pub sample_entry_body: Vec<u8>,
    pub width: u16,
    pub height: u16,
    pub channels: u16,
    pub sample_rate: u32,
    pub defaults: TrackDefaults,
}

/// Where the child boxes of a VisualSampleEntry start (14496-12 12.1.3): reserved(6),
/// data_reference_index(2), 16 bytes pre_defined/reserved, width, height, resolutions,
/// reserved, frame_count, compressorname(32), depth, pre_defined.
pub const VISUAL_ENTRY_CHILDREN: usize = 78;
/// Where the child boxes of an AudioSampleEntry start (14496-12 12.2.3).
pub const AUDIO_ENTRY_CHILDREN: usize = 28;

impl TrackInfo {
    /// The boxes inside the sample entry (after the fixed visual or audio fields).
    pub fn sample_entry_children(&self) -> &[u8] {
        let at = match self.kind {
            TrackKind::Video => VISUAL_ENTRY_CHILDREN,
            TrackKind::Audio => AUDIO_ENTRY_CHILDREN,
            TrackKind::Other => self.sample_entry_body.len(),
        };
        self.sample_entry_body.get(at..).unwrap_or_default()
    }

    /// The first child box of `kind` inside the sample entry.
    pub fn sample_entry_child(&self, kind: FourCc) -> Option<&[u8]> {
        find_child(self.sample_entry_children(), kind).ok().flatten()
    }
}

/// The fixed fields of a VisualSampleEntry (14496-12 12.1.3) for a picture of
/// `width` × `height`; the codec's configuration box follows.
pub fn visual_sample_entry(width: u32, height: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(VISUAL_ENTRY_CHILDREN + 128);
    v.extend_from_slice(&[0; 6]);
    v.extend_from_slice(&1u16.to_be_bytes()); // data reference index
    v.extend_from_slice(&[0; 16]);
    v.extend_from_slice(&(width.min(0xffff) as u16).to_be_bytes());
    v.extend_from_slice(&(height.min(0xffff) as u16).to_be_bytes());
    v.extend_from_slice(&0x0048_0000u32.to_be_bytes()); // 72 dpi
    v.extend_from_slice(&0x0048_0000u32.to_be_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&1u16.to_be_bytes()); // frame count
    v.extend_from_slice(&[0; 32]); // compressor name
    v.extend_from_slice(&0x0018u16.to_be_bytes()); // depth
    v.extend_from_slice(&0xffffu16.to_be_bytes()); // pre_defined = -1
    v
}

/// The fixed fields of an AudioSampleEntry (14496-12 12.2.3); the codec's
/// configuration box follows. Rates above 65535 Hz are written as 0.
pub fn audio_sample_entry(channels: u16, sample_rate: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(AUDIO_ENTRY_CHILDREN + 64);
    v.extend_from_slice(&[0; 6]);
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&channels.to_be_bytes());
    v.extend_from_slice(&16u16.to_be_bytes()); // sample size
    v.extend_from_slice(&[0; 4]);
    let rate = if sample_rate > 0xffff { 0 } else { sample_rate << 16 };
    v.extend_from_slice(&rate.to_be_bytes());
    v
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

/// What an init segment (`ftyp` + `moov`, as stored) says: the one init parser.
pub fn parse_init(init: &[u8]) -> Result<InitInfo, BoxError> {
    let moov = find_child(init, MOOV)?.ok_or(BoxError::Missing { parent: FourCc(*b"init"), child: MOOV })?;
    parse_moov(moov)
}

/// Parses the body of a `moov` box.
pub fn parse_moov(moov: &[u8]) -> Result<InitInfo, BoxError> {
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

/// The track_ID of a `trex` body.
pub fn trex_track_id(body: &[u8]) -> Result<u32, BoxError> {
    Ok(parse_trex(body)?.0)
}

fn parse_trex(body: &[u8]) -> Result<(u32, TrackDefaults), BoxError> {
    // 8.8.3: full box, track_ID, default_sample_description_index,
    // default_sample_duration, default_sample_size, default_sample_flags.
    let mut r = Reader::new(TREX, body);
    r.full_box()?;
    let track_id = r.u32()?;
    r.u32()?;
    let d = TrackDefaults { sample_duration: r.u32()?, sample_size: r.u32()?, sample_flags: r.u32()? };
    Ok((track_id, d))
}

fn parse_trak(trak: &[u8]) -> Result<TrackInfo, BoxError> {
    let track_id = super::bmff::tkhd_track_id(require_child(trak, TRAK, TKHD)?)?;
    let mdia = require_child(trak, TRAK, MDIA)?;
    let timescale = super::bmff::header_timescale(MDHD, require_child(mdia, MDIA, MDHD)?)?;
    if timescale == 0 {
        return Err(BoxError::Malformed { kind: MDHD, detail: "timescale is 0" });
    }

    let mut r = Reader::new(HDLR, require_child(mdia, MDIA, HDLR)?);
    r.full_box()?;
    r.u32()?; // pre_defined
    let kind = match r.fourcc()? {
        VIDE => TrackKind::Video,
        SOUN => TrackKind::Audio,
        _ => TrackKind::Other,
    };

    let minf = require_child(mdia, MDIA, MINF)?;
    let stbl = require_child(minf, MINF, STBL)?;
    let mut r = Reader::new(STSD, require_child(stbl, STBL, STSD)?);
    r.full_box()?;
    if r.u32()? == 0 {
        return Err(BoxError::Malformed { kind: STSD, detail: "no sample entry" });
    }
    let (sample_entry, entry) =
        BoxIter::new(r.rest()).next().ok_or(BoxError::Malformed { kind: STSD, detail: "no sample entry" })??;
    let mut info = TrackInfo {
        track_id,
        kind,
        timescale,
        sample_entry,
        sample_entry_body: entry.to_vec(),
        width: 0,
        height: 0,
        channels: 0,
        sample_rate: 0,
        defaults: TrackDefaults::default(),
    };
    let mut r = Reader::new(sample_entry, entry);
    r.skip(8)?; // reserved(6) + data_reference_index(2)
    match kind {
        TrackKind::Video => {
            r.skip(16)?;
            info.width = r.u16()?;
            info.height = r.u16()?;
            r.skip(VISUAL_ENTRY_CHILDREN - 28)?;
        }
        TrackKind::Audio => {
            // reserved(8), channelcount, samplesize, pre_defined(2), reserved(2),
            // samplerate (16.16).
            r.skip(8)?;
            info.channels = r.u16()?;
            r.skip(6)?;
            info.sample_rate = r.u32()? >> 16;
        }
        TrackKind::Other => {}
    }
    Ok(info)
}

/// One sample as a `trun` (or a sample table built from one) describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Decode time in the track's timescale.
    pub decode_time: u64,
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
    /// Composition time offset (signed in `trun` version 1).
    pub composition_offset: i32,
    /// Where the sample's bytes start: relative to the base data offset (the `moof`'s
    /// first byte for default-base-is-moof) as [`walk_traf`] reads it, relative to the
    /// stored fragment's first byte in `mp4_tracks::fragment_samples`.
    pub offset: i64,
}

/// sample_is_non_sync_sample (14496-12 8.8.3.1).
pub const SAMPLE_NON_SYNC: u32 = 0x0001_0000;
/// sample_depends_on = 2 (an I-frame): the flags the sample muxer writes on keyframes.
pub const SAMPLE_FLAGS_SYNC: u32 = 0x0200_0000;
/// sample_depends_on = 1, non-sync: the flags it writes on other frames.
pub const SAMPLE_FLAGS_NON_SYNC: u32 = 0x0101_0000;

impl Sample {
    pub fn is_sync(&self) -> bool {
        self.flags & SAMPLE_NON_SYNC == 0
    }

    /// The sample's bytes in a buffer its offset counts from, if they lie inside.
    pub fn range(&self, len: usize) -> Option<Range<usize>> {
        let start = usize::try_from(self.offset).ok()?;
        let end = start.checked_add(self.size as usize)?;
        (end <= len).then_some(start..end)
    }
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
/// tf_flags default-base-is-moof (8.8.7.1).
pub const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
pub const TRUN_DATA_OFFSET: u32 = 0x01;
pub const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x04;
pub const TRUN_DURATION: u32 = 0x100;
pub const TRUN_SIZE: u32 = 0x200;
pub const TRUN_FLAGS: u32 = 0x400;
pub const TRUN_CTO: u32 = 0x800;

/// Parses the body of a `moof` box; `init` supplies the `trex` defaults. `data_limit`
/// is the most media data its samples may describe (the largest `mdat` the caller
/// accepts): sample counts are bounded by it, so a 2 KB box cannot describe a billion
/// samples and the parse stays linear in its input.
pub fn parse_moof(moof: &[u8], init: &InitInfo, data_limit: u64) -> Result<MoofInfo, BoxError> {
    let mut r = Reader::new(MFHD, require_child(moof, MOOF, MFHD)?);
    r.full_box()?;
    let sequence_number = r.u32()?;
    let mut trafs = Vec::new();
    for item in BoxIter::new(moof) {
        let (kind, body) = item?;
        if kind == TRAF {
            trafs.push(parse_traf(body, init, data_limit)?);
        }
    }
    if trafs.is_empty() {
        return Err(BoxError::Missing { parent: MOOF, child: TRAF });
    }
    Ok(MoofInfo { sequence_number, trafs })
}

fn parse_traf(traf: &[u8], init: &InitInfo, data_limit: u64) -> Result<TrafInfo, BoxError> {
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
    let header = walk_traf(traf, init, data_limit, &mut |s: &Sample| {
        if info.first_sample_sync.is_none() {
            info.first_sample_sync = Some(s.is_sync());
        }
        info.sample_count += 1;
        info.duration = info.duration.saturating_add(u64::from(s.duration));
        info.data_size = info.data_size.saturating_add(u64::from(s.size));
        info.data_start = info.data_start.min(s.offset);
        info.data_end = info.data_end.max(s.offset.saturating_add(i64::from(s.size)));
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

/// Walks the samples of one `traf` in order, calling `visit` for each. Decode times
/// count from the `tfdt` (from 0 without one); offsets from the base data offset.
///
/// The sample count of every `trun` is checked before the first sample is read, so a
/// lying count costs nothing: against the bytes the box holds when samples have fields
/// of their own, and against `data_limit` (the most media data the caller accepts, a
/// byte at least per sample) when they take the default size.
pub fn walk_traf(
    traf: &[u8],
    init: &InitInfo,
    data_limit: u64,
    visit: &mut dyn FnMut(&Sample),
) -> Result<TrafHeader, BoxError> {
    let mut r = Reader::new(TFHD, require_child(traf, TRAF, TFHD)?);
    let (_, flags) = r.full_box()?;
    let track_id = r.u32()?;
    let track =
        init.track(track_id).ok_or(BoxError::Malformed { kind: TFHD, detail: "track_ID not in the init segment" })?;
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
    let mut decode_time = base_decode_time.unwrap_or(0);
    let mut default_sized_bytes: u64 = 0;
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
            return Err(BoxError::Truncated {
                kind: TRUN,
                needed: u64::from(count) * per_sample as u64,
                available: r.remaining() as u64,
            });
        }
        if flags & TRUN_SIZE == 0 {
            let each = u64::from(defaults.sample_size.max(1));
            default_sized_bytes = default_sized_bytes.saturating_add(u64::from(count).saturating_mul(each));
            if default_sized_bytes > data_limit {
                return Err(BoxError::Malformed {
                    kind: TRUN,
                    detail: "more default-sized samples than the fragment's data can hold",
                });
            }
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
            visit(&Sample { decode_time, duration, size, flags: sample_flags, composition_offset, offset: next_data });
            next_data = next_data.saturating_add(i64::from(size));
            decode_time = decode_time.saturating_add(u64::from(duration));
        }
    }
    Ok(TrafHeader { track_id, base_decode_time, explicit_base_offset })
}

/// Where one `tfdt` sits in a run of `moof`/`mdat` boxes: its track, the offset of its
/// baseMediaDecodeTime field, its version (0: 32 bits, 1: 64 bits) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeTimeField {
    pub track_id: u32,
    pub offset: usize,
    pub version: u8,
    pub value: u64,
}

/// The offset of `inner` (a sub-slice of `outer`) in `outer`.
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

/// Every `tfdt` of every `moof` in `fragment` (one or more `moof`/`mdat` pairs, as a
/// fragment is stored), in order.
pub fn decode_time_fields(fragment: &[u8]) -> Result<Vec<DecodeTimeField>, BoxError> {
    let mut out = Vec::new();
    for item in BoxIter::new(fragment) {
        let (kind, moof) = item?;
        if kind != MOOF {
            continue;
        }
        for item in BoxIter::new(moof) {
            let (kind, traf) = item?;
            if kind != TRAF {
                continue;
            }
            let mut r = Reader::new(TFHD, require_child(traf, TRAF, TFHD)?);
            r.full_box()?;
            let track_id = r.u32()?;
            let Some(tfdt) = find_child(traf, TFDT)? else { continue };
            let mut r = Reader::new(TFDT, tfdt);
            let (version, _) = r.full_box()?;
            let offset = offset_in(fragment, tfdt) + 4;
            let value = if version == 1 { r.u64()? } else { u64::from(r.u32()?) };
            out.push(DecodeTimeField { track_id, offset, version, value });
        }
    }
    Ok(out)
}

/// The byte ranges of a stored fragment's chunks: each from a `moof` to the next one
/// (boxes before the first `moof` belong to the first chunk).
pub fn chunk_ranges(fragment: &[u8]) -> Result<Vec<Range<usize>>, BoxError> {
    let mut starts = Vec::new();
    let mut boxes = BoxIter::new(fragment);
    loop {
        let at = boxes.position();
        let Some(item) = boxes.next() else { break };
        if item?.0 == MOOF {
            starts.push(if starts.is_empty() { 0 } else { at });
        }
    }
    let mut ends: Vec<usize> = starts.iter().skip(1).copied().collect();
    ends.push(fragment.len());
    Ok(starts.into_iter().zip(ends).map(|(a, b)| a..b).collect())
}

/// `fragment` with `shift(track_id)` subtracted from every `tfdt` (stopping at 0), so a
/// response can start its timeline near zero. Box sizes do not change.
pub fn shift_decode_times(fragment: &[u8], shift: &dyn Fn(u32) -> u64) -> Result<Vec<u8>, BoxError> {
    let fields = decode_time_fields(fragment)?;
    let mut out = fragment.to_vec();
    for f in fields {
        let value = f.value.saturating_sub(shift(f.track_id));
        if f.version == 1 {
            out[f.offset..f.offset + 8].copy_from_slice(&value.to_be_bytes());
        } else {
            // Smaller than the 32-bit value it came from, so it fits.
            out[f.offset..f.offset + 4].copy_from_slice(&(value as u32).to_be_bytes());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::bmff::{full_box, write_box};
    use super::*;

    #[test]
    fn chunk_ranges_split_at_each_moof() {
        let mut f = Vec::new();
        write_box(&mut f, FourCc(*b"styp"), b"iso6");
        let first = f.len();
        write_box(&mut f, MOOF, &[1; 4]);
        write_box(&mut f, MDAT, &[2; 10]);
        let second = f.len();
        write_box(&mut f, MOOF, &[3; 4]);
        write_box(&mut f, MDAT, &[4; 3]);
        assert!(first > 0);
        assert_eq!(chunk_ranges(&f).unwrap(), vec![0..second, second..f.len()]);
        assert!(chunk_ranges(&[]).unwrap().is_empty());
        assert!(chunk_ranges(&f[..f.len() - 1]).is_err(), "a torn box is an error");
    }

    fn init_with_one_video_track() -> InitInfo {
        InitInfo {
            tracks: vec![TrackInfo {
                track_id: 1,
                kind: TrackKind::Video,
                timescale: 90_000,
                sample_entry: FourCc(*b"avc1"),
                sample_entry_body: Vec::new(),
                width: 0,
                height: 0,
                channels: 0,
                sample_rate: 0,
                defaults: TrackDefaults { sample_duration: 3000, sample_size: 0, sample_flags: SAMPLE_NON_SYNC },
            }],
        }
    }

    fn moof(first_flags: Option<u32>, sizes: &[u32], tfdt: u64) -> Vec<u8> {
        let mut mfhd = full_box(0, 0);
        mfhd.extend_from_slice(&7u32.to_be_bytes());
        let mut tfhd = full_box(0, TFHD_DEFAULT_BASE_IS_MOOF);
        tfhd.extend_from_slice(&1u32.to_be_bytes());
        let mut tfdt_b = full_box(1, 0);
        tfdt_b.extend_from_slice(&tfdt.to_be_bytes());
        let mut flags = TRUN_DATA_OFFSET | TRUN_SIZE;
        if first_flags.is_some() {
            flags |= TRUN_FIRST_SAMPLE_FLAGS;
        }
        let mut trun = full_box(0, flags);
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
    fn decode_times_shift_in_place_and_stop_at_zero() {
        let mut fragment = Vec::new();
        write_box(&mut fragment, MOOF, &moof(Some(0), &[10], 1_795_969_379 * 90_000));
        write_box(&mut fragment, MDAT, &[0; 10]);
        write_box(&mut fragment, MOOF, &moof(Some(0), &[10], 1_795_969_380 * 90_000));
        write_box(&mut fragment, MDAT, &[0; 10]);
        let fields = decode_time_fields(&fragment).unwrap();
        assert_eq!(fields.iter().map(|f| (f.track_id, f.version)).collect::<Vec<_>>(), vec![(1, 1), (1, 1)]);
        let shifted =
            shift_decode_times(&fragment, &|track| if track == 1 { 1_795_969_379 * 90_000 } else { 0 }).unwrap();
        assert_eq!(shifted.len(), fragment.len());
        let values: Vec<u64> = decode_time_fields(&shifted).unwrap().iter().map(|f| f.value).collect();
        assert_eq!(values, vec![0, 90_000]);
        let init = init_with_one_video_track();
        let moof_body = BoxIter::new(&shifted).next().unwrap().unwrap().1;
        assert_eq!(
            parse_moof(moof_body, &init, 1 << 30).unwrap().trafs[0].base_decode_time,
            Some(0),
            "still a valid moof"
        );
        let past_zero = shift_decode_times(&fragment, &|_| u64::MAX).unwrap();
        assert!(decode_time_fields(&past_zero).unwrap().iter().all(|f| f.value == 0));
    }

    #[test]
    fn moof_timing_and_sync() {
        let init = init_with_one_video_track();
        let m = parse_moof(&moof(Some(0), &[10, 20, 30], 90_000), &init, 1 << 30).unwrap();
        assert_eq!(m.sequence_number, 7);
        let t = &m.trafs[0];
        assert_eq!(t.base_decode_time, Some(90_000));
        assert_eq!((t.sample_count, t.duration, t.data_size), (3, 9000, 60));
        assert_eq!(t.first_sample_sync, Some(true));
        assert_eq!((t.data_start, t.data_end), (100, 160));
        // Without first-sample flags the trex default (non-sync) applies.
        let m = parse_moof(&moof(None, &[10], 0), &init, 1 << 30).unwrap();
        assert_eq!(m.trafs[0].first_sample_sync, Some(false));
    }

    #[test]
    fn walked_samples_carry_decode_times_from_the_tfdt() {
        let init = init_with_one_video_track();
        let body = moof(Some(0), &[10, 20], 1000);
        let traf = find_child(&body, TRAF).unwrap().unwrap();
        let mut seen = Vec::new();
        walk_traf(traf, &init, 1 << 30, &mut |s| seen.push((s.decode_time, s.offset, s.is_sync()))).unwrap();
        assert_eq!(seen, vec![(1000, 100, true), (4000, 110, false)]);
        let s = Sample { decode_time: 0, duration: 0, size: 4, flags: 0, composition_offset: 0, offset: 2 };
        assert_eq!((s.range(6), s.range(5)), (Some(2..6), None));
    }

    #[test]
    fn moof_with_lying_sample_count_is_rejected_without_allocating() {
        let init = init_with_one_video_track();
        let mut b = moof(Some(0), &[10], 0);
        // Overwrite the trun sample_count (first field after the full box header).
        let pos = b.windows(4).position(|w| w == b"trun").unwrap() + 8;
        b[pos..pos + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(parse_moof(&b, &init, 1 << 30), Err(BoxError::Truncated { kind: TRUN, .. })));
    }

    #[test]
    fn moof_for_unknown_track_is_rejected() {
        let mut init = init_with_one_video_track();
        init.tracks[0].track_id = 2;
        assert!(matches!(
            parse_moof(&moof(Some(0), &[1], 0), &init, 1 << 30),
            Err(BoxError::Malformed { kind: TFHD, .. })
        ));
    }
}
