//! Time for live sources: where a track's media clock sits on the producer's wall clock,
//! its 32-bit RTP timestamps extended to 64 bits, and presentation order turned into
//! decode order. Sans-IO and clock-free (the caller passes "now"), so every rule is
//! unit-tested here: RTP timestamp wraparound, backward steps, anchoring on an RTCP
//! sender report, B-frame reordering. (As retina's `client/timeline.rs` keeps its
//! timestamp logic apart from its sockets.)

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// A time on a source's media clock: a raw RTP timestamp (pushed RTP), or clock units
/// since the source's start as the source already extended them (retina's `elapsed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaTime {
    Rtp(u32),
    Elapsed(i64),
}

/// One track's clock: anchored once, at its first unit, then extended.
///
/// The anchor is the producer's wall clock when an RTCP sender report for the track came
/// before its first unit (ffmpeg sends one at the start), else the unit's arrival on the
/// server clock. Later sender reports are not applied: they would make the stored
/// timeline jump, so clock drift over a long session is not corrected.
#[derive(Debug, Clone)]
pub struct TrackTimeline {
    /// Clock units per second.
    rate: i64,
    /// The first sender report: a media time and the Unix time (µs) it corresponds to.
    report: Option<(MediaTime, i64)>,
    clock: Option<ExtendedClock>,
}

#[derive(Debug, Clone, Copy)]
struct ExtendedClock {
    /// The first unit's time, in clock units since the epoch.
    base: i64,
    last_rtp: Option<u32>,
    ext: i64,
}

impl TrackTimeline {
    pub fn new(clock_rate: u32) -> Self {
        TrackTimeline { rate: i64::from(clock_rate.max(1)), report: None, clock: None }
    }

    /// Whether the first unit was placed (after which sender reports are ignored).
    pub fn anchored(&self) -> bool {
        self.clock.is_some()
    }

    /// A sender report: the producer's wall clock (`unix_us`) at media time `at`. Only
    /// one that comes before the track's first unit is used.
    pub fn sender_report(&mut self, at: MediaTime, unix_us: i64) {
        if self.clock.is_none() {
            self.report = Some((at, unix_us));
        }
    }

    fn to_units(&self, us: i64) -> i64 {
        (i128::from(us) * i128::from(self.rate) / 1_000_000) as i64
    }

    /// The presentation time of a unit at media time `at`, in clock units since the
    /// Unix epoch; `now_us` is the server's clock, used to anchor the first unit when no
    /// sender report came first.
    pub fn time_of(&mut self, at: MediaTime, now_us: i64) -> i64 {
        let clock = match self.clock.as_mut() {
            Some(c) => c,
            None => {
                let base = match (self.report, at) {
                    (Some((MediaTime::Rtp(sr), unix_us)), MediaTime::Rtp(r)) => {
                        self.to_units(unix_us) + i64::from(r.wrapping_sub(sr) as i32)
                    }
                    (Some((MediaTime::Elapsed(sr), unix_us)), MediaTime::Elapsed(e)) => {
                        self.to_units(unix_us) + (e - sr)
                    }
                    _ => self.to_units(now_us),
                };
                self.clock.insert(ExtendedClock { base, last_rtp: None, ext: 0 })
            }
        };
        match at {
            MediaTime::Rtp(r) => clock.at_rtp(r),
            MediaTime::Elapsed(e) => clock.at_elapsed(e),
        }
    }
}

impl ExtendedClock {
    /// A 32-bit RTP timestamp: the signed distance from the previous one is added, so
    /// wraparound past 2^32 continues the timeline and a small step back stays a step
    /// back (RFC 3550 5.1: timestamps are modulo 2^32).
    fn at_rtp(&mut self, rtp_ts: u32) -> i64 {
        match self.last_rtp {
            None => self.ext = self.base,
            Some(last) => self.ext += i64::from(rtp_ts.wrapping_sub(last) as i32),
        }
        self.last_rtp = Some(rtp_ts);
        self.ext
    }

    /// A time the source already extended: the first one maps to `base`.
    fn at_elapsed(&mut self, elapsed: i64) -> i64 {
        if self.last_rtp.is_none() {
            self.base -= elapsed;
            self.last_rtp = Some(0);
        }
        self.base + elapsed
    }
}

/// Presentation times in, decode times out: each item waits until `depth` later ones
/// arrived, then takes the smallest presentation time seen as its decode time, kept
/// strictly increasing. Depth 0 passes items straight through (streams that cannot
/// reorder).
#[derive(Debug)]
pub struct DecodeOrder<T> {
    waiting: VecDeque<(i64, T)>,
    times: BinaryHeap<Reverse<i64>>,
    last_dts: Option<i64>,
    depth: usize,
}

impl<T> DecodeOrder<T> {
    pub fn new(depth: usize) -> Self {
        DecodeOrder { waiting: VecDeque::new(), times: BinaryHeap::new(), last_dts: None, depth }
    }

    pub fn set_depth(&mut self, depth: usize) {
        self.depth = depth;
    }

    /// Adds an item at presentation time `pts`; returns the items now ready as
    /// (decode time, presentation time, item).
    pub fn push(&mut self, pts: i64, item: T) -> Vec<(i64, i64, T)> {
        self.waiting.push_back((pts, item));
        self.times.push(Reverse(pts));
        let mut ready = Vec::new();
        while self.waiting.len() > self.depth {
            ready.extend(self.pop());
        }
        ready
    }

    /// Releases the oldest waiting item (at the end of a stream).
    pub fn pop(&mut self) -> Option<(i64, i64, T)> {
        let (pts, item) = self.waiting.pop_front()?;
        let Reverse(mut dts) = self.times.pop()?;
        if let Some(last) = self.last_dts {
            dts = dts.max(last + 1);
        }
        self.last_dts = Some(dts);
        Some((dts, pts, item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_US: i64 = 1_700_000_000_000_000;

    #[test]
    fn the_first_unit_is_anchored_at_arrival_without_a_sender_report() {
        let mut t = TrackTimeline::new(90_000);
        assert_eq!(t.time_of(MediaTime::Rtp(5000), NOW_US), NOW_US / 1000 * 90);
        assert_eq!(
            t.time_of(MediaTime::Rtp(8000), NOW_US + 10_000_000),
            NOW_US / 1000 * 90 + 3000,
            "arrival no longer matters"
        );
    }

    #[test]
    fn a_sender_report_before_the_first_unit_places_it_on_the_producers_clock() {
        let mut t = TrackTimeline::new(90_000);
        let producer_us = NOW_US - 2_000_000; // the producer's clock is 2 s behind ours
        t.sender_report(MediaTime::Rtp(1000), producer_us);
        let at = t.time_of(MediaTime::Rtp(1000 + 9000), NOW_US);
        assert_eq!(at, producer_us / 1000 * 90 + 9000);
        assert!(t.anchored());
        t.sender_report(MediaTime::Rtp(0), 0);
        assert_eq!(t.time_of(MediaTime::Rtp(1000 + 18_000), NOW_US), at + 9000, "later reports are not applied");
        // The same for a source that extends its own clock.
        let mut t = TrackTimeline::new(48_000);
        t.sender_report(MediaTime::Elapsed(480), producer_us);
        assert_eq!(t.time_of(MediaTime::Elapsed(960), NOW_US), producer_us / 1000 * 48 + 480);
        assert_eq!(t.time_of(MediaTime::Elapsed(1920), NOW_US), producer_us / 1000 * 48 + 1440);
    }

    #[test]
    fn rtp_timestamps_wrap_around_and_step_back() {
        let mut t = TrackTimeline::new(90_000);
        let start = t.time_of(MediaTime::Rtp(u32::MAX - 2999), NOW_US);
        assert_eq!(t.time_of(MediaTime::Rtp(0), NOW_US), start + 3000, "across 2^32");
        assert_eq!(t.time_of(MediaTime::Rtp(3000), NOW_US), start + 6000);
        assert_eq!(t.time_of(MediaTime::Rtp(0), NOW_US), start + 3000, "a B-frame before the P-frame");
        // A jump of more than 2^31 units reads as a step back (RFC 3550 arithmetic).
        assert_eq!(t.time_of(MediaTime::Rtp(0x8000_0001), NOW_US), start + 3000 - 0x7fff_ffff);
    }

    #[test]
    fn b_frames_come_out_in_decode_order_with_increasing_times() {
        // I0 P3 B1 B2 P6 B4 B5 in presentation times (frames of 1), sent in decode order.
        let mut o = DecodeOrder::new(2);
        let mut out = Vec::new();
        for (pts, name) in [(0, "I0"), (3, "P3"), (1, "B1"), (2, "B2"), (6, "P6"), (4, "B4"), (5, "B5")] {
            out.extend(o.push(pts, name));
        }
        while let Some(x) = o.pop() {
            out.push(x);
        }
        let names: Vec<&str> = out.iter().map(|x| x.2).collect();
        assert_eq!(names, ["I0", "P3", "B1", "B2", "P6", "B4", "B5"], "arrival (decode) order kept");
        let dts: Vec<i64> = out.iter().map(|x| x.0).collect();
        assert_eq!(dts, [0, 1, 2, 3, 4, 5, 6], "the sorted presentation times, one per frame");
    }

    #[test]
    fn depth_zero_passes_through_and_times_never_repeat() {
        let mut o = DecodeOrder::new(0);
        assert_eq!(o.push(10, ()), vec![(10, 10, ())]);
        assert_eq!(o.push(10, ()), vec![(11, 10, ())], "a repeated time is moved on by one");
        assert_eq!(o.push(5, ()), vec![(12, 5, ())]);
        assert!(o.pop().is_none());
    }
}
