//! The event cursors in the cluster database: table `stream_event_cursors`, one row
//! per stream (the cursor as JSON), upserted and committed before `put` returns.

use super::cursors::{Cursor, CursorError, CursorStore};
use crate::postgres::{Database, Param};
use crate::storage_failure::StorageFailure;
use crate::video_store::StreamId;

const STORE: &str = "the event cursors (cluster database)";

pub struct PgCursors {
    db: Database,
}

impl PgCursors {
    pub fn new(db: Database) -> Self {
        PgCursors { db }
    }
}

#[async_trait::async_trait]
impl CursorStore for PgCursors {
    fn get(&self, stream: StreamId) -> Result<Option<Cursor>, CursorError> {
        let rows = self
            .db
            .query(STORE, "SELECT cursor FROM stream_event_cursors WHERE stream = $1", vec![Param::uint(stream)])
            .map_err(CursorError::Storage)?;
        let Some(row) = rows.first() else { return Ok(None) };
        serde_json::from_slice(&row.get::<_, Vec<u8>>(0))
            .map(Some)
            .map_err(|e| CursorError::Unreadable { stream, why: e.to_string() })
    }

    async fn put(&self, stream: StreamId, c: &Cursor) -> Result<(), CursorError> {
        let v =
            serde_json::to_vec(c).map_err(|e| CursorError::Storage(StorageFailure::caused("encode a cursor", e)))?;
        self.db
            .transaction_async(
                STORE,
                vec![(
                    "INSERT INTO stream_event_cursors (stream, cursor) VALUES ($1, $2)
                     ON CONFLICT (stream) DO UPDATE SET cursor = EXCLUDED.cursor",
                    vec![Param::uint(stream), Param::Bytes(v)],
                )],
            )
            .await
            .map(|_| ())
            .map_err(CursorError::Storage)
    }

    fn remove(&self, stream: StreamId) -> Result<(), CursorError> {
        self.db
            .execute(STORE, "DELETE FROM stream_event_cursors WHERE stream = $1", vec![Param::uint(stream)])
            .map(|_| ())
            .map_err(CursorError::Storage)
    }

    fn streams(&self) -> Result<Vec<StreamId>, CursorError> {
        let rows = self
            .db
            .query(STORE, "SELECT stream FROM stream_event_cursors ORDER BY stream", Vec::new())
            .map_err(CursorError::Storage)?;
        Ok(rows.into_iter().map(|r| crate::postgres::from_bigint(r.get::<_, i64>(0))).collect())
    }
}
