//! What the index keeps about fragments and segments, and the fixed binary encodings
//! of those records (the embedded index stores them as they are; see
//! [`super::embedded::index`] for its key layout).

pub type StreamId = u64;

/// Reads the big-endian u64 at `at`; `None` if `b` is too short.
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// Where a stored fragment is and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentMeta {
    pub fragment_number: u64,
    pub producer_ts_us: i64,
    pub server_ts_us: i64,
    pub duration_us: i64,
    pub segment_id: u64,
    /// Offset of the fragment's bytes (after the record header) in the segment file.
    pub offset: u64,
    pub len: u32,
    pub crc: u32,
    pub init_id: u32,
    pub chunk_count: u16,
    pub flags: u16,
}

pub const FLAG_KEYFRAME: u16 = 1;

impl FragmentMeta {
    /// When the fragment starts on the `kind` clock (µs).
    pub fn start_us(&self, kind: super::TimeKind) -> i64 {
        match kind {
            super::TimeKind::Producer => self.producer_ts_us,
            super::TimeKind::Server => self.server_ts_us,
        }
    }

    pub const ENCODED_LEN: usize = 64;

    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut b = [0u8; Self::ENCODED_LEN];
        b[0..8].copy_from_slice(&self.fragment_number.to_be_bytes());
        b[8..16].copy_from_slice(&self.producer_ts_us.to_be_bytes());
        b[16..24].copy_from_slice(&self.server_ts_us.to_be_bytes());
        b[24..32].copy_from_slice(&self.duration_us.to_be_bytes());
        b[32..40].copy_from_slice(&self.segment_id.to_be_bytes());
        b[40..48].copy_from_slice(&self.offset.to_be_bytes());
        b[48..52].copy_from_slice(&self.len.to_be_bytes());
        b[52..56].copy_from_slice(&self.crc.to_be_bytes());
        b[56..60].copy_from_slice(&self.init_id.to_be_bytes());
        b[60..62].copy_from_slice(&self.chunk_count.to_be_bytes());
        b[62..64].copy_from_slice(&self.flags.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != Self::ENCODED_LEN {
            return None;
        }
        let u64_at = |i: usize| u64_at(b, i);
        let u32_at = |i: usize| -> Option<u32> { Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?)) };
        let u16_at = |i: usize| -> Option<u16> { Some(u16::from_be_bytes(b.get(i..i + 2)?.try_into().ok()?)) };
        Some(FragmentMeta {
            fragment_number: u64_at(0)?,
            producer_ts_us: u64_at(8)? as i64,
            server_ts_us: u64_at(16)? as i64,
            duration_us: u64_at(24)? as i64,
            segment_id: u64_at(32)?,
            offset: u64_at(40)?,
            len: u32_at(48)?,
            crc: u32_at(52)?,
            init_id: u32_at(56)?,
            chunk_count: u16_at(60)?,
            flags: u16_at(62)?,
        })
    }

    pub fn keyframe(&self) -> bool {
        self.flags & FLAG_KEYFRAME != 0
    }

    /// Where the fragment's record (header and bytes) ends in its segment file.
    pub fn record_end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// A summary of one segment file, kept current in the same batch as its fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentMeta {
    pub segment_id: u64,
    pub first_fragment: u64,
    pub last_fragment: u64,
    pub fragment_count: u64,
    pub min_server_ts_us: i64,
    pub max_server_ts_us: i64,
    pub created_us: i64,
    pub bytes: u64,
}

impl SegmentMeta {
    pub const ENCODED_LEN: usize = 64;

    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut b = [0u8; Self::ENCODED_LEN];
        for (i, v) in [
            self.segment_id,
            self.first_fragment,
            self.last_fragment,
            self.fragment_count,
            self.min_server_ts_us as u64,
            self.max_server_ts_us as u64,
            self.created_us as u64,
            self.bytes,
        ]
        .iter()
        .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != Self::ENCODED_LEN {
            return None;
        }
        let v = |i: usize| u64_at(b, i * 8);
        Some(SegmentMeta {
            segment_id: v(0)?,
            first_fragment: v(1)?,
            last_fragment: v(2)?,
            fragment_count: v(3)?,
            min_server_ts_us: v(4)? as i64,
            max_server_ts_us: v(5)? as i64,
            created_us: v(6)? as i64,
            bytes: v(7)?,
        })
    }
}

/// Numbers a stream must never hand out again, kept when retention removes the
/// fragments and segments that carried them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HighWater {
    pub fragment_number: u64,
    pub segment_id: u64,
}

impl HighWater {
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.fragment_number.to_be_bytes());
        b[8..].copy_from_slice(&self.segment_id.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        Some(HighWater { fragment_number: u64_at(b, 0)?, segment_id: u64_at(b, 8)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_meta_round_trip() {
        let m = FragmentMeta {
            fragment_number: 42,
            producer_ts_us: -5,
            server_ts_us: 1_700_000_000_000_000,
            duration_us: 2_000_000,
            segment_id: 3,
            offset: 4096,
            len: 123_456,
            crc: 0xdead_beef,
            init_id: 2,
            chunk_count: 4,
            flags: FLAG_KEYFRAME,
        };
        assert_eq!(FragmentMeta::decode(&m.encode()), Some(m));
        assert_eq!(FragmentMeta::decode(&[0u8; 10]), None);
    }

    #[test]
    fn segment_meta_round_trip() {
        let s = SegmentMeta {
            segment_id: 1,
            first_fragment: 2,
            last_fragment: 9,
            fragment_count: 8,
            bytes: 77,
            ..Default::default()
        };
        assert_eq!(SegmentMeta::decode(&s.encode()), Some(s));
    }
}
