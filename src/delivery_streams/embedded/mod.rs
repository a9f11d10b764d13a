//! Delivery-stream metadata in sled (`data/delivery_streams/meta`), format 3
//! (`format/delivery_streams`, checked at open; older formats upgraded by [`upgrade`],
//! one file per step):
//!
//! - `stream/<ACCOUNT/REGION/NAME>` → the stream's [`StreamMeta`] as JSON;
//! - `delivered/<uid>` → the serial (u64 BE) through which its records are delivered;
//! - `source/<uid>/<shard>` → for a Kinesis-sourced stream, the last sequence number of
//!   that shard in the backlog, or `DONE` once a closed shard is read to its end;
//! - `next_uid` → the last stream uid handed out (u64 BE).
//!
//! Every write is flushed before the call that made it returns.

use std::path::Path;

mod upgrade;

use super::meta_store::{DeliveryMetaStore, StreamMeta};
use crate::embedded::sled_db;
use crate::scope::Scope;
use crate::storage_failure::StorageFailure;

/// 3: a stream record may name its owner (a Kinesis channel); nothing to rewrite, but a
/// format-2 server would drop the owner and show the stream as a delivery stream.
pub const FORMAT: u32 = 3;
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
    /// Opens the store, upgrading an older format first (see [`upgrade`]).
    pub fn open(dir: &Path) -> Result<Self, StorageFailure> {
        let db = sled_db::open(&dir.join("meta"), 500).map_err(failed)?;
        let found = sled_db::check_format(&db, "delivery_streams", FORMAT, STORE).map_err(failed)?;
        upgrade::run(found, &db)?;
        sled_db::record_format(&db, "delivery_streams", FORMAT, STORE).map_err(failed)?;
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
    use std::collections::BTreeMap;

    use super::*;
    use crate::delivery_streams::settings::*;
    use crate::delivery_streams::Source;

    #[test]
    fn sled_delivery_metadata_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        super::super::meta_store::conformance::run(|| SledDeliveryMeta::open(dir.path()).unwrap());
    }

    /// A stream as format 1 kept it: Firehose's member names, recorded members raw.
    const V1_DESTINATION: &str = r#"{"ExtendedS3": {
        "RoleARN": "arn:aws:iam::123456789012:role/f", "BucketARN": "arn:aws:s3:::frames",
        "Prefix": "cams/", "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
        "CompressionFormat": "GZIP",
        "EncryptionConfiguration": {"KMSEncryptionConfig": {"AWSKMSKeyARN": "arn:aws:kms:us-east-1:123456789012:key/k"}},
        "CloudWatchLoggingOptions": {"Enabled": true, "LogGroupName": "g"},
        "ProcessingConfiguration": {"Enabled": true, "Processors": [
            {"Type": "AppendDelimiterToRecord", "Parameters": [{"ParameterName": "Delimiter", "ParameterValue": "\\n"}]}]},
        "S3BackupMode": "Enabled",
        "S3BackupConfiguration": {"RoleARN": "arn:aws:iam::123456789012:role/f", "BucketARN": "arn:aws:s3:::raw"},
        "DataFormatConversionConfiguration": {"Enabled": false,
            "SchemaConfiguration": {"DatabaseName": "db", "TableName": "t"},
            "InputFormatConfiguration": {"Deserializer": {"HiveJsonSerDe": {}}},
            "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {"Compression": "SNAPPY"}}}},
        "DynamicPartitioningConfiguration": {"Enabled": false, "RetryOptions": {"DurationInSeconds": 30}},
        "FileExtension": ".log"}}"#;

    #[test]
    fn a_format_1_store_is_upgraded_in_place_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let scope = Scope::new("123456789012", "us-east-1");
        let mut record = serde_json::to_value(StreamMeta {
            scope: scope.clone(),
            name: "cams".into(),
            uid: 7,
            source: Source::DirectPut { throughput_hint_mib: None },
            destination: Destination::Bucket(BucketDestination::default()),
            destination_id: "destinationId-000000000001".into(),
            version: 3,
            created_ms: 1,
            updated_ms: 2,
            tags: BTreeMap::from([("site".into(), "north".into())]),
            encryption: None,
            encryption_calls_ms: vec![],
            owner: None,
        })
        .unwrap();
        record["destination"] = serde_json::from_str(V1_DESTINATION).unwrap();
        let http: serde_json::Value = serde_json::from_str(
            r#"{"HttpEndpoint": {
            "EndpointConfiguration": {"Url": "https://example.com/in", "AccessKey": "k"},
            "RequestConfiguration": {"ContentEncoding": "GZIP",
                "CommonAttributes": [{"AttributeName": "cam", "AttributeValue": "door"}]},
            "RetryOptions": {"DurationInSeconds": 60}, "S3BackupMode": "AllData",
            "S3Configuration": {"RoleARN": "arn:aws:iam::123456789012:role/f", "BucketARN": "arn:aws:s3:::failed"}}}"#,
        )
        .unwrap();
        let mut endpoint_record = record.clone();
        endpoint_record["name"] = "hooks".into();
        endpoint_record["uid"] = 8.into();
        endpoint_record["destination"] = http;
        {
            let db = sled_db::open(&dir.path().join("meta"), 500).unwrap();
            sled_db::record_format(&db, "delivery_streams", 1, STORE).unwrap();
            db.insert(key(&scope, "cams"), serde_json::to_vec(&record).unwrap()).unwrap();
            db.insert(key(&scope, "hooks"), serde_json::to_vec(&endpoint_record).unwrap()).unwrap();
            db.insert(key(&scope, "broken"), &b"{not json"[..]).unwrap();
            db.insert("delivered/0000000000000007", &5u64.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        let store = SledDeliveryMeta::open(dir.path()).unwrap();
        let mut all = store.all().unwrap();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(all.len(), 2, "the unreadable record is skipped, not lost");
        assert_eq!(store.delivered_through(7).unwrap(), 5);
        let (cams, hooks) = (&all[0], &all[1]);
        assert_eq!((cams.version, cams.tags.get("site").map(String::as_str)), (3, Some("north")));
        let Destination::Bucket(b) = &cams.destination else { panic!("{:?}", cams.destination) };
        assert_eq!(b.buffering, BufferingHints { size_mib: Some(1), interval_secs: Some(60) });
        assert_eq!((b.compression, b.prefix.as_deref()), (Compression::Gzip, Some("cams/")));
        assert_eq!(
            b.encryption,
            Some(ObjectEncryption::Kms { key_arn: "arn:aws:kms:us-east-1:123456789012:key/k".into() })
        );
        assert_eq!(b.error_logging.as_ref().map(|l| (l.enabled, l.log_group.as_deref())), Some((true, Some("g"))));
        assert_eq!(b.processing.as_ref().unwrap().processors[0].parameter("Delimiter"), Some("\\n"));
        assert_eq!(b.source_backup().map(|x| x.bucket_arn.as_str()), Some("arn:aws:s3:::raw"));
        let c = b.conversion.as_ref().unwrap();
        assert!(!c.enabled);
        assert_eq!((c.schema.database.as_deref(), c.schema.table.as_deref()), (Some("db"), Some("t")));
        assert_eq!(c.reader, Some(JsonReader::Hive { timestamp_formats: None }));
        assert_eq!(c.writer.as_ref().and_then(|w| w.compression.as_deref()), Some("SNAPPY"));
        assert_eq!(b.partitioning, Some(Partitioning { enabled: false, retry_secs: Some(30) }));
        assert_eq!(b.file_extension.as_deref(), Some(".log"));
        let Destination::HttpEndpoint(h) = &hooks.destination else { panic!("{:?}", hooks.destination) };
        assert_eq!((h.endpoint.url.as_str(), h.endpoint.access_key.as_deref()), ("https://example.com/in", Some("k")));
        assert!(h.gzip && h.backs_up_all());
        assert_eq!(h.common_attributes, vec![("cam".to_string(), "door".to_string())]);
        assert_eq!((h.retry_secs(), h.bucket.bucket_arn.as_str()), (60, "arn:aws:s3:::failed"));
        drop(store);
        // Opened again (format 2 now): the same streams, untouched.
        let again = SledDeliveryMeta::open(dir.path()).unwrap();
        let mut reread = again.all().unwrap();
        reread.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(reread, all);
        let raw = again.db.get(key(&scope, "broken")).unwrap();
        assert_eq!(raw.as_deref(), Some(&b"{not json"[..]), "kept as it was");
    }
}
