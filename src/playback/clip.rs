//! GetClip: a time range of a stream as one progressive MP4 (moov before mdat), built
//! from the stored fragments without decoding ([`ProgressiveWriter`]).
//!
//! Kinesis Video's limits hold: the clip covers at most the first 200 fragments or
//! the first 100 MB of media from the start of the range, whichever comes first. A
//! clip ends where the stream's init segment changes (a new producer session with
//! other codec parameters), as one MP4 track has one sample description here.

use crate::video_store::{FragmentMeta, StoreError, StreamId, TimeKind, VideoStore};
use crate::wire::bmff::BoxError;
use crate::wire::fmp4::parse_init;
use crate::wire::mp4_tracks::ProgressiveWriter;

use super::selection::dedup_producer_times;

pub const MAX_FRAGMENTS: usize = 200;
pub const MAX_MEDIA_BYTES: usize = 100 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("no fragments in the requested range")]
    NoFragments,
    #[error("the stream's init segment {0} is missing")]
    MissingInit(u32),
    #[error("fragment {fragment} cannot be read as MP4: {source}")]
    InvalidMedia { fragment: u64, source: BoxError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A finished clip and what went into it.
pub struct Clip {
    pub bytes: Vec<u8>,
    pub fragments: usize,
    pub truncated: bool,
}

pub async fn build(
    store: &VideoStore,
    stream: StreamId,
    kind: TimeKind,
    start_us: i64,
    end_us: i64,
) -> Result<Clip, ClipError> {
    let metas = store.fragments_in_range(stream, kind, start_us, end_us, None, MAX_FRAGMENTS * 2)?;
    let metas: Vec<FragmentMeta> = if kind == TimeKind::Producer { dedup_producer_times(metas) } else { metas };
    let Some(first) = metas.first() else { return Err(ClipError::NoFragments) };
    let init_id = first.init_id;
    let init = store.init_segment(stream, init_id)?.ok_or(ClipError::MissingInit(init_id))?;
    let info =
        parse_init(&init).map_err(|source| ClipError::InvalidMedia { fragment: first.fragment_number, source })?;
    let mut writer = ProgressiveWriter::new(&init, info);
    let mut used = 0;
    let mut truncated = metas.len() > MAX_FRAGMENTS;
    for meta in metas.iter().take(MAX_FRAGMENTS) {
        if meta.init_id != init_id {
            truncated = true;
            break;
        }
        if used > 0 && writer.media_len() + meta.len as usize > MAX_MEDIA_BYTES {
            truncated = true;
            break;
        }
        let bytes = store.read_fragment(stream, meta).await?;
        writer.push(&bytes).map_err(|source| ClipError::InvalidMedia { fragment: meta.fragment_number, source })?;
        used += 1;
    }
    let bytes =
        writer.finish().map_err(|source| ClipError::InvalidMedia { fragment: first.fragment_number, source })?;
    Ok(Clip { bytes, fragments: used, truncated })
}
