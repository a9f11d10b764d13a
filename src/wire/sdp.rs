//! The parts of an SDP session description (RFC 8866) that RTSP ANNOUNCE carries and
//! ingest needs: one entry per media section with its payload type, codec, clock rate,
//! `fmtp` parameters and control URL. Pure.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::media::CodecParams;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaDescription {
    /// `video`, `audio`, …
    pub kind: String,
    pub payload_type: u8,
    /// Upper-cased encoding name from `a=rtpmap` (`H264`, `MPEG4-GENERIC`, …).
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: u16,
    /// `a=fmtp` parameters, names lower-cased.
    pub fmtp: BTreeMap<String, String>,
    pub control: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("the SDP is not UTF-8")]
    NotUtf8,
    #[error("the SDP has no media section")]
    NoMedia,
    #[error("bad SDP line: {0}")]
    BadLine(String),
}

pub fn parse(sdp: &[u8]) -> Result<Vec<MediaDescription>, SdpError> {
    let text = std::str::from_utf8(sdp).map_err(|_| SdpError::NotUtf8)?;
    let mut media: Vec<MediaDescription> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            let kind = parts.next().unwrap_or_default().to_string();
            let pt = parts.nth(2).and_then(|p| p.parse().ok()).ok_or_else(|| SdpError::BadLine(line.to_string()))?;
            media.push(MediaDescription { kind, payload_type: pt, ..Default::default() });
            continue;
        }
        let Some(cur) = media.last_mut() else { continue };
        if let Some(v) = line.strip_prefix("a=rtpmap:") {
            let (_, enc) = v.split_once(' ').ok_or_else(|| SdpError::BadLine(line.to_string()))?;
            let mut p = enc.split('/');
            cur.encoding = p.next().unwrap_or_default().to_ascii_uppercase();
            cur.clock_rate = p.next().and_then(|r| r.parse().ok()).unwrap_or(0);
            cur.channels = p.next().and_then(|c| c.parse().ok()).unwrap_or(1);
        } else if let Some(v) = line.strip_prefix("a=fmtp:") {
            let params = v.split_once(' ').map_or("", |(_, p)| p);
            for kv in params.split(';') {
                if let Some((k, val)) = kv.split_once('=') {
                    cur.fmtp.insert(k.trim().to_ascii_lowercase(), val.trim().to_string());
                }
            }
        } else if let Some(v) = line.strip_prefix("a=control:") {
            cur.control = Some(v.trim().to_string());
        }
    }
    if media.is_empty() {
        return Err(SdpError::NoMedia);
    }
    Ok(media)
}

fn b64(s: &str) -> Option<Vec<u8>> {
    BASE64.decode(s.trim()).ok().filter(|v| !v.is_empty())
}

/// The codec parameters a media section gives, or why it is not one ingest takes.
/// Video parameter sets may be missing from the SDP (then they come in band).
pub fn codec_params(m: &MediaDescription) -> Result<Option<CodecParams>, String> {
    match m.encoding.as_str() {
        "H264" => {
            let sets: Vec<Vec<u8>> =
                m.fmtp.get("sprop-parameter-sets").map(|s| s.split(',').filter_map(b64).collect()).unwrap_or_default();
            let sps = sets.iter().find(|n| n[0] & 0x1f == 7).cloned();
            let pps = sets.iter().find(|n| n[0] & 0x1f == 8).cloned();
            Ok(sps.zip(pps).map(|(sps, pps)| CodecParams::H264 { sps, pps }))
        }
        "H265" => {
            let get = |k: &str| m.fmtp.get(k).and_then(|s| b64(s));
            Ok(match (get("sprop-vps"), get("sprop-sps"), get("sprop-pps")) {
                (Some(vps), Some(sps), Some(pps)) => Some(CodecParams::H265 { vps, sps, pps }),
                _ => None,
            })
        }
        "MPEG4-GENERIC" => {
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
            Ok(Some(CodecParams::Aac { config, sample_rate: m.clock_rate, channels: m.channels.max(1) }))
        }
        "OPUS" => Ok(Some(CodecParams::Opus { channels: m.channels.max(1) })),
        other => Err(format!("codec {other} (Kinescope takes H264, H265, MPEG4-GENERIC AAC and OPUS)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // What `ffmpeg -f rtsp` announces for H.264 + AAC.
    const FFMPEG_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat 59.27.100\r\nm=video 0 RTP/AVP 96\r\nb=AS:200\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAHqzZQKAv+XARAAADAAEAAAMAMg8WLZY=,aOvjyyLA; profile-level-id=64001E\r\na=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/44100/2\r\na=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=121056E500\r\na=control:streamid=1\r\n";

    #[test]
    fn ffmpeg_announce() {
        let m = parse(FFMPEG_SDP.as_bytes()).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].encoding.as_str(), m[0].clock_rate, m[0].control.as_deref()),
            ("H264", 90000, Some("streamid=0"))
        );
        let Some(CodecParams::H264 { sps, pps }) = codec_params(&m[0]).unwrap() else { panic!("no H264 params") };
        assert_eq!((sps[0], pps[0]), (0x67, 0x68));
        let Some(CodecParams::Aac { config, sample_rate, channels }) = codec_params(&m[1]).unwrap() else {
            panic!("no AAC params")
        };
        assert_eq!((config[0], sample_rate, channels), (0x12, 44100, 2));
        assert_eq!(m[1].fmtp["sizelength"], "13");
        assert!(parse(b"v=0\r\n").is_err());
        let mut pcm = m[1].clone();
        pcm.encoding = "PCMU".into();
        assert!(codec_params(&pcm).is_err());
    }
}

/// The SDP describing `tracks` (codec, payload type, control suffix `trackID=N`), as a
/// DESCRIBE answer for viewers.
pub fn write(session_name: &str, tracks: &[(CodecParams, u8)]) -> String {
    let mut s = format!(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns={session_name}\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=control:*\r\na=range:npt=now-\r\n"
    );
    for (i, (params, pt)) in tracks.iter().enumerate() {
        match params {
            CodecParams::H264 { sps, pps } => {
                let pli = sps.get(1..4).map(hex::encode).unwrap_or_else(|| "42e01f".into());
                s.push_str(&format!(
                    "m=video 0 RTP/AVP {pt}\r\na=rtpmap:{pt} H264/90000\r\na=fmtp:{pt} packetization-mode=1;profile-level-id={pli};sprop-parameter-sets={},{}\r\n",
                    BASE64.encode(sps),
                    BASE64.encode(pps)
                ));
            }
            CodecParams::H265 { vps, sps, pps } => s.push_str(&format!(
                "m=video 0 RTP/AVP {pt}\r\na=rtpmap:{pt} H265/90000\r\na=fmtp:{pt} sprop-vps={};sprop-sps={};sprop-pps={}\r\n",
                BASE64.encode(vps),
                BASE64.encode(sps),
                BASE64.encode(pps)
            )),
            CodecParams::Aac { config, sample_rate, channels } => s.push_str(&format!(
                "m=audio 0 RTP/AVP {pt}\r\na=rtpmap:{pt} MPEG4-GENERIC/{sample_rate}/{channels}\r\na=fmtp:{pt} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config={}\r\n",
                hex::encode(config)
            )),
            CodecParams::Opus { channels } => {
                s.push_str(&format!("m=audio 0 RTP/AVP {pt}\r\na=rtpmap:{pt} opus/48000/{channels}\r\n"))
            }
        }
        s.push_str(&format!("a=control:trackID={i}\r\n"));
    }
    s
}

#[cfg(test)]
mod write_tests {
    use super::*;

    #[test]
    fn what_we_write_parses_back() {
        let tracks = vec![
            (CodecParams::H264 { sps: vec![0x67, 0x64, 0, 0x1e], pps: vec![0x68, 1] }, 96),
            (CodecParams::Aac { config: vec![0x11, 0x90], sample_rate: 48000, channels: 1 }, 97),
        ];
        let text = write("lobby", &tracks);
        let media = parse(text.as_bytes()).unwrap();
        assert_eq!(media.len(), 2);
        for ((p, _), m) in tracks.iter().zip(&media) {
            assert_eq!(codec_params(m).unwrap().as_ref(), Some(p));
        }
        assert_eq!(media[1].control.as_deref(), Some("trackID=1"));
    }
}
