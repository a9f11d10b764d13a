//! The chunks of a stream's newest fragments while they are received: the fragment
//! being muxed or uploaded (its number not yet given) and the few just before it.
//! Low-latency HLS lists them as parts and serves them from here, before the fragment
//! is whole, numbered or durable.
//!
//! One producer at a time owns the parts of a stream: a producer claims them
//! ([`LiveParts::claim`]) and its pushes are ignored once another has claimed them, so
//! two producers on one stream (say, PutMedia while an RTSP publisher runs) cannot
//! interleave chunks of different fragments. Memory is bounded by the producers' own
//! fragment limits: the open fragment and [`KEPT_FRAGMENTS`] closed ones.

use std::collections::VecDeque;

use bytes::Bytes;

/// Closed fragments whose parts stay in memory (LL-HLS lists parts for the last few
/// segments).
pub const KEPT_FRAGMENTS: usize = 4;

/// One chunk (`moof`+`mdat`) of a fragment: an LL-HLS part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivePart {
    pub bytes: Bytes,
    pub duration_us: i64,
    /// It starts with a keyframe (decodable alone).
    pub independent: bool,
}

/// A fragment's parts so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartedFragment {
    /// The fragment's number: given by the store once closed; while open, the number
    /// the store is expected to give it (the next one when its first part arrived).
    pub number: u64,
    pub init_id: u32,
    pub parts: Vec<LivePart>,
    /// Every part is here (the fragment was submitted to the store).
    pub complete: bool,
}

/// What a part request finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartLookup {
    Ready(Bytes),
    /// The fragment is open and the part may still come.
    NotYet,
    /// Not in memory: the fragment closed without it, or is older than what is kept.
    Absent,
}

#[derive(Debug, Default)]
pub struct LiveParts {
    owner: u64,
    claims: u64,
    /// Oldest first; at most one open fragment, always the last.
    fragments: VecDeque<PartedFragment>,
}

impl LiveParts {
    /// Makes a new producer the owner; the previous owner's open fragment is dropped.
    pub fn claim(&mut self) -> u64 {
        self.claims += 1;
        self.owner = self.claims;
        self.drop_open();
        self.owner
    }

    /// Adds a part to the owner's open fragment, opening one numbered `expected` if
    /// none is. `false`: the producer no longer owns the parts (nothing changed).
    pub fn push(&mut self, producer: u64, expected: u64, init_id: u32, part: LivePart) -> bool {
        if producer != self.owner {
            return false;
        }
        match self.fragments.back_mut() {
            Some(open) if !open.complete => open.parts.push(part),
            _ => self.fragments.push_back(PartedFragment {
                number: expected,
                init_id,
                parts: vec![part],
                complete: false,
            }),
        }
        true
    }

    /// The owner's open fragment was submitted as `number`: it is complete (and takes
    /// that number, whatever was expected). Older closed fragments beyond
    /// [`KEPT_FRAGMENTS`] are dropped.
    pub fn close(&mut self, producer: u64, number: u64) {
        if producer != self.owner {
            return;
        }
        if let Some(open) = self.fragments.back_mut().filter(|f| !f.complete) {
            open.number = number;
            open.complete = true;
        }
        while self.fragments.len() > KEPT_FRAGMENTS {
            self.fragments.pop_front();
        }
    }

    /// The owner's open fragment will not be stored (rejected, or the producer ended).
    pub fn abandon(&mut self, producer: u64) {
        if producer == self.owner {
            self.drop_open();
        }
    }

    pub fn clear(&mut self) {
        self.fragments.clear();
    }

    fn drop_open(&mut self) {
        if self.fragments.back().is_some_and(|f| !f.complete) {
            self.fragments.pop_back();
        }
    }

    /// The fragments numbered `from` or later, oldest first.
    pub fn since(&self, from: u64) -> Vec<PartedFragment> {
        self.fragments.iter().filter(|f| f.number >= from).cloned().collect()
    }

    pub fn part(&self, number: u64, index: usize) -> PartLookup {
        match self.fragments.iter().rev().find(|f| f.number == number) {
            Some(f) => match f.parts.get(index) {
                Some(p) => PartLookup::Ready(p.bytes.clone()),
                None if !f.complete => PartLookup::NotYet,
                None => PartLookup::Absent,
            },
            // The fragment after the newest one known may still open.
            None if self.fragments.back().is_none_or(|f| f.complete && number == f.number + 1) => PartLookup::NotYet,
            None => PartLookup::Absent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: u8, independent: bool) -> LivePart {
        LivePart { bytes: Bytes::from(vec![n]), duration_us: 200_000, independent }
    }

    #[test]
    fn parts_are_grouped_by_fragment_and_renumbered_on_close() {
        let mut p = LiveParts::default();
        let a = p.claim();
        assert!(p.push(a, 7, 1, part(1, true)));
        assert!(p.push(a, 7, 1, part(2, false)));
        assert_eq!(p.part(7, 1), PartLookup::Ready(Bytes::from(vec![2])));
        assert_eq!(p.part(7, 2), PartLookup::NotYet);
        // The store gave it 8 (another fragment took 7): the parts follow the store.
        p.close(a, 8);
        assert_eq!(p.part(8, 2), PartLookup::Absent);
        assert_eq!(p.part(7, 0), PartLookup::Absent);
        assert_eq!(p.part(9, 0), PartLookup::NotYet, "the next fragment may open");
        assert!(p.push(a, 9, 1, part(3, true)));
        let all = p.since(0);
        assert_eq!(
            all.iter().map(|f| (f.number, f.parts.len(), f.complete)).collect::<Vec<_>>(),
            [(8, 2, true), (9, 1, false)]
        );
        assert_eq!(p.since(9).len(), 1);
    }

    #[test]
    fn a_new_producer_takes_over_and_the_old_one_is_ignored() {
        let mut p = LiveParts::default();
        let a = p.claim();
        p.push(a, 1, 1, part(1, true));
        let b = p.claim();
        assert!(p.since(0).is_empty(), "the old producer's open fragment is dropped");
        assert!(!p.push(a, 1, 1, part(2, true)));
        p.close(a, 1);
        assert!(p.push(b, 1, 2, part(3, true)));
        p.abandon(a);
        assert_eq!(p.since(0).len(), 1);
        p.abandon(b);
        assert!(p.since(0).is_empty());
    }

    #[test]
    fn only_a_few_closed_fragments_are_kept() {
        let mut p = LiveParts::default();
        let a = p.claim();
        for n in 1..=10 {
            p.push(a, n, 1, part(n as u8, true));
            p.close(a, n);
        }
        let kept: Vec<u64> = p.since(0).iter().map(|f| f.number).collect();
        assert_eq!(kept, [7, 8, 9, 10]);
    }
}
