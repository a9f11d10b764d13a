//! The DASH manifest (MPD) for a session's window, as typed values written through
//! [`crate::wire::xml`].
//!
//! dash.js follows the DASH-IF guidelines and refuses multiplexed representations, so
//! every track gets its own adaptation set, with per-track init and media segments cut
//! from the stored fragment on request ([`crate::wire::mp4_tracks`]).
//!
//! Timeline: every track's segments are rewritten to the fragment's producer time
//! (milliseconds since the epoch, `timescale="1000"`), so one `$Time$` names the same
//! fragment in every adaptation set and audio stays in sync with video. A dynamic
//! (LIVE) manifest's `availabilityStartTime` is the epoch, so a segment is available
//! at its own producer time; a LIVE_REPLAY manifest shifts that origin to the moment
//! the session began. A new period starts where the init segment changes.

use super::selection::{Entry, Window};
use super::session::{PlaybackMode, Session};
use crate::wire::fmp4::{InitInfo, TrackKind};
use crate::wire::xml::Element;

pub const MANIFEST: &str = "getDASHManifest.mpd";
pub const INIT_FRAGMENT: &str = "getMP4InitFragment.mp4";
pub const MEDIA_FRAGMENT: &str = "getMP4MediaFragment.mp4";
const KVS_NS: &str = "https://kinescope.dev/ns/kvs-dash";

#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub dynamic: bool,
    pub availability_start_ms: i64,
    pub publish_ms: i64,
    pub duration_ms: Option<i64>,
    pub time_shift_buffer_ms: Option<i64>,
    pub suggested_delay_ms: Option<i64>,
    pub min_buffer_ms: i64,
    pub periods: Vec<Period>,
    /// Whether `S` elements carry `kvs:` attributes (the namespace is then declared).
    pub kvs_attributes: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub id: String,
    pub start_ms: i64,
    pub adaptation_sets: Vec<AdaptationSet>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdaptationSet {
    pub id: u32,
    pub content_type: &'static str,
    pub mime_type: &'static str,
    pub codecs: String,
    pub width: u16,
    pub height: u16,
    pub sample_rate: u32,
    pub channels: u16,
    pub bandwidth: u64,
    pub init_url: String,
    pub media_url: String,
    pub presentation_time_offset_ms: i64,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineEntry {
    pub t_ms: i64,
    pub d_ms: i64,
    /// Further segments of the same duration that follow without a gap.
    pub repeat: u32,
    pub fragment_number: Option<u64>,
    pub timestamp_ms: Option<i64>,
}

fn duration(ms: i64) -> String {
    format!("PT{}.{:03}S", ms.div_euclid(1000), ms.rem_euclid(1000))
}

fn iso_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}

impl Manifest {
    pub fn to_xml(&self) -> String {
        let mut mpd = Element::new("MPD")
            .attr("xmlns", "urn:mpeg:dash:schema:mpd:2011")
            .attr_opt("xmlns:kvs", self.kvs_attributes.then_some(KVS_NS))
            .attr("profiles", "urn:mpeg:dash:profile:isoff-live:2011")
            .attr("type", if self.dynamic { "dynamic" } else { "static" })
            .attr("minBufferTime", duration(self.min_buffer_ms));
        if self.dynamic {
            mpd = mpd
                .attr("availabilityStartTime", iso_time(self.availability_start_ms))
                .attr("publishTime", iso_time(self.publish_ms))
                .attr("minimumUpdatePeriod", "PT1S")
                .attr_opt("timeShiftBufferDepth", self.time_shift_buffer_ms.map(duration))
                .attr_opt("suggestedPresentationDelay", self.suggested_delay_ms.map(duration));
        } else {
            mpd = mpd.attr_opt("mediaPresentationDuration", self.duration_ms.map(duration));
        }
        mpd = mpd.children(self.periods.iter().map(|p| p.to_element()));
        if self.dynamic {
            // The server's clock, so players need no time server to find the live edge.
            mpd = mpd.child(
                Element::new("UTCTiming")
                    .attr("schemeIdUri", "urn:mpeg:dash:utc:direct:2014")
                    .attr("value", iso_time(self.publish_ms)),
            );
        }
        mpd.to_document()
    }
}

impl Period {
    fn to_element(&self) -> Element {
        Element::new("Period")
            .attr("id", &self.id)
            .attr("start", duration(self.start_ms))
            .children(self.adaptation_sets.iter().map(AdaptationSet::to_element))
    }
}

impl AdaptationSet {
    fn to_element(&self) -> Element {
        let video = self.content_type == "video";
        let timeline = Element::new("SegmentTimeline").children(self.timeline.iter().map(|s| {
            Element::new("S")
                .attr("t", s.t_ms)
                .attr("d", s.d_ms)
                .attr_opt("r", (s.repeat > 0).then_some(s.repeat))
                .attr_opt("kvs:fn", s.fragment_number)
                .attr_opt("kvs:ts", s.timestamp_ms)
        }));
        let template = Element::new("SegmentTemplate")
            .attr("timescale", 1000)
            .attr("presentationTimeOffset", self.presentation_time_offset_ms)
            .attr("initialization", &self.init_url)
            .attr("media", &self.media_url)
            .child(timeline);
        let mut representation = Element::new("Representation")
            .attr("id", self.id)
            .attr("bandwidth", self.bandwidth.max(1))
            .attr("codecs", &self.codecs);
        if video {
            representation = representation.attr("width", self.width).attr("height", self.height);
        } else {
            representation = representation.attr("audioSamplingRate", self.sample_rate);
        }
        let set = Element::new("AdaptationSet")
            .attr("id", self.id)
            .attr("contentType", self.content_type)
            .attr("mimeType", self.mime_type)
            .attr("segmentAlignment", "true")
            .attr("startWithSAP", 1);
        if !video && self.channels > 0 {
            representation = representation.child(
                Element::new("AudioChannelConfiguration")
                    .attr("schemeIdUri", "urn:mpeg:dash:23003:3:audio_channel_configuration:2011")
                    .attr("value", self.channels),
            );
        }
        set.child(template).child(representation)
    }
}

/// The timeline of one run of entries: durations close the gap to the next fragment
/// when it is within the discontinuity tolerance, and equal contiguous segments fold
/// into one `S` with `r` unless per-fragment attributes are asked for.
fn timeline(entries: &[Entry], session: &Session) -> Vec<TimelineEntry> {
    let mut out: Vec<TimelineEntry> = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let t_ms = e.meta.producer_ts_us.div_euclid(1000);
        let own = (e.meta.duration_us / 1000).max(1);
        let d_ms = match entries.get(i + 1) {
            Some(next) => {
                let gap = next.meta.producer_ts_us.div_euclid(1000) - t_ms;
                if (gap - own).abs() <= 50 && gap > 0 {
                    gap
                } else {
                    own
                }
            }
            None => own,
        };
        let fragment_number = session.display_fragment_number.then_some(e.meta.fragment_number);
        let timestamp_ms =
            session.display_timestamp.then(|| super::selection::clock_time(&e.meta, session.clock) / 1000);
        if fragment_number.is_none() && timestamp_ms.is_none() {
            if let Some(last) = out.last_mut() {
                let end = last.t_ms + last.d_ms * (i64::from(last.repeat) + 1);
                if last.d_ms == d_ms && end == t_ms {
                    last.repeat += 1;
                    continue;
                }
            }
        }
        out.push(TimelineEntry { t_ms, d_ms, repeat: 0, fragment_number, timestamp_ms });
    }
    out
}

/// Builds the manifest for `window`; `init_of` gives what each init segment says.
pub fn manifest(
    window: &Window,
    session: &Session,
    init_of: &dyn Fn(u32) -> Option<InitInfo>,
    token: &str,
    now_us: i64,
) -> Manifest {
    let entries = &window.entries;
    let first_ms = entries.first().map_or(0, |e| e.meta.producer_ts_us.div_euclid(1000));
    let last_end_ms = entries.last().map_or(0, |e| (e.meta.producer_ts_us + e.meta.duration_us).div_euclid(1000));
    let dynamic = !window.ended && session.mode != PlaybackMode::OnDemand;
    let total_bytes: u64 = entries.iter().map(|e| u64::from(e.meta.len)).sum();
    let total_us: i64 = entries.iter().map(|e| e.meta.duration_us).sum::<i64>().max(1);
    let bandwidth = total_bytes.saturating_mul(8_000_000) / total_us as u64;

    let mut periods = Vec::new();
    let mut start = 0;
    while start < entries.len() {
        let init_id = entries[start].meta.init_id;
        let end = entries[start..].iter().position(|e| e.meta.init_id != init_id).map_or(entries.len(), |p| start + p);
        let run = &entries[start..end];
        let run_first_ms = run[0].meta.producer_ts_us.div_euclid(1000);
        // Static: periods laid end to end from 0. Dynamic: media times are epoch (or
        // replay-origin) times, so the first period starts at 0 with no offset.
        let (period_start_ms, pto_ms) = if dynamic {
            if periods.is_empty() {
                (0, 0)
            } else {
                (run_first_ms, run_first_ms)
            }
        } else {
            (run_first_ms - first_ms, run_first_ms)
        };
        let steps = timeline(run, session);
        let sets = init_of(init_id)
            .map(|info| {
                info.tracks
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.kind != TrackKind::Other)
                    .map(|(i, t)| {
                        let number = i + 1;
                        let video = t.kind == TrackKind::Video;
                        AdaptationSet {
                            id: number as u32,
                            content_type: if video { "video" } else { "audio" },
                            mime_type: if video { "video/mp4" } else { "audio/mp4" },
                            codecs: crate::codec::codec_string(t),
                            width: t.width,
                            height: t.height,
                            sample_rate: t.sample_rate,
                            channels: t.channels,
                            bandwidth: if video { bandwidth } else { 128_000 },
                            init_url: format!(
                                "{INIT_FRAGMENT}?SessionToken={token}&TrackNumber={number}&InitId={init_id}"
                            ),
                            media_url: format!(
                                "{MEDIA_FRAGMENT}?SessionToken={token}&TrackNumber={number}&Time=$Time$"
                            ),
                            presentation_time_offset_ms: pto_ms,
                            timeline: steps.clone(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        periods.push(Period { id: format!("init-{init_id}"), start_ms: period_start_ms, adaptation_sets: sets });
        start = end;
    }

    let longest_ms = entries.iter().map(|e| e.meta.duration_us / 1000).max().unwrap_or(1000);
    let availability_start_ms = match session.mode {
        PlaybackMode::LiveReplay => (session.created_us - session.origin_us) / 1000,
        _ => 0,
    };
    Manifest {
        dynamic,
        availability_start_ms,
        publish_ms: now_us / 1000,
        duration_ms: (!dynamic).then_some(last_end_ms - first_ms),
        time_shift_buffer_ms: dynamic.then_some((last_end_ms - first_ms).max(longest_ms * 2)),
        suggested_delay_ms: dynamic.then_some(longest_ms * 3),
        min_buffer_ms: longest_ms.max(1000),
        periods,
        kvs_attributes: session.display_fragment_number || session.display_timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playback::session::Protocol;
    use crate::video_store::FragmentMeta;

    /// The tracks of ffmpeg's H.264 + AAC fixture.
    fn info() -> InitInfo {
        let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/av.mp4")).unwrap();
        crate::wire::fmp4::parse_init(&file).unwrap()
    }

    fn entry(n: u64, ms: i64, init: u32) -> Entry {
        Entry {
            meta: FragmentMeta {
                fragment_number: n,
                producer_ts_us: ms * 1000,
                server_ts_us: ms * 1000,
                duration_us: 1_000_000,
                segment_id: 1,
                offset: 0,
                len: 125_000,
                crc: 0,
                init_id: init,
                chunk_count: 1,
                flags: 1,
            },
            discontinuity: false,
        }
    }

    fn session(mode: PlaybackMode) -> Session {
        Session::for_test(Protocol::Dash, mode)
    }

    #[test]
    fn on_demand_folds_contiguous_segments_and_splits_periods_at_init_changes() {
        let w = Window {
            entries: vec![entry(1, 10_000, 1), entry(2, 11_000, 1), entry(3, 12_000, 1), entry(4, 20_000, 2)],
            media_sequence: 0,
            discontinuity_sequence: 0,
            ended: true,
        };
        let m = manifest(&w, &session(PlaybackMode::OnDemand), &|_| Some(info()), "T", 0);
        assert!(!m.dynamic);
        assert_eq!(m.duration_ms, Some(11_000));
        assert_eq!(m.periods.len(), 2);
        assert_eq!(m.periods[1].start_ms, 10_000);
        let video = &m.periods[0].adaptation_sets[0];
        assert_eq!(
            video.timeline,
            vec![TimelineEntry { t_ms: 10_000, d_ms: 1000, repeat: 2, fragment_number: None, timestamp_ms: None }]
        );
        assert_eq!(video.presentation_time_offset_ms, 10_000);
        assert_eq!(video.bandwidth, 1_000_000);
        let xml = m.to_xml();
        assert!(xml.contains("media=\"getMP4MediaFragment.mp4?SessionToken=T&amp;TrackNumber=1&amp;Time=$Time$\""));
        assert!(xml.contains("type=\"static\""));
        assert!(xml.contains("mediaPresentationDuration=\"PT11.000S\""));
        assert!(xml.contains("contentType=\"audio\""));
        assert!(xml.contains("codecs=\"mp4a.40.2\""), "{xml}");
    }

    #[test]
    fn live_is_dynamic_from_the_epoch_and_can_show_fragment_numbers() {
        let w = Window {
            entries: vec![entry(5, 1_700_000_000_000, 1), entry(6, 1_700_000_001_000, 1)],
            media_sequence: 5,
            discontinuity_sequence: 0,
            ended: false,
        };
        let mut s = session(PlaybackMode::Live);
        s.display_fragment_number = true;
        let m = manifest(&w, &s, &|_| Some(info()), "T", 1_700_000_002_000_000);
        assert!(m.dynamic);
        assert_eq!(m.availability_start_ms, 0);
        assert_eq!(m.periods[0].start_ms, 0);
        let xml = m.to_xml();
        assert!(xml.contains("availabilityStartTime=\"1970-01-01T00:00:00.000Z\""), "{xml}");
        assert!(xml.contains("kvs:fn=\"6\""));
        assert!(xml.contains("xmlns:kvs="));
        assert!(xml.contains("minimumUpdatePeriod"));
    }
}
