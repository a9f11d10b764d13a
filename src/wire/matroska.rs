//! Matroska as Kinesis Video's producers send it, read incrementally: bytes go in as
//! they arrive, cut anywhere, and [`MkvReader`] hands out what they complete: the EBML
//! header, the Segment's Info (timecode scale) and Tracks (codec IDs and private data),
//! each Cluster's timecode, each frame (SimpleBlock, or Block in a BlockGroup), and the
//! level-1 Tags between clusters. Sizes may be unknown (a live Segment and its
//! Clusters): an unknown-size Cluster ends where a level-1 element begins. Elements the
//! reader has no use for (SeekHead, Void, Cues, CRC-32, Chapters, …) are skipped without
//! being buffered; lacing is refused (no KVS producer writes it).
//!
//! Limits: an element that must be held whole (EBML header, Info, Tracks, Tags, a
//! frame) may be at most [`MkvLimits`]' size, and the reader never holds more than one
//! such element plus one header's bytes. Pure: no I/O; the PutMedia handler feeds it.

use super::ebml::{self, read_float, read_header, read_string, read_uint, EbmlError};

pub const ID_EBML: u32 = 0x1A45_DFA3;
pub const ID_DOC_TYPE: u32 = 0x4282;
pub const ID_SEGMENT: u32 = 0x1853_8067;
pub const ID_INFO: u32 = 0x1549_A966;
pub const ID_TIMECODE_SCALE: u32 = 0x002A_D7B1;
pub const ID_TRACKS: u32 = 0x1654_AE6B;
pub const ID_TRACK_ENTRY: u32 = 0xAE;
pub const ID_TRACK_NUMBER: u32 = 0xD7;
pub const ID_TRACK_UID: u32 = 0x73C5;
pub const ID_TRACK_TYPE: u32 = 0x83;
pub const ID_NAME: u32 = 0x536E;
pub const ID_CODEC_ID: u32 = 0x86;
pub const ID_CODEC_PRIVATE: u32 = 0x63A2;
pub const ID_DEFAULT_DURATION: u32 = 0x0023_E383;
pub const ID_VIDEO: u32 = 0xE0;
pub const ID_PIXEL_WIDTH: u32 = 0xB0;
pub const ID_PIXEL_HEIGHT: u32 = 0xBA;
pub const ID_AUDIO: u32 = 0xE1;
pub const ID_SAMPLING_FREQUENCY: u32 = 0xB5;
pub const ID_CHANNELS: u32 = 0x9F;
pub const ID_CLUSTER: u32 = 0x1F43_B675;
pub const ID_TIMECODE: u32 = 0xE7;
pub const ID_SIMPLE_BLOCK: u32 = 0xA3;
pub const ID_BLOCK_GROUP: u32 = 0xA0;
pub const ID_BLOCK: u32 = 0xA1;
pub const ID_REFERENCE_BLOCK: u32 = 0xFB;
pub const ID_TAGS: u32 = 0x1254_C367;
pub const ID_TAG: u32 = 0x7373;
pub const ID_SIMPLE_TAG: u32 = 0x67C8;
pub const ID_TAG_NAME: u32 = 0x45A3;
pub const ID_TAG_STRING: u32 = 0x4487;

/// Level-1 elements (children of Segment): one of them ends an unknown-size Cluster.
const LEVEL_1: [u32; 9] =
    [ID_CLUSTER, ID_INFO, ID_TRACKS, ID_TAGS, 0x114D_9B74, 0x1C53_BB6B, 0x1043_A770, 0x1941_A469, ID_SEGMENT];

/// How much the reader may hold.
#[derive(Debug, Clone, Copy)]
pub struct MkvLimits {
    /// EBML header, Info, Tracks and Tags, each.
    pub max_header_element: usize,
    /// One frame (SimpleBlock or BlockGroup).
    pub max_frame: usize,
}

impl Default for MkvLimits {
    fn default() -> Self {
        MkvLimits { max_header_element: 2 << 20, max_frame: 32 << 20 }
    }
}

/// Why a stream is not Matroska Kinescope can take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MkvError {
    #[error("not EBML: {0}")]
    Ebml(#[from] EbmlError),
    #[error("the stream does not start with an EBML header")]
    NoEbmlHeader,
    #[error("DocType '{0}' is not matroska or webm")]
    DocType(String),
    #[error("element 0x{id:X} of {size} bytes is over the limit of {limit}")]
    TooLarge { id: u32, size: u64, limit: usize },
    #[error("element 0x{0:X} has an unknown size (only Segment and Cluster may)")]
    UnknownSize(u32),
    #[error("element 0x{id:X} does not fit in its parent")]
    Overflow { id: u32 },
    #[error("a block before any Cluster")]
    BlockOutsideCluster,
    #[error("a block is cut short or malformed: {0}")]
    BadBlock(&'static str),
    #[error("laced blocks are not supported (KVS producers do not write them)")]
    Lacing,
    #[error("a TrackEntry without {0}")]
    BadTrack(&'static str),
}

/// A track of the Tracks element.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MkvTrack {
    pub number: u64,
    pub uid: u64,
    /// 1 video, 2 audio (Matroska's TrackType).
    pub kind: u64,
    pub name: Option<String>,
    pub codec_id: String,
    pub codec_private: Vec<u8>,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub sampling_frequency: Option<f64>,
    pub channels: Option<u64>,
    pub default_duration_ns: Option<u64>,
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MkvFrame {
    pub track: u64,
    /// Relative to the cluster's timecode, in timecode-scale units.
    pub relative_timecode: i16,
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// What the bytes fed so far completed, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub enum MkvEvent {
    /// An EBML header (a new stream, or a new chunk of one).
    Header {
        doc_type: String,
    },
    SegmentStart,
    /// Nanoseconds per timecode unit (1,000,000 when Info does not say).
    Info {
        timecode_scale_ns: u64,
    },
    Tracks(Vec<MkvTrack>),
    /// A Cluster's Timecode (timecode-scale units).
    Cluster {
        timecode: u64,
    },
    Frame(MkvFrame),
    /// A Tags element's SimpleTags, (name, value) in order.
    Tags(Vec<(String, String)>),
}

/// An open master element: its ID and where it ends (absolute offset; `None` unknown).
#[derive(Debug, Clone, Copy)]
struct Open {
    id: u32,
    end: Option<u64>,
}

/// The incremental reader; see the module documentation.
#[derive(Debug)]
pub struct MkvReader {
    limits: MkvLimits,
    buf: Vec<u8>,
    /// Absolute offset of `buf[0]`.
    base: u64,
    /// Bytes of an element being skipped that have not arrived yet.
    skip: u64,
    open: Vec<Open>,
    seen_header: bool,
    events: Vec<MkvEvent>,
    failed: Option<MkvError>,
}

impl MkvReader {
    pub fn new(limits: MkvLimits) -> Self {
        MkvReader {
            limits,
            buf: Vec::new(),
            base: 0,
            skip: 0,
            open: Vec::new(),
            seen_header: false,
            events: Vec::new(),
            failed: None,
        }
    }

    /// Bytes held, waiting for the rest of an element.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes of the element being read (held or skipped) that have not arrived: a
    /// stream that ends now ends inside an element.
    pub fn missing(&self) -> u64 {
        self.skip + self.buf.len() as u64
    }

    /// Feeds bytes; returns the events they complete. After an error every later call
    /// returns it again.
    ///
    /// Whole elements are read from `data` where they lie; only an element cut by the
    /// chunk boundary is held, and completed from the next chunk with just the bytes it
    /// lacks, so most bytes are copied once (into their frame), not twice.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<MkvEvent>, MkvError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.push_inner(data) {
            Ok(()) => Ok(std::mem::take(&mut self.events)),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn push_inner(&mut self, mut data: &[u8]) -> Result<(), MkvError> {
        loop {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                self.skip -= n as u64;
                self.base += n as u64;
                data = &data[n..];
            }
            if data.is_empty() {
                return Ok(());
            }
            if self.buf.is_empty() {
                // Read in place; keep what is cut at the end.
                let mut pos = 0usize;
                let result = self.parse_from(data, &mut pos);
                let pos = pos.min(data.len());
                self.base += pos as u64;
                if result.is_ok() && self.skip == 0 {
                    self.buf.extend_from_slice(&data[pos..]);
                }
                return result;
            }
            // Complete the held element with what it lacks (its header first).
            let lacks = match read_header(&self.buf)? {
                None => 1,
                Some(h) => (h.len as u64 + h.size.unwrap_or(0)).saturating_sub(self.buf.len() as u64).max(1),
            };
            let n = usize::try_from(lacks).unwrap_or(usize::MAX).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            let held = std::mem::take(&mut self.buf);
            let mut pos = 0usize;
            let result = self.parse_from(&held, &mut pos);
            let pos = pos.min(held.len());
            self.base += pos as u64;
            self.buf = held;
            self.buf.drain(..pos);
            if self.skip > 0 {
                self.buf.clear();
            }
            result?;
        }
    }

    /// Closes the masters that end at or before `at`.
    fn close_ended(&mut self, at: u64) {
        while self.open.last().is_some_and(|o| o.end.is_some_and(|end| end <= at)) {
            self.open.pop();
        }
    }

    fn in_cluster(&self) -> bool {
        self.open.last().is_some_and(|o| o.id == ID_CLUSTER)
    }

    /// Reads the elements of `buf` (which starts at `self.base`) from `*pos` on, as far as
    /// they are whole; `*pos` ends after the last one read (or at the end of `buf` when
    /// an element's skipped rest has yet to come).
    fn parse_from(&mut self, buf: &[u8], pos: &mut usize) -> Result<(), MkvError> {
        loop {
            if self.skip > 0 {
                return Ok(());
            }
            let at = self.base + *pos as u64;
            self.close_ended(at);
            let Some(h) = read_header(&buf[*pos..])? else { return Ok(()) };
            if !self.seen_header && h.id != ID_EBML {
                return Err(MkvError::NoEbmlHeader);
            }
            // An unknown-size Cluster ends where a level-1 element begins; a new EBML
            // header ends everything (a new chunk).
            if h.id == ID_EBML {
                self.open.clear();
            } else if LEVEL_1.contains(&h.id) {
                while self.open.last().is_some_and(|o| o.id != ID_SEGMENT || h.id == ID_SEGMENT) {
                    self.open.pop();
                }
            }
            let payload_start = at + h.len as u64;
            if let (Some(parent), Some(size)) = (self.open.last(), h.size) {
                if parent.end.is_some_and(|end| payload_start + size > end) {
                    return Err(MkvError::Overflow { id: h.id });
                }
            }
            match h.id {
                ID_SEGMENT => {
                    *pos += h.len;
                    self.open.push(Open { id: ID_SEGMENT, end: h.size.map(|s| payload_start + s) });
                    self.events.push(MkvEvent::SegmentStart);
                }
                ID_CLUSTER => {
                    *pos += h.len;
                    self.open.push(Open { id: ID_CLUSTER, end: h.size.map(|s| payload_start + s) });
                }
                ID_BLOCK_GROUP | ID_SIMPLE_BLOCK | ID_TIMECODE if !self.in_cluster() => {
                    return Err(MkvError::BlockOutsideCluster);
                }
                ID_EBML | ID_INFO | ID_TRACKS | ID_TAGS | ID_TIMECODE | ID_SIMPLE_BLOCK | ID_BLOCK_GROUP => {
                    let size = h.size.ok_or(MkvError::UnknownSize(h.id))?;
                    let limit = match h.id {
                        ID_SIMPLE_BLOCK | ID_BLOCK_GROUP => self.limits.max_frame,
                        ID_TIMECODE => 8,
                        _ => self.limits.max_header_element,
                    };
                    if size > limit as u64 {
                        return Err(MkvError::TooLarge { id: h.id, size, limit });
                    }
                    let start = *pos + h.len;
                    let end = start + size as usize;
                    if buf.len() < end {
                        return Ok(());
                    }
                    let event = element_event(h.id, &buf[start..end])?;
                    if h.id == ID_EBML {
                        self.seen_header = true;
                    }
                    self.events.push(event);
                    *pos = end;
                }
                _ => {
                    let size = h.size.ok_or(MkvError::UnknownSize(h.id))?;
                    // Skipped: what is here is consumed, the rest dropped as it comes.
                    let here = (buf.len() - *pos - h.len) as u64;
                    if size <= here {
                        *pos += h.len + size as usize;
                    } else {
                        self.skip = size - here;
                        *pos = buf.len();
                    }
                }
            }
        }
    }
}

/// The event of a whole element held in `payload`.
fn element_event(id: u32, payload: &[u8]) -> Result<MkvEvent, MkvError> {
    Ok(match id {
        ID_EBML => {
            let mut doc_type = "matroska".to_string();
            for (cid, value) in children(payload)? {
                if cid == ID_DOC_TYPE {
                    doc_type = read_string(value)?;
                }
            }
            if doc_type != "matroska" && doc_type != "webm" {
                return Err(MkvError::DocType(doc_type));
            }
            MkvEvent::Header { doc_type }
        }
        ID_INFO => {
            let mut timecode_scale_ns = 1_000_000;
            for (cid, value) in children(payload)? {
                if cid == ID_TIMECODE_SCALE {
                    timecode_scale_ns = read_uint(value)?.max(1);
                }
            }
            MkvEvent::Info { timecode_scale_ns }
        }
        ID_TRACKS => {
            let mut tracks = Vec::new();
            for (cid, entry) in children(payload)? {
                if cid == ID_TRACK_ENTRY {
                    tracks.push(track(entry)?);
                }
            }
            MkvEvent::Tracks(tracks)
        }
        ID_TAGS => {
            let mut tags = Vec::new();
            for (cid, tag) in children(payload)? {
                if cid != ID_TAG {
                    continue;
                }
                for (sid, simple) in children(tag)? {
                    if sid != ID_SIMPLE_TAG {
                        continue;
                    }
                    let (mut name, mut value) = (String::new(), String::new());
                    for (fid, field) in children(simple)? {
                        match fid {
                            ID_TAG_NAME => name = read_string(field)?,
                            ID_TAG_STRING => value = read_string(field)?,
                            _ => {}
                        }
                    }
                    tags.push((name, value));
                }
            }
            MkvEvent::Tags(tags)
        }
        ID_TIMECODE => MkvEvent::Cluster { timecode: read_uint(payload)? },
        ID_SIMPLE_BLOCK => MkvEvent::Frame(block(payload, None)?),
        _ => {
            // BlockGroup: its Block, keyframe unless it references another.
            let mut data = None;
            let mut references = false;
            for (cid, value) in children(payload)? {
                match cid {
                    ID_BLOCK => data = Some(value),
                    ID_REFERENCE_BLOCK => references = true,
                    _ => {}
                }
            }
            MkvEvent::Frame(block(data.ok_or(MkvError::BadBlock("a BlockGroup without a Block"))?, Some(!references))?)
        }
    })
}

/// A (Simple)Block: track number, relative timecode, flags, the frame. `keyframe` from a
/// BlockGroup; a SimpleBlock says it in its flags.
fn block(payload: &[u8], keyframe: Option<bool>) -> Result<MkvFrame, MkvError> {
    let (track, n) = ebml::read_size(payload)?.ok_or(MkvError::BadBlock("no track number"))?;
    let track = track.ok_or(MkvError::BadBlock("an unknown track number"))?;
    let rest = &payload[n..];
    if rest.len() < 3 {
        return Err(MkvError::BadBlock("no timecode and flags"));
    }
    let flags = rest[2];
    if flags & 0x06 != 0 {
        return Err(MkvError::Lacing);
    }
    Ok(MkvFrame {
        track,
        relative_timecode: i16::from_be_bytes([rest[0], rest[1]]),
        keyframe: keyframe.unwrap_or(flags & 0x80 != 0),
        data: rest[3..].to_vec(),
    })
}

fn track(entry: &[u8]) -> Result<MkvTrack, MkvError> {
    let mut t = MkvTrack::default();
    for (id, value) in children(entry)? {
        match id {
            ID_TRACK_NUMBER => t.number = read_uint(value)?,
            ID_TRACK_UID => t.uid = read_uint(value)?,
            ID_TRACK_TYPE => t.kind = read_uint(value)?,
            ID_NAME => t.name = Some(read_string(value)?),
            ID_CODEC_ID => t.codec_id = read_string(value)?,
            ID_CODEC_PRIVATE => t.codec_private = value.to_vec(),
            ID_DEFAULT_DURATION => t.default_duration_ns = Some(read_uint(value)?),
            ID_VIDEO => {
                for (vid, v) in children(value)? {
                    match vid {
                        ID_PIXEL_WIDTH => t.width = Some(read_uint(v)?),
                        ID_PIXEL_HEIGHT => t.height = Some(read_uint(v)?),
                        _ => {}
                    }
                }
            }
            ID_AUDIO => {
                for (aid, v) in children(value)? {
                    match aid {
                        ID_SAMPLING_FREQUENCY => t.sampling_frequency = Some(read_float(v)?),
                        ID_CHANNELS => t.channels = Some(read_uint(v)?),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if t.number == 0 {
        return Err(MkvError::BadTrack("a TrackNumber"));
    }
    if t.codec_id.is_empty() {
        return Err(MkvError::BadTrack("a CodecID"));
    }
    Ok(t)
}

/// The children of a master element held whole: (ID, payload) of each, in order.
fn children(payload: &[u8]) -> Result<Vec<(u32, &[u8])>, MkvError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let h = read_header(&payload[at..])?.ok_or(MkvError::Overflow { id: 0 })?;
        let size = h.size.ok_or(MkvError::UnknownSize(h.id))?;
        let start = at + h.len;
        let end = usize::try_from(size).ok().and_then(|s| start.checked_add(s)).filter(|e| *e <= payload.len());
        let end = end.ok_or(MkvError::Overflow { id: h.id })?;
        out.push((h.id, &payload[start..end]));
        at = end;
    }
    Ok(out)
}

// ---- writing ------------------------------------------------------------------------

/// A track as the writer describes it in Tracks.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackOut<'a> {
    pub number: u64,
    /// 1 video, 2 audio.
    pub kind: u64,
    pub codec_id: &'a str,
    pub codec_private: &'a [u8],
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub sampling_frequency: Option<f64>,
    pub channels: Option<u16>,
}

/// A frame as the writer puts it in a Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockOut<'a> {
    pub track: u64,
    /// Relative to the Cluster's timecode, in timecode-scale units.
    pub relative_timecode: i16,
    pub keyframe: bool,
    pub data: &'a [u8],
}

/// The EBML header (DocType `matroska`, versions as the KVS producer SDK writes them).
pub fn write_ebml_header(out: &mut Vec<u8>) {
    ebml::write_master(out, ID_EBML, |h| {
        ebml::write_uint(h, 0x4286, 1);
        ebml::write_uint(h, 0x42F7, 1);
        ebml::write_uint(h, 0x42F2, 4);
        ebml::write_uint(h, 0x42F3, 8);
        ebml::write_string(h, ID_DOC_TYPE, "matroska");
        ebml::write_uint(h, 0x4287, 2);
        ebml::write_uint(h, 0x4285, 2);
    });
}

/// A Segment of unknown size (8-byte form, as Kinesis Video's GetMedia writes it).
pub fn write_segment_start(out: &mut Vec<u8>) {
    ebml::write_id(out, ID_SEGMENT);
    out.extend_from_slice(&ebml::UNKNOWN_SIZE);
}

/// Info with the timecode scale (ns per unit) and the writing application.
pub fn write_info(out: &mut Vec<u8>, timecode_scale_ns: u64, app: &str) {
    ebml::write_master(out, ID_INFO, |i| {
        ebml::write_uint(i, ID_TIMECODE_SCALE, timecode_scale_ns);
        ebml::write_string(i, 0x4D80, app);
        ebml::write_string(i, 0x5741, app);
    });
}

pub fn write_tracks(out: &mut Vec<u8>, tracks: &[TrackOut<'_>]) {
    ebml::write_master(out, ID_TRACKS, |ts| {
        for t in tracks {
            ebml::write_master(ts, ID_TRACK_ENTRY, |e| {
                ebml::write_uint(e, ID_TRACK_NUMBER, t.number);
                ebml::write_uint(e, ID_TRACK_UID, t.number);
                ebml::write_uint(e, ID_TRACK_TYPE, t.kind);
                ebml::write_string(e, ID_CODEC_ID, t.codec_id);
                if let (Some(w), Some(h)) = (t.width, t.height) {
                    ebml::write_master(e, ID_VIDEO, |v| {
                        ebml::write_uint(v, ID_PIXEL_WIDTH, w.into());
                        ebml::write_uint(v, ID_PIXEL_HEIGHT, h.into());
                    });
                }
                if let Some(rate) = t.sampling_frequency {
                    ebml::write_master(e, ID_AUDIO, |a| {
                        ebml::write_float(a, ID_SAMPLING_FREQUENCY, rate);
                        ebml::write_uint(a, ID_CHANNELS, t.channels.unwrap_or(1).into());
                    });
                }
                if !t.codec_private.is_empty() {
                    ebml::write_element(e, ID_CODEC_PRIVATE, t.codec_private);
                }
            });
        }
    });
}

/// A Tags element of SimpleTags (name, value), no Targets, as Kinesis Video writes
/// its fragment tags. Sizes are measured first and everything written in place.
pub fn write_tags(out: &mut Vec<u8>, tags: &[(&str, &str)]) {
    // An element's whole length: its ID, its size field and its payload.
    let element = |id_len: u64, payload: u64| id_len + ebml::size_width(payload) as u64 + payload;
    let simple = |(name, value): &(&str, &str)| element(2, name.len() as u64) + element(2, value.len() as u64);
    let tag_payload: u64 = tags.iter().map(|t| element(2, simple(t))).sum();
    let tags_payload = element(2, tag_payload);
    out.reserve(element(4, tags_payload) as usize);
    ebml::write_id(out, ID_TAGS);
    ebml::write_size(out, tags_payload);
    ebml::write_id(out, ID_TAG);
    ebml::write_size(out, tag_payload);
    for t in tags {
        ebml::write_id(out, ID_SIMPLE_TAG);
        ebml::write_size(out, simple(t));
        ebml::write_string(out, ID_TAG_NAME, t.0);
        ebml::write_string(out, ID_TAG_STRING, t.1);
    }
}

/// A Cluster of known size: its timecode (8 bytes, as the producer SDK writes it) and
/// one SimpleBlock per frame. Sizes are measured first, so each frame's bytes are copied
/// once, straight into `out`.
pub fn write_cluster(out: &mut Vec<u8>, timecode: u64, blocks: &[BlockOut<'_>]) {
    // Timecode: ID (1) + size (1) + 8 bytes.
    let mut body = 10u64;
    for b in blocks {
        let payload = block_head_len(b.track) + b.data.len() as u64;
        body += 1 + ebml::size_width(payload) as u64 + payload;
    }
    out.reserve(body as usize + 12);
    ebml::write_id(out, ID_CLUSTER);
    ebml::write_size(out, body);
    ebml::write_uint8(out, ID_TIMECODE, timecode);
    for b in blocks {
        ebml::write_id(out, ID_SIMPLE_BLOCK);
        ebml::write_size(out, block_head_len(b.track) + b.data.len() as u64);
        ebml::write_size(out, b.track);
        out.extend_from_slice(&b.relative_timecode.to_be_bytes());
        out.push(if b.keyframe { 0x80 } else { 0 });
        out.extend_from_slice(b.data);
    }
}

/// A SimpleBlock's header: the track number (a size-style varint), the relative
/// timecode (2 bytes) and the flags (1 byte).
fn block_head_len(track: u64) -> u64 {
    ebml::size_width(track) as u64 + 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ebml::{write_element, write_float, write_id, write_master, write_string, write_uint};

    /// A stream as the KVS producer SDK writes it: unknown-size Segment and Clusters.
    fn producer_stream() -> Vec<u8> {
        let mut out = Vec::new();
        write_master(&mut out, ID_EBML, |h| {
            write_uint(h, 0x4286, 1);
            write_string(h, ID_DOC_TYPE, "matroska\0");
        });
        write_id(&mut out, ID_SEGMENT);
        out.push(0xFF);
        write_master(&mut out, ID_INFO, |i| write_uint(i, ID_TIMECODE_SCALE, 1_000_000));
        write_master(&mut out, ID_TRACKS, |t| {
            write_master(t, ID_TRACK_ENTRY, |e| {
                write_uint(e, ID_TRACK_NUMBER, 1);
                write_uint(e, ID_TRACK_UID, 1);
                write_uint(e, ID_TRACK_TYPE, 1);
                write_string(e, ID_CODEC_ID, "V_MPEG4/ISO/AVC");
                write_element(e, ID_CODEC_PRIVATE, &[1, 0x64, 0, 0x1F, 0xFF]);
                write_master(e, ID_VIDEO, |v| {
                    write_uint(v, ID_PIXEL_WIDTH, 320);
                    write_uint(v, ID_PIXEL_HEIGHT, 240);
                });
            });
            write_master(t, ID_TRACK_ENTRY, |e| {
                write_uint(e, ID_TRACK_NUMBER, 2);
                write_uint(e, ID_TRACK_TYPE, 2);
                write_string(e, ID_CODEC_ID, "A_AAC");
                write_master(e, ID_AUDIO, |a| {
                    write_float(a, ID_SAMPLING_FREQUENCY, 48000.0);
                    write_uint(a, ID_CHANNELS, 2);
                });
            });
        });
        for (c, tc) in [0u64, 2000].into_iter().enumerate() {
            write_id(&mut out, ID_CLUSTER);
            out.extend_from_slice(&ebml::UNKNOWN_SIZE);
            ebml::write_uint8(&mut out, ID_TIMECODE, tc);
            write_uint(&mut out, 0xA7, 0); // Position, skipped
            for f in 0..3u8 {
                let mut b = vec![0x81, 0, f * 40, if f == 0 { 0x80 } else { 0 }];
                b.extend_from_slice(&[c as u8, f, 0xAB]);
                write_element(&mut out, ID_SIMPLE_BLOCK, &b);
            }
            write_element(&mut out, ID_SIMPLE_BLOCK, &[0x82, 0, 10, 0x80, 0xAA]);
            write_master(&mut out, ID_TAGS, |t| {
                write_master(t, ID_TAG, |g| {
                    write_master(g, ID_SIMPLE_TAG, |s| {
                        write_string(s, ID_TAG_NAME, "DETECTIONS");
                        write_string(s, ID_TAG_STRING, &format!("cluster {c}"));
                    })
                })
            });
        }
        out
    }

    fn read_all(bytes: &[u8], chunk: usize) -> Result<Vec<MkvEvent>, MkvError> {
        let mut r = MkvReader::new(MkvLimits::default());
        let mut events = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            events.extend(r.push(piece)?);
        }
        Ok(events)
    }

    #[test]
    fn a_producer_stream_reads_the_same_whatever_the_chunking() {
        let bytes = producer_stream();
        let whole = read_all(&bytes, bytes.len()).unwrap();
        for chunk in [1, 2, 3, 7, 64, 1000] {
            assert_eq!(read_all(&bytes, chunk).unwrap(), whole, "chunks of {chunk}");
        }
        assert_eq!(whole[0], MkvEvent::Header { doc_type: "matroska".into() }, "trailing NULs stripped");
        assert_eq!(whole[1], MkvEvent::SegmentStart);
        assert_eq!(whole[2], MkvEvent::Info { timecode_scale_ns: 1_000_000 });
        let MkvEvent::Tracks(tracks) = &whole[3] else { panic!("{:?}", whole[3]) };
        assert_eq!(tracks.len(), 2);
        assert_eq!(
            (tracks[0].codec_id.as_str(), tracks[0].width, tracks[0].height),
            ("V_MPEG4/ISO/AVC", Some(320), Some(240))
        );
        assert_eq!(tracks[0].codec_private, [1, 0x64, 0, 0x1F, 0xFF]);
        assert_eq!((tracks[1].sampling_frequency, tracks[1].channels), (Some(48000.0), Some(2)));
        let clusters: Vec<u64> = whole
            .iter()
            .filter_map(|e| if let MkvEvent::Cluster { timecode } = e { Some(*timecode) } else { None })
            .collect();
        assert_eq!(clusters, [0, 2000]);
        let frames: Vec<&MkvFrame> =
            whole.iter().filter_map(|e| if let MkvEvent::Frame(f) = e { Some(f) } else { None }).collect();
        assert_eq!(frames.len(), 8);
        assert!(frames[0].keyframe && !frames[1].keyframe && frames[1].relative_timecode == 40);
        assert_eq!(frames[3].track, 2);
        let tags: Vec<_> = whole.iter().filter(|e| matches!(e, MkvEvent::Tags(_))).collect();
        assert_eq!(tags[1], &MkvEvent::Tags(vec![("DETECTIONS".into(), "cluster 1".into())]));
    }

    #[test]
    fn ffmpegs_live_matroska_reads_whole_in_any_chunking() {
        // fixtures/av.mkv: 4 s of H.264 (25 fps, 1 s GOP) and AAC, `-f matroska -live 1`.
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/av.mkv")).unwrap();
        let events = read_all(&bytes, 1500).unwrap();
        assert_eq!(read_all(&bytes, 1).unwrap(), events);
        let MkvEvent::Tracks(tracks) = events.iter().find(|e| matches!(e, MkvEvent::Tracks(_))).unwrap() else {
            unreachable!()
        };
        let codecs: Vec<&str> = tracks.iter().map(|t| t.codec_id.as_str()).collect();
        assert_eq!(codecs, ["V_MPEG4/ISO/AVC", "A_AAC"]);
        assert_eq!(tracks[0].codec_private[0], 1, "an AVCDecoderConfigurationRecord");
        let video: Vec<&MkvFrame> = events
            .iter()
            .filter_map(|e| if let MkvEvent::Frame(f) = e { Some(f) } else { None })
            .filter(|f| f.track == tracks[0].number)
            .collect();
        assert_eq!(video.len(), 100, "4 s at 25 fps");
        assert_eq!(video.iter().filter(|f| f.keyframe).count(), 4, "one keyframe a second");
        assert!(events.iter().any(|e| matches!(e, MkvEvent::Cluster { .. })));
    }

    #[test]
    fn kvssinks_stream_reads_the_same_whatever_the_chunking() {
        // fixtures/kvssink.mkv: the producer SDK's own bytes (8-byte sizes, tags between
        // clusters). Elements are read in place or completed across chunks alike.
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/kvssink.mkv")).unwrap();
        let whole = read_all(&bytes, bytes.len()).unwrap();
        assert!(whole.iter().filter(|e| matches!(e, MkvEvent::Frame(_))).count() >= 40, "5 fragments of 10 frames");
        for chunk in [1, 2, 5, 13, 333, 4096, 65536] {
            assert_eq!(read_all(&bytes, chunk).unwrap(), whole, "chunks of {chunk}");
        }
    }

    #[test]
    fn skipped_elements_are_not_held_and_limits_hold() {
        let mut bytes = producer_stream();
        let at = bytes.iter().position(|b| *b == 0x16).unwrap(); // before Tracks
        let mut void = Vec::new();
        write_element(&mut void, 0xEC, &vec![0u8; 1 << 20]);
        bytes.splice(at..at, void);
        let mut r = MkvReader::new(MkvLimits::default());
        let mut held = 0;
        let mut frames = 0;
        for piece in bytes.chunks(4096) {
            frames += r.push(piece).unwrap().iter().filter(|e| matches!(e, MkvEvent::Frame(_))).count();
            held = held.max(r.buffered());
        }
        assert_eq!(frames, 8);
        assert!(held < 64 << 10, "a 1 MiB Void was held: {held}");

        let tight = MkvLimits { max_header_element: 1 << 20, max_frame: 4 };
        let mut r = MkvReader::new(tight);
        let e = r.push(&producer_stream()).unwrap_err();
        assert!(matches!(e, MkvError::TooLarge { id: ID_SIMPLE_BLOCK, .. }), "{e}");
        assert_eq!(r.push(b"more").unwrap_err(), e, "an error sticks");
    }

    #[test]
    fn what_the_writer_writes_the_reader_reads_back() {
        let avcc = [1u8, 0x64, 0, 0x1F, 0xFF, 0xE1];
        let mut out = Vec::new();
        write_ebml_header(&mut out);
        write_segment_start(&mut out);
        write_info(&mut out, 1_000_000, "Kinescope");
        let tracks = [
            TrackOut {
                number: 1,
                kind: 1,
                codec_id: "V_MPEG4/ISO/AVC",
                codec_private: &avcc,
                width: Some(640),
                height: Some(360),
                sampling_frequency: None,
                channels: None,
            },
            TrackOut {
                number: 2,
                kind: 2,
                codec_id: "A_AAC",
                codec_private: &[0x11, 0x90],
                width: None,
                height: None,
                sampling_frequency: Some(48000.0),
                channels: Some(1),
            },
        ];
        write_tracks(&mut out, &tracks);
        write_tags(
            &mut out,
            &[("AWS_KINESISVIDEO_FRAGMENT_NUMBER", "91343852333181432392682062607743920146159169392")],
        );
        let blocks = [
            BlockOut { track: 1, relative_timecode: 0, keyframe: true, data: b"idr" },
            BlockOut { track: 2, relative_timecode: 5, keyframe: true, data: b"aac" },
            BlockOut { track: 1, relative_timecode: 40, keyframe: false, data: &[7u8; 300] },
        ];
        write_cluster(&mut out, 1_700_000_000_000, &blocks);
        write_tags(
            &mut out,
            &[("AWS_KINESISVIDEO_MILLIS_BEHIND_NOW", "15"), ("AWS_KINESISVIDEO_CONTINUATION_TOKEN", "1")],
        );
        let events = read_all(&out, 17).unwrap();
        assert_eq!(events[2], MkvEvent::Info { timecode_scale_ns: 1_000_000 });
        let MkvEvent::Tracks(read) = &events[3] else { panic!("{:?}", events[3]) };
        assert_eq!(
            (read[0].codec_id.as_str(), read[0].width, read[0].codec_private.as_slice()),
            ("V_MPEG4/ISO/AVC", Some(640), &avcc[..])
        );
        assert_eq!((read[1].sampling_frequency, read[1].channels), (Some(48000.0), Some(1)));
        assert!(matches!(&events[4], MkvEvent::Tags(t) if t[0].0 == "AWS_KINESISVIDEO_FRAGMENT_NUMBER"));
        assert_eq!(events[5], MkvEvent::Cluster { timecode: 1_700_000_000_000 });
        let frames: Vec<&MkvFrame> =
            events.iter().filter_map(|e| if let MkvEvent::Frame(f) = e { Some(f) } else { None }).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(
            (frames[2].track, frames[2].relative_timecode, frames[2].keyframe, frames[2].data.len()),
            (1, 40, false, 300)
        );
        assert!(matches!(events.last(), Some(MkvEvent::Tags(t)) if t.len() == 2));
    }

    #[test]
    fn what_kvs_refuses_is_refused_with_a_reason() {
        let mut r = MkvReader::new(MkvLimits::default());
        assert_eq!(r.push(&[0x1F, 0x43, 0xB6, 0x75, 0xFF]).unwrap_err(), MkvError::NoEbmlHeader);
        let mut webm = Vec::new();
        write_master(&mut webm, ID_EBML, |h| write_string(h, ID_DOC_TYPE, "mp4"));
        assert!(matches!(MkvReader::new(MkvLimits::default()).push(&webm), Err(MkvError::DocType(_))));
        let mut laced = producer_stream();
        // The first SimpleBlock: ID, size 7, track 1, timecode 0, then its flags.
        let at = laced.windows(4).position(|w| w == [0xA3, 0x87, 0x81, 0x00]).unwrap();
        laced[at + 5] |= 0x02;
        assert!(matches!(read_all(&laced, 100), Err(MkvError::Lacing)));
        let mut unknown_tracks = Vec::new();
        write_master(&mut unknown_tracks, ID_EBML, |h| write_string(h, ID_DOC_TYPE, "matroska"));
        write_id(&mut unknown_tracks, ID_TRACKS);
        unknown_tracks.push(0xFF);
        assert_eq!(read_all(&unknown_tracks, 5).unwrap_err(), MkvError::UnknownSize(ID_TRACKS));
    }
}
