//! The stream catalog in sled: one JSON record per stream in the `streams` tree, keyed
//! by its scope and name (`ACCOUNT/REGION/NAME`, see [`Scope::key`]).

use crate::embedded::sled_db;
use crate::scope::{NamePage, Scope};
use crate::storage_failure::StorageFailure;
use crate::video_store::catalog::StreamRecord;
use crate::video_store::index::{StreamCatalog, UnreadableRecord};
use crate::video_store::records::StreamId;
use crate::video_store::StoreError;

/// The catalog's layout: 1 keyed records by name alone; 2 keys them by scope and name
/// and stores the scope in the record. Opening a format-1 catalog upgrades it.
pub const CATALOG_FORMAT: u32 = 2;

const STORE: &str = "the stream catalog (data/index)";

fn failed(what: &'static str) -> impl Fn(sled::Error) -> StoreError {
    move |e| StoreError::Storage(StorageFailure::caused(format!("{STORE}: {what}"), e))
}

pub struct SledStreamCatalog {
    db: sled::Db,
    tree: sled::Tree,
}

impl SledStreamCatalog {
    /// Opens the catalog tree of `db`, upgrading a format-1 catalog: its streams were
    /// created before scopes existed, so they belong to `default_scope` (the server's
    /// `--account-id` and `--region`, which their ARNs already carry).
    pub(super) fn open(db: &sled::Db, default_scope: &Scope) -> Result<Self, StoreError> {
        let format = |e: sled_db::FormatError| StoreError::Storage(StorageFailure::caused("opening the catalog", e));
        let tree = db.open_tree("streams").map_err(failed("opening its tree"))?;
        if sled_db::check_format(db, "catalog", CATALOG_FORMAT, STORE).map_err(format)? < 2 {
            let moved = sled_db::upgrade_to_scoped_keys(&tree, default_scope)
                .map_err(|e| StoreError::Corrupt(format!("upgrading the stream catalog: {e}")))?;
            if moved > 0 {
                tracing::info!(moved, scope = %default_scope, "stream catalog upgraded to scoped keys (format 2)");
            }
        }
        sled_db::record_format(db, "catalog", CATALOG_FORMAT, STORE).map_err(format)?;
        Ok(SledStreamCatalog { db: db.clone(), tree })
    }

    fn key(record: &StreamRecord) -> String {
        record.scope.key(&record.name)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Durable before it is acknowledged; the fsync waits off the runtime's threads.
        self.db.flush_async().await.map_err(failed("flushing"))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl StreamCatalog for SledStreamCatalog {
    fn new_stream_id(&self) -> Result<StreamId, StoreError> {
        Ok(self.db.generate_id().map_err(failed("generating an id"))? + 1)
    }

    fn get(&self, scope: &Scope, name: &str) -> Result<Option<StreamRecord>, StoreError> {
        match self.tree.get(scope.key(name).as_bytes()).map_err(failed("reading a record"))? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    async fn insert_new(&self, record: &StreamRecord) -> Result<(), StoreError> {
        let value = encode(record)?;
        let swapped = self
            .tree
            .compare_and_swap(Self::key(record).as_bytes(), None::<&[u8]>, Some(value))
            .map_err(failed("inserting a record"))?;
        if swapped.is_err() {
            return Err(StoreError::StreamExists(record.name.clone()));
        }
        self.flush().await
    }

    async fn replace(&self, old: &StreamRecord, new: &StreamRecord) -> Result<(), StoreError> {
        let (old_v, new_v) = (encode(old)?, encode(new)?);
        let swapped = self
            .tree
            .compare_and_swap(Self::key(old).as_bytes(), Some(old_v), Some(new_v))
            .map_err(failed("replacing a record"))?;
        if swapped.is_err() {
            return Err(StoreError::Conflict(old.name.clone()));
        }
        self.flush().await
    }

    async fn remove_if(&self, old: &StreamRecord) -> Result<(), StoreError> {
        let swapped = self
            .tree
            .compare_and_swap(Self::key(old).as_bytes(), Some(encode(old)?), None::<Vec<u8>>)
            .map_err(failed("removing a record"))?;
        if swapped.is_err() {
            return Err(StoreError::Conflict(old.name.clone()));
        }
        self.flush().await
    }

    fn list(&self, scope: &Scope, page: NamePage<'_>) -> Result<Vec<StreamRecord>, StoreError> {
        sled_db::scoped_values_after(&self.tree, scope, page)
            .map(|v| decode(&v.map_err(failed("listing records"))?))
            .collect()
    }

    fn all_and_unreadable(&self) -> Result<(Vec<StreamRecord>, Vec<UnreadableRecord>), StoreError> {
        let (mut readable, mut unreadable) = (Vec::new(), Vec::new());
        for item in self.tree.iter() {
            let (k, v) = item.map_err(failed("reading every record"))?;
            match decode(&v) {
                Ok(r) => readable.push(r),
                Err(e) => {
                    tracing::warn!(key = %String::from_utf8_lossy(&k), error = %e, "a stream record cannot be read; it is kept and not listed");
                    unreadable.push(UnreadableRecord { key: k.to_vec(), value: v.to_vec(), number: None });
                }
            }
        }
        Ok((readable, unreadable))
    }
}

fn encode(r: &StreamRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(r).map_err(|e| StoreError::Corrupt(format!("encoding stream record: {e}")))
}

fn decode(v: &[u8]) -> Result<StreamRecord, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(format!("stream record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let scope = Scope::new("000000000000", "us-east-1");
        crate::video_store::index::conformance::run_catalog(|| {
            let db = sled_db::open(dir.path(), 500).unwrap();
            SledStreamCatalog::open(&db, &scope).unwrap()
        })
        .await;
    }
}
