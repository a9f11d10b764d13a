//! The delivery streams' metadata and checkpoints in the cluster database: tables
//! `delivery_streams` (one record per stream, JSON, keyed by account, region and name),
//! `delivery_progress` (the serial delivered through, per stream uid) and
//! `delivery_source_checkpoints` (per uid and source shard); uids from the sequence
//! `delivery_stream_uids`. Every change is committed before it returns.

use super::meta_store::{DeliveryMetaStore, StreamMeta};
use crate::postgres::{failed, Database, Param};
use crate::storage_failure::StorageFailure;

const STORE: &str = "the delivery-stream store (cluster database)";

pub struct PgDeliveryMeta {
    db: Database,
}

impl PgDeliveryMeta {
    pub fn new(db: Database) -> Self {
        PgDeliveryMeta { db }
    }
}

impl DeliveryMetaStore for PgDeliveryMeta {
    fn all(&self) -> Result<Vec<StreamMeta>, StorageFailure> {
        let rows = self.db.query(
            STORE,
            "SELECT account, region, name, record FROM delivery_streams ORDER BY account, region, name",
            Vec::new(),
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            match serde_json::from_slice::<StreamMeta>(&r.get::<_, Vec<u8>>(3)) {
                Ok(m) => out.push(m),
                Err(e) => {
                    let key = format!("{}/{}/{}", r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, String>(2));
                    tracing::error!(key, error = %e, "unreadable delivery stream; left as it is and not served")
                }
            }
        }
        Ok(out)
    }

    fn save(&self, meta: &StreamMeta) -> Result<(), StorageFailure> {
        let v = serde_json::to_vec(meta).map_err(|e| failed(STORE, e))?;
        self.db
            .execute(
                STORE,
                "INSERT INTO delivery_streams (account, region, name, record) VALUES ($1, $2, $3, $4)
             ON CONFLICT (account, region, name) DO UPDATE SET record = EXCLUDED.record",
                vec![
                    Param::Text(meta.scope.account.clone()),
                    Param::Text(meta.scope.region.clone()),
                    Param::Text(meta.name.clone()),
                    Param::Bytes(v),
                ],
            )
            .map(drop)
    }

    fn remove(&self, meta: &StreamMeta) -> Result<(), StorageFailure> {
        let uid = Param::uint(meta.uid);
        self.db
            .transaction(
                STORE,
                vec![
                    (
                        "DELETE FROM delivery_streams WHERE account = $1 AND region = $2 AND name = $3",
                        vec![
                            Param::Text(meta.scope.account.clone()),
                            Param::Text(meta.scope.region.clone()),
                            Param::Text(meta.name.clone()),
                        ],
                    ),
                    ("DELETE FROM delivery_progress WHERE uid = $1", vec![uid.clone()]),
                    ("DELETE FROM delivery_source_checkpoints WHERE uid = $1", vec![uid]),
                ],
            )
            .map(|_| ())
    }

    fn next_uid(&self) -> Result<u64, StorageFailure> {
        let rows = self.db.query(STORE, "SELECT nextval('delivery_stream_uids')", Vec::new())?;
        Ok(rows.first().map_or(1, |r| crate::postgres::from_bigint(r.get::<_, i64>(0))))
    }

    fn delivered_through(&self, uid: u64) -> Result<u64, StorageFailure> {
        let rows =
            self.db.query(STORE, "SELECT serial FROM delivery_progress WHERE uid = $1", vec![Param::uint(uid)])?;
        Ok(rows.first().map_or(0, |r| crate::postgres::from_bigint(r.get::<_, i64>(0))))
    }

    fn set_delivered_through(&self, uid: u64, serial: u64) -> Result<(), StorageFailure> {
        self.db
            .execute(
                STORE,
                "INSERT INTO delivery_progress (uid, serial) VALUES ($1, $2)
             ON CONFLICT (uid) DO UPDATE SET serial = EXCLUDED.serial",
                vec![Param::uint(uid), Param::uint(serial)],
            )
            .map(drop)
    }

    fn source_checkpoint(&self, uid: u64, shard: &str) -> Result<Option<String>, StorageFailure> {
        let rows = self.db.query(
            STORE,
            "SELECT checkpoint FROM delivery_source_checkpoints WHERE uid = $1 AND shard = $2",
            vec![Param::uint(uid), Param::Text(shard.to_string())],
        )?;
        Ok(rows.first().map(|r| r.get::<_, String>(0)))
    }

    fn set_source_checkpoint(&self, uid: u64, shard: &str, checkpoint: &str) -> Result<(), StorageFailure> {
        self.db
            .execute(
                STORE,
                "INSERT INTO delivery_source_checkpoints (uid, shard, checkpoint) VALUES ($1, $2, $3)
             ON CONFLICT (uid, shard) DO UPDATE SET checkpoint = EXCLUDED.checkpoint",
                vec![Param::uint(uid), Param::Text(shard.to_string()), Param::Text(checkpoint.to_string())],
            )
            .map(drop)
    }
}
