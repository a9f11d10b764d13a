//! A live source's media path into the store: RTP packets (or frames a source already
//! depacketized) per track → access units ([`crate::codec::Depacketizer`]) → times on
//! the producer's wall clock and in decode order ([`crate::media::timeline`]) → the
//! sample muxer → fragments submitted to the store exactly as PutMedia's are.
//!
//! Knows nothing about RTSP messages or sockets: the RTSP server's publisher sessions
//! and the camera puller ([`super::rtsp_pull`]) feed it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::clock::SharedClock;
use crate::codec::{AccessUnit, CodecKind, CodecParams, DepacketizeStats, Depacketizer};
use crate::media::fmp4_mux::{FragmentMuxer, Muxed, MuxedFragment};
use crate::media::timeline::{DecodeOrder, MediaTime, TrackTimeline};
use crate::media::Frame;
use crate::metrics::Metrics;
use crate::video_store::{
    LiveFrame, LivePart, LiveStream, NewFragment, PartSink, PendingFragment, StoreError, StreamRecord, VideoStore,
};
use crate::wire::rtp;

/// Frames held to turn presentation order (RTP timestamps) into decode order: enough
/// for B-frame pyramids of depth 2–3. Streams that cannot reorder (H.264 with
/// `pic_order_cnt_type` 2) hold none.
const REORDER_DEPTH: usize = 4;

/// Live sources' fragments are written as chunks of at most this long inside each GOP,
/// each published as it closes: the parts low-latency HLS serves.
pub const LIVE_CHUNK_US: i64 = 200_000;

/// A track as announced: codec (parameters possibly still unknown) and `fmtp`.
pub struct TrackSpec {
    pub params: Option<CodecParams>,
    pub kind: CodecKind,
    pub fmtp: BTreeMap<String, String>,
    pub clock_rate: u32,
}

/// One track's state on the way in.
struct Track {
    params: Option<CodecParams>,
    kind: CodecKind,
    depacketizer: Depacketizer,
    timeline: TrackTimeline,
    order: DecodeOrder<AccessUnit>,
    /// Whether the reorder depth was decided from the track's parameters yet.
    depth_known: bool,
}

impl Track {
    fn new(spec: TrackSpec) -> Self {
        Track {
            depacketizer: Depacketizer::new(spec.kind, &spec.fmtp),
            timeline: TrackTimeline::new(spec.clock_rate),
            order: DecodeOrder::new(REORDER_DEPTH),
            depth_known: false,
            params: spec.params,
            kind: spec.kind,
        }
    }

    fn learn_parameters(&mut self, unit: &AccessUnit) {
        if self.params.is_none() {
            self.params = CodecParams::from_parameter_sets(self.kind, &unit.parameter_sets);
        }
        if !self.depth_known {
            if let Some(p) = &self.params {
                self.order.set_depth(if p.can_reorder() { REORDER_DEPTH } else { 0 });
                self.depth_known = true;
            }
        }
    }
}

/// What a publisher has done, for logs and the stream's status.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublishStats {
    pub fragments: u64,
    pub samples: u64,
    /// Units dropped before the first keyframe or while parameters were unknown.
    pub waiting_dropped: u64,
    pub depacketize: DepacketizeStats,
}

pub struct Publisher {
    store: VideoStore,
    record: StreamRecord,
    clock: SharedClock,
    tracks: Vec<Track>,
    muxer: Option<FragmentMuxer>,
    init_id: u32,
    persisted: mpsc::UnboundedSender<PendingFragment>,
    metrics: Arc<Metrics>,
    max_fragment_bytes: usize,
    /// When the first frame of the fragment being muxed arrived: its server timestamp
    /// (AWS's: the time the fragment started to be received, not when it closed).
    fragment_arrival_us: Option<i64>,
    /// The stream's live bus, where frames go as they are muxed, and its parts.
    live: Option<Arc<LiveStream>>,
    /// This publisher's claim on the stream's parts.
    parts: Option<PartSink>,
    chunk_us: i64,
    pub stats: PublishStats,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mux(#[from] crate::media::fmp4_mux::MuxError),
}

impl Publisher {
    pub fn new(
        store: VideoStore,
        record: StreamRecord,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        tracks: Vec<TrackSpec>,
    ) -> Self {
        // PERSISTED is awaited off the packet path, in fragment order.
        let (persisted, mut rx) = mpsc::unbounded_channel::<PendingFragment>();
        let stream = record.name.clone();
        let counted = metrics.clone();
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                match p.persisted.await {
                    Ok(Ok(_)) => {
                        counted.fragments_persisted.inc();
                    }
                    Ok(Err(e)) => tracing::warn!(stream = %stream, error = %e, "a live fragment was not persisted"),
                    Err(_) => tracing::warn!(stream = %stream, "the store dropped a live fragment"),
                }
            }
        });
        let live = store.live(record.id).ok();
        let parts = live.as_ref().map(LiveStream::part_sink);
        Publisher {
            store,
            record,
            clock,
            tracks: tracks.into_iter().map(Track::new).collect(),
            muxer: None,
            fragment_arrival_us: None,
            live,
            parts,
            chunk_us: LIVE_CHUNK_US,
            init_id: 0,
            persisted,
            metrics,
            max_fragment_bytes: crate::media::fmp4_mux::MAX_FRAGMENT_BYTES,
            stats: PublishStats::default(),
        }
    }

    /// Writes chunks of at most `us` inside each fragment (0: one chunk per fragment).
    pub fn with_chunk_duration(mut self, us: i64) -> Self {
        self.chunk_us = us;
        self
    }

    /// Cuts fragments before they hold `max` bytes (the store's fragment limit).
    pub fn with_max_fragment_bytes(mut self, max: usize) -> Self {
        self.max_fragment_bytes = max;
        self
    }

    /// One RTP packet of track `track` (in sequence order; `lost_before` packets missing).
    pub async fn packet(&mut self, track: usize, packet: &[u8], lost_before: u64) -> Result<(), PublishError> {
        let Some(t) = self.tracks.get_mut(track) else { return Ok(()) };
        let Ok(p) = rtp::parse(packet) else {
            t.depacketizer.stats.malformed += 1;
            return Ok(());
        };
        let dropped = t.depacketizer.stats.dropped_units;
        let units = t.depacketizer.push(&p, lost_before);
        let m = &self.metrics;
        m.rtsp_packets.inc();
        m.rtsp_packets_lost.inc_by(lost_before);
        m.rtsp_units_dropped.inc_by(t.depacketizer.stats.dropped_units - dropped);
        for u in units {
            let at = MediaTime::Rtp(u.rtp_ts);
            self.timed_unit(track, u, at).await?;
        }
        Ok(())
    }

    /// One frame already depacketized by the source (a pulled camera), at `elapsed`
    /// clock units since the source's own start.
    pub async fn frame(
        &mut self,
        track: usize,
        elapsed: i64,
        lost_before: u64,
        unit: AccessUnit,
    ) -> Result<(), PublishError> {
        if track >= self.tracks.len() {
            return Ok(());
        }
        self.metrics.rtsp_packets.inc();
        self.metrics.rtsp_packets_lost.inc_by(lost_before);
        self.timed_unit(track, unit, MediaTime::Elapsed(elapsed)).await
    }

    /// A sender report: the source's wall clock (`ntp`) at one of its media times.
    pub fn sender_report(&mut self, track: usize, at: MediaTime, ntp: u64) {
        let Some(unix_us) = crate::wire::rtcp::ntp_to_unix_us(ntp) else { return };
        if let Some(t) = self.tracks.get_mut(track) {
            t.timeline.sender_report(at, unix_us);
        }
    }

    async fn timed_unit(&mut self, track: usize, unit: AccessUnit, at: MediaTime) -> Result<(), PublishError> {
        let now_us = self.clock.now_us();
        let t = &mut self.tracks[track];
        t.learn_parameters(&unit);
        let pts = t.timeline.time_of(at, now_us);
        let ready = if t.kind.is_video() { t.order.push(pts, unit) } else { vec![(pts, pts, unit)] };
        for (dts, pts, unit) in ready {
            self.sample(track, dts, pts, unit).await?;
        }
        Ok(())
    }

    async fn sample(&mut self, track: usize, dts: i64, pts: i64, unit: AccessUnit) -> Result<(), PublishError> {
        // New parameter sets on a keyframe (a camera changed resolution or profile): the
        // fragment so far ends, and a new init segment starts with this keyframe.
        if unit.keyframe && !unit.parameter_sets.is_empty() {
            let t = &self.tracks[track];
            let changed =
                CodecParams::from_parameter_sets(t.kind, &unit.parameter_sets).filter(|p| t.params.as_ref() != Some(p));
            if let Some(new) = changed {
                if let Some(m) = self.muxer.as_mut().map(FragmentMuxer::flush_frame) {
                    self.emit(m).await?;
                    tracing::info!(stream = %self.record.name, track, "parameter sets changed; starting a new init segment");
                }
                self.tracks[track].params = Some(new);
                self.muxer = None;
            }
        }
        if self.muxer.is_none() {
            let video_before_keyframe = self.tracks[track].kind.is_video() && !unit.keyframe;
            if self.tracks.iter().any(|t| t.params.is_none()) || video_before_keyframe {
                self.stats.waiting_dropped += 1;
                self.metrics.rtsp_units_dropped.inc();
                tracing::debug!(track, keyframe = unit.keyframe, "waiting for parameters or a keyframe");
                return Ok(());
            }
            let params: Vec<CodecParams> = self.tracks.iter().filter_map(|t| t.params.clone()).collect();
            let muxer =
                FragmentMuxer::new(params).with_max_bytes(self.max_fragment_bytes).with_chunk_duration(self.chunk_us);
            let init = muxer.init_segment()?;
            self.init_id = self.store.put_init(self.record.id, Bytes::from(init)).await?;
            tracing::info!(stream = %self.record.name, tracks = self.tracks.len(), "live source recording");
            self.muxer = Some(muxer);
        }
        // Live viewers (WHEP) get the frame now, not a GOP later with its fragment.
        if let Some(live) = self.live.as_ref().filter(|l| l.has_frame_readers()) {
            let t = &self.tracks[track];
            // What WebRTC viewers can take: video, and audio in WebRTC's audio codec.
            if t.kind.is_video() || t.kind.webrtc().is_some() {
                live.publish_frame(LiveFrame {
                    codec: t.kind,
                    data: Bytes::copy_from_slice(&unit.data),
                    keyframe: unit.keyframe,
                    parameter_sets: match (&t.params, unit.keyframe) {
                        (Some(p), true) => p.parameter_sets(),
                        _ => Vec::new(),
                    },
                });
            }
        }
        let Some(muxer) = self.muxer.as_mut() else { return Ok(()) };
        let frame = Frame {
            track,
            dts,
            cts_offset: i32::try_from(pts - dts).unwrap_or(0),
            keyframe: unit.keyframe,
            data: unit.data,
        };
        self.stats.samples += 1;
        let now_us = self.clock.now_us();
        match muxer.push_frame(frame) {
            Ok(m) => {
                if self.emit(m).await? {
                    // The frame that closed that fragment starts the next one.
                    self.fragment_arrival_us = Some(now_us);
                } else {
                    self.fragment_arrival_us.get_or_insert(now_us);
                }
                Ok(())
            }
            Err(e) => {
                tracing::debug!(stream = %self.record.name, error = %e, "frame dropped");
                self.stats.waiting_dropped += 1;
                Ok(())
            }
        }
    }

    /// Publishes a closed chunk as a part and submits a completed fragment; `true` if
    /// a fragment was submitted.
    async fn emit(&mut self, m: Muxed) -> Result<bool, PublishError> {
        if let (Some(c), Some(parts)) = (m.chunk, self.parts.as_ref()) {
            let part = LivePart { bytes: c.bytes, duration_us: c.duration_us, independent: c.independent };
            parts.push(self.init_id, part);
        }
        let Some(f) = m.fragment else { return Ok(false) };
        let submitted = self.submit(f).await;
        if let Some(parts) = &self.parts {
            match &submitted {
                Ok(number) => parts.close(*number),
                Err(_) => parts.abandon(),
            }
        }
        submitted.map(|_| true)
    }

    async fn submit(&mut self, f: MuxedFragment) -> Result<u64, PublishError> {
        let pending = self
            .store
            .submit_fragment(
                &self.record,
                NewFragment {
                    producer_ts_us: f.start_us,
                    server_ts_us: self.fragment_arrival_us.take().unwrap_or_else(|| self.clock.now_us()),
                    duration_us: f.duration_us,
                    init_id: self.init_id,
                    keyframe: f.keyframe,
                    chunks: f.chunks,
                },
            )
            .await?;
        self.stats.fragments += 1;
        let number = pending.fragment_number;
        let _ = self.persisted.send(pending);
        Ok(number)
    }

    /// Ends the publication: what is still buffered becomes the last fragment.
    pub async fn finish(&mut self) -> Result<PublishStats, PublishError> {
        for track in 0..self.tracks.len() {
            while let Some((dts, pts, unit)) = self.tracks[track].order.pop() {
                self.sample(track, dts, pts, unit).await?;
            }
        }
        if let Some(m) = self.muxer.as_mut().map(FragmentMuxer::flush_frame) {
            self.emit(m).await?;
        }
        let mut stats = self.stats;
        for t in &self.tracks {
            stats.depacketize += t.depacketizer.stats;
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::codec::h264;
    use crate::video_store::{NewStream, StoreConfig, TimeKind};

    /// A fragment's server timestamp is when its first frame arrived (AWS: when the
    /// fragment started to be received), not when the next keyframe closed it.
    #[tokio::test]
    async fn server_timestamps_are_when_a_fragment_began_to_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let start = 1_700_000_000_000_000;
        let clock = Arc::new(ManualClock::new(start));
        let (store, _) = VideoStore::open(StoreConfig::new(dir.path()), clock.clone()).unwrap();
        let scope = store.config().default_scope.clone();
        let record = store.create_stream(&scope, NewStream { name: "cam".into(), ..Default::default() }).await.unwrap();
        let sets = vec![h264::tests::SPS.to_vec(), h264::tests::PPS.to_vec()];
        let spec = TrackSpec {
            params: CodecParams::from_parameter_sets(CodecKind::H264, &sets),
            kind: CodecKind::H264,
            fmtp: BTreeMap::new(),
            clock_rate: 90_000,
        };
        let mut p =
            Publisher::new(store.clone(), record.clone(), clock.clone(), Arc::new(Metrics::default()), vec![spec]);
        // Three GOPs of 25 frames at 25 fps, arriving in real time.
        for i in 0..75i64 {
            let keyframe = i % 25 == 0;
            let mut data = Vec::new();
            crate::codec::nal::push_length_prefixed(&mut data, &[if keyframe { 0x65 } else { 0x41 }, 0x88, i as u8]);
            let unit = AccessUnit {
                rtp_ts: (i * 3600) as u32,
                data,
                keyframe,
                parameter_sets: if keyframe { sets.clone() } else { Vec::new() },
            };
            p.frame(0, i * 3600, 0, unit).await.unwrap();
            clock.advance_us(40_000);
        }
        p.finish().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let metas = store.fragments_in_range(record.id, TimeKind::Server, 0, i64::MAX, None, 10).unwrap();
        assert_eq!(metas.len(), 3, "{metas:?}");
        // Each GOP is released by the reorder window a few frames after it arrives, and a
        // second before the next GOP's, never when that next GOP closes it.
        assert!(metas[0].server_ts_us - start < 400_000, "{}", metas[0].server_ts_us - start);
        for w in metas.windows(2) {
            assert_eq!(w[1].server_ts_us - w[0].server_ts_us, 1_000_000);
        }
    }
}
