//! Segment files: append-only files of fragment records, one directory per stream.
//!
//! A record is a 32-byte header followed by the fragment's bytes, contiguous, so that
//! serving a fragment is one positioned read. The header carries the fragment number,
//! the payload length and a CRC-32 of the payload, and a CRC of the header itself, so
//! recovery can tell a complete record from a torn one without the index.
//!
//! ```text
//! 0      4            8                 16            20            24         32
//! | KSF1 | payload_len | fragment_number | payload_crc | header_crc  | reserved |
//! ```

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::video_store::records::StreamId;

/// The segment files' format, recorded in the fragment index; the record magic names it
/// too (`KSF1`), so a record of another format is never read as this one.
pub const MEDIA_FORMAT: u32 = 1;
pub const RECORD_MAGIC: [u8; 4] = *b"KSF1";
pub const RECORD_HEADER_LEN: u64 = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub payload_len: u32,
    pub fragment_number: u64,
    pub payload_crc: u32,
}

impl RecordHeader {
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN as usize] {
        let mut b = [0u8; RECORD_HEADER_LEN as usize];
        b[0..4].copy_from_slice(&RECORD_MAGIC);
        b[4..8].copy_from_slice(&self.payload_len.to_be_bytes());
        b[8..16].copy_from_slice(&self.fragment_number.to_be_bytes());
        b[16..20].copy_from_slice(&self.payload_crc.to_be_bytes());
        let header_crc = crc32fast::hash(&b[0..20]);
        b[20..24].copy_from_slice(&header_crc.to_be_bytes());
        b
    }

    /// Decodes a header; `None` if the magic or the header's own CRC is wrong.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < RECORD_HEADER_LEN as usize || b[0..4] != RECORD_MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if crc32fast::hash(&b[0..20]) != u32_at(20) {
            return None;
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&b[8..16]);
        Some(RecordHeader { payload_len: u32_at(4), fragment_number: u64::from_be_bytes(n), payload_crc: u32_at(16) })
    }
}

pub fn stream_dir(media_root: &Path, stream: StreamId) -> PathBuf {
    media_root.join(format!("{stream:016x}"))
}

pub fn segment_path(media_root: &Path, stream: StreamId, segment: u64) -> PathBuf {
    stream_dir(media_root, stream).join(format!("{segment:016x}.seg"))
}

/// Parses a segment file name back into its id.
pub fn segment_id_from_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

pub fn stream_id_from_dir_name(name: &str) -> Option<StreamId> {
    if name.len() != 16 {
        return None;
    }
    u64::from_str_radix(name, 16).ok()
}

/// Creates a new segment file and makes its directory entry durable.
pub fn create_segment(media_root: &Path, stream: StreamId, segment: u64) -> io::Result<File> {
    let dir = stream_dir(media_root, stream);
    let new_dir = !dir.exists();
    fs::create_dir_all(&dir)?;
    let file =
        OpenOptions::new().create_new(true).append(true).read(true).open(segment_path(media_root, stream, segment))?;
    sync_dir(&dir)?;
    if new_dir {
        sync_dir(media_root)?;
    }
    Ok(file)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads `len` bytes at `offset`.
pub fn read_at(file: &File, offset: u64, len: u32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Checks that a whole record (header and payload) is intact at `payload_offset - 32`,
/// and is the one the index describes (number, length, CRC).
pub fn verify_record(file: &File, payload_offset: u64, len: u32, fragment_number: u64, crc: u32) -> io::Result<bool> {
    let Some(header_offset) = payload_offset.checked_sub(RECORD_HEADER_LEN) else {
        return Ok(false);
    };
    let mut header = [0u8; RECORD_HEADER_LEN as usize];
    if let Err(e) = file.read_exact_at(&mut header, header_offset) {
        return if e.kind() == io::ErrorKind::UnexpectedEof { Ok(false) } else { Err(e) };
    }
    let Some(h) = RecordHeader::decode(&header) else {
        return Ok(false);
    };
    if h.payload_len != len || h.fragment_number != fragment_number || h.payload_crc != crc {
        return Ok(false);
    }
    match read_at(file, payload_offset, len) {
        Ok(payload) => Ok(crc32fast::hash(&payload) == h.payload_crc),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_corruption() {
        let h = RecordHeader { payload_len: 1234, fragment_number: 99, payload_crc: 0xabcdef01 };
        let mut b = h.encode();
        assert_eq!(RecordHeader::decode(&b), Some(h));
        b[10] ^= 1;
        assert_eq!(RecordHeader::decode(&b), None);
        assert_eq!(RecordHeader::decode(&b[..10]), None);
    }

    #[test]
    fn names_round_trip() {
        let p = segment_path(Path::new("/d"), 0x1f, 7);
        assert_eq!(p, PathBuf::from("/d/000000000000001f/0000000000000007.seg"));
        assert_eq!(segment_id_from_name("0000000000000007.seg"), Some(7));
        assert_eq!(segment_id_from_name("7.seg"), None);
        assert_eq!(stream_id_from_dir_name("000000000000001f"), Some(0x1f));
    }

    #[test]
    fn verify_detects_torn_payload() {
        let dir = tempfile::tempdir().unwrap();
        let f = create_segment(dir.path(), 1, 1).unwrap();
        let payload = b"hello fragment";
        let h = RecordHeader {
            payload_len: payload.len() as u32,
            fragment_number: 5,
            payload_crc: crc32fast::hash(payload),
        };
        use std::io::Write;
        (&f).write_all(&h.encode()).unwrap();
        (&f).write_all(payload).unwrap();
        let crc = crc32fast::hash(payload);
        assert!(verify_record(&f, 32, payload.len() as u32, 5, crc).unwrap());
        assert!(!verify_record(&f, 32, payload.len() as u32, 6, crc).unwrap());
        assert!(
            !verify_record(&f, 32, payload.len() as u32, 5, crc ^ 1).unwrap(),
            "not the record the index describes"
        );
        f.set_len(40).unwrap();
        assert!(!verify_record(&f, 32, payload.len() as u32, 5, crc).unwrap());
    }
}
