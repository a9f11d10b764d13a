//! RTP packets (RFC 3550 §5.1): the fixed header, CSRCs, the extension and padding
//! skipped, the payload borrowed. Pure.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("RTP packet shorter than its header")]
    Short,
    #[error("RTP version {0}, not 2")]
    Version(u8),
    #[error("RTP padding or extension runs past the packet")]
    BadLength,
}

pub fn parse(b: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    if b.len() < 12 {
        return Err(RtpError::Short);
    }
    let version = b[0] >> 6;
    if version != 2 {
        return Err(RtpError::Version(version));
    }
    let csrc = usize::from(b[0] & 0x0f);
    let mut start = 12 + 4 * csrc;
    if b[0] & 0x10 != 0 {
        let ext = b.get(start + 2..start + 4).ok_or(RtpError::BadLength)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        let pad = usize::from(*b.last().ok_or(RtpError::BadLength)?);
        end = end.checked_sub(pad).ok_or(RtpError::BadLength)?;
    }
    if start > end {
        return Err(RtpError::BadLength);
    }
    Ok(RtpPacket {
        marker: b[1] & 0x80 != 0,
        payload_type: b[1] & 0x7f,
        sequence: u16::from_be_bytes([b[2], b[3]]),
        timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        payload: &b[start..end],
    })
}

/// Writes a packet (no CSRCs, no extension).
pub fn write(out: &mut Vec<u8>, pt: u8, marker: bool, sequence: u16, timestamp: u32, ssrc: u32, payload: &[u8]) {
    out.push(0x80);
    out.push(pt | if marker { 0x80 } else { 0 });
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Puts UDP packets back in sequence order. Holds up to `depth` packets waiting for a
/// missing one, then gives up on it (counted as lost).
pub struct ReorderBuffer {
    next: Option<u16>,
    held: std::collections::BTreeMap<u16, Vec<u8>>,
    depth: usize,
}

impl ReorderBuffer {
    pub fn new(depth: usize) -> Self {
        ReorderBuffer { next: None, held: std::collections::BTreeMap::new(), depth }
    }

    /// Takes a packet; returns packets now in order, each with the count of packets
    /// lost just before it.
    pub fn push(&mut self, seq: u16, packet: Vec<u8>) -> Vec<(u64, Vec<u8>)> {
        let next = *self.next.get_or_insert(seq);
        let ahead = seq.wrapping_sub(next);
        if ahead >= 0x8000 {
            return Vec::new(); // late duplicate or older than what was released
        }
        self.held.insert(seq, packet);
        let mut out = Vec::new();
        let mut lost = 0u64;
        loop {
            let want = self.next.unwrap_or(seq);
            if let Some(p) = self.held.remove(&want) {
                out.push((std::mem::take(&mut lost), p));
                self.next = Some(want.wrapping_add(1));
            } else if self.held.len() > self.depth {
                // Skip to the oldest held packet.
                let oldest = *self.held.keys().min_by_key(|s| s.wrapping_sub(want)).unwrap_or(&want);
                lost += u64::from(oldest.wrapping_sub(want));
                self.next = Some(oldest);
            } else {
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut v = Vec::new();
        write(&mut v, 96, true, 7, 9000, 42, b"nal");
        let p = parse(&v).unwrap();
        assert_eq!(
            (p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc, p.payload),
            (true, 96, 7, 9000, 42, &b"nal"[..])
        );
        assert_eq!(parse(&v[..11]), Err(RtpError::Short));
        let mut padded = v.clone();
        padded[0] |= 0x20;
        padded.push(200);
        assert_eq!(parse(&padded), Err(RtpError::BadLength));
        let mut ext = v.clone();
        ext[0] |= 0x10;
        assert_eq!(parse(&ext), Err(RtpError::BadLength));
        v[0] = 0x40;
        assert_eq!(parse(&v), Err(RtpError::Version(1)));
    }

    #[test]
    fn reorder_buffer_restores_order_and_counts_gaps() {
        let mut r = ReorderBuffer::new(2);
        assert_eq!(r.push(10, vec![10]).len(), 1);
        assert!(r.push(12, vec![12]).is_empty());
        let out = r.push(11, vec![11]);
        assert_eq!(out.iter().map(|(l, p)| (*l, p[0])).collect::<Vec<_>>(), vec![(0, 11), (0, 12)]);
        // 13 never comes: after the buffer fills, it is skipped and counted.
        assert!(r.push(14, vec![14]).is_empty());
        assert!(r.push(15, vec![15]).is_empty());
        let out = r.push(16, vec![16]);
        assert_eq!(out.iter().map(|(l, p)| (*l, p[0])).collect::<Vec<_>>(), vec![(1, 14), (0, 15), (0, 16)]);
        assert!(r.push(9, vec![9]).is_empty(), "old packets are dropped");
        // Wrap-around.
        let mut r = ReorderBuffer::new(2);
        r.push(65535, vec![1]);
        assert_eq!(r.push(0, vec![2]).len(), 1);
    }
}
