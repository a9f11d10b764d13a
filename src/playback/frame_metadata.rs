//! Frame-event metadata back on the video: the records of a data stream bound to a video
//! stream that describe its frames (detections a vision program wrote), for the times a
//! player is showing.
//!
//! A record counts when its data is a JSON object with `"streamName"` equal to the video
//! stream's name and a numeric `"frameTimestampMs"` (producer time, as GetImages and the
//! FRAGMENT events give it); the rest of the object (boxes, labels, scores) is passed
//! through. Each match also gets where it is in the video, found through the fragment
//! that holds its time: `"fragmentNumber"` and `"fragmentOffsetMs"` (what a player that
//! knows which fragment it shows needs, whatever the clocks say), and
//! `"serverTimestampMs"`, the same instant on the server clock.
//!
//! Records are read by arrival time, from a minute before the window (producers' and
//! the server's clocks differ) to a minute after it (detections arrive after their
//! frames); at most [`MAX_SCANNED`] records and [`MAX_SCANNED_BYTES`] per request. A
//! record over [`MAX_RECORD_BYTES`] is no detection and is skipped unparsed; matching
//! runs on a blocking thread, a page at a time, and at most [`MAX_CONCURRENT`] requests
//! scan at once (the others wait their turn).

use serde_json::Value;

use crate::data_streams::{DataStreamEngine, DataStreamError, DataStreamId, StartingPosition};
use crate::video_store::{StoreError, StreamRecord, TimeKind, VideoStore};

/// The widest window one request may ask for.
pub const MAX_WINDOW_MS: i64 = 120_000;
/// Records read per request, over all shards.
pub const MAX_SCANNED: usize = 20_000;
/// Record bytes read per request, over all shards.
pub const MAX_SCANNED_BYTES: usize = 32 << 20;
/// The largest record parsed as a detection.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Records returned per request.
pub const MAX_RETURNED: usize = 2_000;
/// Requests scanning at once, server-wide.
pub const MAX_CONCURRENT: usize = 4;
/// Records read per page.
const PAGE_RECORDS: u32 = 200;

static SCANS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT);
const ARRIVAL_SLACK_MS: i64 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("{0}")]
    DataStream(#[from] DataStreamError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The metadata records of `video`'s frames with producer times in
/// `[start_ms, end_ms)`, ordered by frame time.
pub async fn frame_metadata(
    store: &VideoStore,
    data_streams: &DataStreamEngine,
    source: &DataStreamId,
    video: &StreamRecord,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<Value>, MetadataError> {
    let view = data_streams.describe(source)?;
    let _turn = SCANS.acquire().await;
    let mut found: Vec<(i64, Value)> = Vec::new();
    let (mut scanned, mut scanned_bytes) = (0usize, 0usize);
    'shards: for shard in &view.shards {
        let from = StartingPosition::AtTimestamp(start_ms - ARRIVAL_SLACK_MS);
        let mut iterator = Some(data_streams.get_shard_iterator(source, &shard.id(), from)?);
        while let Some(it) = iterator.take() {
            let page = data_streams.get_records(&it, Some(PAGE_RECORDS)).await?;
            if page.records.is_empty() {
                break;
            }
            let mut take = Vec::new();
            let mut last_page = false;
            for r in page.records {
                scanned += 1;
                scanned_bytes += r.data.len();
                if r.arrival_ms > end_ms + ARRIVAL_SLACK_MS {
                    last_page = true;
                    break;
                }
                if scanned > MAX_SCANNED || scanned_bytes > MAX_SCANNED_BYTES {
                    break 'shards;
                }
                if r.data.len() <= MAX_RECORD_BYTES {
                    take.push(r.data);
                }
            }
            let name = video.name.clone();
            let matched = tokio::task::spawn_blocking(move || {
                take.iter().filter_map(|d| matching(d, &name, start_ms, end_ms)).collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            found.extend(matched);
            if last_page || found.len() > MAX_RETURNED * 4 {
                break;
            }
            iterator = page.next_iterator;
        }
    }
    found.sort_by_key(|(t, _)| *t);
    found.truncate(MAX_RETURNED);
    let mut out = Vec::with_capacity(found.len());
    for (t, mut v) in found {
        let us = t * 1000;
        let holder = store.fragment_holding(video.id, TimeKind::Producer, us)?;
        if let Some(m) = holder {
            let offset_us = (us - m.producer_ts_us).max(0);
            v["fragmentNumber"] = Value::from(m.fragment_number.to_string());
            v["fragmentOffsetMs"] = Value::from(offset_us / 1000);
            v["serverTimestampMs"] = Value::from((m.server_ts_us + offset_us) / 1000);
        }
        out.push(v);
    }
    Ok(out)
}

/// The producer-time window (ms) of `count` fragments from `first` on: what a player
/// showing fragment `first` asks about.
pub fn fragments_window(
    store: &VideoStore,
    video: &StreamRecord,
    first: u64,
    count: usize,
) -> Result<Option<(i64, i64)>, StoreError> {
    let metas = store.fragments_from(video.id, first, count.clamp(1, 100))?;
    let start = metas.iter().map(|m| m.producer_ts_us).min();
    let end = metas.iter().map(|m| m.producer_ts_us + m.duration_us).max();
    Ok(start.zip(end).map(|(s, e)| (s / 1000, (e / 1000 + 1).min(s / 1000 + MAX_WINDOW_MS))))
}

/// The record's JSON and frame time if it describes a frame of `stream` in the window.
pub fn matching(data: &[u8], stream: &str, start_ms: i64, end_ms: i64) -> Option<(i64, Value)> {
    if data.len() > MAX_RECORD_BYTES {
        return None;
    }
    let v: Value = serde_json::from_slice(data).ok()?;
    if v.get("streamName")?.as_str()? != stream {
        return None;
    }
    let t = v.get("frameTimestampMs")?.as_f64()? as i64;
    (start_ms..end_ms).contains(&t).then_some((t, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_other_streams_times_or_shapes_do_not_match() {
        let r = |s: &str| s.as_bytes().to_vec();
        let good = r(r#"{"streamName":"door","frameTimestampMs":1500,"label":"motion","x":0.1}"#);
        let (t, v) = matching(&good, "door", 1000, 2000).unwrap();
        assert_eq!((t, v["label"].as_str()), (1500, Some("motion")));
        assert!(matching(&good, "yard", 1000, 2000).is_none());
        assert!(matching(&good, "door", 1600, 2000).is_none());
        assert!(matching(&good, "door", 1000, 1500).is_none());
        assert!(matching(&r(r#"{"streamName":"door"}"#), "door", 0, 9999).is_none());
        assert!(matching(&r(r#"{"streamName":"door","frameTimestampMs":"1500"}"#), "door", 0, 9999).is_none());
        assert!(matching(b"\xff not json", "door", 0, 9999).is_none());
        assert!(matching(&r("[1,2]"), "door", 0, 9999).is_none());
    }
}
