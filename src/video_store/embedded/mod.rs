//! The video store's embedded implementation: the stream catalog and the fragment
//! index in one sled database (`data/index`), the fragments' bytes in append-only
//! segment files (`data/media`). Format versions of all three are recorded in the
//! database and checked here, at open; upgrades run in [`catalog`] (the only store of
//! the three that has had one).

pub mod catalog;
mod file_cache;
pub mod index;
pub mod segment;
pub mod segment_files;

use std::path::Path;
use std::sync::Arc;

pub use catalog::SledStreamCatalog;
pub use index::SledFragmentIndex;
pub use segment_files::SegmentFiles;

use super::{StoreBackend, StoreError};
use crate::embedded::sled_db;
use crate::scope::Scope;
use crate::storage_failure::StorageFailure;

/// Opens (or creates) the embedded catalog, index and segment files under `data_dir`.
pub fn open(data_dir: &Path, default_scope: &Scope, segment_max_bytes: u64) -> Result<StoreBackend, StoreError> {
    let media_root = data_dir.join("media");
    let media = SegmentFiles::open(media_root, segment_max_bytes)?;
    let db = sled_db::open(&data_dir.join("index"), 1000)
        .map_err(|e| StoreError::Storage(StorageFailure::caused("opening the fragment index (data/index)", e)))?;
    let format = |e: sled_db::FormatError| StoreError::Storage(StorageFailure::caused("opening the video store", e));
    sled_db::check_and_record_format(&db, "index", index::INDEX_FORMAT, "the fragment index (data/index)")
        .map_err(format)?;
    sled_db::check_and_record_format(&db, "media", segment::MEDIA_FORMAT, "the segment files (data/media)")
        .map_err(format)?;
    Ok(StoreBackend {
        catalog: Arc::new(SledStreamCatalog::open(&db, default_scope)?),
        index: Arc::new(SledFragmentIndex::open(&db)?),
        media: Arc::new(media),
    })
}
