//! Pictures out of stored video: the frame shown at a time, decoded from its GOP's
//! keyframe, scaled and encoded as JPEG or PNG. What GetImages and image generation
//! are built on.
//!
//! - [`plan`]: which access units of a fragment to decode for which times (pure);
//! - [`render`]: decode, scale, encode with FFmpeg (synchronous);
//! - [`pool`]: the bounded image threads render runs on.
//!
//! [`ImageService`] ties them to the video store: it groups the asked times by the
//! fragment that holds them, reads each fragment once and renders each GOP once.

pub mod plan;
pub mod pool;
pub mod render;

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::video_store::{FragmentMeta, StoreError, StreamId, TimeKind, VideoStore};

pub use plan::PlanError;
pub use pool::RenderPool;
pub use render::{ImageFormat, OutputSpec};

/// What is at one asked time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageOutcome {
    /// The encoded picture and its own time (µs, the asked clock).
    Image { bytes: Vec<u8>, picture_time_us: i64 },
    /// No fragment holds this time.
    NoMedia,
    /// A fragment holds it, but no picture could be made (no video, a codec we do not
    /// decode, corrupt media); the reason is for logs.
    MediaError(String),
}

impl ImageOutcome {
    fn label(&self) -> &'static str {
        match self {
            ImageOutcome::Image { .. } => "image",
            ImageOutcome::NoMedia => "no_media",
            ImageOutcome::MediaError(_) => "media_error",
        }
    }
}

/// Images from one video store, rendered on one pool.
#[derive(Clone)]
pub struct ImageService {
    store: VideoStore,
    pool: RenderPool,
    metrics: Arc<Metrics>,
}

impl ImageService {
    pub fn new(store: VideoStore, pool: RenderPool, metrics: Arc<Metrics>) -> Self {
        ImageService { store, pool, metrics }
    }

    /// The picture shown at each of `times_us` (ascending) on the `kind` clock.
    pub async fn images_at(
        &self,
        stream: StreamId,
        kind: TimeKind,
        times_us: &[i64],
        output: OutputSpec,
    ) -> Result<Vec<ImageOutcome>, StoreError> {
        let mut out = Vec::with_capacity(times_us.len());
        let mut i = 0;
        while i < times_us.len() {
            let t = times_us[i];
            let Some(meta) = self.store.fragment_holding(stream, kind, t)? else {
                out.push(ImageOutcome::NoMedia);
                i += 1;
                continue;
            };
            // The times are ascending: those after `t` up to the fragment's end are its too.
            let end = meta.start_us(kind).saturating_add(meta.duration_us.max(1));
            let n = times_us[i..].iter().take_while(|x| **x < end).count().max(1);
            out.extend(self.images_in_fragment(stream, &meta, kind, &times_us[i..i + n], output).await?);
            i += n;
        }
        Ok(out)
    }

    /// The pictures of one stored fragment shown at each of `times_us` (each within
    /// the fragment, on the `kind` clock).
    pub async fn images_in_fragment(
        &self,
        stream: StreamId,
        meta: &FragmentMeta,
        kind: TimeKind,
        times_us: &[i64],
        output: OutputSpec,
    ) -> Result<Vec<ImageOutcome>, StoreError> {
        let outcomes = match self.render_fragment(stream, meta, kind, times_us, output).await {
            Ok(o) => o,
            Err(RenderFailure::Store(e)) => return Err(e),
            Err(RenderFailure::Media(why)) => {
                tracing::debug!(stream, fragment = meta.fragment_number, %why, "no image from this fragment");
                vec![ImageOutcome::MediaError(why); times_us.len()]
            }
        };
        for o in &outcomes {
            self.metrics.count_images(o.label(), 1);
        }
        Ok(outcomes)
    }

    async fn render_fragment(
        &self,
        stream: StreamId,
        meta: &FragmentMeta,
        kind: TimeKind,
        times_us: &[i64],
        output: OutputSpec,
    ) -> Result<Vec<ImageOutcome>, RenderFailure> {
        let init = self
            .store
            .init_segment(stream, meta.init_id)?
            .ok_or_else(|| RenderFailure::Media("the fragment's init segment is gone".into()))?;
        let bytes = match self.store.read_fragment(stream, meta).await {
            Ok(b) => b,
            // A fragment whose bytes fail their check is bad media, not a failed request.
            Err(StoreError::Corrupt(why)) => return Err(RenderFailure::Media(why)),
            Err(e) => return Err(e.into()),
        };
        let plan = plan::plan_fragment(&init, &bytes, meta.start_us(kind), times_us, output)
            .map_err(|e| RenderFailure::Media(e.to_string()))?;
        let rendered = self.pool.render(plan.job).await.map_err(|e| RenderFailure::Media(e.to_string()))?;
        Ok(plan
            .answer
            .iter()
            .map(|&slot| match &rendered[slot] {
                Ok(bytes) => ImageOutcome::Image { bytes: bytes.clone(), picture_time_us: plan.picture_times_us[slot] },
                Err(e) => ImageOutcome::MediaError(e.to_string()),
            })
            .collect())
    }
}

enum RenderFailure {
    Store(StoreError),
    Media(String),
}

impl From<StoreError> for RenderFailure {
    fn from(e: StoreError) -> Self {
        RenderFailure::Store(e)
    }
}
