//! AAC (MPEG-4 audio): everything Kinescope knows about it in one place.
//!
//! - the AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) as codec parameters;
//! - the `esds` box (ISO/IEC 14496-14 5.6): an ES_Descriptor holding a
//!   DecoderConfigDescriptor holding the DecoderSpecificInfo (14496-1 7.2.6), read and
//!   written, inside an `mp4a` sample entry;
//! - the RFC 6381 codec string (`mp4a.40.2`: objectTypeIndication, audio object type);
//! - SDP `MPEG4-GENERIC/<rate>/<channels>` with `mode=AAC-hbr` (RFC 3640 4.1, 3.3.6);
//! - RTP depacketizing and packetizing of AAC-hbr: AU headers of `sizelength` +
//!   `indexlength` bits, then the access units (RFC 3640 3.2, 3.3.6).

use std::collections::BTreeMap;

use super::{AccessUnit, CodecError};
use crate::wire::bmff::{descriptor, full_box, write_box, FourCc};
use crate::wire::fmp4::{audio_sample_entry, TrackInfo};
use crate::wire::sdp::MediaDescription;

pub const MP4A: FourCc = FourCc::new(b"mp4a");
pub const ESDS: FourCc = FourCc::new(b"esds");

/// 14496-1 descriptor tags.
const ES_DESCRIPTOR: u8 = 0x03;
const DECODER_CONFIG: u8 = 0x04;
const DECODER_SPECIFIC_INFO: u8 = 0x05;
const SL_CONFIG: u8 = 0x06;
/// objectTypeIndication of MPEG-4 audio (14496-1 table 5).
const OTI_MPEG4_AUDIO: u8 = 0x40;

/// An AAC track's parameters.
/// Matroska's CodecID (CodecPrivate: the AudioSpecificConfig). Older muxers name the
/// object type in it (`A_AAC/MPEG4/LC`, …); those read as AAC too.
pub const MATROSKA_CODEC_ID: &str = "A_AAC";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// The AudioSpecificConfig.
    pub config: Vec<u8>,
    pub sample_rate: u32,
    pub channels: u16,
}

/// What the `esds` says: the objectTypeIndication and, for MPEG-4 audio, the
/// DecoderSpecificInfo (the AudioSpecificConfig).
fn read_esds(esds: &[u8]) -> Option<(u8, Option<&[u8]>)> {
    let (tag, es, _) = descriptor::read(esds.get(4..)?)?; // after the full box header
    if tag != ES_DESCRIPTOR {
        return None;
    }
    // ES_ID(2), flags(1), then optional dependsOn_ES_ID, URL, OCR_ES_ID.
    let flags = *es.get(2)?;
    let mut skip = 3;
    if flags & 0x80 != 0 {
        skip += 2;
    }
    if flags & 0x40 != 0 {
        skip += 1 + usize::from(*es.get(skip)?);
    }
    if flags & 0x20 != 0 {
        skip += 2;
    }
    let (tag, dcd, _) = descriptor::read(es.get(skip..)?)?;
    if tag != DECODER_CONFIG {
        return None;
    }
    let oti = *dcd.first()?;
    // objectTypeIndication(1), streamType etc.(1), bufferSizeDB(3), maxBitrate(4),
    // avgBitrate(4), then DecoderSpecificInfo.
    let dsi = descriptor::read(dcd.get(13..).unwrap_or_default())
        .filter(|(tag, _, _)| *tag == DECODER_SPECIFIC_INFO)
        .map(|(_, body, _)| body);
    Some((oti, dsi))
}

/// The audio object type of an AudioSpecificConfig (14496-3 1.6.2.1, with the escape
/// to 32 + 6 bits).
fn audio_object_type(asc: &[u8]) -> Option<u8> {
    let first = *asc.first()?;
    let aot = first >> 3;
    if aot == 31 {
        let second = *asc.get(1)?;
        Some(32 + (((first & 0x07) << 3) | (second >> 5)))
    } else {
        Some(aot)
    }
}

impl Params {
    /// The parameters of an `mp4a` track (its `esds` and the entry's channel count and
    /// rate).
    pub fn from_track(track: &TrackInfo) -> Option<Self> {
        let (_, dsi) = read_esds(track.sample_entry_child(ESDS)?)?;
        Some(Params { config: dsi?.to_vec(), sample_rate: track.sample_rate, channels: track.channels })
    }

    /// The `mp4a` sample entry box with its `esds`.
    pub fn sample_entry(&self) -> Result<Vec<u8>, CodecError> {
        let mut entry = audio_sample_entry(self.channels, self.sample_rate);
        // DecoderConfigDescriptor: MPEG-4 audio, audio stream (0x15: streamType 5,
        // upStream 0, reserved 1), no buffer size or bitrates, then the config.
        let mut dcd = vec![OTI_MPEG4_AUDIO, 0x15, 0, 0, 0];
        dcd.extend_from_slice(&[0; 8]);
        descriptor::write(&mut dcd, DECODER_SPECIFIC_INFO, &self.config);
        let mut es = vec![0, 0, 0]; // ES_ID 0, no flags
        descriptor::write(&mut es, DECODER_CONFIG, &dcd);
        descriptor::write(&mut es, SL_CONFIG, &[2]); // predefined: MP4 file
        let mut esds = full_box(0, 0);
        descriptor::write(&mut esds, ES_DESCRIPTOR, &es);
        write_box(&mut entry, ESDS, &esds);
        let mut out = Vec::with_capacity(entry.len() + 8);
        write_box(&mut out, MP4A, &entry);
        Ok(out)
    }

    /// One raw AAC frame with the 7-byte ADTS header (ISO/IEC 13818-7 6.2, no CRC) that
    /// MPEG-TS carries AAC in: profile, sampling index and channels from the
    /// AudioSpecificConfig (the rate and channel count where it says little).
    pub fn adts_frame(&self, frame: &[u8]) -> Vec<u8> {
        let (object, index, channels) = match self.config.as_slice() {
            [a, b, ..] => (a >> 3, ((a & 0x07) << 1) | (b >> 7), (b >> 3) & 0x0F),
            _ => (2, 15, 0),
        };
        let index = if index < 13 { index } else { sampling_index(self.sample_rate) };
        let channels = if channels == 0 { self.channels.clamp(1, 7) as u8 } else { channels };
        // ADTS's profile is the object type minus one, in two bits (LC = 1).
        let profile = object.clamp(1, 4) - 1;
        let len = (frame.len() + 7).min(0x1FFF);
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&[
            0xFF,
            0xF1,
            (profile << 6) | (index << 2) | (channels >> 2),
            ((channels & 3) << 6) | (len >> 11) as u8,
            (len >> 3) as u8,
            (((len & 7) << 5) as u8) | 0x1F,
            0xFC,
        ]);
        out.extend_from_slice(frame);
        out
    }

    /// The SDP media section for AAC-hbr (RFC 3640 3.3.6: 13-bit sizes, 3-bit indices).
    pub fn sdp_media(&self, payload_type: u8) -> MediaDescription {
        let mut m = MediaDescription::new("audio", payload_type, "MPEG4-GENERIC", self.sample_rate, self.channels);
        for (k, v) in [
            ("streamtype", "5"),
            ("profile-level-id", "1"),
            ("mode", "AAC-hbr"),
            ("sizelength", "13"),
            ("indexlength", "3"),
            ("indexdeltalength", "3"),
        ] {
            m.fmtp.insert(k.into(), v.into());
        }
        m.fmtp.insert("config".into(), hex::encode(&self.config));
        m
    }

    /// The parameters of an SDP media section, or why it is not AAC-hbr.
    pub fn from_sdp(m: &MediaDescription) -> Result<Self, String> {
        let mode = m.fmtp.get("mode").map(|s| s.to_ascii_lowercase()).unwrap_or_default();
        if mode != "aac-hbr" {
            return Err(format!("MPEG4-GENERIC mode '{mode}' (only AAC-hbr is taken)"));
        }
        let config = m
            .fmtp
            .get("config")
            .and_then(|c| hex::decode(c).ok())
            .filter(|c| c.len() >= 2)
            .ok_or("AAC without a config")?;
        Ok(Params { config, sample_rate: m.clock_rate, channels: m.channels.max(1) })
    }
}

/// RFC 6381 3.3: `mp4a.OTI[.AOT]` from the `esds`.
pub fn codec_string(track: &TrackInfo) -> Option<String> {
    let (oti, dsi) = read_esds(track.sample_entry_child(ESDS)?)?;
    let aot = if oti == OTI_MPEG4_AUDIO { dsi.and_then(audio_object_type) } else { None };
    Some(match aot {
        Some(aot) => format!("mp4a.{oti:02x}.{aot}"),
        None => format!("mp4a.{oti:02x}"),
    })
}

/// RFC 3640 AAC-hbr depacketizer: the AU-header section's sizes split the payload into
/// access units, one RTP timestamp step (1024 samples) apart.
pub struct Depacketizer {
    size_bits: u32,
    index_bits: u32,
}

impl Depacketizer {
    pub fn new(fmtp: &BTreeMap<String, String>) -> Self {
        let num = |k: &str, d: u32| fmtp.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        Depacketizer { size_bits: num("sizelength", 13), index_bits: num("indexlength", 3) }
    }

    /// The access units of one payload; `None` if it is malformed.
    pub fn push(&self, rtp_ts: u32, payload: &[u8]) -> Option<Vec<AccessUnit>> {
        let header_bits = self.size_bits + self.index_bits;
        if payload.len() < 2 || header_bits == 0 || header_bits > 32 {
            return None;
        }
        // 3.2.1: AU-headers-length in bits, then the headers, padded to a byte.
        let headers_bits = u32::from(u16::from_be_bytes([payload[0], payload[1]]));
        let headers_len = headers_bits.div_ceil(8) as usize;
        let headers = payload.get(2..2 + headers_len)?;
        let mut data = &payload[2 + headers_len..];
        let count = headers_bits / header_bits;
        let mut out = Vec::with_capacity(count as usize);
        for i in 0..count {
            let bit = (i * header_bits) as usize;
            let mut v: u64 = 0;
            for b in 0..header_bits as usize {
                let at = bit + b;
                v = (v << 1) | u64::from((headers[at / 8] >> (7 - at % 8)) & 1);
            }
            let size = (v >> self.index_bits) as usize;
            if size > data.len() {
                // A fragmented AU (larger than one packet) is not reassembled.
                return None;
            }
            out.push(AccessUnit {
                rtp_ts: rtp_ts.wrapping_add(i * 1024),
                data: data[..size].to_vec(),
                keyframe: true,
                parameter_sets: Vec::new(),
            });
            data = &data[size..];
        }
        Some(out)
    }
}

/// One AU per packet, with one 16-bit AU header (13-bit size, 3-bit index 0).
pub fn packetize(out: &mut Vec<Vec<u8>>, frame: &[u8]) {
    let size = frame.len().min(0x1fff) as u16;
    let mut v = Vec::with_capacity(4 + usize::from(size));
    v.extend_from_slice(&[0x00, 0x10]);
    v.extend_from_slice(&(size << 3).to_be_bytes());
    v.extend_from_slice(&frame[..usize::from(size)]);
    out.push(v);
}

/// The ADTS / AudioSpecificConfig sampling-frequency index of a rate (the nearest
/// table entry; 48 kHz's for a rate not listed).
fn sampling_index(rate: u32) -> u8 {
    const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    RATES.iter().position(|r| *r == rate).map_or(3, |i| i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adts_headers_say_what_the_config_says() {
        let p = Params { config: vec![0x11, 0x90], sample_rate: 48000, channels: 2 };
        let f = p.adts_frame(&[0xAB; 100]);
        // LC (profile 1), 48 kHz (index 3), 2 channels, 107 bytes in all.
        assert_eq!(f[..7], [0xFF, 0xF1, 0x4C, 0x80, 0x0D, 0x7F, 0xFC]);
        assert_eq!(f.len(), 107);
        assert_eq!(((u16::from(f[3] & 3) << 11) | (u16::from(f[4]) << 3) | u16::from(f[5] >> 5)), 107);
    }

    #[test]
    fn esds_of_aac_lc() {
        // ES_Descriptor with DecoderConfigDescriptor(OTI 0x40) and AudioSpecificConfig 0x1210 (AAC-LC).
        let esds = [
            0, 0, 0, 0, 0x03, 0x19, 0x00, 0x01, 0x00, 0x04, 0x11, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05,
            0x02, 0x12, 0x10, 0x06, 0x01, 0x02,
        ];
        assert_eq!(read_esds(&esds), Some((0x40, Some(&[0x12, 0x10][..]))));
        assert_eq!(audio_object_type(&[0x12, 0x10]), Some(2));
        assert_eq!(audio_object_type(&[0xf8, 0x20]), Some(33), "escaped object type");
    }

    #[test]
    fn what_we_write_reads_back() {
        let p = Params { config: vec![0x11, 0x90], sample_rate: 48_000, channels: 1 };
        let track =
            crate::codec::tests::track_with_entry(crate::wire::fmp4::TrackKind::Audio, &p.sample_entry().unwrap());
        assert_eq!(Params::from_track(&track), Some(p.clone()));
        assert_eq!(codec_string(&track).as_deref(), Some("mp4a.40.2"));
        assert_eq!(Params::from_sdp(&p.sdp_media(97)), Ok(p));
    }

    #[test]
    fn hbr_frames() {
        let mut fmtp = BTreeMap::new();
        fmtp.insert("sizelength".into(), "13".into());
        fmtp.insert("indexlength".into(), "3".into());
        let d = Depacketizer::new(&fmtp);
        // Two AU headers (size 3 and 2), 32 bits of headers.
        let out = d.push(1000, &[0x00, 0x20, 0x00, 0x18, 0x00, 0x10, 1, 2, 3, 4, 5]).unwrap();
        assert_eq!(
            out.iter().map(|u| (u.rtp_ts, u.data.clone())).collect::<Vec<_>>(),
            vec![(1000, vec![1, 2, 3]), (2024, vec![4, 5])]
        );
        assert!(d.push(3048, &[0x00, 0x10, 0xff, 0xf8, 1]).is_none(), "AU larger than the packet");
        let mut one = Vec::new();
        packetize(&mut one, &[9, 8, 7]);
        assert_eq!(d.push(0, &one[0]).unwrap()[0].data, vec![9, 8, 7]);
    }
}
