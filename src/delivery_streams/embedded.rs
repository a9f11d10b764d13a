//! Delivery-stream metadata in sled (`data/delivery_streams/meta`), format 1
//! (`format/delivery_streams`, checked at open):
//!
//! - `stream/<ACCOUNT/REGION/NAME>` → the stream's [`StreamMeta`] as JSON;
//! - `delivered/<uid>` → the serial (u64 BE) through which its records are delivered;
//! - `source/<uid>/<shard>` → for a Kinesis-sourced stream, the last sequence number of
//!   that shard in the backlog, or `DONE` once a closed shard is read to its end;
//! - `next_uid` → the last stream uid handed out (u64 BE).
//!
//! Every write is flushed before the call that made it returns.

use std::path::Path;

use super::meta_store::{DeliveryMetaStore, StreamMeta};
use crate::embedded::sled_db;
use crate::scope::Scope;
use crate::storage_failure::StorageFailure;

pub const FORMAT: u32 = 1;
const STORE: &str = "the delivery-stream store (data/delivery_streams/meta)";

fn failed(e: impl std::error::Error + Send + Sync + 'static) -> StorageFailure {
    StorageFailure::caused(STORE, e)
}

pub struct SledDeliveryMeta {
    db: sled::Db,
}

fn key(scope: &Scope, name: &str) -> String {
    format!("stream/{}", scope.key(name))
}

impl SledDeliveryMeta {
    pub fn open(dir: &Path) -> Result<Self, String> {
        let db = sled_db::open(&dir.join("meta"), 500).map_err(|e| format!("cannot open {STORE}: {e}"))?;
        sled_db::check_format(&db, "delivery_streams", FORMAT, STORE).map_err(|e| e.to_string())?;
        sled_db::record_format(&db, "delivery_streams", FORMAT, STORE).map_err(|e| e.to_string())?;
        Ok(SledDeliveryMeta { db })
    }

    fn flush(&self) -> Result<(), StorageFailure> {
        self.db.flush().map(|_| ()).map_err(failed)
    }
}

impl DeliveryMetaStore for SledDeliveryMeta {
    fn all(&self) -> Result<Vec<StreamMeta>, StorageFailure> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix("stream/") {
            let (k, v) = item.map_err(failed)?;
            match serde_json::from_slice::<StreamMeta>(&v) {
                Ok(m) => out.push(m),
                Err(e) => {
                    tracing::error!(key = %String::from_utf8_lossy(&k), error = %e, "unreadable delivery stream; left as it is and not served")
                }
            }
        }
        Ok(out)
    }

    fn save(&self, meta: &StreamMeta) -> Result<(), StorageFailure> {
        let bytes = serde_json::to_vec(meta).map_err(failed)?;
        self.db.insert(key(&meta.scope, &meta.name), bytes).map_err(failed)?;
        self.flush()
    }

    fn remove(&self, meta: &StreamMeta) -> Result<(), StorageFailure> {
        let mut batch = sled::Batch::default();
        batch.remove(key(&meta.scope, &meta.name).as_bytes());
        batch.remove(format!("delivered/{:016x}", meta.uid).as_bytes());
        for item in self.db.scan_prefix(format!("source/{:016x}/", meta.uid)) {
            batch.remove(item.map_err(failed)?.0);
        }
        self.db.apply_batch(batch).map_err(failed)?;
        self.flush()
    }

    fn next_uid(&self) -> Result<u64, StorageFailure> {
        let next = self
            .db
            .update_and_fetch("next_uid", |old| {
                let n = old.and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes) + 1;
                Some(n.to_be_bytes().to_vec())
            })
            .map_err(failed)?;
        self.flush()?;
        Ok(next.and_then(|b| b.as_ref().try_into().ok()).map_or(1, u64::from_be_bytes))
    }

    fn delivered_through(&self, uid: u64) -> Result<u64, StorageFailure> {
        Ok(self
            .db
            .get(format!("delivered/{uid:016x}"))
            .map_err(failed)?
            .and_then(|b| b.as_ref().try_into().ok())
            .map_or(0, u64::from_be_bytes))
    }

    fn set_delivered_through(&self, uid: u64, serial: u64) -> Result<(), StorageFailure> {
        self.db.insert(format!("delivered/{uid:016x}"), &serial.to_be_bytes()).map_err(failed)?;
        self.flush()
    }

    fn source_checkpoint(&self, uid: u64, shard: &str) -> Result<Option<String>, StorageFailure> {
        Ok(self
            .db
            .get(format!("source/{uid:016x}/{shard}"))
            .map_err(failed)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_source_checkpoint(&self, uid: u64, shard: &str, checkpoint: &str) -> Result<(), StorageFailure> {
        self.db.insert(format!("source/{uid:016x}/{shard}"), checkpoint.as_bytes()).map_err(failed)?;
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sled_delivery_metadata_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        super::super::meta_store::conformance::run(|| super::SledDeliveryMeta::open(dir.path()).unwrap());
    }
}
