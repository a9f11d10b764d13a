//! Low-Latency HLS (RFC 8216bis; Apple's LL-HLS): the parts of a LIVE session's
//! playlist, and when a blocking playlist reload may be answered. Pure: the caller
//! supplies the window of stored fragments and the stream's parted fragments
//! ([`crate::video_store::PartedFragment`], the chunks of the fragment being received
//! and the few before it).
//!
//! A part is one CMAF chunk (`moof`+`mdat`) of a fragment; a segment is the fragment.
//! Media sequence numbers are the window's (for LIVE, the fragment numbers), and the
//! segment being received is the one after the window's last: it is listed by its
//! parts alone until its fragment is persisted, then as a segment like the others.

use crate::video_store::PartedFragment;

use super::selection::Window;

pub const MEDIA_PART: &str = "getMP4MediaPart.mp4";

/// Complete segments listed with their parts, newest last (the spec asks for parts of
/// the segments within three target durations of the end; LIVE windows are short).
const SEGMENTS_WITH_PARTS: usize = 3;

/// A part's place and timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub duration_us: i64,
    pub independent: bool,
}

/// One segment's parts: the fragment they belong to and its media sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartedSegment {
    pub msn: u64,
    pub fragment_number: u64,
    pub parts: Vec<Part>,
}

/// What the live edge adds to a window: parts of its last segments, and the segment
/// being received.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LowLatencyView {
    /// The last complete segment's media sequence number and fragment number (None: the
    /// window is empty).
    pub last_msn: Option<u64>,
    pub last_fragment: Option<u64>,
    /// Parts of the window's last few segments, oldest first.
    pub segments: Vec<PartedSegment>,
    /// The segment after the window's last, listed by its parts so far.
    pub partial: Option<PartedSegment>,
    /// Whether `partial` has all its parts (its fragment was submitted, not yet
    /// persisted): the next part is then the first of the segment after it.
    pub partial_complete: bool,
    /// The longest part in the view, µs.
    pub longest_part_us: i64,
}

/// The smallest part target advertised (live sources write 200 ms chunks).
pub const MIN_PART_TARGET_US: i64 = 200_000;

fn parts_of(f: &PartedFragment) -> Vec<Part> {
    f.parts.iter().map(|p| Part { duration_us: p.duration_us, independent: p.independent }).collect()
}

impl LowLatencyView {
    pub fn new(window: &Window, parted: &[PartedFragment]) -> Self {
        let n = window.entries.len() as u64;
        let Some(last) = window.entries.last() else { return LowLatencyView::default() };
        let last_msn = window.media_sequence + n - 1;
        let msn_of = |fragment: u64| -> Option<u64> {
            let i = window.entries.iter().position(|e| e.meta.fragment_number == fragment)?;
            Some(window.media_sequence + i as u64)
        };
        let recent_from = window.entries.len().saturating_sub(SEGMENTS_WITH_PARTS);
        let recent: Vec<u64> = window.entries[recent_from..].iter().map(|e| e.meta.fragment_number).collect();
        let segments: Vec<PartedSegment> = parted
            .iter()
            .filter(|f| f.complete && recent.contains(&f.number) && !f.parts.is_empty())
            .filter_map(|f| {
                Some(PartedSegment { msn: msn_of(f.number)?, fragment_number: f.number, parts: parts_of(f) })
            })
            .collect();
        // The next fragment, if it continues the window's init segment (a new init
        // needs a discontinuity and a map: it is listed once it is whole).
        let next = parted.iter().find(|f| {
            f.number == last.meta.fragment_number + 1 && f.init_id == last.meta.init_id && !f.parts.is_empty()
        });
        let partial = next.map(|f| PartedSegment { msn: last_msn + 1, fragment_number: f.number, parts: parts_of(f) });
        let longest_part_us = segments
            .iter()
            .chain(partial.iter())
            .flat_map(|s| s.parts.iter().map(|p| p.duration_us))
            .max()
            .unwrap_or(0);
        LowLatencyView {
            last_msn: Some(last_msn),
            last_fragment: Some(last.meta.fragment_number),
            segments,
            partial_complete: next.is_some_and(|f| f.complete),
            partial,
            longest_part_us,
        }
    }

    /// EXT-X-PART-INF's PART-TARGET, µs: the longest part, rounded up to 10 ms, and
    /// never under [`MIN_PART_TARGET_US`].
    pub fn part_target_us(&self) -> i64 {
        ((self.longest_part_us + 9_999) / 10_000 * 10_000).max(MIN_PART_TARGET_US)
    }

    /// The (fragment number, part index) of the part after the last one listed.
    pub fn next_part(&self) -> Option<(u64, usize)> {
        match &self.partial {
            Some(p) if self.partial_complete => Some((p.fragment_number + 1, 0)),
            Some(p) => Some((p.fragment_number, p.parts.len())),
            None => Some((self.last_fragment? + 1, 0)),
        }
    }

    /// Whether a playlist with this view answers a blocking reload for segment `msn`
    /// (part `part`): RFC 8216bis 6.2.5.2. Without a part, the segment must be
    /// complete; with one, that part or anything after it must be listed.
    pub fn holds(&self, msn: u64, part: Option<usize>) -> bool {
        let Some(last) = self.last_msn else { return false };
        let Some(p) = part else { return last >= msn };
        if last > msn {
            return true;
        }
        let partial = self.partial.as_ref().filter(|s| !s.parts.is_empty());
        if let Some(s) = partial {
            if s.msn == msn && s.parts.len() > p {
                return true;
            }
            if s.msn > msn && last >= msn {
                // Segment `msn` is complete; the part asked for either exists in it or is
                // past its end, and the next segment has begun.
                return true;
            }
        }
        if last == msn {
            // Complete, and the part is one of its own: hold only for a part past its end.
            return self.segments.iter().find(|s| s.msn == msn).is_none_or(|s| s.parts.len() > p);
        }
        false
    }

    /// Whether a blocking reload asks too far ahead: more than two segments past the
    /// last one (the server answers 400).
    pub fn too_far(&self, msn: u64) -> bool {
        msn > self.last_msn.map_or(1, |l| l + 2)
    }
}

/// The attributes of one part's `EXT-X-PART` tag.
pub fn part_attributes(part: &Part, uri: &str) -> String {
    format!(
        "DURATION={:.3},URI=\"{uri}\"{}",
        part.duration_us as f64 / 1e6,
        if part.independent { ",INDEPENDENT=YES" } else { "" }
    )
}

/// The URI of part `index` of fragment `number`.
pub fn part_uri(token: &str, number: u64, index: usize) -> String {
    format!("{MEDIA_PART}?SessionToken={token}&FragmentNumber={number}&PartNumber={index}")
}

/// The playlist-level tags: blocking reloads, the part hold-back (three part targets)
/// and the part target.
pub fn header_lines(view: &LowLatencyView) -> String {
    let target = view.part_target_us() as f64 / 1e6;
    format!(
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}\n#EXT-X-PART-INF:PART-TARGET={target:.3}\n",
        3.0 * target
    )
}

/// What follows the last complete segment: the partial segment's parts and the hint
/// for the next part.
pub fn trailer_lines(view: &LowLatencyView, token: &str) -> String {
    let mut out = String::new();
    if let Some(p) = &view.partial {
        for (i, part) in p.parts.iter().enumerate() {
            out.push_str(&format!("#EXT-X-PART:{}\n", part_attributes(part, &part_uri(token, p.fragment_number, i))));
        }
    }
    if let Some((number, index)) = view.next_part() {
        out.push_str(&format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"\n", part_uri(token, number, index)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playback::selection::Entry;
    use crate::video_store::{FragmentMeta, LivePart};
    use bytes::Bytes;

    fn window(numbers: std::ops::RangeInclusive<u64>) -> Window {
        let entries: Vec<Entry> = numbers
            .clone()
            .map(|n| Entry {
                meta: FragmentMeta {
                    fragment_number: n,
                    producer_ts_us: n as i64 * 1_000_000,
                    server_ts_us: 0,
                    duration_us: 1_000_000,
                    segment_id: 1,
                    offset: 0,
                    len: 1,
                    crc: 0,
                    init_id: 1,
                    chunk_count: 5,
                    flags: 1,
                },
                discontinuity: false,
            })
            .collect();
        Window { media_sequence: *numbers.start(), entries, discontinuity_sequence: 0, ended: false }
    }

    fn parted(number: u64, parts: usize, complete: bool) -> PartedFragment {
        PartedFragment {
            number,
            init_id: 1,
            parts: (0..parts)
                .map(|i| LivePart { bytes: Bytes::from_static(b"x"), duration_us: 200_000, independent: i == 0 })
                .collect(),
            complete,
        }
    }

    #[test]
    fn the_fragment_being_received_is_the_partial_segment_after_the_window() {
        let w = window(10..=14);
        let view = LowLatencyView::new(&w, &[parted(13, 5, true), parted(14, 5, true), parted(15, 2, false)]);
        assert_eq!(view.last_msn, Some(14));
        assert_eq!(view.segments.iter().map(|s| s.msn).collect::<Vec<_>>(), [13, 14]);
        let partial = view.partial.as_ref().unwrap();
        assert_eq!((partial.msn, partial.fragment_number, partial.parts.len()), (15, 15, 2));
        assert_eq!(view.next_part(), Some((15, 2)));
        assert_eq!(view.part_target_us(), 200_000);
        let trailer = trailer_lines(&view, "T");
        assert_eq!(
            trailer,
            "#EXT-X-PART:DURATION=0.200,URI=\"getMP4MediaPart.mp4?SessionToken=T&FragmentNumber=15&PartNumber=0\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.200,URI=\"getMP4MediaPart.mp4?SessionToken=T&FragmentNumber=15&PartNumber=1\"\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"getMP4MediaPart.mp4?SessionToken=T&FragmentNumber=15&PartNumber=2\"\n"
        );
        assert!(header_lines(&view).contains("CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600"));
    }

    #[test]
    fn a_submitted_but_unpersisted_fragment_points_the_hint_at_the_next_one() {
        let view = LowLatencyView::new(&window(10..=14), &[parted(14, 5, true), parted(15, 5, true)]);
        assert_eq!(view.next_part(), Some((16, 0)));
        // Nothing received after the window: the hint is the next fragment's first part.
        let view = LowLatencyView::new(&window(10..=14), &[parted(14, 5, true)]);
        assert!(view.partial.is_none());
        assert_eq!(view.next_part(), Some((15, 0)));
    }

    #[test]
    fn blocking_reloads_hold_until_the_segment_or_part_is_listed() {
        let view = LowLatencyView::new(&window(10..=14), &[parted(14, 5, true), parted(15, 2, false)]);
        assert!(view.holds(14, None));
        assert!(!view.holds(15, None), "segment 15 is not complete");
        assert!(view.holds(15, Some(1)));
        assert!(!view.holds(15, Some(2)), "part 2 has not arrived");
        assert!(view.holds(14, Some(4)));
        assert!(view.holds(14, Some(7)), "past segment 14's end, and 15 has begun");
        assert!(!view.holds(16, Some(0)));
        assert!(!view.too_far(16) && view.too_far(17));
        // Segment 14 complete with 5 parts, nothing of 15 yet: part 5 of 14 means the
        // first part of 15, which is not there.
        let view = LowLatencyView::new(&window(10..=14), &[parted(14, 5, true)]);
        assert!(!view.holds(14, Some(5)));
        assert!(view.holds(14, Some(4)));
    }

    #[test]
    fn a_new_init_segment_is_not_listed_by_parts() {
        let mut next = parted(15, 2, false);
        next.init_id = 2;
        let view = LowLatencyView::new(&window(10..=14), &[next]);
        assert!(view.partial.is_none());
    }
}
