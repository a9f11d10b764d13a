//! What H.264 and H.265 share: NAL units in length-prefixed (AVCC/HVCC) samples,
//! emulation-prevention bytes, the Exp-Golomb bit reader their parameter sets are
//! written in, and the RTP access-unit assembler and fragmenter whose shape RFC 6184
//! and RFC 7798 have in common. The codec-specific parts (NAL types, aggregation and
//! fragmentation headers) are in [`super::h264`] and [`super::h265`].

use super::AccessUnit;

/// Appends `nal` with a 4-byte big-endian length prefix.
pub fn push_length_prefixed(out: &mut Vec<u8>, nal: &[u8]) {
    out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
    out.extend_from_slice(nal);
}

/// The NAL units of a length-prefixed (AVCC/HVCC, 4-byte lengths) sample; a truncated
/// last unit is left out.
pub fn nal_units(sample: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= sample.len() {
        let n = u32::from_be_bytes([sample[at], sample[at + 1], sample[at + 2], sample[at + 3]]) as usize;
        let Some(nal) = at.checked_add(4 + n).and_then(|end| sample.get(at + 4..end)) else { break };
        if !nal.is_empty() {
            out.push(nal);
        }
        at += 4 + n;
    }
    out
}

/// A length-prefixed sample rewritten as an Annex B byte stream (start codes), led by
/// `parameter_sets` when given: what a decoder fed without an out-of-band
/// configuration record needs for a keyframe. A truncated last unit is left out.
pub fn to_annex_b(parameter_sets: &[Vec<u8>], sample: &[u8]) -> Vec<u8> {
    const START: [u8; 4] = [0, 0, 0, 1];
    let sets: usize = parameter_sets.iter().map(|s| s.len() + 4).sum();
    let mut out = Vec::with_capacity(sets + sample.len());
    for set in parameter_sets {
        out.extend_from_slice(&START);
        out.extend_from_slice(set);
    }
    for nal in nal_units(sample) {
        out.extend_from_slice(&START);
        out.extend_from_slice(nal);
    }
    out
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`; H.264 7.4.1, H.265 7.4.2).
pub fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// An Exp-Golomb bit reader over an RBSP (H.264 9.1, H.265 9.2).
pub struct Bits<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Bits<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Bits { b, at: 0 }
    }

    pub fn bit(&mut self) -> Option<u32> {
        let byte = *self.b.get(self.at / 8)?;
        let v = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(u32::from(v))
    }

    pub fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }

    /// ue(v).
    pub fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    /// se(v).
    pub fn se(&mut self) -> Option<i32> {
        let v = self.ue()?;
        Some(if v % 2 == 1 { v.div_ceil(2) as i32 } else { -((v / 2) as i32) })
    }
}

/// What a NAL unit is to the assembler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NalClass {
    /// Starts a random-access picture (IDR; H.265 IRAP).
    pub keyframe: bool,
    /// A parameter set (SPS, PPS; H.265 VPS too).
    pub parameter_set: bool,
}

/// What ending an access unit gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    Unit(AccessUnit),
    /// It lost a packet or had a malformed one: dropped whole.
    Dropped,
}

/// The most one access unit may hold (its NAL units, each counted with
/// [`NAL_OVERHEAD`]): far above a 4K keyframe, far below what a publisher could make
/// the server buffer by never ending a unit. A unit past it is dropped whole.
pub const MAX_ACCESS_UNIT_BYTES: usize = 16 * 1024 * 1024;
/// What one NAL unit costs beyond its bytes (so a million one-byte NAL units count).
const NAL_OVERHEAD: usize = 32;

/// Collects the NAL units of one access unit from RTP payloads: all packets of a unit
/// share a timestamp and the last one has the marker bit (RFC 6184 5.1, RFC 7798 4.1).
/// A unit that lost a packet, or had a malformed one, or grew past
/// [`MAX_ACCESS_UNIT_BYTES`], is dropped whole.
#[derive(Default)]
pub struct NalAssembler {
    cur_ts: Option<u32>,
    nals: Vec<Vec<u8>>,
    fragment: Option<Vec<u8>>,
    broken: bool,
    /// Bytes held for the unit being collected (with the per-NAL overhead).
    held: usize,
}

impl NalAssembler {
    /// Starts the packet at `rtp_ts`: returns the unit the previous timestamp completed.
    /// `lost_before` says packets were missing just before this one.
    pub fn begin(&mut self, rtp_ts: u32, lost_before: u64, classify: fn(&[u8]) -> NalClass) -> Option<Assembled> {
        if lost_before > 0 {
            self.broken = true;
            self.fragment = None;
        }
        let done = if self.cur_ts.is_some_and(|t| t != rtp_ts) { self.finish(classify) } else { None };
        self.cur_ts = Some(rtp_ts);
        done
    }

    pub fn push_nal(&mut self, nal: &[u8]) {
        if self.hold(nal.len() + NAL_OVERHEAD) {
            self.nals.push(nal.to_vec());
        }
    }

    /// Counts `n` more bytes against the unit; past the cap, the unit is broken and
    /// what it held is let go at once.
    fn hold(&mut self, n: usize) -> bool {
        if self.broken {
            return false;
        }
        self.held = self.held.saturating_add(n);
        if self.held > MAX_ACCESS_UNIT_BYTES {
            self.broken = true;
            self.nals = Vec::new();
            self.fragment = None;
            return false;
        }
        true
    }

    /// Marks the unit being collected as broken (a malformed packet).
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// One piece of a fragmentation unit (H.264 FU-A, H.265 FU): `start`/`end` are the
    /// S and E bits, `header` the reconstructed NAL header (used on the start piece).
    /// `false` when a piece arrives with no start before it and no loss explains it.
    pub fn fragment_piece(&mut self, start: bool, end: bool, header: &[u8], body: &[u8]) -> bool {
        let cost = if start { header.len() + body.len() + NAL_OVERHEAD } else { body.len() };
        if (start || self.fragment.is_some()) && !self.hold(cost) {
            return true; // over the cap: counted as a dropped unit when it ends
        }
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

    /// Ends the unit being collected; `None` if there was none.
    pub fn finish(&mut self, classify: fn(&[u8]) -> NalClass) -> Option<Assembled> {
        let nals = std::mem::take(&mut self.nals);
        self.held = 0;
        let ts = self.cur_ts.take()?;
        self.fragment = None;
        if std::mem::take(&mut self.broken) {
            return Some(Assembled::Dropped);
        }
        if nals.is_empty() {
            return None;
        }
        let mut data = Vec::with_capacity(nals.iter().map(|n| n.len() + 4).sum());
        let mut keyframe = false;
        let mut parameter_sets = Vec::new();
        for n in &nals {
            let class = classify(n);
            keyframe |= class.keyframe;
            if class.parameter_set {
                parameter_sets.push(n.clone());
            }
            push_length_prefixed(&mut data, n);
        }
        Some(Assembled::Unit(AccessUnit { rtp_ts: ts, data, keyframe, parameter_sets }))
    }
}

/// Splits `body` into fragmentation-unit payloads of at most `max_payload` bytes: each
/// is `header`, then a FU header byte (`fu_type` with S on the first, E on the last),
/// then its piece of the body.
pub fn fragment(out: &mut Vec<Vec<u8>>, max_payload: usize, header: &[u8], fu_type: u8, body: &[u8]) {
    let piece = max_payload.saturating_sub(header.len() + 1).max(1);
    let pieces: Vec<&[u8]> = body.chunks(piece).collect();
    for (i, p) in pieces.iter().enumerate() {
        let mut v = Vec::with_capacity(header.len() + 1 + p.len());
        v.extend_from_slice(header);
        let mut fu = fu_type;
        if i == 0 {
            fu |= 0x80;
        }
        if i + 1 == pieces.len() {
            fu |= 0x40;
        }
        v.push(fu);
        v.extend_from_slice(p);
        out.push(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(unescape(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
    }

    #[test]
    fn annex_b_puts_start_codes_before_the_sets_and_each_unit() {
        let mut s = Vec::new();
        push_length_prefixed(&mut s, &[0x65, 9]);
        push_length_prefixed(&mut s, &[0x06]);
        s.extend_from_slice(&[0, 0, 0, 9, 1]); // truncated
        let sets = vec![vec![0x67, 1], vec![0x68]];
        assert_eq!(
            to_annex_b(&sets, &s),
            vec![0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 0, 0, 0, 1, 0x65, 9, 0, 0, 0, 1, 6]
        );
        assert_eq!(to_annex_b(&[], &s), vec![0, 0, 0, 1, 0x65, 9, 0, 0, 0, 1, 6]);
    }

    #[test]
    fn nal_units_of_a_sample_stop_at_a_truncated_unit() {
        let mut s = Vec::new();
        push_length_prefixed(&mut s, &[0x67, 1]);
        push_length_prefixed(&mut s, &[]);
        push_length_prefixed(&mut s, &[0x65, 2, 3]);
        s.extend_from_slice(&[0, 0, 0, 9, 1]);
        assert_eq!(nal_units(&s), vec![&[0x67, 1][..], &[0x65, 2, 3][..]]);
        assert!(nal_units(&[0xff, 0xff, 0xff, 0xff, 1]).is_empty());
    }

    #[test]
    fn exp_golomb() {
        // 1 → 0, 010 → 1, 011 → 2, 00100 → 3; se: 010 → +1, 011 → -1.
        let mut b = Bits::new(&[0b1010_0110, 0b0100_0000]);
        assert_eq!((b.ue(), b.ue(), b.ue(), b.ue()), (Some(0), Some(1), Some(2), Some(3)));
        let mut b = Bits::new(&[0b0100_1100]);
        assert_eq!((b.se(), b.se()), (Some(1), Some(-1)));
        assert_eq!(Bits::new(&[0, 0, 0, 0, 0]).ue(), None);
    }

    fn classify(_: &[u8]) -> NalClass {
        NalClass { keyframe: true, parameter_set: false }
    }

    /// A publisher that never ends its access unit (FU-A pieces without an end bit,
    /// one timestamp) holds at most the cap; the unit is then dropped and the next one
    /// assembles normally.
    #[test]
    fn a_unit_that_never_ends_is_capped_and_dropped() {
        let mut asm = NalAssembler::default();
        assert_eq!(asm.begin(1, 0, classify), None);
        let piece = vec![0xAB; 60_000];
        assert!(asm.fragment_piece(true, false, &[0x65], &piece));
        for _ in 0..(MAX_ACCESS_UNIT_BYTES / piece.len() + 10) {
            asm.fragment_piece(false, false, &[0x65], &piece);
            assert!(asm.held <= MAX_ACCESS_UNIT_BYTES + piece.len() + 64);
        }
        assert!(asm.fragment.is_none() && asm.nals.is_empty(), "what it held was let go");
        assert_eq!(asm.begin(2, 0, classify), Some(Assembled::Dropped));
        asm.push_nal(&[0x65, 1, 2]);
        match asm.begin(3, 0, classify) {
            Some(Assembled::Unit(u)) => assert_eq!(u.data, vec![0, 0, 0, 3, 0x65, 1, 2]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fragments_carry_start_and_end_bits() {
        let mut out = Vec::new();
        fragment(&mut out, 6, &[0x7c], 0x05, &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(out, vec![vec![0x7c, 0x85, 1, 2, 3, 4], vec![0x7c, 0x05, 5, 6, 7, 8], vec![0x7c, 0x45, 9]]);
    }
}
