//! One RTSP publisher's media path: RTP packets per track → depacketizer → timestamps
//! on the producer's wall clock → the sample muxer → fragments submitted to the store.
//! Knows nothing about RTSP messages or sockets; the server feeds it packets.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::rtp_depacketize::{DepacketizeStats, Depacketizer, Unit};
use crate::clock::SharedClock;
use crate::media::fmp4_mux::FragmentMuxer;
use crate::media::{CodecParams, Sample};
use crate::metrics::Metrics;
use crate::video_store::{NewFragment, PendingFragment, StoreError, StreamRecord, VideoStore};
use crate::wire::rtp;

/// Frames held to turn presentation order (RTP timestamps) into decode order: enough
/// for B-frame pyramids of depth 2–3. Streams that cannot reorder (H.264 with
/// `pic_order_cnt_type` 2) hold none.
const REORDER_DEPTH: usize = 4;

/// How many frames a track's decode order must wait for.
fn reorder_depth(params: Option<&CodecParams>) -> usize {
    match params {
        Some(CodecParams::H264 { sps, .. }) => match crate::media::h264::parse_sps(sps) {
            Some(info) if info.pic_order_cnt_type == 2 => 0,
            _ => REORDER_DEPTH,
        },
        _ => REORDER_DEPTH,
    }
}

/// A track as announced: codec (parameters possibly still unknown) and `fmtp`.
pub struct TrackSpec {
    pub params: Option<CodecParams>,
    pub kind: CodecParams,
    pub fmtp: BTreeMap<String, String>,
    pub clock_rate: u32,
}

/// A time on a source's media clock: a raw RTP timestamp (pushed RTP), or clock units
/// since the source's start as retina extends them (pulled cameras).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaTime {
    Rtp(u32),
    Elapsed(i64),
}

/// The parameters in-band parameter sets give for a track of `kind`, if complete.
fn params_from_sets(kind: &CodecParams, sets: &[Vec<u8>]) -> Option<CodecParams> {
    if sets.is_empty() {
        return None;
    }
    let find = |pred: &dyn Fn(&[u8]) -> bool| sets.iter().find(|n| !n.is_empty() && pred(n)).cloned();
    match kind {
        CodecParams::H264 { .. } => find(&|n| n[0] & 0x1f == 7)
            .zip(find(&|n| n[0] & 0x1f == 8))
            .map(|(sps, pps)| CodecParams::H264 { sps, pps }),
        CodecParams::H265 { .. } => {
            let ty = |n: &[u8]| (n[0] >> 1) & 0x3f;
            match (find(&|n| ty(n) == 32), find(&|n| ty(n) == 33), find(&|n| ty(n) == 34)) {
                (Some(vps), Some(sps), Some(pps)) => Some(CodecParams::H265 { vps, sps, pps }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Extends 32-bit RTP timestamps to a 64-bit timeline starting at the session's base.
struct TrackClock {
    base: i64,
    last_rtp: Option<u32>,
    ext: i64,
}

impl TrackClock {
    /// A time already extended by the source (retina's `elapsed`).
    fn at_extended(&mut self, elapsed: i64) -> i64 {
        if self.last_rtp.is_none() {
            self.base -= elapsed;
            self.last_rtp = Some(0);
        }
        self.base + elapsed
    }

    fn at(&mut self, rtp_ts: u32) -> i64 {
        match self.last_rtp {
            None => self.ext = self.base,
            Some(last) => self.ext += i64::from(rtp_ts.wrapping_sub(last) as i32),
        }
        self.last_rtp = Some(rtp_ts);
        self.ext
    }
}

/// Presentation times in, decode times out: each unit waits until `depth` later ones
/// arrived, then takes the smallest presentation time seen as its decode time.
struct DecodeOrder {
    waiting: VecDeque<(i64, Unit)>,
    times: BinaryHeap<Reverse<i64>>,
    last_dts: Option<i64>,
    depth: usize,
    /// Whether `depth` was decided from the track's parameters yet.
    depth_known: bool,
}

impl Default for DecodeOrder {
    fn default() -> Self {
        DecodeOrder {
            waiting: VecDeque::new(),
            times: BinaryHeap::new(),
            last_dts: None,
            depth: REORDER_DEPTH,
            depth_known: false,
        }
    }
}

impl DecodeOrder {
    fn push(&mut self, pts: i64, unit: Unit) -> Vec<(i64, i64, Unit)> {
        self.waiting.push_back((pts, unit));
        self.times.push(Reverse(pts));
        let mut ready = Vec::new();
        while self.waiting.len() > self.depth {
            ready.extend(self.pop());
        }
        ready
    }

    fn pop(&mut self) -> Option<(i64, i64, Unit)> {
        let (pts, unit) = self.waiting.pop_front()?;
        let Reverse(mut dts) = self.times.pop()?;
        if let Some(last) = self.last_dts {
            dts = dts.max(last + 1);
        }
        self.last_dts = Some(dts);
        Some((dts, pts, unit))
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
    tracks: Vec<TrackSpec>,
    depack: Vec<Depacketizer>,
    clocks: Vec<Option<TrackClock>>,
    /// The first sender report of each track, if it came before the track's first unit.
    reports: Vec<Option<(MediaTime, i64)>>,
    order: Vec<DecodeOrder>,
    muxer: Option<FragmentMuxer>,
    init_id: u32,
    persisted: mpsc::UnboundedSender<PendingFragment>,
    metrics: Arc<Metrics>,
    pub stats: PublishStats,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Media(String),
}

impl Publisher {
    pub fn new(
        store: VideoStore,
        record: StreamRecord,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        tracks: Vec<TrackSpec>,
    ) -> Self {
        let depack = tracks.iter().map(|t| Depacketizer::new(&t.kind, &t.fmtp)).collect();
        let n = tracks.len();
        // PERSISTED is awaited off the packet path, in fragment order.
        let (persisted, mut rx) = mpsc::unbounded_channel::<PendingFragment>();
        let stream = record.name.clone();
        let counted = metrics.clone();
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                match p.persisted.await {
                    Ok(Ok(_)) => {
                        counted.fragments_persisted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => tracing::warn!(stream = %stream, error = %e, "an RTSP fragment was not persisted"),
                    Err(_) => tracing::warn!(stream = %stream, "the store dropped an RTSP fragment"),
                }
            }
        });
        Publisher {
            store,
            record,
            clock,
            depack,
            clocks: (0..n).map(|_| None).collect(),
            reports: vec![None; n],
            order: (0..n).map(|_| DecodeOrder::default()).collect(),
            tracks,
            muxer: None,
            init_id: 0,
            persisted,
            metrics,
            stats: PublishStats::default(),
        }
    }

    /// One RTP packet of track `track` (in sequence order; `lost_before` packets missing).
    pub async fn packet(&mut self, track: usize, packet: &[u8], lost_before: u64) -> Result<(), PublishError> {
        let Ok(p) = rtp::parse(packet) else {
            if let Some(d) = self.depack.get_mut(track) {
                d.stats.malformed += 1;
            }
            return Ok(());
        };
        let Some(d) = self.depack.get_mut(track) else { return Ok(()) };
        let dropped = d.stats.dropped_units;
        let units = d.push(&p, lost_before);
        let m = &self.metrics;
        m.rtsp_packets.fetch_add(1, Ordering::Relaxed);
        m.rtsp_packets_lost.fetch_add(lost_before, Ordering::Relaxed);
        m.rtsp_units_dropped.fetch_add(d.stats.dropped_units - dropped, Ordering::Relaxed);
        for u in units {
            self.unit(track, u).await?;
        }
        Ok(())
    }

    fn learn_parameters(&mut self, track: usize, unit: &Unit) {
        let t = &mut self.tracks[track];
        if t.params.is_none() {
            t.params = params_from_sets(&t.kind, &unit.parameter_sets);
        }
    }

    /// One frame already depacketized by the source (a pulled camera), at `elapsed`
    /// clock units since the source's own start.
    pub async fn frame(
        &mut self,
        track: usize,
        elapsed: i64,
        lost_before: u64,
        unit: Unit,
    ) -> Result<(), PublishError> {
        if track >= self.tracks.len() {
            return Ok(());
        }
        self.metrics.rtsp_packets.fetch_add(1, Ordering::Relaxed);
        self.metrics.rtsp_packets_lost.fetch_add(lost_before, Ordering::Relaxed);
        self.timed_unit(track, unit, MediaTime::Elapsed(elapsed)).await
    }

    /// A sender report: the source's wall clock (`ntp`) at one of its media times.
    /// Used to place a track on the producer's clock if it comes before the track's
    /// first unit; later ones are not applied (they would make the timeline jump).
    pub fn sender_report(&mut self, track: usize, at: MediaTime, ntp: u64) {
        let Some(unix_us) = crate::wire::rtcp::ntp_to_unix_us(ntp) else { return };
        if let Some(slot) = self.reports.get_mut(track) {
            if self.clocks[track].is_none() {
                *slot = Some((at, unix_us));
            }
        }
    }

    async fn unit(&mut self, track: usize, unit: Unit) -> Result<(), PublishError> {
        let at = MediaTime::Rtp(unit.rtp_ts);
        self.timed_unit(track, unit, at).await
    }

    async fn timed_unit(&mut self, track: usize, unit: Unit, at: MediaTime) -> Result<(), PublishError> {
        self.learn_parameters(track, &unit);
        let now_us = self.clock.now_us();
        let rate = i64::from(self.tracks[track].clock_rate.max(1));
        let to_units = |us: i64| (i128::from(us) * i128::from(rate) / 1_000_000) as i64;
        // The track's first unit is placed by its sender report when one came first,
        // else at its arrival on the server clock.
        let first = match (self.reports[track], at) {
            (Some((MediaTime::Rtp(sr), unix_us)), MediaTime::Rtp(r)) => {
                to_units(unix_us) + i64::from(r.wrapping_sub(sr) as i32)
            }
            (Some((MediaTime::Elapsed(sr), unix_us)), MediaTime::Elapsed(e)) => to_units(unix_us) + (e - sr),
            _ => to_units(now_us),
        };
        let clock = self.clocks[track].get_or_insert(TrackClock { base: first, last_rtp: None, ext: 0 });
        let pts = match at {
            MediaTime::Rtp(r) => clock.at(r),
            MediaTime::Elapsed(e) => clock.at_extended(e),
        };
        let video = self.tracks[track].kind.is_video();
        let ready = if video {
            let order = &mut self.order[track];
            if !order.depth_known {
                if let Some(p) = self.tracks[track].params.as_ref() {
                    order.depth = reorder_depth(Some(p));
                    order.depth_known = true;
                }
            }
            self.order[track].push(pts, unit)
        } else {
            vec![(pts, pts, unit)]
        };
        for (dts, pts, unit) in ready {
            self.sample(track, dts, pts, unit).await?;
        }
        Ok(())
    }

    async fn sample(&mut self, track: usize, dts: i64, pts: i64, unit: Unit) -> Result<(), PublishError> {
        // New parameter sets on a keyframe (a camera changed resolution or profile): the
        // fragment so far ends, and a new init segment starts with this keyframe.
        if unit.keyframe && !unit.parameter_sets.is_empty() {
            let changed = params_from_sets(&self.tracks[track].kind, &unit.parameter_sets)
                .filter(|p| self.tracks[track].params.as_ref() != Some(p));
            if let Some(new) = changed {
                if let Some(f) = self.muxer.as_mut().and_then(FragmentMuxer::flush) {
                    self.submit(f).await?;
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
                self.metrics.rtsp_units_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(track, keyframe = unit.keyframe, known = ?self.tracks.iter().map(|t| t.params.is_some()).collect::<Vec<_>>(), "waiting");
                return Ok(());
            }
            let params: Vec<CodecParams> = self.tracks.iter().filter_map(|t| t.params.clone()).collect();
            let muxer = FragmentMuxer::new(params);
            let init = muxer.init_segment().map_err(|e| PublishError::Media(e.to_string()))?;
            self.init_id = self.store.put_init(self.record.id, Bytes::from(init)).await?;
            tracing::info!(stream = %self.record.name, tracks = self.tracks.len(), "RTSP publisher recording");
            self.muxer = Some(muxer);
        }
        let Some(muxer) = self.muxer.as_mut() else { return Ok(()) };
        let sample = Sample {
            track,
            dts,
            cts_offset: i32::try_from(pts - dts).unwrap_or(0),
            keyframe: unit.keyframe,
            data: unit.data,
        };
        self.stats.samples += 1;
        match muxer.push(sample) {
            Ok(Some(f)) => self.submit(f).await,
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::debug!(stream = %self.record.name, error = %e, "sample dropped");
                self.stats.waiting_dropped += 1;
                Ok(())
            }
        }
    }

    async fn submit(&mut self, f: crate::media::fmp4_mux::MuxedFragment) -> Result<(), PublishError> {
        let pending = self
            .store
            .submit_fragment(
                &self.record,
                NewFragment {
                    producer_ts_us: f.start_us,
                    server_ts_us: self.clock.now_us(),
                    duration_us: f.duration_us,
                    init_id: self.init_id,
                    keyframe: f.keyframe,
                    chunks: vec![Bytes::from(f.bytes)],
                },
            )
            .await?;
        self.stats.fragments += 1;
        let _ = self.persisted.send(pending);
        Ok(())
    }

    /// Ends the publication: what is still buffered becomes the last fragment.
    pub async fn finish(&mut self) -> Result<PublishStats, PublishError> {
        for track in 0..self.order.len() {
            while let Some((dts, pts, unit)) = self.order[track].pop() {
                self.sample(track, dts, pts, unit).await?;
            }
        }
        if let Some(f) = self.muxer.as_mut().and_then(FragmentMuxer::flush) {
            self.submit(f).await?;
        }
        let mut stats = self.stats;
        for d in &self.depack {
            stats.depacketize.packets += d.stats.packets;
            stats.depacketize.lost += d.stats.lost;
            stats.depacketize.dropped_units += d.stats.dropped_units;
            stats.depacketize.malformed += d.stats.malformed;
        }
        Ok(stats)
    }
}
