//! Video streams publishing what they store: an event per persisted fragment and per
//! generated image into a queue, data stream or delivery stream (the stream's
//! notification settings), and images made at a sampling interval into a bucket (its
//! image-generation settings). Through the engines' Rust APIs, no HTTP hop.
//!
//! One follower task per stream with enabled settings walks its fragments in order
//! behind the live edge. Its cursor (the next fragment, the next image time) is kept in
//! `data/stream_events/` and advanced only after the fragment's images are stored and
//! its events accepted, so a restart carries on where it stopped: at least once, in
//! order per stream. A follower starts at the fragments persisted after the settings
//! took effect; removing or disabling the settings forgets its cursor.
//!
//! Destinations that do not exist drop the event (logged and counted); other failures
//! (a full disk, a store error) are retried with backoff, holding the stream's events
//! back meanwhile.

pub mod cursors;
pub mod embedded;
pub mod event;
pub mod postgres;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::data_streams::{DataStreamEngine, DataStreamError, DataStreamId, NewRecord};
use crate::delivery_streams::{DeliveryStreamEngine, DeliveryStreamError, DeliveryStreamId};
use crate::images::{ImageFormat, ImageOutcome, ImageService, OutputSpec};
use crate::metrics::Metrics;
use crate::queues::{QueueEngine, QueueError, QueueId, SendRequest};
use crate::storage_failure::StorageFailure;
use crate::video_store::{
    EventDestination, FragmentMeta, ImageGenerationSettings, StoreError, StreamId, StreamRecord, TimeKind, VideoStore,
};
use crate::wire::fmp4::{parse_init, InitInfo, TrackKind};
use crate::wire::mp4_tracks::fragment_samples;
use cursors::{Cursor, CursorStore};
use event::{FragmentEvent, ImageEvent};

/// The followers' cursors, shared by the supervisor and the followers.
type Cursors = Arc<dyn CursorStore>;

/// What the events reach.
#[derive(Clone)]
pub struct EventTargets {
    pub store: VideoStore,
    pub images: ImageService,
    pub queues: QueueEngine,
    pub data_streams: DataStreamEngine,
    pub delivery_streams: DeliveryStreamEngine,
    pub metrics: Arc<Metrics>,
}

/// Starts the publisher: a task that keeps one follower per stream with enabled
/// settings, until `stop` turns true.
pub fn start(
    targets: EventTargets,
    data_dir: &Path,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, StorageFailure> {
    let cursors: Cursors = Arc::new(embedded::SledCursors::open(data_dir)?);
    Ok(start_with(targets, cursors, stop))
}

/// Starts the publisher over any cursor store.
pub fn start_with(targets: EventTargets, cursors: Arc<dyn CursorStore>, stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(supervise(Arc::new(targets), cursors, stop))
}

fn active(r: &StreamRecord) -> bool {
    r.notification.as_ref().is_some_and(|n| n.enabled()) || r.image_generation.as_ref().is_some_and(|g| g.enabled())
}

async fn supervise(t: Arc<EventTargets>, cursors: Cursors, mut stop: watch::Receiver<bool>) {
    let mut changes = t.store.settings_changes();
    let mut followers: HashMap<StreamId, (watch::Sender<StreamRecord>, JoinHandle<()>)> = HashMap::new();
    loop {
        match t.store.streams_with_events() {
            Ok(records) => {
                let wanted: HashMap<StreamId, StreamRecord> =
                    records.into_iter().filter(active).map(|r| (r.id, r)).collect();
                followers.retain(|id, (_, task)| {
                    let keep = wanted.contains_key(id) && !task.is_finished();
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                match cursors.streams() {
                    Ok(ids) => {
                        for id in ids.into_iter().filter(|id| !wanted.contains_key(id)) {
                            if let Err(e) = cursors.remove(id) {
                                tracing::warn!(stream = id, error = %e, "an event cursor could not be removed");
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "the event cursors could not be listed"),
                }
                for (id, record) in wanted {
                    match followers.get(&id) {
                        Some((settings, _)) => {
                            settings.send_if_modified(|r| {
                                let changed = *r != record;
                                *r = record.clone();
                                changed
                            });
                        }
                        None => {
                            let (settings, rx) = watch::channel(record);
                            let task = tokio::spawn(follow(t.clone(), cursors.clone(), id, rx, stop.clone()));
                            followers.insert(id, (settings, task));
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "the streams' event settings could not be read"),
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { break },
            _ = stop.changed() => break,
            // A follower that ended (its stream deleted) is noticed here at the latest.
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        if *stop.borrow() {
            break;
        }
    }
    for (_, (_, task)) in followers {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
}

/// Why a fragment's work stopped before it was done.
#[derive(Debug)]
enum Interrupted {
    Stopping,
}

async fn follow(
    t: Arc<EventTargets>,
    cursors: Cursors,
    stream: StreamId,
    mut settings: watch::Receiver<StreamRecord>,
    mut stop: watch::Receiver<bool>,
) {
    let live = match t.store.live(stream) {
        Ok(l) => l,
        Err(e) => return tracing::warn!(stream, error = %e, "no events: the stream cannot be followed"),
    };
    let mut edge = live.subscribe();
    let mut cursor = match cursors.get(stream) {
        Ok(Some(c)) => c,
        Err(e) => {
            // Stopped, loudly: resuming anywhere would skip or repeat events unseen.
            t.metrics.event_followers_stopped.inc();
            return tracing::error!(stream, error = %e, "the stream's event follower is stopped; no events are published for it until the cursor is mended");
        }
        Ok(None) => {
            let c = Cursor { next_fragment: edge.borrow().last_persisted + 1, next_image_us: i64::MIN };
            if let Err(e) = cursors.put(stream, &c).await {
                tracing::error!(stream, error = %e, "an event cursor could not be stored");
            }
            c
        }
    };
    let mut init_cache: HashMap<u32, Option<InitInfo>> = HashMap::new();
    loop {
        if *stop.borrow() {
            return;
        }
        let record = settings.borrow_and_update().clone();
        let batch = match t.store.fragments_from(stream, cursor.next_fragment, 16) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(stream, error = %e, "fragments could not be listed for events; retrying");
                if pause(&mut stop, Duration::from_secs(1)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        if batch.is_empty() {
            if edge.borrow().deleted {
                return;
            }
            tokio::select! {
                r = edge.changed() => if r.is_err() { return },
                _ = settings.changed() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        for meta in batch {
            match publish_fragment(&t, &record, &meta, &mut cursor, &mut init_cache, &mut stop).await {
                Ok(()) => {}
                Err(Interrupted::Stopping) => return,
            }
            cursor.next_fragment = meta.fragment_number + 1;
            while let Err(e) = cursors.put(stream, &cursor).await {
                tracing::error!(stream, error = %e, "an event cursor could not be stored; retrying");
                if pause(&mut stop, Duration::from_secs(1)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Waits `d`, or less if the server is stopping (then `Err`).
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> Result<(), Interrupted> {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.changed() => {}
    }
    if *stop.borrow() {
        Err(Interrupted::Stopping)
    } else {
        Ok(())
    }
}

async fn publish_fragment(
    t: &EventTargets,
    record: &StreamRecord,
    meta: &FragmentMeta,
    cursor: &mut Cursor,
    init_cache: &mut HashMap<u32, Option<InitInfo>>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Interrupted> {
    let destination = record.notification.as_ref().filter(|n| n.enabled()).and_then(|n| n.destination());
    if let Some(g) = record.image_generation.as_ref().filter(|g| g.enabled()) {
        generate_images(t, record, g, meta, cursor, destination.as_ref(), stop).await?;
    }
    if let Some(dest) = &destination {
        let event = fragment_event(t, record, meta, init_cache).await;
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let dedup = format!("F-{}-{}", record.id, meta.fragment_number);
        if send(t, dest, &record.name, body, &dedup, event::FRAGMENT, stop).await? {
            let age_us = t.store.clock().now_us().saturating_sub(meta.server_ts_us);
            t.metrics.event_age_seconds.observe(age_us.max(0) as f64 / 1e6);
        }
    }
    Ok(())
}

/// Describes a fragment: its times, the video track's codec and size (from its init
/// segment, parsed once per init), its bytes and keyframes.
async fn fragment_event(
    t: &EventTargets,
    record: &StreamRecord,
    meta: &FragmentMeta,
    init_cache: &mut HashMap<u32, Option<InitInfo>>,
) -> FragmentEvent {
    let info = init_cache
        .entry(meta.init_id)
        .or_insert_with(|| {
            let init = t.store.init_segment(record.id, meta.init_id).ok().flatten();
            init.as_deref().and_then(|i| parse_init(i).ok())
        })
        .as_ref();
    let (codec, width, height) = info.and_then(InitInfo::timing_track).map_or((String::new(), 0, 0), |tr| {
        (crate::codec::codec_string(tr), u32::from(tr.width), u32::from(tr.height))
    });
    let mut keyframes = 0;
    if let (Some(info), Ok(bytes)) = (info, t.store.read_fragment(record.id, meta).await) {
        let video = info.tracks.iter().find(|tr| tr.kind == TrackKind::Video).map(|tr| tr.track_id);
        if let Ok(tracks) = fragment_samples(&bytes, info) {
            keyframes = tracks
                .iter()
                .filter(|tr| Some(tr.track_id) == video)
                .flat_map(|tr| tr.samples.iter())
                .filter(|s| s.is_sync())
                .count() as u32;
        }
    }
    let ms = |us: i64| us / 1000;
    FragmentEvent {
        header: event::EventHeader::new(event::FRAGMENT, &record.name, &record.arn, meta.fragment_number),
        producer_start_timestamp_ms: ms(meta.producer_ts_us),
        producer_end_timestamp_ms: ms(meta.producer_ts_us + meta.duration_us),
        server_start_timestamp_ms: ms(meta.server_ts_us),
        server_end_timestamp_ms: ms(meta.server_ts_us + meta.duration_us),
        duration_ms: ms(meta.duration_us),
        codec,
        width,
        height,
        bytes: u64::from(meta.len),
        keyframes,
    }
}

/// The image generation settings as render settings and the image clock.
fn image_settings(g: &ImageGenerationSettings) -> (OutputSpec, TimeKind) {
    let format = if g.format == "PNG" { ImageFormat::Png } else { ImageFormat::Jpeg };
    let jpeg_quality = g.format_config.get("JPEGQuality").and_then(|q| q.parse().ok()).unwrap_or(80);
    let kind = if g.image_selector_type == "SERVER_TIMESTAMP" { TimeKind::Server } else { TimeKind::Producer };
    (OutputSpec { format, jpeg_quality, width: g.width, height: g.height }, kind)
}

async fn generate_images(
    t: &EventTargets,
    record: &StreamRecord,
    g: &ImageGenerationSettings,
    meta: &FragmentMeta,
    cursor: &mut Cursor,
    destination: Option<&EventDestination>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), Interrupted> {
    let Some((bucket, prefix)) = g.bucket_and_prefix() else {
        tracing::warn!(stream = %record.name, uri = %g.uri, "image generation has no usable destination");
        return Ok(());
    };
    let (output, kind) = image_settings(g);
    let start = meta.start_us(kind);
    let end = start + meta.duration_us.max(1);
    let interval_us = g.sampling_interval_ms.max(1) * 1000;
    // A clock that went back (a producer restarted its timestamps) starts over.
    if cursor.next_image_us > end + 60_000_000 {
        cursor.next_image_us = i64::MIN;
    }
    let times = event::image_times(cursor.next_image_us, start, end, interval_us);
    let Some(&last) = times.last() else { return Ok(()) };
    let outcomes = loop {
        match t.images.images_in_fragment(record.id, meta, kind, &times, output).await {
            Ok(o) => break o,
            // Retention (or a deleted stream) took the fragment meanwhile: nothing to make.
            Err(StoreError::FragmentNotFound(_) | StoreError::StreamNotFound(_)) => {
                tracing::warn!(stream = %record.name, fragment = meta.fragment_number, "no images: the fragment is gone");
                cursor.next_image_us = last.saturating_add(interval_us);
                return Ok(());
            }
            Err(e) => {
                tracing::error!(stream = %record.name, error = %e, "images could not be made; retrying");
                pause(stop, Duration::from_secs(1)).await?;
            }
        }
    };
    for (time, outcome) in times.iter().zip(outcomes) {
        let ImageOutcome::Image { bytes, .. } = outcome else {
            tracing::debug!(stream = %record.name, time, ?outcome, "no image at this time");
            continue;
        };
        let key = event::image_key(&prefix, &record.name, time / 1000, output.format.extension());
        let size = bytes.len() as u64;
        let mut backoff = Duration::from_millis(100);
        let mut stored = true;
        while let Err(e) = t.delivery_streams.buckets().write(&record.scope.account, &bucket, &key, bytes.clone()).await
        {
            if !e.is_transient() {
                // Another account's bucket, a key no bucket can hold: trying again
                // cannot help, and the stream's other images must go on.
                tracing::error!(stream = %record.name, bucket, key, error = %e, "an image cannot be stored; skipped");
                stored = false;
                break;
            }
            tracing::error!(stream = %record.name, bucket, key, error = %e, "an image could not be stored; retrying");
            pause(stop, backoff).await?;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        if !stored {
            continue;
        }
        if let Some(dest) = destination {
            let e = ImageEvent {
                header: event::EventHeader::new(event::IMAGE, &record.name, &record.arn, meta.fragment_number),
                image_timestamp_ms: time / 1000,
                image_selector_type: g.image_selector_type.clone(),
                format: g.format.clone(),
                bucket: bucket.to_string(),
                uri: format!("s3://{bucket}/{key}"),
                key,
                bytes: size,
            };
            let dedup = format!("I-{}-{}", record.id, time);
            send(t, dest, &record.name, serde_json::to_vec(&e).unwrap_or_default(), &dedup, event::IMAGE, stop).await?;
        }
    }
    cursor.next_image_us = last.saturating_add(interval_us);
    Ok(())
}

/// Sends one event; `Ok(false)` when its destination does not exist (dropped).
async fn send(
    t: &EventTargets,
    dest: &EventDestination,
    stream_name: &str,
    body: Vec<u8>,
    dedup: &str,
    kind: &'static str,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool, Interrupted> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let outcome = deliver(t, dest, stream_name, &body, dedup).await;
        match outcome {
            Ok(()) => {
                t.metrics.count_event(kind, dest.label(), "sent");
                return Ok(true);
            }
            Err(why @ Failure::Missing(_)) => {
                t.metrics.count_event(kind, dest.label(), "dropped");
                tracing::error!(stream = stream_name, %why, "an event was dropped: its destination does not exist");
                return Ok(false);
            }
            Err(why) => {
                t.metrics.count_event(kind, dest.label(), "failed_attempt");
                tracing::warn!(stream = stream_name, %why, "an event could not be delivered; retrying");
                pause(stop, backoff).await?;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Why an event did not reach its destination.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The destination does not exist: the event is dropped (and counted).
    #[error("{0} does not exist")]
    Missing(String),
    #[error("the queue refused it: {0}")]
    Queue(#[source] QueueError),
    #[error("the data stream refused it: {0}")]
    DataStream(#[source] DataStreamError),
    #[error("the delivery stream refused it: {0}")]
    DeliveryStream(#[source] DeliveryStreamError),
    #[error("the delivery stream's put stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

async fn deliver(
    t: &EventTargets,
    dest: &EventDestination,
    stream_name: &str,
    body: &[u8],
    dedup: &str,
) -> Result<(), Failure> {
    match dest {
        EventDestination::Queue { scope, name } => {
            let fifo = name.ends_with(".fifo");
            let req = SendRequest {
                body: String::from_utf8_lossy(body).into_owned(),
                delay_s: None,
                attributes: Default::default(),
                system_attributes: Default::default(),
                group_id: fifo.then(|| stream_name.to_string()),
                dedup_id: fifo.then(|| dedup.to_string()),
            };
            match t.queues.send(&QueueId::new(scope, name), req).await {
                Ok(_) => Ok(()),
                Err(QueueError::QueueDoesNotExist) => Err(Failure::Missing(format!("queue {name}"))),
                Err(e) => Err(Failure::Queue(e)),
            }
        }
        EventDestination::DataStream { scope, name } => {
            let record =
                NewRecord { partition_key: stream_name.to_string(), data: body.to_vec(), explicit_hash_key: None };
            match t.data_streams.put_record(&DataStreamId::new(scope, name), record).await {
                Ok(_) => Ok(()),
                Err(DataStreamError::ResourceNotFound(_)) => Err(Failure::Missing(format!("data stream {name}"))),
                Err(e) => Err(Failure::DataStream(e)),
            }
        }
        EventDestination::DeliveryStream { scope, name } => {
            // One JSON document per line in the delivered objects.
            let mut line = body.to_vec();
            line.push(b'\n');
            let id = DeliveryStreamId { scope: scope.clone(), name: name.clone() };
            let engine = t.delivery_streams.clone();
            // The put returns once the record is durable: a blocking wait, off the runtime.
            match tokio::task::spawn_blocking(move || engine.put(&id, &[&line])).await? {
                Ok(_) => Ok(()),
                Err(DeliveryStreamError::ResourceNotFound(_)) => {
                    Err(Failure::Missing(format!("delivery stream {name}")))
                }
                Err(e) => Err(Failure::DeliveryStream(e)),
            }
        }
    }
}
