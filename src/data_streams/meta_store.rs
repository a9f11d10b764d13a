//! Stream metadata (topology, settings, consumers, tags) in sled (`data/data_streams/meta`),
//! behind a narrow interface: load all, save one, delete one. Every change is flushed
//! before the call that made it returns. Records live in [`super::record_log`].

use super::DataStreamId;
use crate::scope::Scope;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::shard_map::ShardMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamMode {
    #[serde(rename = "PROVISIONED")]
    Provisioned,
    #[serde(rename = "ON_DEMAND")]
    OnDemand,
}

impl StreamMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::Provisioned => "PROVISIONED",
            StreamMode::OnDemand => "ON_DEMAND",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PROVISIONED" => Some(StreamMode::Provisioned),
            "ON_DEMAND" => Some(StreamMode::OnDemand),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMeta {
    pub name: String,
    /// Seconds since the epoch; the ARN's suffix.
    pub created_s: i64,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub name: String,
    /// The account and region the stream lives in.
    pub scope: Scope,
    /// Unique over the server's life: names the record directory and binds iterators,
    /// so a re-created stream of the same name never serves the old one's iterators.
    pub uid: u64,
    pub created_ms: i64,
    pub mode: StreamMode,
    pub retention_hours: u32,
    pub shard_map: ShardMap,
    pub tags: BTreeMap<String, String>,
    pub consumers: Vec<ConsumerMeta>,
    /// KMS key id when encryption is on.
    pub encryption_key: Option<String>,
    pub max_record_kib: u32,
    pub enhanced_metrics: BTreeSet<String>,
    /// When UpdateShardCount ran, for the 10-per-24-hours limit.
    pub scaling_ops_ms: Vec<i64>,
    /// The stream reports UPDATING until then (see the engine's `update_delay_ms`).
    pub updating_until_ms: i64,
}

impl StreamMeta {
    pub fn id(&self) -> DataStreamId {
        DataStreamId::new(&self.scope, &self.name)
    }
}

/// The metadata's layout, recorded in it and checked at open (see docs/storage.md).
/// 2: stream records carry their scope and are keyed by `ACCOUNT/REGION/NAME` (1: by
/// name, all in the server's default scope).
pub const META_FORMAT: u32 = 2;
const META_STORE: &str = "the data-stream metadata (data/data_streams/meta)";

pub struct MetaStore {
    db: sled::Db,
    streams: sled::Tree,
    policies: sled::Tree,
}

fn io(e: sled::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl MetaStore {
    /// Opens the metadata; streams of format 1 are moved into `default_scope`.
    pub fn open(dir: &Path, default_scope: &Scope) -> std::io::Result<Self> {
        use crate::sled_open::{check_and_record_format, check_format, record_format, upgrade_to_scoped_keys};
        let db = crate::sled_open::open(&dir.join("meta"), 500).map_err(io)?;
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
        Ok(MetaStore { db, streams, policies })
    }

    pub fn load(&self) -> std::io::Result<Vec<StreamMeta>> {
        self.streams
            .iter()
            .values()
            .map(|v| {
                let v = v.map_err(io)?;
                serde_json::from_slice(&v).map_err(|e| std::io::Error::other(format!("stream record: {e}")))
            })
            .collect()
    }

    pub fn save(&self, meta: &StreamMeta) -> std::io::Result<()> {
        let v = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
        self.streams.insert(meta.id().key(), v).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    pub fn delete(&self, id: &DataStreamId) -> std::io::Result<()> {
        self.streams.remove(id.key()).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    pub fn policy(&self, arn: &str) -> std::io::Result<Option<String>> {
        Ok(self.policies.get(arn.as_bytes()).map_err(io)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_policy(&self, arn: &str, policy: Option<&str>) -> std::io::Result<()> {
        match policy {
            Some(p) => self.policies.insert(arn.as_bytes(), p.as_bytes()).map(|_| ()),
            None => self.policies.remove(arn.as_bytes()).map(|_| ()),
        }
        .map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }
}
