//! Open segment files, shared by readers: one descriptor per segment, evicted when the
//! writer removes the segment or the stream.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex};

use super::segment;
use crate::video_store::records::StreamId;

/// Open segment files for reading, shared by every reader.
#[derive(Default)]
pub struct FileCache {
    files: Mutex<HashMap<(StreamId, u64), Arc<File>>>,
}

const FILE_CACHE_MAX: usize = 1024;

impl FileCache {
    pub(super) fn get(&self, root: &std::path::Path, stream: StreamId, segment_id: u64) -> io::Result<Arc<File>> {
        if let Some(f) = self.lock().get(&(stream, segment_id)) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(segment::segment_path(root, stream, segment_id))?);
        let mut files = self.lock();
        if files.len() >= FILE_CACHE_MAX {
            files.clear();
        }
        files.insert((stream, segment_id), f.clone());
        Ok(f)
    }

    pub(super) fn evict(&self, stream: StreamId, segment_id: u64) {
        self.lock().remove(&(stream, segment_id));
    }

    pub(super) fn evict_stream(&self, stream: StreamId) {
        self.lock().retain(|(s, _), _| *s != stream);
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(StreamId, u64), Arc<File>>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }
}
