//! The channel catalog in the cluster database: table `signaling_channels`, one row
//! per channel keyed by account, region and name, the record as JSON bytes. A change is
//! a compare-and-swap of those bytes in one statement (`INSERT … ON CONFLICT DO
//! NOTHING`, `UPDATE`/`DELETE … WHERE record = old`), committed before it returns, so
//! nodes changing the same channel never lose one another's change.

use super::channel::ChannelRecord;
use super::channel_store::ChannelStore;
use crate::postgres::{failed, like_prefix, Database, Param};
use crate::scope::{NamePage, Scope};
use crate::storage_failure::StorageFailure;

const STORE: &str = "the signalling channel catalog (cluster database)";

pub struct PgChannels {
    db: Database,
}

impl PgChannels {
    pub fn new(db: Database) -> Self {
        PgChannels { db }
    }

    fn records(&self, sql: &'static str, params: Vec<Param>) -> Result<Vec<Vec<u8>>, StorageFailure> {
        Ok(self.db.query(STORE, sql, params)?.into_iter().map(|r| r.get::<_, Vec<u8>>(0)).collect())
    }
}

fn encode(r: &ChannelRecord) -> Result<Vec<u8>, StorageFailure> {
    serde_json::to_vec(r).map_err(|e| failed(STORE, e))
}

fn decode(v: &[u8]) -> Result<ChannelRecord, StorageFailure> {
    serde_json::from_slice(v).map_err(|e| failed(STORE, e))
}

fn key(scope: &Scope, name: &str) -> Vec<Param> {
    vec![Param::Text(scope.account.clone()), Param::Text(scope.region.clone()), Param::Text(name.to_string())]
}

#[async_trait::async_trait]
impl ChannelStore for PgChannels {
    fn get(&self, scope: &Scope, name: &str) -> Result<Option<ChannelRecord>, StorageFailure> {
        let rows = self.records(
            "SELECT record FROM signaling_channels WHERE account = $1 AND region = $2 AND name = $3",
            key(scope, name),
        )?;
        rows.first().map(|v| decode(v)).transpose()
    }

    fn count(&self, scope: &Scope) -> Result<usize, StorageFailure> {
        let rows = self.db.query(
            STORE,
            "SELECT COUNT(*) FROM signaling_channels WHERE account = $1 AND region = $2",
            vec![Param::Text(scope.account.clone()), Param::Text(scope.region.clone())],
        )?;
        Ok(rows.first().map_or(0, |r| usize::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
    }

    fn list(&self, scope: &Scope, page: NamePage<'_>) -> Result<Vec<ChannelRecord>, StorageFailure> {
        // Names compare byte by byte (COLLATE "C"), as the embedded store orders them.
        let rows = self.records(
            "SELECT record FROM signaling_channels
             WHERE account = $1 AND region = $2 AND name LIKE $3 AND name COLLATE \"C\" > $4
             ORDER BY name COLLATE \"C\" LIMIT $5",
            vec![
                Param::Text(scope.account.clone()),
                Param::Text(scope.region.clone()),
                Param::Text(like_prefix(page.prefix)),
                Param::Text(page.after.unwrap_or("").to_string()),
                Param::Int(i64::try_from(page.limit).unwrap_or(i64::MAX)),
            ],
        )?;
        rows.iter().map(|v| decode(v)).collect()
    }

    fn all(&self) -> Result<Vec<ChannelRecord>, StorageFailure> {
        let rows = self.records("SELECT record FROM signaling_channels ORDER BY account, region, name", Vec::new())?;
        rows.iter().map(|v| decode(v)).collect()
    }

    async fn insert_new(&self, record: &ChannelRecord) -> Result<bool, StorageFailure> {
        let mut params = key(&record.scope, &record.name);
        params.push(Param::Bytes(encode(record)?));
        self.db
            .execute_async(
                STORE,
                "INSERT INTO signaling_channels (account, region, name, record) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
                params,
            )
            .await
            .map(|changed| changed == 1)
    }

    async fn replace(&self, old: &ChannelRecord, new: &ChannelRecord) -> Result<bool, StorageFailure> {
        if (&old.scope, &old.name) != (&new.scope, &new.name) {
            return Ok(false);
        }
        let mut params = key(&old.scope, &old.name);
        params.push(Param::Bytes(encode(old)?));
        params.push(Param::Bytes(encode(new)?));
        self.db
            .execute_async(
                STORE,
                "UPDATE signaling_channels SET record = $5
             WHERE account = $1 AND region = $2 AND name = $3 AND record = $4",
                params,
            )
            .await
            .map(|changed| changed == 1)
    }

    async fn remove(&self, old: &ChannelRecord) -> Result<bool, StorageFailure> {
        let mut params = key(&old.scope, &old.name);
        params.push(Param::Bytes(encode(old)?));
        self.db
            .execute_async(
                STORE,
                "DELETE FROM signaling_channels WHERE account = $1 AND region = $2 AND name = $3 AND record = $4",
                params,
            )
            .await
            .map(|changed| changed == 1)
    }
}
