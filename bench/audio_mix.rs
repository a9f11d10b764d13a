//! The WebRTC storage session's audio mix (`media::audio_mix::OpusMix`): a session of N
//! participants, each sending 20 ms Opus packets and each listening, the recording kept,
//! stepped through 10 s of audio; against the floor in the same run: the same packets
//! decoded and N + 1 packets encoded from their plain sum, with no queues and no
//! per-listener mixes (the codec work any mixing server does). For each N the two sides
//! alternate, three rounds; figures: µs per 20 ms step (median and spread), the ratio to
//! the floor, and how many such sessions one core keeps up with in real time.
//!
//!   cargo bench --bench audio_mix        (KINESCOPE_BENCH_SCALE=0.5 for shorter runs)

#[path = "common.rs"]
mod common;

use std::time::Instant;

use kinescope::media::audio_mix::OpusMix;
use kinescope::media::opus_pcm::{OpusDecoder, OpusEncoder, FRAME_SAMPLES, RATE};

const ROUNDS: usize = 3;

/// 20 ms packets of a tone per participant (a different pitch each), encoded once.
fn voices(n: usize, steps: usize) -> Vec<Vec<Vec<u8>>> {
    (0..n)
        .map(|v| {
            let hz = 220.0 + 110.0 * v as f32;
            let mut enc = OpusEncoder::new().expect("libopus");
            let mut packets = Vec::with_capacity(steps);
            let mut i = 0usize;
            while packets.len() < steps {
                let frame: Vec<f32> = (0..FRAME_SAMPLES)
                    .map(|k| {
                        0.3 * (2.0 * std::f32::consts::PI * hz * (i * FRAME_SAMPLES + k) as f32 / RATE as f32).sin()
                    })
                    .collect();
                if let Some(p) = enc.encode(&frame).expect("encode") {
                    packets.push(p);
                }
                i += 1;
            }
            packets
        })
        .collect()
}

/// µs per step of a session mixing `input`.
fn session(input: &[Vec<Vec<u8>>]) -> (f64, usize) {
    let mut mix = OpusMix::new();
    for v in 0..input.len() {
        mix.listen(v).expect("encoder");
    }
    mix.record(true).expect("encoder");
    let steps = input[0].len();
    let mut out_bytes = 0;
    let start = Instant::now();
    for s in 0..steps {
        for (v, packets) in input.iter().enumerate() {
            mix.voice(&v, &packets[s]).expect("decoder");
        }
        let out = mix.step();
        out_bytes += out.recording.map_or(0, |p| p.len()) + out.listeners.iter().map(|(_, p)| p.len()).sum::<usize>();
    }
    (start.elapsed().as_secs_f64() * 1e6 / steps as f64, out_bytes)
}

/// µs per step of the bare codec work: decode every packet, encode N + 1 sums.
fn floor(input: &[Vec<Vec<u8>>]) -> (f64, usize) {
    let mut decoders: Vec<OpusDecoder> = input.iter().map(|_| OpusDecoder::new().expect("decoder")).collect();
    let mut encoders: Vec<OpusEncoder> = (0..=input.len()).map(|_| OpusEncoder::new().expect("encoder")).collect();
    let steps = input[0].len();
    let mut pcm = Vec::with_capacity(FRAME_SAMPLES * 2);
    let mut sum = vec![0.0f32; FRAME_SAMPLES];
    let mut out_bytes = 0;
    let start = Instant::now();
    for s in 0..steps {
        sum.iter_mut().for_each(|x| *x = 0.0);
        for (d, packets) in decoders.iter_mut().zip(input) {
            pcm.clear();
            d.decode(&packets[s], &mut pcm);
            for (x, y) in sum.iter_mut().zip(&pcm) {
                *x += y;
            }
        }
        for e in &mut encoders {
            out_bytes += e.encode(&sum).expect("encode").map_or(0, |p| p.len());
        }
    }
    (start.elapsed().as_secs_f64() * 1e6 / steps as f64, out_bytes)
}

fn main() {
    if common::setup().is_none() {
        return;
    }
    let steps = common::scaled(500, 50);
    println!(
        "audio mix: {steps} steps of 20 ms ({:.0} s of audio) per run, {ROUNDS} interleaved rounds",
        steps as f64 * 0.02
    );
    println!("participants | session µs/step (spread) | floor µs/step (spread) | session/floor | sessions per core");
    for n in [2usize, 4, 8, 11] {
        let input = voices(n, steps);
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            eprint!("\r  {n} participants: round {}/{ROUNDS}", round + 1);
            let (s, s_bytes) = session(&input);
            let (f, f_bytes) = floor(&input);
            assert!(s_bytes > 0 && f_bytes > 0, "both sides produced packets");
            ours.push(s);
            base.push(f);
        }
        eprint!("\r");
        let ratios: Vec<f64> = ours.iter().zip(&base).map(|(s, f)| s / f).collect();
        let (s, s_lo, s_hi) = common::median_spread(ours);
        let (f, f_lo, f_hi) = common::median_spread(base);
        let (r, r_lo, r_hi) = common::median_spread(ratios);
        println!(
            "{n:>12} | {s:>8.0} ({s_lo:.0}–{s_hi:.0}) | {f:>8.0} ({f_lo:.0}–{f_hi:.0}) | {r:.2} ({r_lo:.2}–{r_hi:.2}) | {:.0}",
            20_000.0 / s
        );
    }
}
