//! HLS playlists for a session's window, written with `m3u8-rs`.
//!
//! The media segments are the stored fragments as they are (CMAF fMP4, `EXT-X-MAP` to
//! the stream's init segment), so a segment request is one read; or, for
//! `ContainerFormat=MPEG_TS` sessions, the same fragments as transport-stream segments
//! ([`super::ts_segment`]), self-contained, without a map. URLs inside the
//! playlists are relative, carrying the session token, so the playlists work behind
//! any proxy. Everything here is pure: the caller supplies the window and the token.
//!
//! Low-latency sessions add parts ([`super::ll_hls`]): `EXT-X-PART` before the last
//! segments, the segment being received after them, and the playlist-level tags.

use m3u8_rs::{MasterPlaylist, MediaPlaylist, MediaPlaylistType, MediaSegment, Resolution, VariantStream};

use super::ll_hls::{self, LowLatencyView};
use super::selection::{clock_time, Window};
use super::session::{PlaybackMode, Session};
use crate::wire::fmp4::{InitInfo, TrackKind};

pub const MEDIA_PLAYLIST: &str = "getHLSMediaPlaylist.m3u8";
pub const INIT_FRAGMENT: &str = "getMP4InitFragment.mp4";
pub const MEDIA_FRAGMENT: &str = "getMP4MediaFragment.mp4";
/// A fragment as an MPEG-TS segment (`ContainerFormat=MPEG_TS` sessions).
pub const TS_FRAGMENT: &str = "getTSFragment.ts";

/// The master playlist: one variant, the stream's tracks multiplexed.
pub fn master_playlist(init: &InitInfo, bandwidth: u64, token: &str) -> String {
    let codecs: Vec<String> = init.tracks.iter().map(crate::codec::codec_string).filter(|c| !c.is_empty()).collect();
    let resolution = init
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video && t.width > 0)
        .map(|t| Resolution { width: u64::from(t.width), height: u64::from(t.height) });
    let playlist = MasterPlaylist {
        version: Some(7),
        independent_segments: true,
        variants: vec![VariantStream {
            uri: format!("{MEDIA_PLAYLIST}?SessionToken={token}"),
            bandwidth: bandwidth.max(1),
            codecs: (!codecs.is_empty()).then(|| codecs.join(",")),
            resolution,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = playlist.write_to(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The media playlist for the session's current window (with the live edge's parts for
/// a low-latency session).
pub fn media_playlist(window: &Window, session: &Session, token: &str, ll: Option<&LowLatencyView>) -> String {
    let longest_us = window.entries.iter().map(|e| e.meta.duration_us).max().unwrap_or(1_000_000);
    let mut segments = Vec::with_capacity(window.entries.len());
    let mut current_init = None;
    for e in &window.entries {
        let m = &e.meta;
        let map = (!session.mpeg_ts && current_init != Some(m.init_id)).then(|| m3u8_rs::Map {
            uri: format!("{INIT_FRAGMENT}?SessionToken={token}&InitId={}", m.init_id),
            ..Default::default()
        });
        current_init = Some(m.init_id);
        let program_date_time = session
            .display_timestamp
            .then(|| chrono::DateTime::from_timestamp_micros(clock_time(m, session.clock)))
            .flatten()
            .map(|t| t.fixed_offset());
        let parts = ll.and_then(|v| v.segments.iter().find(|s| s.fragment_number == m.fragment_number));
        let unknown_tags = parts
            .map(|s| {
                s.parts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| m3u8_rs::ExtTag {
                        tag: "X-PART".into(),
                        rest: Some(ll_hls::part_attributes(p, &ll_hls::part_uri(token, m.fragment_number, i))),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let segment = if session.mpeg_ts { TS_FRAGMENT } else { MEDIA_FRAGMENT };
        segments.push(MediaSegment {
            uri: format!("{segment}?SessionToken={token}&FragmentNumber={}", m.fragment_number),
            unknown_tags,
            duration: (m.duration_us as f64 / 1e6) as f32,
            discontinuity: e.discontinuity,
            map,
            program_date_time,
            ..Default::default()
        });
    }
    let playlist = MediaPlaylist {
        // fMP4 segments need version 6 (EXT-X-MAP without I-frames-only), 7 here.
        version: Some(if session.mpeg_ts { 3 } else { 7 }),
        independent_segments: true,
        target_duration: (longest_us.max(1) as u64).div_ceil(1_000_000),
        media_sequence: window.media_sequence,
        discontinuity_sequence: window.discontinuity_sequence,
        segments,
        end_list: window.ended,
        playlist_type: match session.mode {
            PlaybackMode::OnDemand => Some(MediaPlaylistType::Vod),
            PlaybackMode::LiveReplay => Some(MediaPlaylistType::Event),
            PlaybackMode::Live => None,
        },
        ..Default::default()
    };
    let mut out = Vec::new();
    let _ = playlist.write_to(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    match ll {
        Some(view) => with_live_edge(text, view, token),
        None => text,
    }
}

/// Adds the low-latency tags m3u8-rs does not write: the server control and part
/// target after the target duration, the partial segment and preload hint at the end.
fn with_live_edge(text: String, view: &LowLatencyView, token: &str) -> String {
    let header = ll_hls::header_lines(view);
    let mut out = String::with_capacity(text.len() + header.len() + 512);
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("#EXT-X-TARGETDURATION:") {
            out.push_str(&header);
        }
    }
    out.push_str(&ll_hls::trailer_lines(view, token));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playback::selection::Entry;
    use crate::playback::session::{DiscontinuityMode, Protocol};
    use crate::video_store::FragmentMeta;

    fn session(mode: PlaybackMode, display_timestamp: bool) -> Session {
        Session {
            max_fragments: 5,
            discontinuity: DiscontinuityMode::OnDiscontinuity,
            display_timestamp,
            ..Session::for_test(Protocol::Hls, mode)
        }
    }

    fn entry(n: u64, init: u32, discontinuity: bool) -> Entry {
        Entry {
            meta: FragmentMeta {
                fragment_number: n,
                producer_ts_us: 1_700_000_000_000_000 + n as i64 * 2_000_000,
                server_ts_us: 0,
                duration_us: 2_000_000,
                segment_id: 1,
                offset: 0,
                len: 1,
                crc: 0,
                init_id: init,
                chunk_count: 1,
                flags: 1,
            },
            discontinuity,
        }
    }

    #[test]
    fn live_playlist_slides_without_endlist_and_maps_each_init() {
        let w = Window {
            entries: vec![entry(10, 1, false), entry(11, 2, true), entry(12, 2, false)],
            media_sequence: 10,
            discontinuity_sequence: 3,
            ended: false,
        };
        let text = media_playlist(&w, &session(PlaybackMode::Live, true), "TOK", None);
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
        assert_eq!(parsed.media_sequence, 10);
        assert_eq!(parsed.discontinuity_sequence, 3);
        assert_eq!(parsed.target_duration, 2);
        assert!(!parsed.end_list);
        assert_eq!(parsed.segments.len(), 3);
        assert!(parsed.segments[1].discontinuity);
        assert_eq!(
            parsed.segments[1].map.as_ref().map(|m| m.uri.as_str()),
            Some("getMP4InitFragment.mp4?SessionToken=TOK&InitId=2")
        );
        assert!(parsed.segments[2].map.is_none());
        assert_eq!(parsed.segments[0].uri, "getMP4MediaFragment.mp4?SessionToken=TOK&FragmentNumber=10");
        assert!(parsed.segments[0].program_date_time.is_some());
        assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:40.000Z"), "{text}");
    }

    #[test]
    fn an_mpeg_ts_playlist_lists_ts_segments_without_a_map() {
        let w = Window {
            entries: vec![entry(10, 1, false), entry(11, 2, true)],
            media_sequence: 10,
            discontinuity_sequence: 0,
            ended: false,
        };
        let ts = Session { mpeg_ts: true, ..session(PlaybackMode::Live, false) };
        let text = media_playlist(&w, &ts, "TOK", None);
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
        assert!(parsed.segments.iter().all(|s| s.map.is_none()), "{text}");
        assert_eq!(parsed.segments[1].uri, "getTSFragment.ts?SessionToken=TOK&FragmentNumber=11");
        assert!(parsed.segments[1].discontinuity);
        assert_eq!(parsed.version, Some(3));
    }

    #[test]
    fn on_demand_playlist_is_vod_and_ends() {
        let w = Window { entries: vec![entry(1, 1, false)], media_sequence: 0, discontinuity_sequence: 0, ended: true };
        let text = media_playlist(&w, &session(PlaybackMode::OnDemand, false), "T", None);
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD"));
        assert!(text.contains("#EXT-X-ENDLIST"));
        assert!(!text.contains("PROGRAM-DATE-TIME"));
    }
}
