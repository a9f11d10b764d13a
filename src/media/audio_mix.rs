//! The audio of a multi-party session: each participant's decoded voice queued as it
//! arrives, and every 20 ms one frame of each summed — the whole for the recording, the
//! whole without one's own voice for each listener (an N−1 mix, so nobody hears an
//! echo of themselves). Pure: PCM in, PCM out; the clock and the codec are the
//! caller's ([`super::opus_pcm`]).
//!
//! Voices arrive over the network with jitter and on clocks of their own, so each queue
//! - starts to be heard only once [`PRIME`] is queued (and again after running dry),
//!   which absorbs the jitter without a gap every other frame;
//! - holds at most [`MAX_QUEUED`]: a sender running fast, or a burst after a stall,
//!   drops its oldest samples instead of making everyone's delay grow.

use std::collections::{BTreeMap, VecDeque};

use super::opus_pcm::FRAME_SAMPLES;

/// What a voice must have queued to be heard: 40 ms.
pub const PRIME: usize = FRAME_SAMPLES * 2;
/// The most a voice may have queued: 200 ms.
pub const MAX_QUEUED: usize = FRAME_SAMPLES * 10;

#[derive(Debug, Default)]
struct Voice {
    queue: VecDeque<f32>,
    primed: bool,
}

/// The voices of one session, keyed by participant.
#[derive(Debug)]
pub struct AudioMix<K> {
    voices: BTreeMap<K, Voice>,
    /// Samples dropped from full queues, for the logs.
    pub dropped: u64,
}

impl<K> Default for AudioMix<K> {
    fn default() -> Self {
        AudioMix { voices: BTreeMap::new(), dropped: 0 }
    }
}

impl<K: Ord + Clone> AudioMix<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `pcm` (mono, 48 kHz) from `who`.
    pub fn push(&mut self, who: &K, pcm: &[f32]) {
        let voice = self.voices.entry(who.clone()).or_default();
        voice.queue.extend(pcm);
        let over = voice.queue.len().saturating_sub(MAX_QUEUED);
        if over > 0 {
            voice.queue.drain(..over);
            self.dropped += over as u64;
        }
        if voice.queue.len() >= PRIME {
            voice.primed = true;
        }
    }

    /// Forgets a participant that left.
    pub fn remove(&mut self, who: &K) {
        self.voices.remove(who);
    }

    /// Takes the next 20 ms of every voice that is heard.
    pub fn tick(&mut self) -> MixFrame<K> {
        let mut total = vec![0.0f32; FRAME_SAMPLES];
        let mut heard = BTreeMap::new();
        for (who, voice) in &mut self.voices {
            if !voice.primed {
                continue;
            }
            let n = voice.queue.len().min(FRAME_SAMPLES);
            let mut frame: Vec<f32> = voice.queue.drain(..n).collect();
            frame.resize(FRAME_SAMPLES, 0.0);
            if voice.queue.is_empty() {
                voice.primed = false;
            }
            for (t, s) in total.iter_mut().zip(&frame) {
                *t += s;
            }
            heard.insert(who.clone(), frame);
        }
        MixFrame { total, heard }
    }
}

/// One 20 ms step of the mix.
#[derive(Debug, Clone, PartialEq)]
pub struct MixFrame<K> {
    total: Vec<f32>,
    heard: BTreeMap<K, Vec<f32>>,
}

impl<K: Ord> MixFrame<K> {
    /// Every voice: what the recording keeps.
    pub fn everyone(&self) -> &[f32] {
        &self.total
    }

    /// Every voice but `listener`'s: what `listener` hears.
    pub fn without(&self, listener: &K) -> Vec<f32> {
        match self.heard.get(listener) {
            None => self.total.clone(),
            Some(own) => self.total.iter().zip(own).map(|(t, o)| t - o).collect(),
        }
    }

    /// Whether anyone was heard in this step.
    pub fn has_voices(&self) -> bool {
        !self.heard.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant(v: f32, frames: usize) -> Vec<f32> {
        vec![v; FRAME_SAMPLES * frames]
    }

    #[test]
    fn each_listener_hears_everyone_but_itself() {
        let mut mix = AudioMix::new();
        mix.push(&"master", &constant(0.25, 2));
        mix.push(&"v1", &constant(0.5, 2));
        let f = mix.tick();
        assert!(f.has_voices());
        assert!(f.everyone().iter().all(|s| (s - 0.75).abs() < 1e-6));
        assert!(f.without(&"master").iter().all(|s| (s - 0.5).abs() < 1e-6));
        assert!(f.without(&"v1").iter().all(|s| (s - 0.25).abs() < 1e-6));
        // Someone with no voice yet (a viewer that only listens) hears everyone.
        assert!(f.without(&"v2").iter().all(|s| (s - 0.75).abs() < 1e-6));
        assert_eq!(f.everyone().len(), FRAME_SAMPLES);
    }

    #[test]
    fn a_voice_is_heard_once_primed_and_again_after_running_dry() {
        let mut mix = AudioMix::new();
        mix.push(&1, &constant(0.1, 1));
        assert!(!mix.tick().has_voices(), "20 ms queued is not enough to start");
        mix.push(&1, &constant(0.1, 1));
        let f = mix.tick();
        assert!(f.has_voices());
        assert!(f.everyone().iter().all(|s| (s - 0.1).abs() < 1e-6));
        // 20 ms left: heard; then dry, so it must prime again.
        assert!(mix.tick().has_voices());
        mix.push(&1, &constant(0.1, 1));
        assert!(!mix.tick().has_voices());
        // 20 ms of 0.1 still queued, then 30.2 ms of 0.3: the short tail is padded with
        // silence.
        mix.push(&1, &vec![0.3; FRAME_SAMPLES + 10]);
        assert!(mix.tick().everyone().iter().all(|s| (s - 0.1).abs() < 1e-6));
        assert!(mix.tick().everyone().iter().all(|s| (s - 0.3).abs() < 1e-6));
        let f = mix.tick();
        assert!(f.everyone()[..10].iter().all(|s| (s - 0.3).abs() < 1e-6));
        assert!(f.everyone()[10..].iter().all(|s| *s == 0.0));
    }

    #[test]
    fn a_fast_sender_drops_its_oldest_audio_instead_of_adding_delay() {
        let mut mix = AudioMix::new();
        mix.push(&"fast", &constant(0.1, 12));
        mix.push(&"fast", &constant(0.9, 1));
        assert_eq!(mix.dropped, (3 * FRAME_SAMPLES) as u64);
        let mut frames = 0;
        while mix.tick().has_voices() {
            frames += 1;
        }
        assert_eq!(frames, MAX_QUEUED / FRAME_SAMPLES);
        mix.push(&"fast", &constant(0.1, 3));
        mix.remove(&"fast");
        assert!(!mix.tick().has_voices());
    }
}
