//! Per-track views of stored fragments, and the boxes written from them.
//!
//! A stored fragment is the producer's `moof`+`mdat` chunks, every track multiplexed.
//! Readers that want something else get it cut from those bytes without decoding:
//!
//! - [`fragment_samples`] lists every sample of every track with its absolute byte
//!   position in the fragment;
//! - [`write_track_fragment`] writes one track's samples as a single `moof`+`mdat`
//!   (DASH serves one adaptation set per track, as DASH-IF asks);
//! - [`track_init`] keeps one track of an init segment;
//! - [`ProgressiveWriter`] lays whole fragments out as a classic MP4 with the `moov` in
//!   front (GetClip).
//!
//! Pure functions over bytes, like the rest of `wire`; ISO/IEC 14496-12 gives the
//! layouts.

use super::bmff::{
    box_header_len, find_child, full_box, header_timescale, kinds::*, parse_box_header, patch_duration, tkhd_track_id,
    write_box, BoxError, BoxIter, FourCc,
};
use super::fmp4::{
    trex_track_id, walk_traf, InitInfo, Sample, TFHD_DEFAULT_BASE_IS_MOOF, TRUN_CTO, TRUN_DATA_OFFSET, TRUN_DURATION,
    TRUN_FLAGS, TRUN_SIZE,
};

/// The samples of one track, in decode order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackSamples {
    pub track_id: u32,
    pub timescale: u32,
    pub samples: Vec<Sample>,
}

impl TrackSamples {
    pub fn start(&self) -> Option<u64> {
        self.samples.first().map(|s| s.decode_time)
    }

    pub fn duration(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.duration)).sum()
    }
}

/// Lists the samples of every track of a fragment (`moof`+`mdat` chunks with
/// default-base-is-moof offsets), in the init segment's track order. Every sample's
/// bytes are checked to lie inside the fragment.
pub fn fragment_samples(fragment: &[u8], init: &InitInfo) -> Result<Vec<TrackSamples>, BoxError> {
    let mut tracks: Vec<TrackSamples> = init
        .tracks
        .iter()
        .map(|t| TrackSamples { track_id: t.track_id, timescale: t.timescale, samples: Vec::new() })
        .collect();
    let mut next_time: Vec<u64> = vec![0; tracks.len()];
    // One traf's samples, as walk_traf reports them (reused across trafs).
    let mut found: Vec<Sample> = Vec::new();
    let mut pos = 0usize;
    while pos < fragment.len() {
        let rest = &fragment[pos..];
        let header = parse_box_header(rest, pos as u64, rest.len() as u64)?.ok_or(BoxError::Truncated {
            kind: FourCc(*b"????"),
            needed: 8,
            available: rest.len() as u64,
        })?;
        let size = header.size as usize;
        if header.kind == MOOF {
            let moof_start = pos as i64;
            for item in BoxIter::new(&rest[header.header_len..size]) {
                let (kind, traf) = item?;
                if kind != TRAF {
                    continue;
                }
                found.clear();
                let h = walk_traf(traf, init, fragment.len() as u64, &mut |s| found.push(*s))?;
                if h.explicit_base_offset {
                    return Err(BoxError::Malformed { kind: TFHD, detail: "explicit base-data-offset" });
                }
                let Some(i) = tracks.iter().position(|t| t.track_id == h.track_id) else { continue };
                // Without a tfdt, a traf continues where the track's previous one ended.
                let shift = if h.base_decode_time.is_some() { 0 } else { next_time[i] };
                tracks[i].samples.reserve(found.len());
                for mut s in found.drain(..) {
                    s.offset = moof_start.saturating_add(s.offset);
                    s.range(fragment.len())
                        .ok_or(BoxError::Malformed { kind: TRUN, detail: "sample data outside the fragment" })?;
                    s.decode_time = s.decode_time.saturating_add(shift);
                    next_time[i] = s.decode_time.saturating_add(u64::from(s.duration));
                    tracks[i].samples.push(s);
                }
            }
        }
        pos += size;
    }
    Ok(tracks)
}

/// Appends one `moof`+`mdat` holding `samples` of `track_id`, their bytes copied from
/// `data`, the first at decode time `base_decode_time`.
pub fn write_track_fragment(
    out: &mut Vec<u8>,
    sequence_number: u32,
    track_id: u32,
    base_decode_time: u64,
    samples: &[Sample],
    data: &[u8],
) -> Result<(), BoxError> {
    // Every per-sample field, composition offsets signed (version 1).
    const FLAGS: u32 = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS | TRUN_CTO;
    let count = u32::try_from(samples.len()).map_err(|_| BoxError::Malformed { kind: TRUN, detail: "count" })?;
    let mut mfhd = full_box(0, 0);
    mfhd.extend_from_slice(&sequence_number.to_be_bytes());
    let mut tfhd = full_box(0, TFHD_DEFAULT_BASE_IS_MOOF);
    tfhd.extend_from_slice(&track_id.to_be_bytes());
    let mut tfdt = full_box(1, 0);
    tfdt.extend_from_slice(&base_decode_time.to_be_bytes());
    let mut trun = full_box(1, FLAGS);
    trun.extend_from_slice(&count.to_be_bytes());
    let data_offset_at = trun.len();
    trun.extend_from_slice(&0u32.to_be_bytes());
    let mut payload = 0usize;
    for s in samples {
        trun.extend_from_slice(&s.duration.to_be_bytes());
        trun.extend_from_slice(&s.size.to_be_bytes());
        trun.extend_from_slice(&s.flags.to_be_bytes());
        trun.extend_from_slice(&s.composition_offset.to_be_bytes());
        payload += s.size as usize;
    }
    let mut traf = Vec::with_capacity(64 + trun.len());
    write_box(&mut traf, TFHD, &tfhd);
    write_box(&mut traf, TFDT, &tfdt);
    // traf header (8) + tfhd + tfdt + trun header (8) come before the trun body.
    let trun_body_at_in_moof = 8 + 8 + mfhd.len() + 8 + traf.len() + 8;
    write_box(&mut traf, TRUN, &trun);
    let mut moof_body = Vec::with_capacity(16 + traf.len());
    write_box(&mut moof_body, MFHD, &mfhd);
    write_box(&mut moof_body, TRAF, &traf);
    let moof_len = 8 + moof_body.len();
    let data_offset = u32::try_from(moof_len + box_header_len(payload))
        .map_err(|_| BoxError::Malformed { kind: TRUN, detail: "moof too large" })?;
    let at = trun_body_at_in_moof - 8 + data_offset_at;
    moof_body[at..at + 4].copy_from_slice(&data_offset.to_be_bytes());
    write_box(out, MOOF, &moof_body);

    let mut mdat = Vec::with_capacity(payload);
    for s in samples {
        let range = s
            .range(data.len())
            .ok_or(BoxError::Malformed { kind: MDAT, detail: "sample data outside the fragment" })?;
        mdat.extend_from_slice(&data[range]);
    }
    write_box(out, MDAT, &mdat);
    Ok(())
}

/// The init segment (`ftyp` + `moov`) reduced to the one track `track_id`.
pub fn track_init(init: &[u8], track_id: u32) -> Result<Vec<u8>, BoxError> {
    let mut out = Vec::with_capacity(init.len());
    let mut found = false;
    for item in BoxIter::new(init) {
        let (kind, body) = item?;
        if kind == MOOV {
            let mut moov = Vec::with_capacity(body.len());
            for child in BoxIter::new(body) {
                let (k, b) = child?;
                match k {
                    TRAK if tkhd_track_id(
                        find_child(b, TKHD)?.ok_or(BoxError::Missing { parent: TRAK, child: TKHD })?,
                    )? != track_id => {}
                    TRAK => {
                        found = true;
                        write_box(&mut moov, k, b);
                    }
                    MVEX => {
                        let mut mvex = Vec::new();
                        for c in BoxIter::new(b) {
                            let (ck, cb) = c?;
                            if ck != TREX || trex_track_id(cb)? == track_id {
                                write_box(&mut mvex, ck, cb);
                            }
                        }
                        write_box(&mut moov, MVEX, &mvex);
                    }
                    UUID => {}
                    _ => write_box(&mut moov, k, b),
                }
            }
            write_box(&mut out, MOOV, &moov);
        } else if kind != UUID {
            write_box(&mut out, kind, body);
        }
    }
    if !found {
        return Err(BoxError::Malformed { kind: MOOV, detail: "no trak with that track_ID" });
    }
    Ok(out)
}

/// Lays fragments out as one progressive MP4 (`ftyp`, `moov`, then `mdat`), the form
/// every player and editor opens. Feed it fragments in order with [`Self::push`], then
/// [`Self::finish`].
///
/// Each track's samples of one fragment become one chunk. Decode times are made
/// contiguous: where the next fragment starts later than the previous one ended, the
/// last sample of the earlier one is stretched over the gap; a timeline that jumps
/// backwards (a new producer session) is simply concatenated.
pub struct ProgressiveWriter {
    init: Vec<u8>,
    info: InitInfo,
    tracks: Vec<ClipTrack>,
    /// The sample bytes, in chunk order.
    mdat: Vec<u8>,
}

struct ClipTrack {
    track_id: u32,
    samples: Vec<Sample>,
    /// (first sample index, sample count, offset in mdat) per chunk.
    chunks: Vec<(usize, usize, u64)>,
    next_decode_time: Option<u64>,
}

impl ProgressiveWriter {
    pub fn new(init: &[u8], info: InitInfo) -> Self {
        let tracks = info
            .tracks
            .iter()
            .map(|t| ClipTrack {
                track_id: t.track_id,
                samples: Vec::new(),
                chunks: Vec::new(),
                next_decode_time: None,
            })
            .collect();
        ProgressiveWriter { init: init.to_vec(), info, tracks, mdat: Vec::new() }
    }

    /// Bytes of media collected so far.
    pub fn media_len(&self) -> usize {
        self.mdat.len()
    }

    /// Adds one stored fragment.
    pub fn push(&mut self, fragment: &[u8]) -> Result<(), BoxError> {
        let per_track = fragment_samples(fragment, &self.info)?;
        for (track, found) in self.tracks.iter_mut().zip(per_track) {
            if found.samples.is_empty() {
                continue;
            }
            if let (Some(expected), Some(first), Some(last)) =
                (track.next_decode_time, found.start(), track.samples.last_mut())
            {
                // A gap: hold the previous sample until this fragment begins.
                if first > expected {
                    let stretched = u64::from(last.duration) + (first - expected);
                    last.duration = u32::try_from(stretched).unwrap_or(last.duration);
                }
            }
            let first_index = track.samples.len();
            let offset = self.mdat.len() as u64;
            for s in &found.samples {
                let range = s
                    .range(fragment.len())
                    .ok_or(BoxError::Malformed { kind: MDAT, detail: "sample data outside the fragment" })?;
                self.mdat.extend_from_slice(&fragment[range]);
                track.samples.push(*s);
            }
            track.chunks.push((first_index, found.samples.len(), offset));
            track.next_decode_time = found.samples.last().map(|s| s.decode_time + u64::from(s.duration));
        }
        Ok(())
    }

    /// Writes the file.
    pub fn finish(self) -> Result<Vec<u8>, BoxError> {
        let mut ftyp = Vec::new();
        ftyp.extend_from_slice(b"isom");
        ftyp.extend_from_slice(&0x200u32.to_be_bytes());
        for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
            ftyp.extend_from_slice(brand);
        }
        let mut head = Vec::new();
        write_box(&mut head, FTYP, &ftyp);
        // The moov's size does not depend on the chunk offsets (co64 has fixed-size
        // entries), so write it once to measure, then again with the real base.
        let probe = self.moov(0)?;
        let base = (head.len() + probe.len() + box_header_len(self.mdat.len())) as u64;
        let moov = self.moov(base)?;
        head.extend_from_slice(&moov);
        write_box(&mut head, MDAT, &self.mdat);
        Ok(head)
    }

    fn moov(&self, mdat_base: u64) -> Result<Vec<u8>, BoxError> {
        let moov = self.init_box(MOOV)?.ok_or(BoxError::Missing { parent: FourCc(*b"init"), child: MOOV })?;
        let mvhd = find_child(moov, MVHD)?.ok_or(BoxError::Missing { parent: MOOV, child: MVHD })?;
        let movie_timescale = header_timescale(MVHD, mvhd)?.max(1);
        let mut movie_duration = 0u64;
        let mut traks = Vec::new();
        for child in BoxIter::new(moov) {
            let (k, b) = child?;
            if k != TRAK {
                continue;
            }
            let id = tkhd_track_id(find_child(b, TKHD)?.ok_or(BoxError::Missing { parent: TRAK, child: TKHD })?)?;
            let (Some(track), Some(info)) = (self.tracks.iter().find(|t| t.track_id == id), self.info.track(id)) else {
                continue;
            };
            if track.samples.is_empty() {
                continue;
            }
            let media_duration: u64 = track.samples.iter().map(|s| u64::from(s.duration)).sum();
            let in_movie = media_duration.saturating_mul(u64::from(movie_timescale)) / u64::from(info.timescale.max(1));
            movie_duration = movie_duration.max(in_movie);
            traks.push(self.trak(b, track, media_duration, in_movie, mdat_base)?);
        }
        let mut body = Vec::new();
        let mut mvhd = mvhd.to_vec();
        patch_duration(&mut mvhd, MVHD, movie_duration)?;
        write_box(&mut body, MVHD, &mvhd);
        for t in traks {
            write_box(&mut body, TRAK, &t);
        }
        let mut out = Vec::new();
        write_box(&mut out, MOOV, &body);
        Ok(out)
    }

    fn init_box(&self, kind: FourCc) -> Result<Option<&[u8]>, BoxError> {
        find_child(&self.init, kind)
    }

    fn trak(
        &self,
        trak: &[u8],
        track: &ClipTrack,
        media_duration: u64,
        movie_duration: u64,
        mdat_base: u64,
    ) -> Result<Vec<u8>, BoxError> {
        let mut out = Vec::new();
        for child in BoxIter::new(trak) {
            let (k, b) = child?;
            match k {
                TKHD => {
                    let mut tkhd = b.to_vec();
                    patch_duration(&mut tkhd, TKHD, movie_duration)?;
                    write_box(&mut out, TKHD, &tkhd);
                }
                MDIA => {
                    let mut mdia = Vec::new();
                    for c in BoxIter::new(b) {
                        let (ck, cb) = c?;
                        match ck {
                            MDHD => {
                                let mut mdhd = cb.to_vec();
                                patch_duration(&mut mdhd, MDHD, media_duration)?;
                                write_box(&mut mdia, MDHD, &mdhd);
                            }
                            MINF => {
                                let mut minf = Vec::new();
                                for m in BoxIter::new(cb) {
                                    let (mk, mb) = m?;
                                    if mk == STBL {
                                        let stsd = find_child(mb, STSD)?
                                            .ok_or(BoxError::Missing { parent: STBL, child: STSD })?;
                                        write_box(&mut minf, STBL, &sample_table(stsd, track, mdat_base));
                                    } else if mk != UUID {
                                        write_box(&mut minf, mk, mb);
                                    }
                                }
                                write_box(&mut mdia, MINF, &minf);
                            }
                            UUID => {}
                            _ => write_box(&mut mdia, ck, cb),
                        }
                    }
                    write_box(&mut out, MDIA, &mdia);
                }
                // The fragmented init's edit list describes the fragmented timeline.
                EDTS | UUID => {}
                _ => write_box(&mut out, k, b),
            }
        }
        Ok(out)
    }
}

/// stsd (as the init has it), stts, ctts, stss, stsc, stsz and co64 for one track.
fn sample_table(stsd: &[u8], track: &ClipTrack, mdat_base: u64) -> Vec<u8> {
    let samples = &track.samples;
    let mut stbl = Vec::new();
    write_box(&mut stbl, STSD, stsd);

    let mut stts: Vec<(u32, u32)> = Vec::new();
    for s in samples {
        match stts.last_mut() {
            Some((n, d)) if *d == s.duration => *n += 1,
            _ => stts.push((1, s.duration)),
        }
    }
    write_box(&mut stbl, STTS, &pairs(0, &stts));

    if samples.iter().any(|s| s.composition_offset != 0) {
        let mut ctts: Vec<(u32, u32)> = Vec::new();
        for s in samples {
            let v = s.composition_offset as u32;
            match ctts.last_mut() {
                Some((n, o)) if *o == v => *n += 1,
                _ => ctts.push((1, v)),
            }
        }
        write_box(&mut stbl, CTTS, &pairs(1, &ctts));
    }

    if samples.iter().any(|s| !s.is_sync()) {
        let sync: Vec<u32> =
            samples.iter().enumerate().filter(|(_, s)| s.is_sync()).map(|(i, _)| i as u32 + 1).collect();
        let mut stss = full_box(0, 0);
        stss.extend_from_slice(&(sync.len() as u32).to_be_bytes());
        for i in sync {
            stss.extend_from_slice(&i.to_be_bytes());
        }
        write_box(&mut stbl, STSS, &stss);
    }

    let mut stsc: Vec<(u32, u32)> = Vec::new();
    for (i, (_, count, _)) in track.chunks.iter().enumerate() {
        if stsc.last().is_none_or(|(_, c)| *c != *count as u32) {
            stsc.push((i as u32 + 1, *count as u32));
        }
    }
    let mut stsc_body = full_box(0, 0);
    stsc_body.extend_from_slice(&(stsc.len() as u32).to_be_bytes());
    for (first, count) in stsc {
        stsc_body.extend_from_slice(&first.to_be_bytes());
        stsc_body.extend_from_slice(&count.to_be_bytes());
        stsc_body.extend_from_slice(&1u32.to_be_bytes());
    }
    write_box(&mut stbl, STSC, &stsc_body);

    let mut stsz = full_box(0, 0);
    stsz.extend_from_slice(&0u32.to_be_bytes());
    stsz.extend_from_slice(&(samples.len() as u32).to_be_bytes());
    for s in samples {
        stsz.extend_from_slice(&s.size.to_be_bytes());
    }
    write_box(&mut stbl, STSZ, &stsz);

    let mut co64 = full_box(0, 0);
    co64.extend_from_slice(&(track.chunks.len() as u32).to_be_bytes());
    for (_, _, offset) in &track.chunks {
        co64.extend_from_slice(&(mdat_base + offset).to_be_bytes());
    }
    write_box(&mut stbl, CO64, &co64);
    stbl
}

fn pairs(version: u8, entries: &[(u32, u32)]) -> Vec<u8> {
    let mut b = full_box(version, 0);
    b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (a, c) in entries {
        b.extend_from_slice(&a.to_be_bytes());
        b.extend_from_slice(&c.to_be_bytes());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::super::fmp4::parse_moov;
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// Splits a fixture file into its init segment and its moof+mdat chunks.
    fn split(file: &[u8]) -> (Vec<u8>, InitInfo, Vec<Vec<u8>>) {
        let mut pos = 0;
        let mut init = Vec::new();
        let mut info = None;
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        while pos < file.len() {
            let h = parse_box_header(&file[pos..], 0, u64::MAX).unwrap().unwrap();
            let b = &file[pos..pos + h.size as usize];
            match h.kind {
                FTYP => init.extend_from_slice(b),
                MOOV => {
                    init.extend_from_slice(b);
                    info = Some(parse_moov(&b[h.header_len..]).unwrap());
                }
                MOOF => chunks.push(b.to_vec()),
                MDAT => chunks.last_mut().unwrap().extend_from_slice(b),
                _ => {}
            }
            pos += h.size as usize;
        }
        (init, info.unwrap(), chunks)
    }

    #[test]
    fn samples_of_an_av_fragment_point_at_their_bytes() {
        let (_, info, chunks) = split(&fixture("av.mp4"));
        let tracks = fragment_samples(&chunks[0], &info).unwrap();
        assert_eq!(tracks.len(), 2);
        let video = &tracks[0];
        assert_eq!(video.samples.len(), 25, "1 s GOP at 25 fps");
        assert!(video.samples[0].is_sync());
        assert!(!video.samples[1].is_sync());
        assert!(!tracks[1].samples.is_empty(), "audio samples");
        let total: usize = tracks.iter().flat_map(|t| &t.samples).map(|s| s.size as usize).sum();
        let mdat_at = chunks[0].windows(4).position(|w| w == b"mdat").unwrap() - 4;
        assert_eq!(total, chunks[0].len() - mdat_at - 8, "samples cover the mdat payload exactly");
        for s in tracks.iter().flat_map(|t| &t.samples) {
            let r = s.range(chunks[0].len()).unwrap();
            assert!(r.start >= mdat_at + 8);
        }
    }

    #[test]
    fn a_track_fragment_round_trips_through_the_parser() {
        let (init, info, chunks) = split(&fixture("av.mp4"));
        let tracks = fragment_samples(&chunks[1], &info).unwrap();
        let audio = &tracks[1];
        let mut out = Vec::new();
        write_track_fragment(&mut out, 7, audio.track_id, 123_456, &audio.samples, &chunks[1]).unwrap();
        let one = track_init(&init, audio.track_id).unwrap();
        let (_, one_info, _) = split(&one);
        assert_eq!(one_info.tracks.len(), 1);
        assert_eq!(one_info.tracks[0].track_id, audio.track_id);
        let again = fragment_samples(&out, &one_info).unwrap();
        assert_eq!(again[0].samples.len(), audio.samples.len());
        assert_eq!(again[0].start(), Some(123_456));
        for (a, b) in again[0].samples.iter().zip(&audio.samples) {
            assert_eq!(out[a.range(out.len()).unwrap()], chunks[1][b.range(chunks[1].len()).unwrap()]);
            assert_eq!((a.duration, a.flags, a.composition_offset), (b.duration, b.flags, b.composition_offset));
        }
    }

    #[test]
    fn samples_outside_the_fragment_are_refused() {
        let (_, info, chunks) = split(&fixture("video_only.mp4"));
        let cut = &chunks[0][..chunks[0].len() - 100];
        assert!(fragment_samples(cut, &info).is_err());
    }

    #[test]
    fn track_init_refuses_an_unknown_track() {
        let (init, _, _) = split(&fixture("video_only.mp4"));
        assert!(track_init(&init, 9).is_err());
    }

    #[test]
    fn progressive_file_has_every_sample_and_a_duration() {
        let (init, info, chunks) = split(&fixture("av.mp4"));
        let mut w = ProgressiveWriter::new(&init, info);
        for c in &chunks {
            w.push(c).unwrap();
        }
        let media = w.media_len();
        let file = w.finish().unwrap();
        let kinds: Vec<FourCc> = BoxIter::new(&file).map(|b| b.unwrap().0).collect();
        assert_eq!(kinds, vec![FTYP, MOOV, MDAT], "faststart layout");
        assert!(file.len() > media);
        let moov = find_child(&file, MOOV).unwrap().unwrap();
        assert!(find_child(moov, MVEX).unwrap().is_none());
        let mvhd = find_child(moov, MVHD).unwrap().unwrap();
        let ts = header_timescale(MVHD, mvhd).unwrap();
        let dur = u32::from_be_bytes(mvhd[16..20].try_into().unwrap());
        let secs = f64::from(dur) / f64::from(ts);
        assert!((3.9..4.2).contains(&secs), "duration {secs}");
    }
}
