//! Stream metadata (topology, settings, consumers, tags) in sled (`data/data_streams/meta`),
//! behind a narrow interface: load all, save one, delete one. Every change is flushed
//! before the call that made it returns. Records live in [`super::record_log`].

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

/// The metadata's layout, recorded in it and checked at open (see docs/storage.md).
pub const META_FORMAT: u32 = 1;

pub struct MetaStore {
    db: sled::Db,
    streams: sled::Tree,
    policies: sled::Tree,
}

fn io(e: sled::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl MetaStore {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let db = crate::sled_open::open(&dir.join("meta"), 500).map_err(io)?;
        let check = |component, current, store| {
            crate::sled_open::check_format(&db, component, current, store).map_err(std::io::Error::other)
        };
        check("meta", META_FORMAT, "the data-stream metadata (data/data_streams/meta)")?;
        check("record_log", super::record_log::RECORD_LOG_FORMAT, "the data-stream record logs (data/data_streams)")?;
        let streams = db.open_tree("streams").map_err(io)?;
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
        self.streams.insert(meta.name.as_bytes(), v).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    pub fn delete(&self, name: &str) -> std::io::Result<()> {
        self.streams.remove(name.as_bytes()).map_err(io)?;
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
