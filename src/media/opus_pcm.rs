//! Opus ⇄ PCM through FFmpeg's libavcodec (`ffmpeg-next`): what a multi-party WebRTC
//! session needs to mix its participants' voices ([`super::audio_mix`]). Decoding uses
//! libavcodec's own Opus decoder, encoding libopus; both at 48 kHz, PCM as mono `f32`
//! in −1.0..=1.0 (a stereo packet is averaged down: voices are mixed, not placed).
//!
//! Synchronous and cheap (tens of µs per 20 ms frame), so it runs inline in the session
//! task. No I/O.

use std::sync::Once;

use ffmpeg_next as ff;

use ff::codec::{self, Id};
use ff::format::sample::{Sample, Type as SampleType};
use ff::util::channel_layout::ChannelLayout;
use ff::util::frame::Audio as AudioFrame;

/// Opus's clock: every Opus stream decodes at 48 kHz.
pub const RATE: u32 = 48_000;
/// Samples in one 20 ms frame, what the encoder takes at a time.
pub const FRAME_SAMPLES: usize = 960;
/// What the encoder spends on speech; Chromium's own default is 32 kbit/s too.
pub const BIT_RATE: usize = 32_000;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OpusPcmError {
    #[error("FFmpeg has no {0}")]
    Missing(&'static str),
    #[error("FFmpeg: {0}")]
    Ffmpeg(String),
    #[error("the encoder takes {FRAME_SAMPLES} samples at a time, not {0}")]
    FrameSize(usize),
}

fn ffmpeg(e: ff::Error) -> OpusPcmError {
    OpusPcmError::Ffmpeg(e.to_string())
}

/// FFmpeg's global set-up, once per process; its own logging is silenced (every failure
/// comes back as an error value and is logged by the caller).
pub fn init_ffmpeg() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = ff::init() {
            tracing::error!(error = %e, "FFmpeg did not initialise");
        }
        ff::util::log::set_level(ff::util::log::Level::Quiet);
    });
}

/// One participant's Opus packets → mono PCM.
pub struct OpusDecoder {
    decoder: ff::decoder::Audio,
    frame: AudioFrame,
}

impl OpusDecoder {
    pub fn new() -> Result<Self, OpusPcmError> {
        init_ffmpeg();
        let found = codec::decoder::find(Id::OPUS).ok_or(OpusPcmError::Missing("Opus decoder"))?;
        let mut context = codec::Context::new_with_codec(found);
        // SAFETY: the context is ours and not yet opened; these are plain fields.
        unsafe {
            (*context.as_mut_ptr()).sample_rate = RATE as i32;
        }
        let decoder = context.decoder().audio().map_err(ffmpeg)?;
        Ok(OpusDecoder { decoder, frame: AudioFrame::empty() })
    }

    /// Decodes one packet, appending its samples to `out`. A packet the decoder refuses
    /// yields nothing (the mixer hears silence), never an error that ends the session.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<f32>) -> usize {
        if packet.is_empty() {
            return 0;
        }
        let before = out.len();
        if self.decoder.send_packet(&ff::Packet::copy(packet)).is_err() {
            return 0;
        }
        while self.decoder.receive_frame(&mut self.frame).is_ok() {
            append_mono(&self.frame, out);
        }
        out.len() - before
    }
}

/// Mono `f32` of a decoded frame, whatever its layout (libavcodec's Opus gives planar
/// float; packed and 16-bit layouts are taken too).
fn append_mono(frame: &AudioFrame, out: &mut Vec<f32>) {
    let n = frame.samples();
    let channels = usize::from(frame.channels().max(1));
    let scale = 1.0 / channels as f32;
    match (frame.format(), frame.is_planar()) {
        (Sample::F32(_), true) => {
            let planes: Vec<&[f32]> = (0..channels.min(frame.planes())).map(|p| frame.plane::<f32>(p)).collect();
            out.extend((0..n).map(|i| planes.iter().map(|p| p.get(i).copied().unwrap_or(0.0)).sum::<f32>() * scale));
        }
        (Sample::F32(_), false) => {
            let data = frame.data(0);
            out.extend((0..n).map(|i| (0..channels).map(|c| f32_at(data, i * channels + c)).sum::<f32>() * scale));
        }
        (Sample::I16(_), planar) => {
            let data: Vec<&[u8]> =
                if planar { (0..channels).map(|p| frame.data(p)).collect() } else { vec![frame.data(0)] };
            out.extend((0..n).map(|i| {
                (0..channels)
                    .map(|c| if planar { i16_at(data[c], i) } else { i16_at(data[0], i * channels + c) })
                    .sum::<f32>()
                    * scale
            }));
        }
        _ => out.extend(std::iter::repeat_n(0.0, n)),
    }
}

fn f32_at(data: &[u8], i: usize) -> f32 {
    data.get(i * 4..i * 4 + 4).map_or(0.0, |b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn i16_at(data: &[u8], i: usize) -> f32 {
    data.get(i * 2..i * 2 + 2).map_or(0.0, |b| f32::from(i16::from_ne_bytes([b[0], b[1]])) / 32768.0)
}

/// Mono PCM → Opus packets of 20 ms (libopus, VoIP tuning).
pub struct OpusEncoder {
    encoder: ff::encoder::Audio,
    frame: AudioFrame,
    packet: ff::Packet,
    pts: i64,
}

impl OpusEncoder {
    pub fn new() -> Result<Self, OpusPcmError> {
        init_ffmpeg();
        let found = codec::encoder::find_by_name("libopus").ok_or(OpusPcmError::Missing("libopus encoder"))?;
        let mut encoder = codec::Context::new_with_codec(found).encoder().audio().map_err(ffmpeg)?;
        encoder.set_rate(RATE as i32);
        encoder.set_format(Sample::F32(SampleType::Packed));
        encoder.set_channel_layout(ChannelLayout::MONO);
        encoder.set_bit_rate(BIT_RATE);
        encoder.set_time_base((1, RATE as i32));
        let mut options = ff::Dictionary::new();
        options.set("application", "voip");
        options.set("frame_duration", "20");
        let encoder = encoder.open_as_with(found, options).map_err(ffmpeg)?;
        let mut frame = AudioFrame::new(Sample::F32(SampleType::Packed), FRAME_SAMPLES, ChannelLayout::MONO);
        frame.set_rate(RATE);
        Ok(OpusEncoder { encoder, frame, packet: ff::Packet::empty(), pts: 0 })
    }

    /// Encodes one 20 ms frame ([`FRAME_SAMPLES`] samples, clipped to −1..=1). libopus
    /// has a look-ahead, so the first call may return nothing; after that one packet per
    /// frame.
    pub fn encode(&mut self, pcm: &[f32]) -> Result<Option<Vec<u8>>, OpusPcmError> {
        if pcm.len() != FRAME_SAMPLES {
            return Err(OpusPcmError::FrameSize(pcm.len()));
        }
        let data = self.frame.data_mut(0);
        for (chunk, s) in data.chunks_exact_mut(4).zip(pcm) {
            chunk.copy_from_slice(&s.clamp(-1.0, 1.0).to_ne_bytes());
        }
        self.frame.set_pts(Some(self.pts));
        self.pts += FRAME_SAMPLES as i64;
        self.encoder.send_frame(&self.frame).map_err(ffmpeg)?;
        match self.encoder.receive_packet(&mut self.packet) {
            Ok(()) => Ok(self.packet.data().map(<[u8]>::to_vec)),
            Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => Ok(None),
            Err(e) => Err(ffmpeg(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, amplitude: f32, frames: usize) -> Vec<f32> {
        (0..frames * FRAME_SAMPLES)
            .map(|i| amplitude * (2.0 * std::f32::consts::PI * hz * i as f32 / RATE as f32).sin())
            .collect()
    }

    fn rms(s: &[f32]) -> f32 {
        (s.iter().map(|x| x * x).sum::<f32>() / s.len().max(1) as f32).sqrt()
    }

    #[test]
    fn a_tone_survives_encoding_and_decoding() {
        let mut enc = OpusEncoder::new().unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let input = tone(440.0, 0.5, 50);
        let mut packets = Vec::new();
        for frame in input.chunks(FRAME_SAMPLES) {
            if let Some(p) = enc.encode(frame).unwrap() {
                assert_eq!(crate::codec::opus::packet_duration_us(&p), Some(20_000), "20 ms packets");
                packets.push(p);
            }
        }
        assert!(packets.len() >= 48, "one packet per frame after the look-ahead: {}", packets.len());
        let mut out = Vec::new();
        for p in &packets {
            dec.decode(p, &mut out);
        }
        assert_eq!(out.len(), packets.len() * FRAME_SAMPLES);
        // Past the codec's start-up, the level is the input's (0.5/√2 ≈ 0.354).
        let level = rms(&out[FRAME_SAMPLES * 10..]);
        assert!((0.30..0.40).contains(&level), "rms {level}");
        // Silence stays silence.
        let quiet: Vec<f32> = vec![0.0; FRAME_SAMPLES];
        let mut out = Vec::new();
        for _ in 0..20 {
            if let Some(p) = enc.encode(&quiet).unwrap() {
                dec.decode(&p, &mut out);
            }
        }
        assert!(rms(&out[out.len() - FRAME_SAMPLES..]) < 0.01);
    }

    #[test]
    fn bad_input_is_refused_or_skipped_never_a_panic() {
        let mut enc = OpusEncoder::new().unwrap();
        assert_eq!(enc.encode(&[0.0; 10]), Err(OpusPcmError::FrameSize(10)));
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        for junk in [&b""[..], b"\xff", b"\x00\x01\x02\x03", &[0xfc; 1500]] {
            dec.decode(junk, &mut out);
        }
        // Out-of-range samples are clipped, not wrapped.
        assert!(enc.encode(&[4.0; FRAME_SAMPLES]).is_ok());
    }
}
