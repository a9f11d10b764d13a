//! ISO base media file format (ISO/IEC 14496-12) boxes: the one reader and writer every
//! MP4 path uses (fragmented ingest, stored fragments, per-track DASH cuts, GetClip,
//! the sample muxer, the codec sample entries).
//!
//! Pure functions over byte slices. Every length read from the input is checked against
//! what is actually there before it is used, so a hostile box costs at most one pass
//! over the bytes it sent.

use std::fmt;

/// Why a box or a sequence of boxes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoxError {
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

/// The box types the crate reads or writes (codec-specific configuration boxes such as
/// `avcC` are named in their codec's module).
pub mod kinds {
    use super::FourCc;
    pub const FTYP: FourCc = FourCc::new(b"ftyp");
    pub const MOOV: FourCc = FourCc::new(b"moov");
    pub const MVHD: FourCc = FourCc::new(b"mvhd");
    pub const MOOF: FourCc = FourCc::new(b"moof");
    pub const MDAT: FourCc = FourCc::new(b"mdat");
    pub const MFHD: FourCc = FourCc::new(b"mfhd");
    pub const TRAF: FourCc = FourCc::new(b"traf");
    pub const TFHD: FourCc = FourCc::new(b"tfhd");
    pub const TFDT: FourCc = FourCc::new(b"tfdt");
    pub const TRUN: FourCc = FourCc::new(b"trun");
    pub const TRAK: FourCc = FourCc::new(b"trak");
    pub const TKHD: FourCc = FourCc::new(b"tkhd");
    pub const EDTS: FourCc = FourCc::new(b"edts");
    pub const MDIA: FourCc = FourCc::new(b"mdia");
    pub const MDHD: FourCc = FourCc::new(b"mdhd");
    pub const HDLR: FourCc = FourCc::new(b"hdlr");
    pub const MINF: FourCc = FourCc::new(b"minf");
    pub const VMHD: FourCc = FourCc::new(b"vmhd");
    pub const SMHD: FourCc = FourCc::new(b"smhd");
    pub const DINF: FourCc = FourCc::new(b"dinf");
    pub const DREF: FourCc = FourCc::new(b"dref");
    pub const URL: FourCc = FourCc::new(b"url ");
    pub const STBL: FourCc = FourCc::new(b"stbl");
    pub const STSD: FourCc = FourCc::new(b"stsd");
    pub const STTS: FourCc = FourCc::new(b"stts");
    pub const CTTS: FourCc = FourCc::new(b"ctts");
    pub const STSS: FourCc = FourCc::new(b"stss");
    pub const STSC: FourCc = FourCc::new(b"stsc");
    pub const STSZ: FourCc = FourCc::new(b"stsz");
    pub const STCO: FourCc = FourCc::new(b"stco");
    pub const CO64: FourCc = FourCc::new(b"co64");
    pub const MVEX: FourCc = FourCc::new(b"mvex");
    pub const TREX: FourCc = FourCc::new(b"trex");
    pub const UUID: FourCc = FourCc::new(b"uuid");
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
pub fn parse_box_header(buf: &[u8], offset: u64, limit: u64) -> Result<Option<BoxHeader>, BoxError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let size32 = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let kind = FourCc([buf[4], buf[5], buf[6], buf[7]]);
    let (size, mut header_len) = match size32 {
        0 => return Err(BoxError::SizeToEnd { kind, offset }),
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
        return Err(BoxError::SizeTooSmall { kind, offset, size });
    }
    if size > limit {
        return Err(BoxError::SizeTooLarge { kind, offset, size, limit });
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

    /// Where the next box starts in the buffer.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for BoxIter<'a> {
    /// The box type and its body (the bytes after the header).
    type Item = Result<(FourCc, &'a [u8]), BoxError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return None;
        }
        let header = match parse_box_header(rest, self.pos as u64, rest.len() as u64) {
            Ok(Some(h)) => h,
            Ok(None) => {
                self.pos = self.buf.len();
                return Some(Err(BoxError::Truncated {
                    kind: FourCc(*b"????"),
                    needed: 8,
                    available: rest.len() as u64,
                }));
            }
            Err(BoxError::SizeTooLarge { kind, size, .. }) => {
                self.pos = self.buf.len();
                return Some(Err(BoxError::Truncated { kind, needed: size, available: rest.len() as u64 }));
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
pub fn find_child(buf: &[u8], kind: FourCc) -> Result<Option<&[u8]>, BoxError> {
    for item in BoxIter::new(buf) {
        let (k, body) = item?;
        if k == kind {
            return Ok(Some(body));
        }
    }
    Ok(None)
}

/// Like [`find_child`], but a missing child is an error naming `parent`.
pub fn require_child(buf: &[u8], parent: FourCc, child: FourCc) -> Result<&[u8], BoxError> {
    find_child(buf, child)?.ok_or(BoxError::Missing { parent, child })
}

/// Follows a path of child boxes (`[MDIA, MINF, STBL]`) down from `buf`.
pub fn find_path<'a>(buf: &'a [u8], path: &[FourCc]) -> Result<Option<&'a [u8]>, BoxError> {
    let mut at = buf;
    for kind in path {
        match find_child(at, *kind)? {
            Some(body) => at = body,
            None => return Ok(None),
        }
    }
    Ok(Some(at))
}

/// A bounds-checked big-endian reader over a box body.
pub struct Reader<'a> {
    kind: FourCc,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(kind: FourCc, buf: &'a [u8]) -> Self {
        Reader { kind, buf, pos: 0 }
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], BoxError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(BoxError::Truncated {
            kind: self.kind,
            needed: (self.pos as u64).saturating_add(n as u64),
            available: self.buf.len() as u64,
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub fn skip(&mut self, n: usize) -> Result<(), BoxError> {
        self.take(n).map(|_| ())
    }
    pub fn u8(&mut self) -> Result<u8, BoxError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, BoxError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Result<u32, BoxError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, BoxError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    pub fn fourcc(&mut self) -> Result<FourCc, BoxError> {
        let b = self.take(4)?;
        Ok(FourCc([b[0], b[1], b[2], b[3]]))
    }
    /// Version (1 byte) and flags (3 bytes) of a full box.
    pub fn full_box(&mut self) -> Result<(u8, u32), BoxError> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }
    /// Skips the creation and modification times of an `mvhd`, `tkhd` or `mdhd`
    /// (64-bit in version 1, 32-bit in version 0).
    pub fn skip_times(&mut self, version: u8) -> Result<(), BoxError> {
        self.skip(if version == 1 { 16 } else { 8 })
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
}

/// Appends a box with `body` to `out` (a 64-bit size when it does not fit 32 bits).
pub fn write_box(out: &mut Vec<u8>, kind: FourCc, body: &[u8]) {
    write_box_header(out, kind, body.len());
    out.extend_from_slice(body);
}

/// Appends the header of a box whose body of `body_len` bytes the caller writes next.
pub fn write_box_header(out: &mut Vec<u8>, kind: FourCc, body_len: usize) {
    let size = 8 + body_len;
    if let Ok(size32) = u32::try_from(size) {
        out.extend_from_slice(&size32.to_be_bytes());
        out.extend_from_slice(&kind.0);
    } else {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&kind.0);
        out.extend_from_slice(&(size as u64 + 8).to_be_bytes());
    }
}

/// The length of the header [`write_box`] gives a body of `body_len` bytes.
pub fn box_header_len(body_len: usize) -> usize {
    if 8 + body_len > u32::MAX as usize {
        16
    } else {
        8
    }
}

/// The start of a full box body: version and flags.
pub fn full_box(version: u8, flags: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(&((u32::from(version) << 24) | (flags & 0x00ff_ffff)).to_be_bytes());
    v
}

/// Appends a `uuid` box with the given 16-byte user type and payload.
pub fn write_uuid_box(out: &mut Vec<u8>, user_type: &[u8; 16], payload: &[u8]) {
    // The header length of a uuid box counts the user type; written as part of the body.
    write_box_header(out, UUID, 16 + payload.len());
    out.extend_from_slice(user_type);
    out.extend_from_slice(payload);
}

/// The track_ID of a `tkhd` body (14496-12 8.3.2).
pub fn tkhd_track_id(tkhd: &[u8]) -> Result<u32, BoxError> {
    let mut r = Reader::new(TKHD, tkhd);
    let (version, _) = r.full_box()?;
    r.skip_times(version)?;
    r.u32()
}

/// The timescale of an `mvhd` or `mdhd` body (14496-12 8.2.2, 8.4.2).
pub fn header_timescale(kind: FourCc, body: &[u8]) -> Result<u32, BoxError> {
    let mut r = Reader::new(kind, body);
    let (version, _) = r.full_box()?;
    r.skip_times(version)?;
    r.u32()
}

/// Overwrites the duration field of an `mvhd`, `tkhd` or `mdhd` body.
pub fn patch_duration(body: &mut [u8], kind: FourCc, duration: u64) -> Result<(), BoxError> {
    let version = *body.first().ok_or(BoxError::Truncated { kind, needed: 4, available: 0 })?;
    // After version+flags: two times, then timescale (mvhd, mdhd) or track_ID and a
    // reserved word (tkhd), then the duration.
    let times = if version == 1 { 16 } else { 8 };
    let at = 4 + times + if kind == TKHD { 8 } else { 4 };
    let width = if version == 1 { 8 } else { 4 };
    let available = body.len() as u64;
    let field =
        body.get_mut(at..at + width).ok_or(BoxError::Truncated { kind, needed: (at + width) as u64, available })?;
    if version == 1 {
        field.copy_from_slice(&duration.to_be_bytes());
    } else {
        field.copy_from_slice(&u32::try_from(duration).unwrap_or(u32::MAX).to_be_bytes());
    }
    Ok(())
}

/// MPEG-4 descriptors (ISO/IEC 14496-1 7.2.2.1): a tag, a size in one to four 7-bit
/// groups, then the body. `esds` boxes are made of them.
pub mod descriptor {
    /// Reads the descriptor at the start of `buf`: (tag, body, what follows it).
    pub fn read(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *buf.first()?;
        let mut len = 0usize;
        let mut i = 1;
        loop {
            let b = *buf.get(i)?;
            len = (len << 7) | usize::from(b & 0x7f);
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            if i > 4 {
                return None;
            }
        }
        let end = i.checked_add(len)?;
        Some((tag, buf.get(i..end)?, &buf[end..]))
    }

    /// Appends a descriptor with the shortest size encoding.
    pub fn write(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
        out.push(tag);
        let mut len = body.len();
        let mut bytes = vec![(len & 0x7f) as u8];
        len >>= 7;
        while len > 0 {
            bytes.push(0x80 | (len & 0x7f) as u8);
            len >>= 7;
        }
        bytes.reverse();
        out.extend_from_slice(&bytes);
        out.extend_from_slice(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(parse_box_header(&b, 0, 100), Err(BoxError::SizeTooSmall { .. })));
        let b = [0xff, 0xff, 0xff, 0xff, b'm', b'd', b'a', b't'];
        assert!(matches!(parse_box_header(&b, 0, 1000), Err(BoxError::SizeTooLarge { .. })));
        let b = [0, 0, 0, 0, b'm', b'd', b'a', b't'];
        assert!(matches!(parse_box_header(&b, 0, 1000), Err(BoxError::SizeToEnd { .. })));
        let mut b = vec![0, 0, 0, 1];
        b.extend_from_slice(b"mdat");
        b.extend_from_slice(&8u64.to_be_bytes());
        assert!(matches!(parse_box_header(&b, 0, 1000), Err(BoxError::SizeTooSmall { .. })));
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
        assert!(matches!(items[1], Err(BoxError::Truncated { .. })));
    }

    #[test]
    fn uuid_box_round_trip() {
        let mut out = Vec::new();
        write_uuid_box(&mut out, &[7; 16], b"{}");
        let h = parse_box_header(&out, 0, 100).unwrap().unwrap();
        assert_eq!((h.kind, h.header_len, h.size), (UUID, 24, 26));
    }

    #[test]
    fn descriptors_round_trip_with_long_sizes() {
        for len in [0usize, 1, 127, 128, 300, 20_000] {
            let body = vec![9u8; len];
            let mut out = Vec::new();
            descriptor::write(&mut out, 0x05, &body);
            out.push(0xee);
            let (tag, got, rest) = descriptor::read(&out).unwrap();
            assert_eq!((tag, got.len(), rest), (0x05, len, &[0xee][..]));
        }
        assert_eq!(descriptor::read(&[0x05, 0x80, 0x80, 0x80, 0x80, 0x01]), None, "size of five groups");
        assert_eq!(descriptor::read(&[0x05, 0x10, 1]), None, "body shorter than its size");
    }

    #[test]
    fn header_fields() {
        let mut tkhd = full_box(1, 3);
        tkhd.extend_from_slice(&[0; 16]);
        tkhd.extend_from_slice(&7u32.to_be_bytes());
        tkhd.extend_from_slice(&[0; 4 + 8]);
        assert_eq!(tkhd_track_id(&tkhd), Ok(7));
        patch_duration(&mut tkhd, TKHD, 99).unwrap();
        assert_eq!(&tkhd[tkhd.len() - 8..], &99u64.to_be_bytes());
        let mut mdhd = full_box(0, 0);
        mdhd.extend_from_slice(&[0; 8]);
        mdhd.extend_from_slice(&90_000u32.to_be_bytes());
        mdhd.extend_from_slice(&[0; 4]);
        assert_eq!(header_timescale(MDHD, &mdhd), Ok(90_000));
        assert!(tkhd_track_id(&[1, 0, 0]).is_err());
    }
}
