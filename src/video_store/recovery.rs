//! The check run when the store opens, before anything is served.
//!
//! After a crash the files may hold more than the index (bytes written, index entry
//! never flushed: the fragment was never acknowledged) or, after outside damage, less.
//! Recovery makes them agree again, always in the direction that serves no torn byte:
//!
//! * index entries of streams no longer in the catalog are removed (a DeleteStream
//!   that died half-way), and so are their bytes;
//! * a segment whose bytes are gone loses its index entries;
//! * a segment longer than its last indexed record is cut back to it;
//! * indexed records that are not whole (too short, bad CRC), checked from the end of
//!   each segment backwards, lose their index entries;
//! * segments that no index entry refers to are removed.
//!
//! It runs over the store's traits, so every implementation gets the same checks; what
//! "whole" means for stored bytes is the media store's [`MediaStore::check_segment`].
//! A media store whose fragments are whole once stored ([`MediaStore::whole_when_stored`]:
//! objects in a bucket) is not read back at all: only the index is checked, and what
//! was stored but never indexed is left in place.
//!
//! Recovery never removes what it cannot account for. A record it cannot read (damaged,
//! or written by a newer Kinescope) is kept in place, copied to
//! `quarantine/<store>/<key>.bin` beside the data, logged, and counted
//! ([`RecoveryReport::unreadable_records`], `kinescope_recovery_unreadable_records` at
//! `/metrics`); the server still starts. A segment whose summary or any of whose
//! fragment records cannot be read is left whole (no truncation, no dropped entries),
//! and while any stream record is unreadable no stream is taken for deleted: its
//! entries and files stay.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::index::{FragmentIndex, SegmentChange, StreamCatalog, UnreadableRecord};
use super::media::{MediaStore, SegmentCheck};
use super::records::{SegmentMeta, StreamId};
use super::StoreError;

/// What recovery found and mended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub streams: usize,
    pub segments: usize,
    pub fragments: u64,
    pub truncated_bytes: u64,
    pub dropped_fragments: u64,
    pub removed_files: usize,
    /// Records that could not be read: kept, quarantined as copies, reported.
    pub unreadable_records: usize,
}

/// Keeps a copy of a record recovery cannot read under `quarantine/STORE/`, named by
/// its key in hex (the record itself stays where it is).
fn quarantine(data_dir: &Path, store: &str, record: &UnreadableRecord) {
    let dir = data_dir.join("quarantine").join(store);
    let name = hex::encode(&record.key);
    let path = dir.join(format!("{name}.bin"));
    let saved = std::fs::create_dir_all(&dir).and_then(|()| crate::durable_file::replace(&path, &record.value, 0o600));
    match saved {
        Ok(()) => {
            tracing::warn!(store, key = %name, copy = %path.display(), "an unreadable record was kept and copied to quarantine")
        }
        Err(e) => {
            tracing::error!(store, key = %name, error = %e, "an unreadable record was kept, but its copy could not be written")
        }
    }
}

pub fn recover(
    catalog: &dyn StreamCatalog,
    index: &dyn FragmentIndex,
    media: &dyn MediaStore,
    data_dir: &Path,
) -> Result<RecoveryReport, StoreError> {
    let mut report = RecoveryReport::default();
    let (readable, unreadable) = catalog.all_and_unreadable()?;
    let live: HashSet<StreamId> = readable.iter().map(|r| r.id).collect();
    report.streams = live.len();
    for record in &unreadable {
        quarantine(data_dir, "catalog", record);
    }
    report.unreadable_records += unreadable.len();
    // With a stream record unreadable, any stream might be that one: none is deleted.
    let judge_deleted = unreadable.is_empty();

    // Every indexed fragment of such a store is whole: the index is the truth and
    // nothing is read back (see the trait).
    let trust_index = media.whole_when_stored();

    // Index entries of deleted streams (a DeleteStream that died half-way).
    if judge_deleted {
        for s in index.streams()? {
            if !live.contains(&s) {
                index.remove_stream(s)?;
                if trust_index {
                    // No sweep of everything stored follows: its bytes go now.
                    media.remove_stream(s)?;
                    report.removed_files += 1;
                }
            }
        }
    }

    let mut referenced: HashMap<StreamId, HashSet<u64>> = HashMap::new();
    for &stream in &live {
        let (segments, unreadable) = index.segments(stream)?;
        for record in &unreadable {
            // Kept, and its bytes with it when its key tells which segment it is.
            quarantine(data_dir, "index", record);
            report.unreadable_records += 1;
            report.segments += 1;
            if let Some(id) = record.number {
                referenced.entry(stream).or_default().insert(id);
            }
        }
        for seg in segments {
            report.segments += 1;
            if trust_index {
                report.fragments += seg.fragment_count;
            } else if check_segment(index, media, data_dir, stream, seg, &mut report)? {
                referenced.entry(stream).or_default().insert(seg.segment_id);
            }
        }
    }
    index.flush()?;
    if trust_index {
        // What was stored but never indexed stays: no sweep of everything stored.
        return Ok(report);
    }

    // Bytes nobody refers to: unacknowledged segments and deleted streams' media.
    for (stream, ids) in media.stored()? {
        if !live.contains(&stream) {
            if judge_deleted {
                media.remove_stream(stream)?;
                report.removed_files += 1;
            }
            continue;
        }
        let keep = referenced.get(&stream);
        let unreferenced: Vec<u64> = ids.into_iter().filter(|id| !keep.is_some_and(|k| k.contains(id))).collect();
        if !unreferenced.is_empty() {
            media.remove_segments(stream, &unreferenced)?;
            report.removed_files += unreferenced.len();
        }
    }
    Ok(report)
}

/// Makes one segment agree with its index entries. Returns whether it is kept.
fn check_segment(
    index: &dyn FragmentIndex,
    media: &dyn MediaStore,
    data_dir: &Path,
    stream: StreamId,
    mut seg: SegmentMeta,
    report: &mut RecoveryReport,
) -> Result<bool, StoreError> {
    let (fragments, unreadable) = index.segment_fragments(stream, &seg)?;
    if !unreadable.is_empty() {
        // Which fragments this segment holds cannot be told for sure: leave it whole.
        for record in &unreadable {
            quarantine(data_dir, "index", record);
        }
        report.unreadable_records += unreadable.len();
        report.fragments += fragments.len() as u64;
        tracing::warn!(
            stream,
            segment = seg.segment_id,
            unreadable = unreadable.len(),
            "a segment with unreadable fragment records is kept as it is"
        );
        return Ok(true);
    }
    let (whole, present) = match media.check_segment(stream, seg.segment_id, &fragments)? {
        SegmentCheck::Present { whole, trimmed_bytes } => {
            report.truncated_bytes += trimmed_bytes;
            (whole, true)
        }
        SegmentCheck::Missing => {
            tracing::warn!(stream, segment = seg.segment_id, "segment missing; dropping its index entries");
            (0, false)
        }
    };
    report.fragments += whole as u64;
    let (kept, dropped) = fragments.split_at(whole);
    if dropped.is_empty() && present {
        return Ok(true);
    }
    report.dropped_fragments += dropped.len() as u64;
    let keep = present && !kept.is_empty();
    let change = match kept.last() {
        Some(last) if keep => {
            seg.last_fragment = last.fragment_number;
            seg.fragment_count = kept.len() as u64;
            seg.max_server_ts_us = kept.iter().map(|m| m.server_ts_us).max().unwrap_or(seg.max_server_ts_us);
            seg.bytes = last.record_end();
            SegmentChange::Keep(seg)
        }
        _ => SegmentChange::Remove,
    };
    // Numbers of dropped fragments are never handed out again.
    index.drop_fragments(stream, seg.segment_id, dropped, change)?;
    if !keep && present {
        media.remove_segments(stream, &[seg.segment_id])?;
        report.removed_files += 1;
    }
    Ok(keep)
}
