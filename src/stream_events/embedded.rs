//! The event cursors in sled, `data/stream_events/`: stream id (u64 BE) → JSON cursor.
//! Format 1 (`format/cursors`), checked at open.

use std::path::Path;

use super::cursors::{Cursor, CursorError, CursorStore};
use crate::storage_failure::StorageFailure;
use crate::video_store::StreamId;

const CURSORS_FORMAT: u32 = 1;

#[derive(Clone)]
pub struct SledCursors {
    db: sled::Db,
}

fn storage(what: &str, e: sled::Error) -> CursorError {
    CursorError::Storage(StorageFailure::caused(format!("{what} (data/stream_events)"), e))
}

impl SledCursors {
    pub fn open(data_dir: &Path) -> Result<Self, StorageFailure> {
        let path = data_dir.join("stream_events");
        let db = crate::embedded::sled_db::open(&path, 1000)
            .map_err(|e| StorageFailure::caused(format!("open {}", path.display()), e))?;
        crate::embedded::sled_db::check_and_record_format(&db, "cursors", CURSORS_FORMAT, "the event cursors")
            .map_err(|e| StorageFailure::caused("check the event cursors' format", e))?;
        Ok(SledCursors { db })
    }
}

#[async_trait::async_trait]
impl CursorStore for SledCursors {
    fn get(&self, stream: StreamId) -> Result<Option<Cursor>, CursorError> {
        let Some(v) = self.db.get(stream.to_be_bytes()).map_err(|e| storage("read a cursor", e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&v).map(Some).map_err(|e| CursorError::Unreadable { stream, why: e.to_string() })
    }

    async fn put(&self, stream: StreamId, c: &Cursor) -> Result<(), CursorError> {
        let v =
            serde_json::to_vec(c).map_err(|e| CursorError::Storage(StorageFailure::caused("encode a cursor", e)))?;
        self.db.insert(stream.to_be_bytes(), v).map_err(|e| storage("write a cursor", e))?;
        self.db.flush_async().await.map(|_| ()).map_err(|e| storage("flush the cursors", e))
    }

    fn remove(&self, stream: StreamId) -> Result<(), CursorError> {
        self.db.remove(stream.to_be_bytes()).map(|_| ()).map_err(|e| storage("remove a cursor", e))
    }

    fn streams(&self) -> Result<Vec<StreamId>, CursorError> {
        let mut out = Vec::new();
        for k in self.db.iter().keys() {
            let k = k.map_err(|e| storage("list the cursors", e))?;
            if let Ok(b) = <[u8; 8]>::try_from(k.as_ref()) {
                out.push(u64::from_be_bytes(b));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sled_cursors_pass_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        crate::stream_events::cursors::conformance::run(|| SledCursors::open(dir.path()).unwrap()).await;
    }

    #[tokio::test]
    async fn a_cursor_that_cannot_be_read_is_an_error_not_none() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledCursors::open(dir.path()).unwrap();
        s.db.insert(5u64.to_be_bytes(), &b"\xff"[..]).unwrap();
        assert!(matches!(s.get(5), Err(CursorError::Unreadable { stream: 5, .. })));
    }
}
