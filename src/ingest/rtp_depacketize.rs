//! RTP payloads back into samples: H.264 (RFC 6184: single NAL, STAP-A, FU-A), H.265
//! (RFC 7798: single, AP, FU), AAC (RFC 3640 AAC-hbr) and Opus (RFC 7587); a reorder
//! buffer for UDP; sequence-gap accounting. Sans-IO: packets in, access units out.

use std::collections::BTreeMap;

use crate::media::h264::push_length_prefixed;
use crate::media::CodecParams;
use crate::wire::rtp::RtpPacket;

/// One access unit (video) or frame (audio) at its RTP timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub rtp_ts: u32,
    /// Video: length-prefixed NAL units; audio: the raw frame.
    pub data: Vec<u8>,
    pub keyframe: bool,
    /// Parameter sets seen in band (H.264: SPS, PPS; H.265: VPS, SPS, PPS).
    pub parameter_sets: Vec<Vec<u8>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DepacketizeStats {
    pub packets: u64,
    /// Packets missing from the sequence.
    pub lost: u64,
    /// Units dropped because a packet of theirs was lost or malformed.
    pub dropped_units: u64,
    pub malformed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    H264,
    H265,
    Aac { size_bits: u32, index_bits: u32 },
    Opus,
}

pub struct Depacketizer {
    kind: Kind,
    cur_ts: Option<u32>,
    nals: Vec<Vec<u8>>,
    fragment: Option<Vec<u8>>,
    broken: bool,
    pub stats: DepacketizeStats,
}

impl Depacketizer {
    /// A depacketizer for a track's codec; AAC takes its `sizelength`/`indexlength`.
    pub fn new(params_kind: &CodecParams, fmtp: &BTreeMap<String, String>) -> Self {
        let num = |k: &str, d: u32| fmtp.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        let kind = match params_kind {
            CodecParams::H264 { .. } => Kind::H264,
            CodecParams::H265 { .. } => Kind::H265,
            CodecParams::Aac { .. } => {
                Kind::Aac { size_bits: num("sizelength", 13), index_bits: num("indexlength", 3) }
            }
            CodecParams::Opus { .. } => Kind::Opus,
        };
        Depacketizer {
            kind,
            cur_ts: None,
            nals: Vec::new(),
            fragment: None,
            broken: false,
            stats: DepacketizeStats::default(),
        }
    }

    /// Feeds one packet, in sequence order; `lost_before` says packets were missing just
    /// before it. Returns the units it completed.
    pub fn push(&mut self, p: &RtpPacket, lost_before: u64) -> Vec<Unit> {
        self.stats.packets += 1;
        self.stats.lost += lost_before;
        match self.kind {
            Kind::Aac { size_bits, index_bits } => self.aac(p, size_bits, index_bits),
            Kind::Opus => {
                vec![Unit { rtp_ts: p.timestamp, data: p.payload.to_vec(), keyframe: true, parameter_sets: Vec::new() }]
            }
            Kind::H264 | Kind::H265 => {
                let mut out = Vec::new();
                if lost_before > 0 {
                    self.broken = true;
                    self.fragment = None;
                }
                if self.cur_ts.is_some_and(|t| t != p.timestamp) {
                    out.extend(self.finish());
                }
                self.cur_ts = Some(p.timestamp);
                let ok = if self.kind == Kind::H264 { self.h264(p.payload) } else { self.h265(p.payload) };
                if !ok {
                    self.stats.malformed += 1;
                    self.broken = true;
                }
                if p.marker {
                    out.extend(self.finish());
                }
                out
            }
        }
    }

    fn finish(&mut self) -> Option<Unit> {
        let nals = std::mem::take(&mut self.nals);
        let ts = self.cur_ts.take()?;
        self.fragment = None;
        if std::mem::take(&mut self.broken) {
            self.stats.dropped_units += 1;
            return None;
        }
        if nals.is_empty() {
            return None;
        }
        let h264 = self.kind == Kind::H264;
        let mut data = Vec::with_capacity(nals.iter().map(|n| n.len() + 4).sum());
        let mut keyframe = false;
        let mut parameter_sets = Vec::new();
        for n in &nals {
            let (key, param) = if h264 {
                let t = n[0] & 0x1f;
                (t == 5, t == 7 || t == 8)
            } else {
                let t = (n[0] >> 1) & 0x3f;
                ((16..=21).contains(&t), (32..=34).contains(&t))
            };
            keyframe |= key;
            if param {
                parameter_sets.push(n.clone());
            }
            push_length_prefixed(&mut data, n);
        }
        Some(Unit { rtp_ts: ts, data, keyframe, parameter_sets })
    }

    fn h264(&mut self, p: &[u8]) -> bool {
        let Some(&h) = p.first() else { return false };
        match h & 0x1f {
            1..=23 => self.nals.push(p.to_vec()),
            24 => {
                let mut at = 1;
                while at + 2 <= p.len() {
                    let n = usize::from(u16::from_be_bytes([p[at], p[at + 1]]));
                    let Some(nal) = p.get(at + 2..at + 2 + n).filter(|n| !n.is_empty()) else { return false };
                    self.nals.push(nal.to_vec());
                    at += 2 + n;
                }
            }
            28 => {
                let Some(&fu) = p.get(1) else { return false };
                return self.fragment_piece(fu, &[(h & 0xe0) | (fu & 0x1f)], &p[2..]);
            }
            _ => return false,
        }
        true
    }

    /// One piece of a fragmentation unit (FU-A, H.265 FU): `fu` holds the start and end
    /// bits, `header` the reconstructed NAL header for a start piece.
    fn fragment_piece(&mut self, fu: u8, header: &[u8], body: &[u8]) -> bool {
        let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
        if start {
            let mut nal = header.to_vec();
            nal.extend_from_slice(body);
            self.fragment = Some(nal);
        } else if let Some(f) = self.fragment.as_mut() {
            f.extend_from_slice(body);
        } else {
            // A piece of a unit whose start was lost is already counted as lost.
            return self.broken;
        }
        if end {
            if let Some(f) = self.fragment.take() {
                self.nals.push(f);
            }
        }
        true
    }

    fn h265(&mut self, p: &[u8]) -> bool {
        if p.len() < 3 {
            return false;
        }
        match (p[0] >> 1) & 0x3f {
            0..=47 => self.nals.push(p.to_vec()),
            48 => {
                let mut at = 2;
                while at + 2 <= p.len() {
                    let n = usize::from(u16::from_be_bytes([p[at], p[at + 1]]));
                    let Some(nal) = p.get(at + 2..at + 2 + n).filter(|n| n.len() >= 2) else { return false };
                    self.nals.push(nal.to_vec());
                    at += 2 + n;
                }
            }
            49 => {
                let fu = p[2];
                return self.fragment_piece(fu, &[(p[0] & 0x81) | ((fu & 0x3f) << 1), p[1]], &p[3..]);
            }
            _ => return false,
        }
        true
    }

    fn aac(&mut self, p: &RtpPacket, size_bits: u32, index_bits: u32) -> Vec<Unit> {
        let header_bits = size_bits + index_bits;
        let bad = |s: &mut Self| {
            s.stats.malformed += 1;
            s.stats.dropped_units += 1;
            Vec::new()
        };
        if p.payload.len() < 2 || header_bits == 0 || header_bits > 32 {
            return bad(self);
        }
        let headers_bits = u32::from(u16::from_be_bytes([p.payload[0], p.payload[1]]));
        let headers_len = headers_bits.div_ceil(8) as usize;
        let Some(headers) = p.payload.get(2..2 + headers_len) else { return bad(self) };
        let mut data = &p.payload[2 + headers_len..];
        let count = headers_bits / header_bits;
        let mut out = Vec::with_capacity(count as usize);
        for i in 0..count {
            let bit = (i * header_bits) as usize;
            let mut v: u64 = 0;
            for b in 0..header_bits as usize {
                let at = bit + b;
                v = (v << 1) | u64::from((headers[at / 8] >> (7 - at % 8)) & 1);
            }
            let size = (v >> index_bits) as usize;
            if size > data.len() {
                // A fragmented AU (larger than one packet) is not reassembled.
                return bad(self);
            }
            out.push(Unit {
                rtp_ts: p.timestamp.wrapping_add(i * 1024),
                data: data[..size].to_vec(),
                keyframe: true,
                parameter_sets: Vec::new(),
            });
            data = &data[size..];
        }
        out
    }
}

/// Puts UDP packets back in sequence order. Holds up to `depth` packets waiting for a
/// missing one, then gives up on it (counted as lost).
pub struct ReorderBuffer {
    next: Option<u16>,
    held: BTreeMap<u16, Vec<u8>>,
    depth: usize,
}

impl ReorderBuffer {
    pub fn new(depth: usize) -> Self {
        ReorderBuffer { next: None, held: BTreeMap::new(), depth }
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
    use crate::wire::rtp;

    fn pkt(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        rtp::write(&mut v, 96, marker, seq, ts, 1, payload);
        v
    }

    fn h264() -> Depacketizer {
        Depacketizer::new(&CodecParams::H264 { sps: vec![], pps: vec![] }, &BTreeMap::new())
    }

    #[test]
    fn h264_single_stap_and_fu() {
        let mut d = h264();
        // STAP-A with SPS and PPS, then an IDR in three FU-A pieces.
        let stap = [24, 0, 2, 0x67, 1, 0, 2, 0x68, 2];
        assert!(d.push(&rtp::parse(&pkt(1, 100, false, &stap)).unwrap(), 0).is_empty());
        d.push(&rtp::parse(&pkt(2, 100, false, &[0x7c, 0x85, 1, 2])).unwrap(), 0);
        d.push(&rtp::parse(&pkt(3, 100, false, &[0x7c, 0x05, 3])).unwrap(), 0);
        let out = d.push(&rtp::parse(&pkt(4, 100, true, &[0x7c, 0x45, 4])).unwrap(), 0);
        assert_eq!(out.len(), 1);
        let u = &out[0];
        assert!(u.keyframe);
        assert_eq!(u.parameter_sets, vec![vec![0x67, 1], vec![0x68, 2]]);
        assert_eq!(&u.data[u.data.len() - 9..], &[0, 0, 0, 5, 0x65, 1, 2, 3, 4]);
        // A P-frame whose middle piece is lost is dropped, the next one is whole.
        d.push(&rtp::parse(&pkt(5, 200, false, &[0x5c, 0x81, 1])).unwrap(), 0);
        assert!(d.push(&rtp::parse(&pkt(7, 200, true, &[0x5c, 0x41, 2])).unwrap(), 1).is_empty());
        let out = d.push(&rtp::parse(&pkt(8, 300, true, &[0x41, 9])).unwrap(), 0);
        assert_eq!(out.len(), 1);
        assert!(!out[0].keyframe);
        assert_eq!((d.stats.lost, d.stats.dropped_units), (1, 1));
        // Garbage is counted, not a panic.
        d.push(&rtp::parse(&pkt(9, 400, true, &[0x5c])).unwrap(), 0);
        d.push(&rtp::parse(&pkt(10, 500, true, &[24, 0, 50, 1])).unwrap(), 0);
        assert_eq!(d.stats.malformed, 2);
    }

    #[test]
    fn aac_hbr_frames() {
        let mut fmtp = BTreeMap::new();
        fmtp.insert("sizelength".into(), "13".into());
        fmtp.insert("indexlength".into(), "3".into());
        let mut d =
            Depacketizer::new(&CodecParams::Aac { config: vec![0x12, 0x10], sample_rate: 44100, channels: 2 }, &fmtp);
        // Two AU headers (size 3 and 2), 32 bits of headers.
        let payload = [0x00, 0x20, 0x00, 0x18, 0x00, 0x10, 1, 2, 3, 4, 5];
        let out = d.push(&rtp::parse(&pkt(1, 1000, true, &payload)).unwrap(), 0);
        assert_eq!(
            out.iter().map(|u| (u.rtp_ts, u.data.clone())).collect::<Vec<_>>(),
            vec![(1000, vec![1, 2, 3]), (2024, vec![4, 5])]
        );
        assert!(d.push(&rtp::parse(&pkt(2, 3048, true, &[0x00, 0x10, 0xff, 0xf8, 1])).unwrap(), 0).is_empty());
        assert_eq!(d.stats.malformed, 1);
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
