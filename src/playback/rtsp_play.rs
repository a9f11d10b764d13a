//! RTSP PLAY of a live stream: the stored fragments re-sent as RTP to viewers (ffplay,
//! VLC, NVRs that only speak RTSP), starting at the newest fragment and following the
//! live edge. Each stored sample is packetized ([`super::rtp_packetize`]) with its
//! presentation time on the codec's RTP clock; no re-muxing beyond that.

use std::collections::HashMap;

use tokio::sync::mpsc;

use crate::codec::{packetize, CodecParams};
use crate::video_store::{StoreError, StreamRecord, VideoStore};
use crate::wire::fmp4::parse_init;
use crate::wire::mp4_tracks::fragment_samples;
use crate::wire::{rtp, rtsp};

/// A track a viewer set up: which stored track, how to packetize it, where to send it.
#[derive(Debug, Clone)]
pub struct PlayTrack {
    pub track_id: u32,
    pub codec: CodecParams,
    pub payload_type: u8,
    pub channel: u8,
}

/// What DESCRIBE offers: the newest init segment's tracks, or `None` before any media.
pub fn describe(store: &VideoStore, record: &StreamRecord) -> Result<Option<Vec<(u32, CodecParams)>>, StoreError> {
    let Some(last) = store.last_fragment(record.id)? else { return Ok(None) };
    let Some(init) = store.init_segment(record.id, last.init_id)? else { return Ok(None) };
    let Ok(info) = parse_init(&init) else { return Ok(Some(Vec::new())) };
    Ok(Some(info.tracks.iter().filter_map(|t| Some((t.track_id, CodecParams::from_track(t)?))).collect()))
}

/// Sends the stream's fragments from the newest one on, until the viewer goes away
/// (`out` closed) or the stream is deleted.
pub async fn follow(store: VideoStore, record: StreamRecord, tracks: Vec<PlayTrack>, out: mpsc::Sender<Vec<u8>>) {
    let Ok(live) = store.live(record.id) else { return };
    let mut edge = live.subscribe();
    let mut next = edge.borrow().last_persisted.max(1);
    let mut inits = HashMap::new();
    let mut seqs: Vec<u16> = vec![0; tracks.len()];
    let ssrcs: Vec<u32> = (0..tracks.len())
        .map(|i| u32::from_be_bytes(crate::secrets::random_bytes::<4>().unwrap_or([i as u8; 4])))
        .collect();
    loop {
        let last = edge.borrow_and_update().last_persisted;
        if edge.borrow().deleted {
            return;
        }
        while next <= last {
            let n = next;
            next += 1;
            let Ok(Some(meta)) = store.fragment(record.id, n) else { continue };
            let Ok(bytes) = store.read_fragment(record.id, &meta).await else { continue };
            if let std::collections::hash_map::Entry::Vacant(v) = inits.entry(meta.init_id) {
                let parsed =
                    store.init_segment(record.id, meta.init_id).ok().flatten().and_then(|i| parse_init(&i).ok());
                v.insert(parsed);
            }
            let Some(Some(info)) = inits.get(&meta.init_id) else { continue };
            let Ok(samples) = fragment_samples(&bytes, info) else { continue };
            // Every track's samples, merged by decode time.
            let mut timeline = Vec::new();
            for ts in &samples {
                let Some(k) = tracks.iter().position(|t| t.track_id == ts.track_id) else { continue };
                for s in &ts.samples {
                    let pts = s.decode_time as i128 + i128::from(s.composition_offset);
                    // Sent in decode order (H.264 requires it); stamped with presentation time.
                    let us = s.decode_time as i128 * 1_000_000 / i128::from(ts.timescale.max(1));
                    let rtp_ts = (pts.max(0) as u128 * u128::from(tracks[k].codec.timescale())
                        / u128::from(ts.timescale.max(1))) as u32;
                    let Some(range) = s.range(bytes.len()) else { continue };
                    timeline.push((us, k, rtp_ts, range.start, range.len()));
                }
            }
            timeline.sort_by_key(|t| t.0);
            let mut burst = Vec::with_capacity(bytes.len() + bytes.len() / 8);
            for (_, k, rtp_ts, offset, size) in timeline {
                let Some(data) = bytes.get(offset..offset + size) else { continue };
                let t = &tracks[k];
                let ps = packetize(t.codec.kind(), data);
                for (i, p) in ps.iter().enumerate() {
                    let mut pkt = Vec::with_capacity(p.len() + 12);
                    rtp::write(&mut pkt, t.payload_type, i + 1 == ps.len(), seqs[k], rtp_ts, ssrcs[k], p);
                    seqs[k] = seqs[k].wrapping_add(1);
                    burst.extend_from_slice(&rtsp::interleaved(t.channel, &pkt));
                }
            }
            if out.send(burst).await.is_err() {
                return;
            }
        }
        if edge.changed().await.is_err() {
            return;
        }
    }
}
