//! The check run when the store opens, before anything is served.
//!
//! After a crash the files may hold more than the index (bytes written, index entry
//! never flushed: the fragment was never acknowledged) or, after outside damage, less.
//! Recovery makes them agree again, always in the direction that serves no torn byte:
//!
//! * index entries of streams no longer in the catalog are removed (a DeleteStream
//!   that died half-way), and so are their directories;
//! * a segment whose file is gone loses its index entries;
//! * a segment file longer than its last indexed record is truncated to it;
//! * indexed records that are not whole on disk (too short, bad CRC), checked from the
//!   end of each segment backwards, lose their index entries;
//! * files and directories that no index entry refers to are removed.
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
use std::fs::OpenOptions;
use std::io;
use std::path::Path;

use super::catalog::Catalog;
use super::records::{self, key1, key2, prefix, time_key, FragmentMeta, SegmentMeta, StreamId};
use super::segment;
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
fn quarantine(media_root: &Path, store: &str, key: &[u8], value: &[u8]) {
    let Some(data_dir) = media_root.parent() else { return };
    let dir = data_dir.join("quarantine").join(store);
    let path = dir.join(format!("{}.bin", hex::encode(key)));
    let saved = std::fs::create_dir_all(&dir).and_then(|()| crate::durable_file::replace(&path, value, 0o600));
    match saved {
        Ok(()) => {
            tracing::warn!(store, key = %hex::encode(key), copy = %path.display(), "an unreadable record was kept and copied to quarantine")
        }
        Err(e) => {
            tracing::error!(store, key = %hex::encode(key), error = %e, "an unreadable record was kept, but its copy could not be written")
        }
    }
}

pub fn recover(
    db: &sled::Db,
    catalog: &Catalog,
    index: &sled::Tree,
    media_root: &Path,
) -> Result<RecoveryReport, StoreError> {
    let mut report = RecoveryReport::default();
    let (readable, unreadable) = catalog.all_and_unreadable()?;
    let live: HashSet<StreamId> = readable.iter().map(|r| r.id).collect();
    report.streams = live.len();
    for (k, v) in &unreadable {
        quarantine(media_root, "catalog", k, v);
    }
    report.unreadable_records += unreadable.len();
    // With a stream record unreadable, any stream might be that one: none is deleted.
    let judge_deleted = unreadable.is_empty();

    // Index entries of deleted streams.
    let mut orphan_streams = HashSet::new();
    for item in index.iter().keys() {
        let key = item?;
        if let Some(s) = records::key_u64(&key, 1) {
            if !live.contains(&s) && judge_deleted {
                orphan_streams.insert(s);
            }
        }
    }
    for s in &orphan_streams {
        let mut batch = sled::Batch::default();
        for kind in records::ALL_KINDS {
            for key in index.scan_prefix(prefix(kind, *s)).keys() {
                batch.remove(key?);
            }
        }
        index.apply_batch(batch)?;
    }

    let mut referenced: HashMap<StreamId, HashSet<u64>> = HashMap::new();
    for &stream in &live {
        let mut segments: Vec<SegmentMeta> = Vec::new();
        for item in index.scan_prefix(prefix(records::KIND_SEGMENT, stream)) {
            let (k, v) = item?;
            match SegmentMeta::decode(&v) {
                Some(seg) => segments.push(seg),
                None => {
                    // Kept, and its file with it: the segment id is in the key.
                    quarantine(media_root, "index", &k, &v);
                    report.unreadable_records += 1;
                    report.segments += 1;
                    if let Some(id) = records::key_u64(&k, 9) {
                        referenced.entry(stream).or_default().insert(id);
                    }
                }
            }
        }
        for seg in segments {
            report.segments += 1;
            let kept = check_segment(index, media_root, stream, seg, &mut report)?;
            if kept {
                referenced.entry(stream).or_default().insert(seg.segment_id);
            }
        }
    }
    db.flush()?;

    // Files nobody refers to: unacknowledged segments and deleted streams' directories.
    let entries = match std::fs::read_dir(media_root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stream) = segment::stream_id_from_dir_name(&name) else { continue };
        if !live.contains(&stream) {
            if !judge_deleted {
                continue;
            }
            std::fs::remove_dir_all(entry.path())?;
            report.removed_files += 1;
            continue;
        }
        let keep = referenced.get(&stream);
        for file in std::fs::read_dir(entry.path())? {
            let file = file?;
            let fname = file.file_name().to_string_lossy().into_owned();
            match segment::segment_id_from_name(&fname) {
                Some(id) if keep.is_some_and(|k| k.contains(&id)) => {}
                Some(_) => {
                    std::fs::remove_file(file.path())?;
                    report.removed_files += 1;
                }
                None => {}
            }
        }
    }
    Ok(report)
}

/// Makes one segment agree with its index entries. Returns whether it is kept.
fn check_segment(
    index: &sled::Tree,
    media_root: &Path,
    stream: StreamId,
    mut seg: SegmentMeta,
    report: &mut RecoveryReport,
) -> Result<bool, StoreError> {
    let path = segment::segment_path(media_root, stream, seg.segment_id);
    let from = key1(records::KIND_FRAGMENT, stream, seg.first_fragment);
    let to = key1(records::KIND_FRAGMENT, stream, seg.last_fragment);
    let mut fragments: Vec<FragmentMeta> = Vec::new();
    let mut unreadable = 0;
    for item in index.range(from..=to) {
        let (k, v) = item?;
        match FragmentMeta::decode(&v) {
            Some(m) if m.segment_id == seg.segment_id => fragments.push(m),
            Some(_) => {}
            None => {
                quarantine(media_root, "index", &k, &v);
                unreadable += 1;
            }
        }
    }
    if unreadable > 0 {
        // Which fragments this segment holds cannot be told for sure: leave it whole.
        report.unreadable_records += unreadable;
        report.fragments += fragments.len() as u64;
        tracing::warn!(
            stream,
            segment = seg.segment_id,
            unreadable,
            "a segment with unreadable fragment records is kept as it is"
        );
        return Ok(true);
    }
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let mut drop_from = fragments.len();
    if let Some(file) = &file {
        let file_len = file.metadata()?.len();
        // From the end backwards: drop records that are not whole; stop at the first good
        // one (everything before it was synced before it was).
        while drop_from > 0 {
            let m = &fragments[drop_from - 1];
            if m.record_end() <= file_len && segment::verify_record(file, m.offset, m.len, m.fragment_number)? {
                break;
            }
            tracing::warn!(
                stream,
                segment = seg.segment_id,
                fragment = m.fragment_number,
                "indexed fragment is not whole on disk; dropping it"
            );
            drop_from -= 1;
        }
        let good_end = if drop_from > 0 { fragments[drop_from - 1].record_end() } else { 0 };
        if file_len > good_end {
            tracing::info!(
                stream,
                segment = seg.segment_id,
                bytes = file_len - good_end,
                "truncating unacknowledged tail"
            );
            file.set_len(good_end)?;
            file.sync_all()?;
            report.truncated_bytes += file_len - good_end;
        }
    } else {
        tracing::warn!(stream, segment = seg.segment_id, "segment file missing; dropping its index entries");
        drop_from = 0;
    }

    let dropped = &fragments[drop_from..];
    report.fragments += drop_from as u64;
    if dropped.is_empty() {
        return Ok(true);
    }
    report.dropped_fragments += dropped.len() as u64;
    let mut batch = sled::Batch::default();
    for m in dropped {
        let n = m.fragment_number;
        batch.remove(&key1(records::KIND_FRAGMENT, stream, n)[..]);
        batch.remove(&key2(records::KIND_PRODUCER_TIME, stream, time_key(m.producer_ts_us), n)[..]);
        batch.remove(&key2(records::KIND_SERVER_TIME, stream, time_key(m.server_ts_us), n)[..]);
    }
    // Numbers of dropped fragments are never handed out again.
    let hw_key = prefix(records::KIND_HIGH_WATER, stream);
    let mut hw = index.get(hw_key)?.and_then(|v| records::HighWater::decode(&v)).unwrap_or_default();
    hw.fragment_number = hw.fragment_number.max(dropped.iter().map(|m| m.fragment_number).max().unwrap_or(0));
    hw.segment_id = hw.segment_id.max(seg.segment_id);
    batch.insert(&hw_key[..], &hw.encode()[..]);
    let kept = &fragments[..drop_from];
    let seg_key = key1(records::KIND_SEGMENT, stream, seg.segment_id);
    let keep = !kept.is_empty() && file.is_some();
    if keep {
        seg.last_fragment = kept[kept.len() - 1].fragment_number;
        seg.fragment_count = kept.len() as u64;
        seg.max_server_ts_us = kept.iter().map(|m| m.server_ts_us).max().unwrap_or(seg.max_server_ts_us);
        seg.bytes = kept[kept.len() - 1].record_end();
        batch.insert(&seg_key[..], &seg.encode()[..]);
    } else {
        batch.remove(&seg_key[..]);
        if file.is_some() {
            std::fs::remove_file(&path)?;
            report.removed_files += 1;
        }
    }
    index.apply_batch(batch)?;
    Ok(keep)
}
