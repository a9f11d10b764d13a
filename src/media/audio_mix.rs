//! The audio of a multi-party session: each participant's decoded voice queued as it
//! arrives, and every 20 ms one frame of each summed — the whole for the recording, the
//! whole without one's own voice for each listener (an N−1 mix, so nobody hears an
//! echo of themselves). Pure: PCM in, PCM out; the clock and the codec are the
//! caller's. [`OpusMix`] wraps it with the codec ([`super::opus_pcm`]): Opus packets
//! in, an Opus packet per listener and one for the recording out.
//!
//! Voices arrive over the network with jitter and on clocks of their own, so each queue
//! - starts to be heard only once [`PRIME`] is queued (and again after running dry),
//!   which absorbs the jitter without a gap every other frame;
//! - holds at most [`MAX_QUEUED`]: a sender running fast, or a burst after a stall,
//!   drops its oldest samples instead of making everyone's delay grow.

use std::collections::{BTreeMap, VecDeque};

use super::opus_pcm::{OpusDecoder, OpusEncoder, OpusPcmError, FRAME_SAMPLES};

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

/// A session's mix in Opus: each participant's packets decoded into an [`AudioMix`],
/// and at every 20 ms step one Opus packet for the recording (everyone) and one for each
/// listener (everyone but itself). What the WebRTC storage session runs; no I/O.
pub struct OpusMix<K> {
    mix: AudioMix<K>,
    decoders: BTreeMap<K, OpusDecoder>,
    listeners: BTreeMap<K, OpusEncoder>,
    recording: Option<OpusEncoder>,
    pcm: Vec<f32>,
}

/// One step's packets.
#[derive(Debug, Default)]
pub struct MixOut<K> {
    /// Everyone, for the recording (when one is kept).
    pub recording: Option<Vec<u8>>,
    /// Each listener's packet.
    pub listeners: Vec<(K, Vec<u8>)>,
}

impl<K> Default for OpusMix<K> {
    fn default() -> Self {
        OpusMix {
            mix: AudioMix::default(),
            decoders: BTreeMap::new(),
            listeners: BTreeMap::new(),
            recording: None,
            pcm: Vec::new(),
        }
    }
}

impl<K: Ord + Clone> OpusMix<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// One Opus packet from `who` (a packet the decoder refuses is silence).
    pub fn voice(&mut self, who: &K, packet: &[u8]) -> Result<(), OpusPcmError> {
        if !self.decoders.contains_key(who) {
            self.decoders.insert(who.clone(), OpusDecoder::new()?);
        }
        if let Some(decoder) = self.decoders.get_mut(who) {
            self.pcm.clear();
            decoder.decode(packet, &mut self.pcm);
            self.mix.push(who, &self.pcm);
        }
        Ok(())
    }

    /// `who` hears the session from the next step on.
    pub fn listen(&mut self, who: K) -> Result<(), OpusPcmError> {
        self.listeners.insert(who, OpusEncoder::new()?);
        Ok(())
    }

    /// Whether a recording's packet is made at each step.
    pub fn record(&mut self, on: bool) -> Result<(), OpusPcmError> {
        self.recording = if on { Some(OpusEncoder::new()?) } else { None };
        Ok(())
    }

    /// Forgets a participant: its voice, its decoder, its listening.
    pub fn leave(&mut self, who: &K) {
        self.mix.remove(who);
        self.decoders.remove(who);
        self.listeners.remove(who);
    }

    /// One 20 ms step.
    pub fn step(&mut self) -> MixOut<K> {
        let frame = self.mix.tick();
        let recording = self.recording.as_mut().and_then(|e| e.encode(frame.everyone()).ok().flatten());
        let listeners = self
            .listeners
            .iter_mut()
            .filter_map(|(who, e)| e.encode(&frame.without(who)).ok().flatten().map(|p| (who.clone(), p)))
            .collect();
        MixOut { recording, listeners }
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

    #[test]
    fn in_opus_each_listener_hears_the_others_and_the_recording_everyone() {
        use crate::media::opus_pcm::RATE;
        let rms = |s: &[f32]| (s.iter().map(|x| x * x).sum::<f32>() / s.len().max(1) as f32).sqrt();
        // "a" says a 440 Hz tone, "b" is silent; both listen; the recording is kept.
        let (mut say_a, mut say_b) = (OpusEncoder::new().unwrap(), OpusEncoder::new().unwrap());
        let mut mix = OpusMix::new();
        mix.listen("a").unwrap();
        mix.listen("b").unwrap();
        mix.record(true).unwrap();
        let mut hear: BTreeMap<&str, (OpusDecoder, Vec<f32>)> = BTreeMap::new();
        for who in ["a", "b", "recording"] {
            hear.insert(who, (OpusDecoder::new().unwrap(), Vec::new()));
        }
        for i in 0..60 {
            let tone: Vec<f32> = (0..FRAME_SAMPLES)
                .map(|k| {
                    0.5 * (2.0 * std::f32::consts::PI * 440.0 * (i * FRAME_SAMPLES + k) as f32 / RATE as f32).sin()
                })
                .collect();
            if let Some(p) = say_a.encode(&tone).unwrap() {
                mix.voice(&"a", &p).unwrap();
            }
            if let Some(p) = say_b.encode(&[0.0; FRAME_SAMPLES]).unwrap() {
                mix.voice(&"b", &p).unwrap();
            }
            let out = mix.step();
            let heard = out.listeners.into_iter().chain(out.recording.map(|p| ("recording", p)));
            for (who, p) in heard {
                let (d, pcm) = hear.get_mut(who).unwrap();
                d.decode(&p, pcm);
            }
        }
        let tail = |who: &str| {
            let pcm = &hear[who].1;
            rms(&pcm[pcm.len() - 20 * FRAME_SAMPLES..])
        };
        assert!(tail("b") > 0.25, "b hears a: {}", tail("b"));
        assert!(tail("recording") > 0.25, "the recording has a: {}", tail("recording"));
        assert!(tail("a") < 0.02, "a does not hear itself: {}", tail("a"));
        // A participant that leaves is no longer heard nor mixed for.
        mix.leave(&"a");
        assert_eq!(mix.step().listeners.len(), 1);
    }
}
