//! The channel catalog in sled (`data/signaling/`): the `channels` tree, JSON records
//! keyed `ACCOUNT/REGION/NAME`; format 1 (`format/channels`), checked at open. Each
//! change is a compare-and-swap of the record's bytes, flushed before it returns.

use std::path::Path;

use super::channel::{ChannelRecord, CHANNELS_FORMAT};
use super::channel_store::ChannelStore;
use crate::scope::{NamePage, Scope};
use crate::storage_failure::StorageFailure;

const STORE: &str = "the signalling channel catalog (data/signaling)";

fn failed(e: impl std::error::Error + Send + Sync + 'static) -> StorageFailure {
    StorageFailure::caused(STORE, e)
}

pub struct SledChannels {
    db: sled::Db,
    channels: sled::Tree,
}

impl SledChannels {
    pub fn open(data_dir: &Path) -> Result<Self, StorageFailure> {
        let db = crate::embedded::sled_db::open(&data_dir.join("signaling"), 500).map_err(failed)?;
        crate::embedded::sled_db::check_format(&db, "channels", CHANNELS_FORMAT, STORE).map_err(failed)?;
        crate::embedded::sled_db::record_format(&db, "channels", CHANNELS_FORMAT, STORE).map_err(failed)?;
        let channels = db.open_tree("channels").map_err(failed)?;
        Ok(SledChannels { db, channels })
    }

    async fn flush(&self) -> Result<(), StorageFailure> {
        self.db.flush_async().await.map(|_| ()).map_err(failed)
    }

    async fn swap(&self, key: &str, old: Option<Vec<u8>>, new: Option<Vec<u8>>) -> Result<bool, StorageFailure> {
        let swapped = self.channels.compare_and_swap(key.as_bytes(), old, new).map_err(failed)?;
        if swapped.is_err() {
            return Ok(false);
        }
        self.flush().await?;
        Ok(true)
    }
}

fn encode(r: &ChannelRecord) -> Result<Vec<u8>, StorageFailure> {
    serde_json::to_vec(r).map_err(failed)
}

fn decode(v: &[u8]) -> Result<ChannelRecord, StorageFailure> {
    serde_json::from_slice(v).map_err(failed)
}

#[async_trait::async_trait]
impl ChannelStore for SledChannels {
    fn get(&self, scope: &Scope, name: &str) -> Result<Option<ChannelRecord>, StorageFailure> {
        self.channels.get(scope.key(name).as_bytes()).map_err(failed)?.map(|v| decode(&v)).transpose()
    }

    fn count(&self, scope: &Scope) -> Result<usize, StorageFailure> {
        Ok(self.channels.scan_prefix(scope.key_prefix().as_bytes()).count())
    }

    fn list(&self, scope: &Scope, page: NamePage<'_>) -> Result<Vec<ChannelRecord>, StorageFailure> {
        crate::embedded::sled_db::scoped_values_after(&self.channels, scope, page)
            .map(|v| decode(&v.map_err(failed)?))
            .collect()
    }

    fn all(&self) -> Result<Vec<ChannelRecord>, StorageFailure> {
        self.channels.iter().values().map(|v| decode(&v.map_err(failed)?)).collect()
    }

    async fn insert_new(&self, record: &ChannelRecord) -> Result<bool, StorageFailure> {
        self.swap(&record.scope.key(&record.name), None, Some(encode(record)?)).await
    }

    async fn replace(&self, old: &ChannelRecord, new: &ChannelRecord) -> Result<bool, StorageFailure> {
        self.swap(&old.scope.key(&old.name), Some(encode(old)?), Some(encode(new)?)).await
    }

    async fn remove(&self, old: &ChannelRecord) -> Result<bool, StorageFailure> {
        self.swap(&old.scope.key(&old.name), Some(encode(old)?), None).await
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn sled_channels_pass_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        super::super::channel_store::conformance::run(|| super::SledChannels::open(dir.path()).unwrap()).await;
    }
}
