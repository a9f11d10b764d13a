//! Format 1 → 2: a stream's destination was kept in Firehose's member names
//! (`{"ExtendedS3": {"RoleARN": …, "BufferingHints": {"SizeInMBs": …}}}`, with the
//! members Kinescope only records kept as raw JSON); format 2 keeps the engine's own
//! [`crate::delivery_streams::settings`] types. Each `stream/…` record is rewritten in
//! place. A record this step cannot read is left as it is (and reported by `all()`),
//! never removed.

use serde_json::{json, Map, Value};

use crate::storage_failure::StorageFailure;

/// Rewrites every format-1 stream record; returns how many were rewritten.
pub fn run(db: &sled::Db) -> Result<usize, StorageFailure> {
    let failed = |e: sled::Error| StorageFailure::caused("upgrade the delivery-stream store to format 2", e);
    let mut moved = 0;
    for item in db.scan_prefix("stream/") {
        let (key, value) = item.map_err(failed)?;
        let Ok(mut record) = serde_json::from_slice::<Value>(&value) else {
            tracing::error!(key = %String::from_utf8_lossy(&key), "a delivery stream record is not JSON; left as it is");
            continue;
        };
        let Some(old) = record.get("destination").and_then(destination) else {
            // Already format 2 (a step re-run after a crash), or unreadable: left alone.
            continue;
        };
        record["destination"] = old;
        let bytes = serde_json::to_vec(&record).map_err(|e| StorageFailure::caused("encode an upgraded stream", e))?;
        db.insert(key, bytes).map_err(failed)?;
        moved += 1;
    }
    db.flush().map_err(failed)?;
    Ok(moved)
}

/// A format-1 destination in format 2; `None` if it is not a format-1 destination.
pub fn destination(v1: &Value) -> Option<Value> {
    if let Some(b) = v1.get("ExtendedS3") {
        return Some(json!({ "Bucket": bucket(b)? }));
    }
    let h = v1.get("HttpEndpoint")?;
    // Format 2 has "endpoint" where format 1 had "EndpointConfiguration".
    let endpoint = h.get("EndpointConfiguration")?;
    let request = h.get("RequestConfiguration");
    let attributes: Vec<Value> = request
        .and_then(|r| r.get("CommonAttributes"))
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|x| json!([x["AttributeName"], x["AttributeValue"]])).collect())
        .unwrap_or_default();
    Some(json!({ "HttpEndpoint": {
        "endpoint": {"url": endpoint.get("Url")?, "name": endpoint.get("Name"), "access_key": endpoint.get("AccessKey")},
        "buffering": buffering(h.get("BufferingHints")),
        "gzip": request.and_then(|r| r.get("ContentEncoding")).and_then(Value::as_str) == Some("GZIP"),
        "common_attributes": attributes,
        "processing": h.get("ProcessingConfiguration").map(processing),
        "role_arn": h.get("RoleARN"),
        "retry_secs": h.get("RetryOptions").and_then(|r| r.get("DurationInSeconds")),
        "backup_mode": h.get("S3BackupMode"),
        "bucket": bucket(h.get("S3Configuration")?)?,
        "error_logging": h.get("CloudWatchLoggingOptions").map(logging),
    }}))
}

fn bucket(b: &Value) -> Option<Value> {
    let compression = match b.get("CompressionFormat").and_then(Value::as_str).unwrap_or("UNCOMPRESSED") {
        "UNCOMPRESSED" => "Uncompressed",
        "GZIP" => "Gzip",
        "ZIP" => "Zip",
        "Snappy" => "Snappy",
        "HADOOP_SNAPPY" => "HadoopSnappy",
        _ => return None,
    };
    let backup = match b.get("S3BackupConfiguration") {
        Some(x) => Some(bucket(x)?),
        None => None,
    };
    Some(json!({
        "role_arn": b.get("RoleARN")?,
        "bucket_arn": b.get("BucketARN")?,
        "prefix": b.get("Prefix"),
        "error_output_prefix": b.get("ErrorOutputPrefix"),
        "buffering": buffering(b.get("BufferingHints")),
        "compression": compression,
        "encryption": b.get("EncryptionConfiguration").map(encryption),
        "error_logging": b.get("CloudWatchLoggingOptions").map(logging),
        "processing": b.get("ProcessingConfiguration").map(processing),
        "source_backup_mode": b.get("S3BackupMode"),
        "source_backup_bucket": backup,
        "conversion": b.get("DataFormatConversionConfiguration").map(conversion),
        "partitioning": b.get("DynamicPartitioningConfiguration").map(|d| json!({
            "enabled": d.get("Enabled").and_then(Value::as_bool).unwrap_or(false),
            "retry_secs": d.get("RetryOptions").and_then(|r| r.get("DurationInSeconds")),
        })),
        "file_extension": b.get("FileExtension"),
        "custom_time_zone": b.get("CustomTimeZone"),
    }))
}

fn buffering(h: Option<&Value>) -> Value {
    json!({
        "size_mib": h.and_then(|h| h.get("SizeInMBs")),
        "interval_secs": h.and_then(|h| h.get("IntervalInSeconds")),
    })
}

fn processing(p: &Value) -> Value {
    let processors: Vec<Value> = p
        .get("Processors")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|x| {
                    let parameters: Vec<Value> = x
                        .get("Parameters")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .map(|q| json!({"name": q["ParameterName"], "value": q["ParameterValue"]}))
                                .collect()
                        })
                        .unwrap_or_default();
                    json!({"kind": x["Type"], "parameters": parameters})
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"enabled": p.get("Enabled").and_then(Value::as_bool).unwrap_or(false), "processors": processors})
}

fn encryption(e: &Value) -> Value {
    match e.get("KMSEncryptionConfig").and_then(|k| k.get("AWSKMSKeyARN")) {
        Some(arn) => json!({"Kms": {"key_arn": arn}}),
        None => json!("None"),
    }
}

fn logging(l: &Value) -> Value {
    json!({
        "enabled": l.get("Enabled").and_then(Value::as_bool).unwrap_or(false),
        "log_group": l.get("LogGroupName"),
        "log_stream": l.get("LogStreamName"),
    })
}

fn conversion(c: &Value) -> Value {
    let s = c.get("SchemaConfiguration");
    let field = |name: &str| s.and_then(|s| s.get(name)).cloned().unwrap_or(Value::Null);
    let reader = c.get("InputFormatConfiguration").and_then(|i| i.get("Deserializer")).and_then(|d| {
        if let Some(o) = d.get("OpenXJsonSerDe") {
            Some(json!({"OpenX": {
                "convert_dots_to_underscores": o.get("ConvertDotsInJsonKeysToUnderscores"),
                "case_insensitive": o.get("CaseInsensitive"),
                "column_keys": o.get("ColumnToJsonKeyMappings"),
            }}))
        } else {
            d.get("HiveJsonSerDe").map(|h| json!({"Hive": {"timestamp_formats": h.get("TimestampFormats")}}))
        }
    });
    let writer =
        c.get("OutputFormatConfiguration").and_then(|o| o.get("Serializer")).and_then(|s| s.get("ParquetSerDe")).map(
            |p| {
                let mut w = Map::new();
                for (from, to) in [
                    ("Compression", "compression"),
                    ("BlockSizeBytes", "block_size_bytes"),
                    ("PageSizeBytes", "page_size_bytes"),
                    ("EnableDictionaryCompression", "enable_dictionary_compression"),
                    ("MaxPaddingBytes", "max_padding_bytes"),
                    ("WriterVersion", "writer_version"),
                ] {
                    w.insert(to.into(), p.get(from).cloned().unwrap_or(Value::Null));
                }
                Value::Object(w)
            },
        );
    json!({
        "enabled": c.get("Enabled").and_then(Value::as_bool).unwrap_or(true),
        "schema": {
            "database": field("DatabaseName"), "table": field("TableName"), "role_arn": field("RoleARN"),
            "catalog_id": field("CatalogId"), "region": field("Region"), "version_id": field("VersionId"),
        },
        "reader": reader,
        "writer": writer,
    })
}
