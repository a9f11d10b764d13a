//! The parts of an SDP session description (RFC 8866) that RTSP carries: one entry per
//! media section with its payload type, encoding, clock rate, `fmtp` parameters and
//! control URL, read from an ANNOUNCE and written for a DESCRIBE. Pure, and
//! codec-neutral: what the `fmtp` parameters mean is `crate::codec`'s business.

use std::collections::BTreeMap;

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

impl MediaDescription {
    /// A media section without `fmtp` parameters or control URL; `channels` 0 leaves
    /// the channel count out of `a=rtpmap` (video).
    pub fn new(kind: &str, payload_type: u8, encoding: &str, clock_rate: u32, channels: u16) -> Self {
        MediaDescription {
            kind: kind.to_string(),
            payload_type,
            encoding: encoding.to_string(),
            clock_rate,
            channels,
            fmtp: BTreeMap::new(),
            control: None,
        }
    }
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

/// The SDP describing `media` (in order, each with its control attribute), as a
/// DESCRIBE answer for viewers.
pub fn write(session_name: &str, media: &[MediaDescription]) -> String {
    let mut s = format!(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns={session_name}\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=control:*\r\na=range:npt=now-\r\n"
    );
    for m in media {
        let pt = m.payload_type;
        s.push_str(&format!("m={} 0 RTP/AVP {pt}\r\na=rtpmap:{pt} {}/{}", m.kind, m.encoding, m.clock_rate));
        if m.channels > 0 {
            s.push_str(&format!("/{}", m.channels));
        }
        s.push_str("\r\n");
        if !m.fmtp.is_empty() {
            let params: Vec<String> = m.fmtp.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("a=fmtp:{pt} {}\r\n", params.join(";")));
        }
        if let Some(c) = &m.control {
            s.push_str(&format!("a=control:{c}\r\n"));
        }
    }
    s
}

/// Which way a media section of an offer flows (its `a=` direction attribute; none
/// means `sendrecv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// Whether the offerer sends media in the section.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
}

/// The direction of each `kind` (`video`, `audio`) section of `sdp` that lists `codec`
/// (`encoding/clock rate`, e.g. `h264/90000`, any case) among its `a=rtpmap`s. A browser's
/// offer lists many payload types per section, which [`parse`] (one codec per section,
/// as ANNOUNCE has it) does not keep. Pure.
pub fn offers<'a>(sdp: &'a str, kind: &'a str, codec: &'a str) -> impl Iterator<Item = Direction> + 'a {
    sdp.split("\nm=")
        .skip(1)
        .filter(move |s| s.starts_with(kind) && s.as_bytes().get(kind.len()) == Some(&b' '))
        .filter_map(move |section| {
            let lists = section.lines().filter_map(|l| l.trim_end().strip_prefix("a=rtpmap:")).any(|map| {
                map.split_once(' ').is_some_and(|(_, enc)| {
                    enc.as_bytes().get(..codec.len()).is_some_and(|e| e.eq_ignore_ascii_case(codec.as_bytes()))
                })
            });
            let direction = section.lines().find_map(|l| match l.trim_end() {
                "a=sendonly" => Some(Direction::SendOnly),
                "a=recvonly" => Some(Direction::RecvOnly),
                "a=inactive" => Some(Direction::Inactive),
                "a=sendrecv" => Some(Direction::SendRecv),
                _ => None,
            });
            lists.then(|| direction.unwrap_or(Direction::SendRecv))
        })
}

/// The address of an ICE candidate (`candidate:FOUNDATION COMPONENT TRANSPORT PRIORITY
/// ADDRESS PORT typ …`, with or without `a=`): an IP address, or the name it gives
/// (an mDNS `….local` name). Pure.
pub fn candidate_address(candidate: &str) -> Option<&str> {
    let rest = candidate.trim().strip_prefix("a=").unwrap_or(candidate.trim()).strip_prefix("candidate:")?;
    rest.split_ascii_whitespace().nth(4)
}

/// Whether a line (as split on `\n`) is an `a=candidate` attribute as SDP parsers read
/// one: they skip any `\r` (and `\n`) before a line's type, so `\ra=candidate:` is one.
pub fn is_candidate_line(line: &str) -> bool {
    line.trim_start_matches(['\r', '\n']).starts_with("a=candidate:")
}

/// How many `a=candidate` lines `sdp` has, counted as [`is_candidate_line`] does.
pub fn candidate_lines(sdp: &str) -> usize {
    sdp.split_inclusive('\n').filter(|l| is_candidate_line(l)).count()
}

/// `sdp` keeping at most `max` `a=candidate` lines, and only those whose address
/// `keep` accepts; and how many it dropped. Every other line is kept as it was. Pure.
pub fn keep_candidates(sdp: &str, max: usize, keep: impl Fn(&str) -> bool) -> (String, usize) {
    let (mut out, mut kept, mut dropped) = (String::with_capacity(sdp.len()), 0usize, 0usize);
    for line in sdp.split_inclusive('\n') {
        if is_candidate_line(line) {
            let ok = kept < max && candidate_address(line).is_some_and(&keep);
            if !ok {
                dropped += 1;
                continue;
            }
            kept += 1;
        }
        out.push_str(line);
    }
    (out, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_capped_and_screened_by_address() {
        let mut offer = String::from("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\n");
        for i in 0..40 {
            offer.push_str(&format!("a=candidate:{i} 1 udp 2130706431 10.0.0.{i} 5000{i} typ host\r\n"));
        }
        offer.push_str("a=candidate:99 1 udp 2130706431 0b6c7c9e-1c4a.local 50000 typ host\r\na=end-of-candidates\r\n");
        let (out, dropped) = keep_candidates(&offer, 16, |a| a.parse::<std::net::IpAddr>().is_ok());
        assert_eq!(candidate_lines(&out), 16);
        // A line led by a bare CR is a candidate to a parser too: counted and capped.
        let sneaky = format!("v=0\n{}", "\ra=candidate:1 1 udp 1 10.0.0.1 9 typ host\n".repeat(40));
        assert_eq!(candidate_lines(&keep_candidates(&sneaky, 16, |_| true).0), 16);
        assert_eq!(dropped, 25);
        assert!(out.starts_with("v=0\r\nm=video") && out.ends_with("a=end-of-candidates\r\n"));
        let (only_one, _) = keep_candidates(&offer, 16, |a| a == "10.0.0.7");
        assert_eq!(only_one.matches("a=candidate:").count(), 1);
        assert_eq!(candidate_address("candidate:1 1 udp 2 192.0.2.1 9 typ host"), Some("192.0.2.1"));
        assert_eq!(candidate_address("a=candidate:1 1 udp"), None);
        assert_eq!(candidate_address("garbage"), None);
    }

    #[test]
    fn offered_sections_by_kind_codec_and_direction() {
        let offer = "v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\na=rtpmap:111 opus/48000/2\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\n";
        assert_eq!(offers(offer, "audio", "opus/48000").collect::<Vec<_>>(), [Direction::RecvOnly]);
        assert_eq!(offers(offer, "video", "h264/90000").collect::<Vec<_>>(), [Direction::SendRecv]);
        assert!(offers(offer, "video", "h265/90000").next().is_none());
        assert!(offers(offer, "vid", "h264/90000").next().is_none(), "the kind is a whole word");
        assert!(!Direction::RecvOnly.sends() && !Direction::Inactive.sends() && Direction::SendOnly.sends());
        assert!(offers("garbage", "video", "h264/90000").next().is_none());
    }

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
        assert_eq!((m[1].encoding.as_str(), m[1].clock_rate, m[1].channels), ("MPEG4-GENERIC", 44100, 2));
        assert_eq!(m[1].fmtp["sizelength"], "13");
        assert_eq!(m[1].fmtp["config"], "121056E500");
        assert!(parse(b"v=0\r\n").is_err());
    }

    #[test]
    fn what_we_write_parses_back() {
        let mut video = MediaDescription::new("video", 96, "H264", 90_000, 0);
        video.fmtp.insert("packetization-mode".into(), "1".into());
        video.control = Some("trackID=0".into());
        let mut audio = MediaDescription::new("audio", 97, "OPUS", 48_000, 2);
        audio.control = Some("trackID=1".into());
        let text = write("lobby", &[video.clone(), audio.clone()]);
        let back = parse(text.as_bytes()).unwrap();
        assert_eq!(back[1], audio);
        assert_eq!((back[0].channels, &back[0].fmtp), (1, &video.fmtp), "no channel count on video");
        assert!(!text.contains("a=fmtp:97"), "no empty fmtp line");
    }
}
