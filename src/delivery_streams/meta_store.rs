//! Delivery-stream metadata in sled (`data/delivery_streams/meta`), format 1:
//!
//! - `stream/<ACCOUNT/REGION/NAME>` → the stream's [`StreamMeta`] as JSON;
//! - `delivered/<uid>` → the serial (u64 BE) through which its records are delivered;
//! - `source/<uid>/<shard>` → for a Kinesis-sourced stream, the last sequence number of
//!   that shard in the backlog, or `DONE` once a closed shard is read to its end;
//! - `next_uid` → the next stream uid (u64 BE); a uid names the stream's backlog
//!   directory, so a stream deleted and created again never sees the old records.
//!
//! Every write is flushed before the call that made it returns.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::settings::{Destination, Source};
use crate::scope::Scope;
use crate::sled_open;

pub const FORMAT: u32 = 1;
/// A source shard's checkpoint once it is closed and read to its end.
pub const SHARD_DONE: &str = "DONE";
const STORE: &str = "the delivery-stream store (data/delivery_streams/meta)";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encryption {
    pub key_type: String,
    pub key_arn: Option<String>,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub scope: Scope,
    pub name: String,
    pub uid: u64,
    pub source: Source,
    pub destination: Destination,
    pub destination_id: String,
    pub version: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub tags: BTreeMap<String, String>,
    pub encryption: Option<Encryption>,
    /// When Start/StopDeliveryStreamEncryption were called (the last 24 hours').
    #[serde(default)]
    pub encryption_calls_ms: Vec<i64>,
}

pub struct MetaStore {
    db: sled::Db,
}

fn key(scope: &Scope, name: &str) -> String {
    format!("stream/{}", scope.key(name))
}

impl MetaStore {
    pub fn open(dir: &Path) -> Result<Self, String> {
        let db = sled_open::open(&dir.join("meta"), 500).map_err(|e| format!("cannot open {STORE}: {e}"))?;
        sled_open::check_format(&db, "delivery_streams", FORMAT, STORE).map_err(|e| e.to_string())?;
        sled_open::record_format(&db, "delivery_streams", FORMAT, STORE).map_err(|e| e.to_string())?;
        Ok(MetaStore { db })
    }

    pub fn all(&self) -> Result<Vec<StreamMeta>, sled::Error> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix("stream/") {
            let (k, v) = item?;
            match serde_json::from_slice::<StreamMeta>(&v) {
                Ok(m) => out.push(m),
                Err(e) => {
                    tracing::error!(key = %String::from_utf8_lossy(&k), error = %e, "unreadable delivery stream; skipped")
                }
            }
        }
        Ok(out)
    }

    pub fn save(&self, meta: &StreamMeta) -> Result<(), sled::Error> {
        let bytes = serde_json::to_vec(meta).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
        self.db.insert(key(&meta.scope, &meta.name), bytes)?;
        self.db.flush()?;
        Ok(())
    }

    pub fn remove(&self, meta: &StreamMeta) -> Result<(), sled::Error> {
        self.db.remove(key(&meta.scope, &meta.name))?;
        self.db.remove(format!("delivered/{:016x}", meta.uid))?;
        for item in self.db.scan_prefix(format!("source/{:016x}/", meta.uid)) {
            self.db.remove(item?.0)?;
        }
        self.db.flush()?;
        Ok(())
    }

    pub fn next_uid(&self) -> Result<u64, sled::Error> {
        let next = self.db.update_and_fetch("next_uid", |old| {
            let n = old.and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes) + 1;
            Some(n.to_be_bytes().to_vec())
        })?;
        self.db.flush()?;
        Ok(next.and_then(|b| b.as_ref().try_into().ok()).map_or(1, u64::from_be_bytes))
    }

    pub fn delivered_through(&self, uid: u64) -> Result<u64, sled::Error> {
        Ok(self
            .db
            .get(format!("delivered/{uid:016x}"))?
            .and_then(|b| b.as_ref().try_into().ok())
            .map_or(0, u64::from_be_bytes))
    }

    pub fn source_checkpoint(&self, uid: u64, shard: &str) -> Result<Option<String>, sled::Error> {
        Ok(self.db.get(format!("source/{uid:016x}/{shard}"))?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_source_checkpoint(&self, uid: u64, shard: &str, sequence: &str) -> Result<(), sled::Error> {
        self.db.insert(format!("source/{uid:016x}/{shard}"), sequence.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    pub fn set_delivered_through(&self, uid: u64, serial: u64) -> Result<(), sled::Error> {
        self.db.insert(format!("delivered/{uid:016x}"), &serial.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }
}
