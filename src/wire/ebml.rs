//! EBML (RFC 8794), the binary element syntax under Matroska, as pure functions over
//! bytes: element IDs and sizes (variable-length integers), element headers read from a
//! buffer that may stop anywhere (`Ok(None)` asks for more bytes), the scalar payloads
//! (unsigned and signed integers, floats, strings with Matroska's trailing NULs
//! stripped), and the writers that produce them, including the fixed-width sizes the
//! KVS producer SDK writes so a size can be patched later and the unknown size a live
//! Segment or Cluster carries.
//!
//! Ours rather than `webm-iterable`'s: that crate reads through `std::io::Read`, one
//! allocated tag at a time, where ingest needs a push parser that resumes at any chunk
//! boundary without copying payloads it skips, with a bound on every size and depth,
//! and a writer of the exact byte forms Kinesis Video consumers expect.

/// Why bytes are not EBML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EbmlError {
    #[error("an element ID starts with a zero byte (no length marker)")]
    BadId,
    #[error("an element ID of {0} bytes (at most 4)")]
    IdTooLong(usize),
    #[error("an element size starts with a zero byte (more than 8 bytes long)")]
    BadSize,
    #[error("a {what} of {len} bytes where {expected} are allowed")]
    BadLength { what: &'static str, len: usize, expected: &'static str },
    #[error("a string is not UTF-8")]
    NotUtf8,
}

/// An element's header: its ID (with the length marker bits kept, as specifications
/// write them: `0x1A45DFA3`), its payload size (`None`: unknown, a live master that
/// ends where something that cannot be its child begins), and the header's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u32,
    pub size: Option<u64>,
    pub len: usize,
}

/// A variable-length integer's length from its first byte (1 to 8), `None` for 0x00.
fn vint_len(first: u8) -> Option<usize> {
    (first != 0).then(|| first.leading_zeros() as usize + 1)
}

/// An element ID at the start of `buf`: (ID, bytes), or `None` if `buf` stops inside it.
pub fn read_id(buf: &[u8]) -> Result<Option<(u32, usize)>, EbmlError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    let len = vint_len(first).ok_or(EbmlError::BadId)?;
    if len > 4 {
        return Err(EbmlError::IdTooLong(len));
    }
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some((buf[..len].iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)), len)))
}

/// An element size at the start of `buf`: (size, bytes), `None` as the size when every
/// value bit is set (unknown); `None` overall if `buf` stops inside it.
pub fn read_size(buf: &[u8]) -> Result<Option<(Option<u64>, usize)>, EbmlError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    let len = vint_len(first).ok_or(EbmlError::BadSize)?;
    if buf.len() < len {
        return Ok(None);
    }
    let marker_cleared = u64::from(first) & (0xFFu64 >> len);
    let value = buf[1..len].iter().fold(marker_cleared, |acc, b| (acc << 8) | u64::from(*b));
    let all_ones = (1u64 << (7 * len)) - 1;
    Ok(Some(((value != all_ones).then_some(value), len)))
}

/// An element header at the start of `buf`, or `None` if `buf` stops inside it.
pub fn read_header(buf: &[u8]) -> Result<Option<Header>, EbmlError> {
    let Some((id, id_len)) = read_id(buf)? else { return Ok(None) };
    let Some((size, size_len)) = read_size(&buf[id_len..])? else { return Ok(None) };
    Ok(Some(Header { id, size, len: id_len + size_len }))
}

/// An unsigned integer payload (0 to 8 bytes, big-endian; empty is 0).
pub fn read_uint(payload: &[u8]) -> Result<u64, EbmlError> {
    if payload.len() > 8 {
        return Err(EbmlError::BadLength { what: "unsigned integer", len: payload.len(), expected: "0 to 8" });
    }
    Ok(payload.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// A signed integer payload (0 to 8 bytes, big-endian two's complement).
pub fn read_int(payload: &[u8]) -> Result<i64, EbmlError> {
    if payload.is_empty() {
        return Ok(0);
    }
    let u = read_uint(payload)?;
    let shift = 64 - 8 * payload.len() as u32;
    Ok(((u << shift) as i64) >> shift)
}

/// A float payload (0, 4 or 8 bytes, IEEE 754 big-endian).
pub fn read_float(payload: &[u8]) -> Result<f64, EbmlError> {
    match payload.len() {
        0 => Ok(0.0),
        4 => Ok(f64::from(f32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]))),
        8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(payload);
            Ok(f64::from_be_bytes(b))
        }
        len => Err(EbmlError::BadLength { what: "float", len, expected: "0, 4 or 8" }),
    }
}

/// A string payload (ASCII or UTF-8), without the trailing NULs Matroska allows (some
/// KVS producer builds pad names and codec IDs with them).
pub fn read_string(payload: &[u8]) -> Result<String, EbmlError> {
    let end = payload.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    std::str::from_utf8(&payload[..end]).map(str::to_string).map_err(|_| EbmlError::NotUtf8)
}

// ---- writing ------------------------------------------------------------------------

/// Appends an element ID (its bytes as written in specifications: `0x1F43B675`).
pub fn write_id(out: &mut Vec<u8>, id: u32) {
    let len = if id > 0x00FF_FFFF {
        4
    } else if id > 0xFFFF {
        3
    } else if id > 0xFF {
        2
    } else {
        1
    };
    out.extend_from_slice(&id.to_be_bytes()[4 - len..]);
}

/// The smallest size width that holds `value` (all-ones is reserved for unknown).
pub fn size_width(value: u64) -> usize {
    (1..=8).find(|w| value < (1u64 << (7 * w)) - 1).unwrap_or(8)
}

/// Appends a size in the smallest width that holds it.
pub fn write_size(out: &mut Vec<u8>, value: u64) {
    write_size_width(out, value, size_width(value));
}

/// Appends a size in exactly `width` bytes (1 to 8), as the producer SDK writes sizes it
/// may patch; the caller keeps `value` below the width's all-ones (unknown) value.
pub fn write_size_width(out: &mut Vec<u8>, value: u64, width: usize) {
    let width = width.clamp(size_width(value), 8);
    let marked = value | (1u64 << (7 * width));
    out.extend_from_slice(&marked.to_be_bytes()[8 - width..]);
}

/// The unknown size in its 8-byte form (`01 FF FF FF FF FF FF FF`).
pub const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// Appends an element whose payload is `payload`.
pub fn write_element(out: &mut Vec<u8>, id: u32, payload: &[u8]) {
    write_id(out, id);
    write_size(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// Appends an unsigned-integer element in the fewest bytes (at least one).
pub fn write_uint(out: &mut Vec<u8>, id: u32, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = (value.leading_zeros() / 8).min(7) as usize;
    write_element(out, id, &bytes[skip..]);
}

/// Appends an unsigned-integer element in exactly 8 bytes (Cluster timecodes, as the
/// producer SDK writes them).
pub fn write_uint8(out: &mut Vec<u8>, id: u32, value: u64) {
    write_element(out, id, &value.to_be_bytes());
}

/// Appends a float element (8 bytes).
pub fn write_float(out: &mut Vec<u8>, id: u32, value: f64) {
    write_element(out, id, &value.to_be_bytes());
}

/// Appends a string element.
pub fn write_string(out: &mut Vec<u8>, id: u32, value: &str) {
    write_element(out, id, value.as_bytes());
}

/// Appends a master element whose children `children` writes (its size measured after).
pub fn write_master(out: &mut Vec<u8>, id: u32, children: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    children(&mut inner);
    write_element(out, id, &inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sizes_and_headers_read_as_the_specification_writes_them() {
        assert_eq!(read_id(&[0x1A, 0x45, 0xDF, 0xA3]).unwrap(), Some((0x1A45_DFA3, 4)));
        assert_eq!(read_id(&[0xA3]).unwrap(), Some((0xA3, 1)));
        assert_eq!(read_id(&[0x1A, 0x45]).unwrap(), None, "more bytes needed");
        assert_eq!(read_id(&[0x00]).unwrap_err(), EbmlError::BadId);
        assert_eq!(read_id(&[0x08, 0, 0, 0, 0]).unwrap_err(), EbmlError::IdTooLong(5));
        assert_eq!(read_size(&[0x81]).unwrap(), Some((Some(1), 1)));
        assert_eq!(read_size(&[0x40, 0x02]).unwrap(), Some((Some(2), 2)));
        assert_eq!(read_size(&[0xFF]).unwrap(), Some((None, 1)), "1-byte unknown size");
        assert_eq!(read_size(&UNKNOWN_SIZE).unwrap(), Some((None, 8)), "8-byte unknown size");
        assert_eq!(read_size(&[0x01, 0, 0, 0, 0, 0, 0x01, 0x00]).unwrap(), Some((Some(256), 8)));
        assert_eq!(read_size(&[0x00]).unwrap_err(), EbmlError::BadSize);
        let h = read_header(&[0x18, 0x53, 0x80, 0x67, 0xFF]).unwrap().unwrap();
        assert_eq!(h, Header { id: 0x1853_8067, size: None, len: 5 });
        assert_eq!(read_header(&[0x18, 0x53, 0x80, 0x67]).unwrap(), None);
    }

    #[test]
    fn scalars_read_and_write_round_trip() {
        for v in [0u64, 1, 127, 128, 0xFFFF, 1 << 40, u64::MAX] {
            let mut out = Vec::new();
            write_uint(&mut out, 0xE7, v);
            let h = read_header(&out).unwrap().unwrap();
            assert_eq!(read_uint(&out[h.len..]).unwrap(), v);
        }
        assert_eq!(read_int(&[0xFF, 0xFE]).unwrap(), -2);
        assert_eq!(read_int(&[0x7F]).unwrap(), 127);
        assert_eq!(read_float(&48000.0f64.to_be_bytes()).unwrap(), 48000.0);
        assert_eq!(read_float(&44100.0f32.to_be_bytes()).unwrap(), 44100.0);
        assert!(read_float(&[0; 3]).is_err());
        assert_eq!(read_string(b"V_MPEG4/ISO/AVC\0\0").unwrap(), "V_MPEG4/ISO/AVC");
        assert!(read_string(&[0xFF, 0xFE]).is_err());
        assert!(read_uint(&[0; 9]).is_err());
    }

    #[test]
    fn sizes_take_the_width_asked_for_or_the_smallest_that_holds_them() {
        let mut out = Vec::new();
        write_size_width(&mut out, 4, 8);
        assert_eq!(out, [0x01, 0, 0, 0, 0, 0, 0, 4]);
        out.clear();
        write_size_width(&mut out, 35, 2);
        assert_eq!(out, [0x40, 35]);
        out.clear();
        write_size(&mut out, 126);
        assert_eq!(out, [0xFE]);
        out.clear();
        write_size(&mut out, 127);
        assert_eq!(out, [0x40, 0x7F], "127 in one byte would read as unknown");
        for v in [0u64, 126, 127, 16_382, 16_383, 1 << 30, (1 << 56) - 2] {
            let mut out = Vec::new();
            write_size(&mut out, v);
            assert_eq!(read_size(&out).unwrap(), Some((Some(v), out.len())), "{v}");
        }
        let mut out = Vec::new();
        write_id(&mut out, 0x1F43_B675);
        write_id(&mut out, 0xA3);
        write_id(&mut out, 0x4286);
        assert_eq!(out, [0x1F, 0x43, 0xB6, 0x75, 0xA3, 0x42, 0x86]);
    }
}
