//! The codec parameters of each track of a stored init segment (`avcC`, `hvcC`, `esds`,
//! `dOps` inside the sample entries), for describing a stored stream to RTSP viewers.
//! Pure; the inverse of what [`super::fmp4_mux`] writes, and it reads ffmpeg's inits too.

use super::CodecParams;
use crate::wire::fmp4::{find_child, BoxIter, FourCc};

fn child<'a>(buf: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    find_child(buf, FourCc::new(kind)).ok().flatten()
}

/// (track id, parameters) of every track whose codec RTSP can carry, in order.
pub fn codec_params_of_init(init: &[u8]) -> Vec<(u32, CodecParams)> {
    let Some(moov) = child(init, b"moov") else { return Vec::new() };
    let mut out = Vec::new();
    for item in BoxIter::new(moov) {
        let Ok((kind, trak)) = item else { break };
        if kind != FourCc::new(b"trak") {
            continue;
        }
        let Some(tkhd) = child(trak, b"tkhd") else { continue };
        let id_at = if tkhd.first() == Some(&1) { 4 + 16 } else { 4 + 8 };
        let Some(id) = tkhd.get(id_at..id_at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])) else {
            continue;
        };
        let stsd = child(trak, b"mdia")
            .and_then(|m| child(m, b"minf"))
            .and_then(|m| child(m, b"stbl"))
            .and_then(|s| child(s, b"stsd"));
        let Some(entries) = stsd.and_then(|s| s.get(8..)) else { continue };
        let Some(Ok((entry_kind, entry))) = BoxIter::new(entries).next() else { continue };
        if let Some(p) = entry_params(entry_kind, entry) {
            out.push((id, p));
        }
    }
    out
}

fn entry_params(kind: FourCc, entry: &[u8]) -> Option<CodecParams> {
    match &kind.0 {
        b"avc1" | b"avc3" => parse_avcc(child(entry.get(78..)?, b"avcC")?),
        b"hvc1" | b"hev1" => parse_hvcc(child(entry.get(78..)?, b"hvcC")?),
        b"mp4a" => {
            let channels = u16::from_be_bytes([*entry.get(16)?, *entry.get(17)?]);
            let rate = u32::from_be_bytes([*entry.get(24)?, *entry.get(25)?, *entry.get(26)?, *entry.get(27)?]) >> 16;
            let esds = child(entry.get(28..)?, b"esds")?;
            let config = decoder_specific_info(esds.get(4..)?)?;
            Some(CodecParams::Aac { config, sample_rate: rate, channels })
        }
        b"Opus" => Some(CodecParams::Opus { channels: u16::from_be_bytes([*entry.get(16)?, *entry.get(17)?]) }),
        _ => None,
    }
}

fn parse_avcc(b: &[u8]) -> Option<CodecParams> {
    let mut at = 5;
    let sps_count = usize::from(*b.get(at)? & 0x1f);
    at += 1;
    let read = |at: &mut usize| -> Option<Vec<u8>> {
        let n = usize::from(u16::from_be_bytes([*b.get(*at)?, *b.get(*at + 1)?]));
        let v = b.get(*at + 2..*at + 2 + n)?.to_vec();
        *at += 2 + n;
        Some(v)
    };
    let mut sps = None;
    for _ in 0..sps_count {
        let s = read(&mut at)?;
        sps.get_or_insert(s);
    }
    let pps_count = usize::from(*b.get(at)?);
    at += 1;
    let mut pps = None;
    for _ in 0..pps_count {
        let p = read(&mut at)?;
        pps.get_or_insert(p);
    }
    Some(CodecParams::H264 { sps: sps?, pps: pps? })
}

fn parse_hvcc(b: &[u8]) -> Option<CodecParams> {
    let arrays = usize::from(*b.get(22)?);
    let mut at = 23;
    let (mut vps, mut sps, mut pps) = (None, None, None);
    for _ in 0..arrays {
        let kind = *b.get(at)? & 0x3f;
        let n = usize::from(u16::from_be_bytes([*b.get(at + 1)?, *b.get(at + 2)?]));
        at += 3;
        for _ in 0..n {
            let len = usize::from(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]));
            let nal = b.get(at + 2..at + 2 + len)?.to_vec();
            at += 2 + len;
            match kind {
                32 => vps = vps.or(Some(nal)),
                33 => sps = sps.or(Some(nal)),
                34 => pps = pps.or(Some(nal)),
                _ => {}
            }
        }
    }
    Some(CodecParams::H265 { vps: vps?, sps: sps?, pps: pps? })
}

/// The DecoderSpecificInfo (tag 5) inside an ES_Descriptor.
fn decoder_specific_info(mut b: &[u8]) -> Option<Vec<u8>> {
    // Walk descriptors depth-first: ES (3) → DecoderConfig (4) → DecoderSpecificInfo (5).
    let mut guard = 0;
    while !b.is_empty() && guard < 16 {
        guard += 1;
        let tag = b[0];
        let mut len = 0usize;
        let mut at = 1;
        for _ in 0..4 {
            let c = *b.get(at)?;
            at += 1;
            len = (len << 7) | usize::from(c & 0x7f);
            if c & 0x80 == 0 {
                break;
            }
        }
        let body = b.get(at..at + len)?;
        match tag {
            3 => {
                let flags = *body.get(2)?;
                let mut skip = 3;
                if flags & 0x80 != 0 {
                    skip += 2;
                }
                if flags & 0x40 != 0 {
                    skip += 1 + usize::from(*body.get(skip)?);
                }
                if flags & 0x20 != 0 {
                    skip += 2;
                }
                b = body.get(skip..)?;
            }
            4 => b = body.get(13..)?,
            5 => return Some(body.to_vec()),
            _ => b = b.get(at + len..)?,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::fmp4_mux::FragmentMuxer;

    #[test]
    fn reads_back_what_the_muxer_writes_and_ffmpegs_inits() {
        let params = vec![
            CodecParams::H264 {
                sps: vec![
                    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
                    0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
                ],
                pps: vec![0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0],
            },
            CodecParams::Aac { config: vec![0x11, 0x90], sample_rate: 48_000, channels: 1 },
        ];
        let init = FragmentMuxer::new(params.clone()).init_segment().unwrap();
        let got = codec_params_of_init(&init);
        assert_eq!(got, vec![(1, params[0].clone()), (2, params[1].clone())]);

        let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/av.mp4")).unwrap();
        let got = codec_params_of_init(&file);
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[0].1, CodecParams::H264 { sps, .. } if sps[0] == 0x67));
        assert!(matches!(&got[1].1, CodecParams::Aac { sample_rate: 48_000, .. }));
        let hevc = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hevc.mp4")).unwrap();
        assert!(matches!(codec_params_of_init(&hevc)[0].1, CodecParams::H265 { .. }));
        assert!(codec_params_of_init(b"garbage").is_empty());
    }
}
