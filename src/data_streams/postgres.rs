//! The data streams' metadata in the cluster database: tables `data_streams` (one
//! record per stream, JSON, keyed by account, region and name), `data_stream_policies`
//! (resource policies by ARN) and `data_stream_commitments` (per account and region).
//! Every change is committed before it returns; a record that cannot be read fails the
//! load, as the engine requires.

use super::meta_store::{DataStreamMetaStore, StreamMeta, ThroughputCommitment};
use super::DataStreamId;
use crate::postgres::{failed, Database, Param};
use crate::scope::Scope;
use crate::storage_failure::StorageFailure;

const STORE: &str = "the data-stream metadata (cluster database)";

pub struct PgDataStreamMeta {
    db: Database,
}

impl PgDataStreamMeta {
    pub fn new(db: Database) -> Self {
        PgDataStreamMeta { db }
    }
}

fn scope_params(scope: &Scope) -> Vec<Param> {
    vec![Param::Text(scope.account.clone()), Param::Text(scope.region.clone())]
}

impl DataStreamMetaStore for PgDataStreamMeta {
    fn load(&self) -> Result<Vec<StreamMeta>, StorageFailure> {
        let rows =
            self.db.query(STORE, "SELECT record FROM data_streams ORDER BY account, region, name", Vec::new())?;
        rows.iter().map(|r| serde_json::from_slice(&r.get::<_, Vec<u8>>(0)).map_err(|e| failed(STORE, e))).collect()
    }

    fn save(&self, meta: &StreamMeta) -> Result<(), StorageFailure> {
        let v = serde_json::to_vec(meta).map_err(|e| failed(STORE, e))?;
        let mut params = scope_params(&meta.scope);
        params.extend([Param::Text(meta.name.clone()), Param::Bytes(v)]);
        self.db
            .execute(
                STORE,
                "INSERT INTO data_streams (account, region, name, record) VALUES ($1, $2, $3, $4)
             ON CONFLICT (account, region, name) DO UPDATE SET record = EXCLUDED.record",
                params,
            )
            .map(drop)
    }

    fn delete(&self, id: &DataStreamId) -> Result<(), StorageFailure> {
        let mut params = scope_params(&id.scope);
        params.push(Param::Text(id.name.clone()));
        self.db
            .execute(STORE, "DELETE FROM data_streams WHERE account = $1 AND region = $2 AND name = $3", params)
            .map(drop)
    }

    fn policy(&self, arn: &str) -> Result<Option<String>, StorageFailure> {
        let rows = self.db.query(
            STORE,
            "SELECT policy FROM data_stream_policies WHERE arn = $1",
            vec![Param::Text(arn.into())],
        )?;
        Ok(rows.first().map(|r| r.get::<_, String>(0)))
    }

    fn set_policy(&self, arn: &str, policy: Option<&str>) -> Result<(), StorageFailure> {
        match policy {
            Some(p) => self
                .db
                .execute(
                    STORE,
                    "INSERT INTO data_stream_policies (arn, policy) VALUES ($1, $2)
                 ON CONFLICT (arn) DO UPDATE SET policy = EXCLUDED.policy",
                    vec![Param::Text(arn.into()), Param::Text(p.into())],
                )
                .map(drop),
            None => self
                .db
                .execute(STORE, "DELETE FROM data_stream_policies WHERE arn = $1", vec![Param::Text(arn.into())])
                .map(drop),
        }
    }

    fn commitment(&self, scope: &Scope) -> Result<Option<ThroughputCommitment>, StorageFailure> {
        let rows = self.db.query(
            STORE,
            "SELECT commitment FROM data_stream_commitments WHERE account = $1 AND region = $2",
            scope_params(scope),
        )?;
        rows.first().map(|r| serde_json::from_slice(&r.get::<_, Vec<u8>>(0)).map_err(|e| failed(STORE, e))).transpose()
    }

    fn set_commitment(&self, scope: &Scope, commitment: &ThroughputCommitment) -> Result<(), StorageFailure> {
        let v = serde_json::to_vec(commitment).map_err(|e| failed(STORE, e))?;
        let mut params = scope_params(scope);
        params.push(Param::Bytes(v));
        self.db
            .execute(
                STORE,
                "INSERT INTO data_stream_commitments (account, region, commitment) VALUES ($1, $2, $3)
             ON CONFLICT (account, region) DO UPDATE SET commitment = EXCLUDED.commitment",
                params,
            )
            .map(drop)
    }
}
