//! A storage session's audio: every participant's Opus decoded and mixed every 20 ms
//! ([`crate::media::audio_mix`]); the recording keeps everyone, each listener hears
//! everyone but itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rtc::media::Sample;
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::Party;
use crate::media::audio_mix::OpusMix;
use crate::media::opus_pcm::{OpusPcmError, FRAME_SAMPLES, RATE};
use crate::webrtc::peer::SampleTrack;

/// The mix's step: one Opus frame (20 ms).
const MIX_STEP: Duration = Duration::from_micros(FRAME_SAMPLES as u64 * 1_000_000 / RATE as u64);
/// How long the mixer waits for one listener's connection to take a packet.
const LISTENER_WRITE: Duration = Duration::from_millis(5);

/// One session's audio: the mix, where each listener's packets go, and the recorder's
/// queue.
#[derive(Default)]
pub(super) struct Mixing {
    mix: OpusMix<Party>,
    tracks: HashMap<Party, Arc<SampleTrack>>,
    recording: Option<mpsc::Sender<(i64, Vec<u8>)>>,
    /// Steps since the recording began (its clock, in steps of 20 ms).
    recorded_steps: i64,
}

pub(super) fn lock_mixing(m: &Mutex<Mixing>) -> std::sync::MutexGuard<'_, Mixing> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Mixing {
    /// One Opus payload from `who`.
    pub(super) fn voice(&mut self, who: &Party, packet: &[u8]) {
        if let Err(e) = self.mix.voice(who, packet) {
            tracing::warn!(error = %e, "no Opus decoder; this participant is not mixed");
        }
    }

    /// `who` hears the session on `track` from now on.
    pub(super) fn listen(&mut self, who: Party, track: SampleTrack) -> Result<(), OpusPcmError> {
        self.mix.listen(who.clone())?;
        self.tracks.insert(who, Arc::new(track));
        Ok(())
    }

    /// The mix is recorded: its packets go to `to`, each with its time.
    pub(super) fn record(&mut self, to: mpsc::Sender<(i64, Vec<u8>)>) -> Result<(), OpusPcmError> {
        self.mix.record(true)?;
        self.recording = Some(to);
        self.recorded_steps = 0;
        Ok(())
    }

    pub(super) fn leave(&mut self, who: &Party) {
        self.mix.leave(who);
        self.tracks.remove(who);
        if *who == Party::Master {
            self.recording = None;
            let _ = self.mix.record(false);
        }
    }

    /// One 20 ms step: the recording's packet handed to the recorder, and each
    /// listener's packet with the track to write it to.
    pub(super) fn step(&mut self) -> Vec<(Arc<SampleTrack>, Vec<u8>)> {
        let out = self.mix.step();
        let elapsed = self.recorded_steps * FRAME_SAMPLES as i64;
        self.recorded_steps += 1;
        if let (Some(p), Some(tx)) = (out.recording, self.recording.as_ref()) {
            // A recorder a second behind loses the mix's newest packets, not memory.
            let _ = tx.try_send((elapsed, p));
        }
        out.listeners.into_iter().filter_map(|(who, p)| self.tracks.get(&who).map(|t| (t.clone(), p))).collect()
    }
}

/// Steps the session's mix every 20 ms and sends each listener its part.
pub(super) async fn run_mixer(mixing: Arc<Mutex<Mixing>>) {
    let mut ticks = tokio::time::interval(MIX_STEP);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let out = lock_mixing(&mixing).step();
        for (track, packet) in out {
            let sample =
                Sample { data: Bytes::from(packet), duration: MIX_STEP, ..Sample::new(std::time::Instant::now()) };
            // A listener not connected yet, or gone, misses this step; one whose
            // connection does not take the packet at once (a full send queue) misses it
            // too rather than hold up everyone else's.
            let _ = tokio::time::timeout(LISTENER_WRITE, track.write(&sample)).await;
        }
    }
}

/// A participant's microphone into the mix.
pub(super) async fn read_voice(track: Arc<dyn TrackRemote>, who: Party, mixing: Arc<Mutex<Mixing>>) {
    while let Some(event) = track.poll().await {
        if let TrackRemoteEvent::OnRtpPacket(p) = event {
            lock_mixing(&mixing).voice(&who, &p.payload);
        }
    }
}
