//! One PutMedia session: a fragmented-MP4 or Matroska byte stream in (told apart by
//! its first bytes: the EBML magic is Matroska's), acknowledgements out.
//!
//! The thin async layer around [`Fragmenter`] and [`MkvFragmenter`], which both make
//! the store's fragments: it pulls body chunks, hands complete
//! fragments to the store, and reports each fragment's progress the way Kinesis Video
//! does: BUFFERING when its first chunk arrives, RECEIVED when it is complete and
//! numbered, PERSISTED once durable, or ERROR. Persisting is pipelined: the session
//! keeps reading while earlier fragments are being made durable, and a separate task
//! reports PERSISTED in fragment order.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc;

use super::fragmenter::{FatalError, FragmentLimits, FragmentRejection, Fragmenter, FragmenterEvent};
use super::mkv_fragmenter::{is_matroska, MkvFragmenter};
use crate::metrics::Metrics;
use crate::video_store::{LivePart, NewFragment, PartSink, PendingFragment, StoreError, StreamRecord, VideoStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimecodeType {
    /// Fragment times are absolute (tfdt / timescale is time since the Unix epoch).
    Absolute,
    /// Fragment times count from the producer start timestamp.
    Relative,
}

#[derive(Debug, Clone, Copy)]
pub struct SessionParams {
    pub timecode_type: TimecodeType,
    /// `x-amzn-producer-start-timestamp`, µs since the epoch; arrival time when absent.
    pub producer_start_us: Option<i64>,
    pub limits: FragmentLimits,
}

/// Kinesis Video's PutMedia acknowledgement event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AckEventType {
    Buffering,
    Received,
    Persisted,
    Error,
    Idle,
}

/// PutMedia error codes (Kinesis Video Streams developer guide, PutMedia).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    StreamReadError,
    MaxFragmentSizeReached,
    MaxFragmentDurationReached,
    FragmentTimecodeLesserThanPrevious,
    MoreThanAllowedTracksFound,
    InvalidMediaData,
    TrackNumberMismatch,
    FramesMissingForTrack,
    StreamNotActive,
    InternalError,
    ArchivalError,
}

impl AckError {
    pub fn id(self) -> u32 {
        match self {
            AckError::StreamReadError => 4000,
            AckError::MaxFragmentSizeReached => 4001,
            AckError::MaxFragmentDurationReached => 4002,
            AckError::FragmentTimecodeLesserThanPrevious => 4004,
            AckError::InvalidMediaData => 4006,
            AckError::TrackNumberMismatch => 4010,
            AckError::FramesMissingForTrack => 4011,
            AckError::MoreThanAllowedTracksFound => 4012,
            AckError::StreamNotActive => 4008,
            AckError::InternalError => 5000,
            AckError::ArchivalError => 5001,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            AckError::StreamReadError => "STREAM_READ_ERROR",
            AckError::MaxFragmentSizeReached => "MAX_FRAGMENT_SIZE_REACHED",
            AckError::MaxFragmentDurationReached => "MAX_FRAGMENT_DURATION_REACHED",
            AckError::FragmentTimecodeLesserThanPrevious => "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS",
            AckError::MoreThanAllowedTracksFound => "MORE_THAN_ALLOWED_TRACKS_FOUND",
            // Kinesis Video names it after its container; the meaning is the same.
            AckError::InvalidMediaData => "INVALID_MKV_DATA",
            AckError::TrackNumberMismatch => "TRACK_NUMBER_MISMATCH",
            AckError::FramesMissingForTrack => "FRAMES_MISSING_FOR_TRACK",
            AckError::StreamNotActive => "STREAM_NOT_ACTIVE",
            AckError::InternalError => "INTERNAL_ERROR",
            AckError::ArchivalError => "ARCHIVAL_ERROR",
        }
    }
}

/// One acknowledgement, serialised as one JSON line.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ack {
    #[serde(rename = "EventType")]
    pub event_type: AckEventType,
    #[serde(rename = "FragmentTimecode", skip_serializing_if = "Option::is_none")]
    pub fragment_timecode: Option<i64>,
    #[serde(rename = "FragmentNumber", skip_serializing_if = "Option::is_none")]
    pub fragment_number: Option<String>,
    #[serde(rename = "ErrorId", skip_serializing_if = "Option::is_none")]
    pub error_id: Option<u32>,
    #[serde(rename = "ErrorCode", skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
    /// Why, in words (not in Kinesis Video's acks; clients ignore unknown fields).
    #[serde(rename = "Message", skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Ack {
    pub fn event(event_type: AckEventType, timecode_ms: Option<i64>, fragment_number: Option<u64>) -> Self {
        Ack {
            event_type,
            fragment_timecode: timecode_ms,
            fragment_number: fragment_number.map(|n| n.to_string()),
            error_id: None,
            error_code: None,
            message: None,
        }
    }

    pub fn error(
        err: AckError,
        timecode_ms: Option<i64>,
        fragment_number: Option<u64>,
        message: impl Into<String>,
    ) -> Self {
        Ack {
            error_id: Some(err.id()),
            error_code: Some(err.code()),
            message: Some(message.into()),
            ..Ack::event(AckEventType::Error, timecode_ms, fragment_number)
        }
    }

    pub fn idle() -> Self {
        Ack::event(AckEventType::Idle, None, None)
    }

    pub fn to_line(&self) -> Bytes {
        let mut v = serde_json::to_vec(self).unwrap_or_else(|_| b"{\"EventType\":\"ERROR\"}".to_vec());
        v.push(b'\n');
        Bytes::from(v)
    }
}

fn fatal_to_ack_error(e: &FatalError) -> AckError {
    match e {
        FatalError::TooManyTracks { .. } => AckError::MoreThanAllowedTracksFound,
        FatalError::UndeclaredTrack(_) => AckError::TrackNumberMismatch,
        FatalError::EndedInsideBox { .. } => AckError::StreamReadError,
        _ => AckError::InvalidMediaData,
    }
}

fn rejection_to_ack_error(r: &FragmentRejection) -> AckError {
    match r {
        FragmentRejection::TooLarge { .. } => AckError::MaxFragmentSizeReached,
        FragmentRejection::TooLong { .. } => AckError::MaxFragmentDurationReached,
        FragmentRejection::TimecodeBackwards { .. } => AckError::FragmentTimecodeLesserThanPrevious,
        FragmentRejection::FramesMissingForTrack { .. } => AckError::FramesMissingForTrack,
    }
}

fn store_to_ack_error(e: &StoreError) -> AckError {
    match e {
        StoreError::StreamNotFound(_) => AckError::StreamNotActive,
        StoreError::Io(_) | StoreError::Storage(_) => AckError::ArchivalError,
        _ => AckError::InternalError,
    }
}

struct InFlight {
    pending: PendingFragment,
    timecode_ms: i64,
    received_at: Instant,
    size: u64,
}

/// The body's format, decided by its first four bytes.
enum Demuxer {
    Undecided { limits: FragmentLimits, held: Vec<u8> },
    Mp4(Box<Fragmenter>),
    Mkv(Box<MkvFragmenter>),
}

impl Demuxer {
    fn push(&mut self, data: &[u8], out: &mut Vec<FragmenterEvent>) -> Result<(), FatalError> {
        match self {
            Demuxer::Undecided { limits, held } => {
                held.extend_from_slice(data);
                if held.len() < 4 {
                    return Ok(());
                }
                let held = std::mem::take(held);
                *self = if is_matroska(&held) {
                    Demuxer::Mkv(Box::new(MkvFragmenter::new(*limits)))
                } else {
                    Demuxer::Mp4(Box::new(Fragmenter::new(*limits)))
                };
                self.push(&held, out)
            }
            Demuxer::Mp4(f) => f.push(data, out),
            Demuxer::Mkv(f) => f.push(data, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<FragmenterEvent>) -> Result<(), FatalError> {
        match self {
            Demuxer::Undecided { held, .. } if held.is_empty() => Ok(()),
            Demuxer::Undecided { held, .. } => Err(FatalError::EndedInsideBox { dropped: held.len() as u64 }),
            Demuxer::Mp4(f) => f.finish(out),
            Demuxer::Mkv(f) => f.finish(out),
        }
    }

    fn flush(&mut self, out: &mut Vec<FragmenterEvent>) {
        match self {
            Demuxer::Undecided { .. } => {}
            Demuxer::Mp4(f) => f.flush(out),
            Demuxer::Mkv(f) => f.flush(out),
        }
    }
}

/// Runs a session to the end of `body`; acknowledgements go to `acks`. Returns once
/// every fragment received has been persisted or failed.
pub async fn run_session<S, E>(
    store: VideoStore,
    stream: StreamRecord,
    params: SessionParams,
    mut body: S,
    acks: mpsc::Sender<Ack>,
    metrics: Arc<Metrics>,
) where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let clock = store.clock().clone();
    let base_us = match params.timecode_type {
        TimecodeType::Relative => params.producer_start_us.unwrap_or_else(|| clock.now_us()),
        TimecodeType::Absolute => 0,
    };
    let (inflight_tx, mut inflight_rx) = mpsc::channel::<InFlight>(256);
    let persist_acks = acks.clone();
    let persist_metrics = metrics.clone();
    // Reports PERSISTED (or ERROR) in fragment order as the writer finishes them.
    let persister = tokio::spawn(async move {
        while let Some(f) = inflight_rx.recv().await {
            let n = f.pending.fragment_number;
            let ack = match f.pending.persisted.await {
                Ok(Ok(_)) => {
                    persist_metrics.fragments_persisted.inc();
                    persist_metrics.ack_latency.observe(f.received_at.elapsed().as_secs_f64());
                    Ack::event(AckEventType::Persisted, Some(f.timecode_ms), Some(n))
                }
                Ok(Err(e)) => {
                    tracing::error!(fragment = n, size = f.size, error = %e, "fragment could not be persisted");
                    Ack::error(store_to_ack_error(&e), Some(f.timecode_ms), Some(n), e.to_string())
                }
                Err(_) => Ack::error(AckError::InternalError, Some(f.timecode_ms), Some(n), "store shut down"),
            };
            let _ = persist_acks.send(ack).await;
        }
    });

    // The chunks of the fragment being received are the stream's LL-HLS parts.
    let parts = store.live(stream.id).ok().map(|l| l.part_sink());
    let mut fragmenter = Demuxer::Undecided { limits: params.limits, held: Vec::new() };
    let mut init_id: Option<u32> = None;
    let mut fragment_server_ts = clock.now_us();
    let mut events = Vec::new();
    let mut ended = false;
    while !ended {
        events.clear();
        let pushed = match body.next().await {
            Some(Ok(data)) => {
                metrics.add_bytes_in(data.len() as u64);
                fragmenter.push(&data, &mut events)
            }
            Some(Err(e)) => {
                // The producer went away mid-stream: complete chunks are kept, the
                // box being received is lost.
                tracing::info!(stream = %stream.name, error = %e, "PutMedia body ended with an error");
                let _ = acks
                    .send(Ack::error(
                        AckError::StreamReadError,
                        None,
                        None,
                        format!("error reading the request body: {e}"),
                    ))
                    .await;
                ended = true;
                fragmenter.flush(&mut events);
                Ok(())
            }
            None => {
                ended = true;
                fragmenter.finish(&mut events)
            }
        };
        if pushed.is_err() {
            fragmenter.flush(&mut events);
        }
        for event in events.drain(..) {
            let ok = handle_event(
                &store,
                &stream,
                event,
                base_us,
                &mut init_id,
                &mut fragment_server_ts,
                &acks,
                &inflight_tx,
                &metrics,
                parts.as_ref(),
            )
            .await;
            if !ok {
                ended = true;
                break;
            }
        }
        if let Err(fatal) = pushed {
            tracing::info!(stream = %stream.name, error = %fatal, "PutMedia stream rejected");
            metrics.fragments_rejected.inc();
            let _ = acks.send(Ack::error(fatal_to_ack_error(&fatal), None, None, fatal.to_string())).await;
            break;
        }
    }
    drop(inflight_tx);
    let _ = persister.await;
}

/// Handles one fragmenter event; `false` ends the session.
#[allow(clippy::too_many_arguments)]
async fn handle_event(
    store: &VideoStore,
    stream: &StreamRecord,
    event: FragmenterEvent,
    base_us: i64,
    init_id: &mut Option<u32>,
    fragment_server_ts: &mut i64,
    acks: &mpsc::Sender<Ack>,
    inflight: &mpsc::Sender<InFlight>,
    metrics: &Metrics,
    parts: Option<&PartSink>,
) -> bool {
    match event {
        FragmenterEvent::Init(init) => match store.put_init(stream.id, init.bytes).await {
            Ok(id) => {
                *init_id = Some(id);
                true
            }
            Err(e) => {
                let _ = acks.send(Ack::error(store_to_ack_error(&e), None, None, e.to_string())).await;
                false
            }
        },
        FragmenterEvent::FragmentStarted { start_us } => {
            *fragment_server_ts = store.clock().now_us();
            let _ = acks.send(Ack::event(AckEventType::Buffering, Some(start_us / 1000), None)).await;
            true
        }
        FragmenterEvent::Chunk { bytes, duration_us, independent } => {
            if let (Some(parts), Some(init)) = (parts, *init_id) {
                parts.push(init, LivePart { bytes, duration_us, independent });
            }
            true
        }
        FragmenterEvent::Rejected { start_us, reason } => {
            if let Some(parts) = parts {
                parts.abandon();
            }
            metrics.fragments_rejected.inc();
            let _ = acks
                .send(Ack::error(rejection_to_ack_error(&reason), Some(start_us / 1000), None, reason.to_string()))
                .await;
            true
        }
        FragmenterEvent::Fragment(f) => {
            let Some(init) = *init_id else {
                let _ = acks.send(Ack::error(AckError::InvalidMediaData, None, None, "no init segment")).await;
                return false;
            };
            let timecode_ms = f.start_us / 1000;
            let size = f.size;
            let fragment = NewFragment {
                producer_ts_us: base_us.saturating_add(f.start_us),
                server_ts_us: *fragment_server_ts,
                duration_us: f.duration_us,
                init_id: init,
                keyframe: f.keyframe,
                chunks: f.chunks,
            };
            match store.submit_fragment(stream, fragment).await {
                Ok(pending) => {
                    let n = pending.fragment_number;
                    if let Some(parts) = parts {
                        parts.close(n);
                    }
                    let _ = acks.send(Ack::event(AckEventType::Received, Some(timecode_ms), Some(n))).await;
                    let inflight_msg = InFlight { pending, timecode_ms, received_at: Instant::now(), size };
                    inflight.send(inflight_msg).await.is_ok()
                }
                Err(e) => {
                    if let Some(parts) = parts {
                        parts.abandon();
                    }
                    let _ = acks.send(Ack::error(store_to_ack_error(&e), Some(timecode_ms), None, e.to_string())).await;
                    false
                }
            }
        }
    }
}
