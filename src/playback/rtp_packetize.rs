//! Stored samples back into RTP payloads for RTSP viewers: H.264 (RFC 6184: single NAL
//! or FU-A), H.265 (RFC 7798: single or FU) and AAC (RFC 3640 AAC-hbr, one frame per
//! packet). Pure: a sample in, payloads (the last one carries the marker) out.

use crate::media::CodecParams;

/// Largest RTP payload we send, so packets fit a 1500-byte path with headers.
pub const MAX_PAYLOAD: usize = 1400;

/// The NAL units of a length-prefixed (AVCC/HVCC) sample.
pub fn nal_units(sample: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= sample.len() {
        let n = u32::from_be_bytes([sample[at], sample[at + 1], sample[at + 2], sample[at + 3]]) as usize;
        let Some(nal) = sample.get(at + 4..at + 4 + n) else { break };
        if !nal.is_empty() {
            out.push(nal);
        }
        at += 4 + n;
    }
    out
}

fn fragment(out: &mut Vec<Vec<u8>>, header: &[u8], fu_type: u8, body: &[u8]) {
    let pieces: Vec<&[u8]> = body.chunks(MAX_PAYLOAD - header.len() - 1).collect();
    for (i, p) in pieces.iter().enumerate() {
        let mut v = header.to_vec();
        let mut fu = fu_type;
        if i == 0 {
            fu |= 0x80;
        }
        if i + 1 == pieces.len() {
            fu |= 0x40;
        }
        v.push(fu);
        v.extend_from_slice(p);
        out.push(v);
    }
}

/// The RTP payloads of one sample, in order.
pub fn payloads(codec: &CodecParams, sample: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    match codec {
        CodecParams::H264 { .. } => {
            for nal in nal_units(sample) {
                if nal.len() <= MAX_PAYLOAD {
                    out.push(nal.to_vec());
                } else {
                    fragment(&mut out, &[(nal[0] & 0xe0) | 28], nal[0] & 0x1f, &nal[1..]);
                }
            }
        }
        CodecParams::H265 { .. } => {
            for nal in nal_units(sample) {
                if nal.len() <= MAX_PAYLOAD || nal.len() < 3 {
                    out.push(nal.to_vec());
                } else {
                    let kind = (nal[0] >> 1) & 0x3f;
                    fragment(&mut out, &[(nal[0] & 0x81) | (49 << 1), nal[1]], kind, &nal[2..]);
                }
            }
        }
        CodecParams::Aac { .. } => {
            // One AU header (13-bit size, 3-bit index) of 16 bits.
            let size = sample.len().min(0x1fff) as u16;
            let mut v = vec![0x00, 0x10];
            v.extend_from_slice(&(size << 3).to_be_bytes());
            v.extend_from_slice(&sample[..usize::from(size)]);
            out.push(v);
        }
        CodecParams::Opus { .. } => out.push(sample.to_vec()),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::rtp_depacketize::Depacketizer;
    use crate::wire::rtp;

    #[test]
    fn packetize_then_depacketize_gives_the_sample_back() {
        let mut sample = Vec::new();
        for nal in [vec![0x67, 1, 2], vec![0x68, 3], {
            let mut big = vec![0x65];
            big.extend((0..5000).map(|i| i as u8));
            big
        }] {
            sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            sample.extend_from_slice(&nal);
        }
        let codec = CodecParams::H264 { sps: vec![], pps: vec![] };
        let ps = payloads(&codec, &sample);
        assert!(ps.len() > 4 && ps.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let mut d = Depacketizer::new(&codec, &Default::default());
        let mut units = Vec::new();
        for (i, p) in ps.iter().enumerate() {
            let mut pkt = Vec::new();
            rtp::write(&mut pkt, 96, i + 1 == ps.len(), i as u16, 9000, 1, p);
            units.extend(d.push(&rtp::parse(&pkt).unwrap(), 0));
        }
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].data, sample);
        assert!(units[0].keyframe);

        let aac = CodecParams::Aac { config: vec![0x11, 0x90], sample_rate: 48000, channels: 1 };
        let p = payloads(&aac, &[9, 8, 7]);
        let mut pkt = Vec::new();
        rtp::write(&mut pkt, 97, true, 1, 0, 1, &p[0]);
        let mut d = Depacketizer::new(&aac, &Default::default());
        assert_eq!(d.push(&rtp::parse(&pkt).unwrap(), 0)[0].data, vec![9, 8, 7]);
    }
}
