//! Which fragments a streaming session shows right now, and where its timeline breaks.
//!
//! Shared by the HLS and DASH packagers: both ask [`window`] for the session's current
//! list and only differ in how they write it. The rules are Kinesis Video's:
//!
//! - LIVE: the newest `max_fragments` fragments; the list slides as fragments persist.
//! - LIVE_REPLAY: from the selector's start, one more fragment each time the previous
//!   fragment's duration has elapsed since the session began; ends at the selector's
//!   end, if it has one.
//! - ON_DEMAND: the first `max_fragments` fragments of the range, fixed.
//!
//! With PRODUCER_TIMESTAMP, fragments that share a start time are shown once (the newer
//! fragment number wins). A discontinuity is marked where the init segment changes,
//! and, per the session's mode, before every fragment (ALWAYS) or where the producer
//! timeline jumps by more than 50 ms (ON_DISCONTINUITY).

use crate::video_store::{FragmentMeta, StoreError, TimeKind, VideoStore};

use super::session::{DiscontinuityMode, PlaybackMode, SelectorClock, Session};

/// A gap or overlap larger than this between two fragments breaks the timeline.
pub const DISCONTINUITY_TOLERANCE_US: i64 = 50_000;

/// How far back a LIVE session looks for a fragment before it says there is none.
pub const LIVE_RECENT_US: i64 = 30_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub meta: FragmentMeta,
    /// The timeline (or the init segment) breaks before this fragment.
    pub discontinuity: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub entries: Vec<Entry>,
    /// The position of the first entry in the session's whole list (HLS
    /// EXT-X-MEDIA-SEQUENCE).
    pub media_sequence: u64,
    /// Discontinuities before the first entry (HLS EXT-X-DISCONTINUITY-SEQUENCE).
    pub discontinuity_sequence: u64,
    /// No fragment will ever be added (ON_DEMAND, or a LIVE_REPLAY that reached its end).
    pub ended: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("{0}")]
    NoFragments(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether the timeline breaks between `prev` and `cur`.
pub fn breaks(prev: Option<&FragmentMeta>, cur: &FragmentMeta, mode: DiscontinuityMode) -> bool {
    let Some(prev) = prev else { return false };
    if prev.init_id != cur.init_id {
        return true;
    }
    match mode {
        DiscontinuityMode::Always => true,
        DiscontinuityMode::Never => false,
        DiscontinuityMode::OnDiscontinuity => {
            let expected = prev.producer_ts_us.saturating_add(prev.duration_us);
            (cur.producer_ts_us - expected).abs() > DISCONTINUITY_TOLERANCE_US
        }
    }
}

/// Drops all but the newest of fragments that share a producer start time (the input
/// is in (time, fragment number) order, as the time index returns it).
pub fn dedup_producer_times(metas: Vec<FragmentMeta>) -> Vec<FragmentMeta> {
    let mut out: Vec<FragmentMeta> = Vec::with_capacity(metas.len());
    for m in metas {
        match out.last_mut() {
            Some(last) if last.producer_ts_us == m.producer_ts_us => *last = m,
            _ => out.push(m),
        }
    }
    out
}

/// Marks discontinuities along `metas`; `prev` is the fragment shown before the first.
/// Returns the entries and how many of them break the timeline.
pub fn mark(metas: &[FragmentMeta], prev: Option<&FragmentMeta>, mode: DiscontinuityMode) -> Vec<Entry> {
    let mut last = prev.copied();
    metas
        .iter()
        .map(|m| {
            let e = Entry { meta: *m, discontinuity: breaks(last.as_ref(), m, mode) };
            last = Some(*m);
            e
        })
        .collect()
}

/// The time of a fragment on the session's selector clock.
pub fn clock_time(meta: &FragmentMeta, clock: SelectorClock) -> i64 {
    match clock {
        SelectorClock::Producer => meta.producer_ts_us,
        SelectorClock::Server => meta.server_ts_us,
    }
}

/// Whether a fragment belongs to what the session may show (its stream is checked by
/// the caller).
pub fn admits(session: &Session, meta: &FragmentMeta) -> bool {
    let t = clock_time(meta, session.clock);
    session.start_us.is_none_or(|s| t >= s) && session.end_us.is_none_or(|e| t <= e)
}

/// Reads up to `limit` fragments of the session's range from `after` on, deduplicated.
fn range_page(
    store: &VideoStore,
    session: &Session,
    after: Option<(i64, u64)>,
    limit: usize,
) -> Result<Vec<FragmentMeta>, StoreError> {
    let kind = session.clock.time_kind();
    let metas = store.fragments_in_range(
        session.stream,
        kind,
        session.start_us.unwrap_or(i64::MIN),
        session.end_us.unwrap_or(i64::MAX),
        after,
        limit,
    )?;
    Ok(if kind == TimeKind::Producer { dedup_producer_times(metas) } else { metas })
}

/// The session's current window at `now_us`.
pub fn window(store: &VideoStore, session: &Session, now_us: i64) -> Result<Window, SelectError> {
    let max = session.max_fragments.max(1) as usize;
    match session.mode {
        PlaybackMode::Live => {
            let newest = store.last_fragments(session.stream, max)?;
            let Some(first) = newest.first() else {
                return Err(SelectError::NoFragments("the stream has no fragments".into()));
            };
            // Count the breaks between the session's anchor and the window, so the
            // discontinuity sequence only ever grows for a player that reloads.
            let base = session.anchor_fragment.min(first.fragment_number);
            let span = usize::try_from(first.fragment_number - base).unwrap_or(usize::MAX);
            let before = store.fragments_from(session.stream, base, span)?;
            let before: Vec<FragmentMeta> =
                before.into_iter().filter(|m| m.fragment_number < first.fragment_number).collect();
            let marked_before = mark(&before, None, session.discontinuity);
            let discontinuity_sequence = marked_before.iter().filter(|e| e.discontinuity).count() as u64;
            let entries = mark(&newest, before.last(), session.discontinuity);
            Ok(Window { entries, media_sequence: first.fragment_number, discontinuity_sequence, ended: false })
        }
        PlaybackMode::OnDemand => {
            let metas = range_page(store, session, None, max.saturating_mul(2))?;
            let metas: Vec<FragmentMeta> = metas.into_iter().take(max).collect();
            if metas.is_empty() {
                return Err(SelectError::NoFragments("no fragments in the requested range".into()));
            }
            Ok(Window {
                entries: mark(&metas, None, session.discontinuity),
                media_sequence: 0,
                discontinuity_sequence: 0,
                ended: true,
            })
        }
        PlaybackMode::LiveReplay => {
            let elapsed = now_us.saturating_sub(session.created_us).max(0);
            let mut shown: Vec<FragmentMeta> = Vec::new();
            let mut played: i64 = 0;
            let mut after = None;
            let mut exhausted = false;
            'pages: loop {
                let page = range_page(store, session, after, 1000)?;
                if page.is_empty() {
                    exhausted = true;
                    break;
                }
                for m in &page {
                    // Across a page boundary a duplicate time may repeat; keep the newer.
                    if let Some(last) = shown.last_mut() {
                        if session.clock == SelectorClock::Producer && last.producer_ts_us == m.producer_ts_us {
                            *last = *m;
                            continue;
                        }
                    }
                    if played > elapsed {
                        break 'pages;
                    }
                    shown.push(*m);
                    played = played.saturating_add(m.duration_us.max(1));
                }
                after = page.last().map(|m| (clock_time(m, session.clock), m.fragment_number));
            }
            if shown.is_empty() {
                return Err(SelectError::NoFragments("no fragments in the requested range".into()));
            }
            let all = mark(&shown, None, session.discontinuity);
            let skip = all.len().saturating_sub(max);
            let discontinuity_sequence = all[..skip].iter().filter(|e| e.discontinuity).count() as u64;
            Ok(Window {
                entries: all[skip..].to_vec(),
                media_sequence: skip as u64,
                discontinuity_sequence,
                ended: exhausted && session.end_us.is_some(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(n: u64, producer_ms: i64, init: u32) -> FragmentMeta {
        FragmentMeta {
            fragment_number: n,
            producer_ts_us: producer_ms * 1000,
            server_ts_us: producer_ms * 1000,
            duration_us: 1_000_000,
            segment_id: 1,
            offset: 0,
            len: 10,
            crc: 0,
            init_id: init,
            chunk_count: 1,
            flags: 1,
        }
    }

    #[test]
    fn breaks_follow_the_mode_and_init_changes() {
        let a = frag(1, 0, 1);
        let contiguous = frag(2, 1000, 1);
        let jumped = frag(3, 5000, 1);
        let new_init = frag(4, 6000, 2);
        use DiscontinuityMode::*;
        assert!(!breaks(None, &a, Always));
        assert!(breaks(Some(&a), &contiguous, Always));
        assert!(!breaks(Some(&a), &contiguous, OnDiscontinuity));
        assert!(breaks(Some(&contiguous), &jumped, OnDiscontinuity));
        assert!(!breaks(Some(&contiguous), &jumped, Never));
        assert!(breaks(Some(&jumped), &new_init, Never), "an init change always breaks");
        let within = frag(5, 2040, 1);
        assert!(!breaks(Some(&contiguous), &within, OnDiscontinuity), "40 ms is within tolerance");
    }

    #[test]
    fn duplicate_producer_times_keep_the_newest() {
        let out = dedup_producer_times(vec![frag(1, 0, 1), frag(7, 0, 1), frag(2, 1000, 1)]);
        assert_eq!(out.iter().map(|m| m.fragment_number).collect::<Vec<_>>(), vec![7, 2]);
    }
}
