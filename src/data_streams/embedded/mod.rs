//! The data streams' embedded storage. Metadata in sled (`data/data_streams/meta`): the
//! `streams` tree (JSON stream records keyed `ACCOUNT/REGION/NAME`), the `policies`
//! tree (ARN → policy) and the `commitments` tree (`ACCOUNT/REGION/` → JSON billing
//! commitment); format 3 (`format/meta`), with the 1 → 2 upgrade run at open,
//! and the record logs' format (`format/record_log`) recorded beside it. Records in
//! [`log_files`] (append-only segment files, `data/data_streams/<uid>/`).

pub mod log_files;

use std::path::Path;

use super::meta_store::{DataStreamMetaStore, StreamMeta, ThroughputCommitment};
use super::DataStreamId;
use crate::scope::Scope;
use crate::storage_failure::StorageFailure;

/// The metadata's layout, recorded in it and checked at open (see docs/storage.md).
/// 2: stream records carry their scope and are keyed by `ACCOUNT/REGION/NAME` (1: by
/// name, all in the server's default scope). 3: stream records may carry a record
/// distribution and a warm throughput, and commitments are kept; nothing to rewrite
/// (absent members take their defaults), but a format-2 server would drop them.
pub const META_FORMAT: u32 = 3;
const META_STORE: &str = "the data-stream metadata (data/data_streams/meta)";

pub struct SledDataStreamMeta {
    db: sled::Db,
    streams: sled::Tree,
    policies: sled::Tree,
    commitments: sled::Tree,
}

fn io(e: sled::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn failed(e: impl std::error::Error + Send + Sync + 'static) -> StorageFailure {
    StorageFailure::caused(META_STORE, e)
}

impl SledDataStreamMeta {
    /// Opens the metadata; streams of format 1 are moved into `default_scope`.
    pub fn open(dir: &Path, default_scope: &Scope) -> std::io::Result<Self> {
        use crate::embedded::sled_db::{check_and_record_format, check_format, record_format, upgrade_to_scoped_keys};
        let db = crate::embedded::sled_db::open(&dir.join("meta"), 500).map_err(io)?;
        let streams = db.open_tree("streams").map_err(io)?;
        let found = check_format(&db, "meta", META_FORMAT, META_STORE).map_err(std::io::Error::other)?;
        if found < 2 {
            let moved = upgrade_to_scoped_keys(&streams, default_scope).map_err(std::io::Error::other)?;
            if moved > 0 {
                tracing::info!(streams = moved, account = %default_scope.account, region = %default_scope.region, "data-stream metadata upgraded to format 2 (streams scoped by account and region)");
            }
        }
        record_format(&db, "meta", META_FORMAT, META_STORE).map_err(std::io::Error::other)?;
        check_and_record_format(
            &db,
            "record_log",
            super::record_log::RECORD_LOG_FORMAT,
            "the data-stream record logs (data/data_streams)",
        )
        .map_err(std::io::Error::other)?;
        let policies = db.open_tree("policies").map_err(io)?;
        let commitments = db.open_tree("commitments").map_err(io)?;
        Ok(SledDataStreamMeta { db, streams, policies, commitments })
    }
}

impl DataStreamMetaStore for SledDataStreamMeta {
    fn load(&self) -> Result<Vec<StreamMeta>, StorageFailure> {
        self.streams
            .iter()
            .values()
            .map(|v| {
                let v = v.map_err(failed)?;
                serde_json::from_slice(&v).map_err(failed)
            })
            .collect()
    }

    fn save(&self, meta: &StreamMeta) -> Result<(), StorageFailure> {
        let v = serde_json::to_vec(meta).map_err(failed)?;
        self.streams.insert(meta.id().key(), v).map_err(failed)?;
        self.db.flush().map_err(failed)?;
        Ok(())
    }

    fn delete(&self, id: &DataStreamId) -> Result<(), StorageFailure> {
        self.streams.remove(id.key()).map_err(failed)?;
        self.db.flush().map_err(failed)?;
        Ok(())
    }

    fn policy(&self, arn: &str) -> Result<Option<String>, StorageFailure> {
        Ok(self.policies.get(arn.as_bytes()).map_err(failed)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_policy(&self, arn: &str, policy: Option<&str>) -> Result<(), StorageFailure> {
        match policy {
            Some(p) => self.policies.insert(arn.as_bytes(), p.as_bytes()).map(|_| ()),
            None => self.policies.remove(arn.as_bytes()).map(|_| ()),
        }
        .map_err(failed)?;
        self.db.flush().map_err(failed)?;
        Ok(())
    }

    fn commitment(&self, scope: &Scope) -> Result<Option<ThroughputCommitment>, StorageFailure> {
        match self.commitments.get(scope.key_prefix()).map_err(failed)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(failed)?)),
            None => Ok(None),
        }
    }

    fn set_commitment(&self, scope: &Scope, commitment: &ThroughputCommitment) -> Result<(), StorageFailure> {
        let v = serde_json::to_vec(commitment).map_err(failed)?;
        self.commitments.insert(scope.key_prefix(), v).map_err(failed)?;
        self.db.flush().map_err(failed)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sled_data_stream_metadata_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let scope = crate::scope::Scope::new("123456789012", "us-east-1");
        super::super::meta_store::conformance::run(|| super::SledDataStreamMeta::open(dir.path(), &scope).unwrap());
    }

    #[test]
    fn record_logs_in_a_newer_format_are_refused_not_misread() {
        use crate::data_streams::{DataStreamEngine, EngineOptions};
        let dir = tempfile::tempdir().unwrap();
        let clock = std::sync::Arc::new(crate::clock::ManualClock::new(1_700_000_000_000));
        let scope = crate::scope::Scope::new("123456789012", "us-east-1");
        let open = || DataStreamEngine::open(dir.path(), clock.clone(), &scope, EngineOptions::default());
        drop(open().unwrap());
        let db = crate::embedded::sled_db::open(&dir.path().join("data_streams").join("meta"), 500).unwrap();
        db.insert("format/record_log", &2u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
        drop(db);
        let text = open().err().expect("refused").to_string();
        assert!(text.contains("record logs") && text.contains("format 2"), "{text}");
    }
}
