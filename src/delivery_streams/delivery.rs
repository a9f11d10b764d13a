//! The delivery task of one stream: waits until the backlog holds a buffer's worth
//! (BufferingHints size) or its oldest record has waited the buffer interval, delivers
//! the oldest records as one batch, records the checkpoint, and repeats. A failed
//! delivery is retried with backoff; once the batch's oldest record is older than the
//! destination's retry window it is written under the error prefix (an HTTP endpoint's
//! backup bucket, `http-endpoint-failed`) or given up (a bucket that stays unwritable
//! for 24 hours), and the task moves on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::jq::PartitionKeys;
use super::object_key::{KeyContext, KeyNaming};
use super::settings::{BucketDestination, Destination, HttpDestination, BUCKET_RETRY_SECS};
use super::{backlog, compression, http_endpoint, lock, processing, read, Inner, LiveStream};
use crate::storage_failure::StorageFailure;

/// The objects of a batch already written by earlier attempts at it: the source
/// backup, the failure objects, each partition's object.
#[derive(Default)]
struct Progress {
    written: HashSet<String>,
}

impl Progress {
    fn done(&self, part: &str) -> bool {
        self.written.contains(part)
    }

    fn wrote(&mut self, part: String) {
        self.written.insert(part);
    }
}

/// Partitions one batch may fill; the records of any further partition go under the
/// error prefix (`activePartitionExceeded`), as AWS does past its default quota.
pub const MAX_ACTIVE_PARTITIONS: usize = 500;

/// What one attempt at a batch came to.
enum Outcome {
    Delivered,
    Failed(DeliveryFailure),
}

/// Why a delivery attempt failed (the batch is retried until its window ends).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryFailure {
    #[error("reading the backlog failed: {0}")]
    Backlog(#[source] StorageFailure),
    #[error("a delivery task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the partitioning query could not run: {0}")]
    Partitioning(#[from] super::query_sandbox::SandboxError),
    /// The destination's settings no longer work (a prefix, a bucket, a table, a function).
    #[error("{0}")]
    Settings(String),
    #[error("the function could not be reached: {0}")]
    FunctionUnreachable(#[source] reqwest::Error),
    #[error("the function answered {0}")]
    FunctionStatus(u16),
    #[error("{0}")]
    FunctionAnswer(String),
    #[error("compressing the object failed: {0}")]
    Compress(#[source] std::io::Error),
    #[error("writing the object failed: {0}")]
    Write(#[source] crate::buckets::BucketError),
    #[error("converting to Parquet failed: {0}")]
    Convert(String),
    #[error("the endpoint could not be reached: {0}")]
    EndpointUnreachable(#[source] reqwest::Error),
    #[error("reading the response failed: {0}")]
    ResponseRead(#[source] reqwest::Error),
    #[error("the response is over {0} bytes")]
    ResponseTooLarge(usize),
    #[error("{0}")]
    EndpointRefused(String),
    #[error("{why}; and its error output failed too: {output}")]
    ErrorOutput { why: String, output: Box<DeliveryFailure> },
}

pub(super) async fn run(inner: Arc<Inner>, live: Arc<LiveStream>, mut stopped: watch::Receiver<bool>) {
    let mut failures: u32 = 0;
    // A failed batch is retried as it was (not re-cut from a backlog that grew
    // meanwhile), so what an attempt already wrote is known and not written again.
    let mut retrying: Option<Vec<backlog::Pending>> = None;
    let mut progress = Progress::default();
    loop {
        if *stopped.borrow() {
            return;
        }
        let meta = read(&live.meta).clone();
        let hints = meta.destination.buffering();
        let now = inner.clock.now_ms();
        let (batch, wait) = match retrying.take() {
            Some(batch) => (batch, None),
            None => {
                let b = lock(&live.backlog);
                match b.oldest_arrival_ms() {
                    None => (Vec::new(), None),
                    Some(oldest) => {
                        let due = oldest + hints.interval_ms();
                        if b.queued_bytes() >= hints.size_bytes() || now >= due {
                            (b.next_batch(hints.size_bytes()), None)
                        } else {
                            (Vec::new(), Some(Duration::from_millis((due - now).max(1) as u64)))
                        }
                    }
                }
            }
        };
        if batch.is_empty() {
            let wait = wait.unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                () = live.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = stopped.changed() => {}
            }
            continue;
        }
        let oldest_ms = batch[0].arrival_ms;
        let last_serial = batch[batch.len() - 1].serial;
        let records = batch.len() as u64;
        let bytes: u64 = batch.iter().map(|p| u64::from(p.data_len)).sum();
        // The batch's records are held in memory while it is delivered: its share of
        // the engine-wide budget first.
        let kib =
            u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, (super::BATCH_MEMORY_BYTES >> 10) as u32);
        let Ok(memory) = inner.batch_memory.acquire_many(kib).await else { return };
        let outcome = match attempt(&inner, &live, &meta, &batch, &mut progress).await {
            Ok(()) => Outcome::Delivered,
            Err(why) => Outcome::Failed(why),
        };
        let outcome = match outcome {
            Outcome::Failed(why) if now - oldest_ms >= retry_window_ms(&meta.destination) => {
                give_up(&inner, &live, &meta, &batch, &why).await
            }
            other => other,
        };
        match outcome {
            Outcome::Delivered => {
                failures = 0;
                progress = Progress::default();
                if let Err(e) = checkpoint(&inner, &live, meta.uid, last_serial) {
                    // Delivered but not recorded: it will be delivered again (at least once).
                    tracing::error!(stream = %meta.name, error = %e, "recording a delivery failed");
                    failures += 1;
                } else if let Some(m) = &inner.options.metrics {
                    m.count_delivery("delivered", records, bytes);
                }
            }
            Outcome::Failed(why) => {
                failures = failures.saturating_add(1);
                retrying = Some(batch);
                if let Some(m) = &inner.options.metrics {
                    m.count_delivery("failed_attempt", records, bytes);
                }
                tracing::warn!(stream = %meta.name, attempt = failures, error = %why, "delivery failed; will retry");
            }
        }
        drop(memory);
        if failures > 0 {
            let backoff = inner.options.retry_min_ms.saturating_mul(1 << failures.min(16).saturating_sub(1));
            let backoff = Duration::from_millis(backoff.min(inner.options.retry_max_ms));
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stopped.changed() => {}
            }
        }
    }
}

fn retry_window_ms(d: &Destination) -> i64 {
    let secs = match d {
        Destination::Bucket(_) => BUCKET_RETRY_SECS,
        Destination::HttpEndpoint(h) => h.retry_secs(),
    };
    i64::from(secs) * 1000
}

fn checkpoint(inner: &Inner, live: &LiveStream, uid: u64, serial: u64) -> Result<(), StorageFailure> {
    inner.meta.set_delivered_through(uid, serial)?;
    lock(&live.backlog).delivered_through(serial)
}

/// Reads the batch's records back from the backlog, as they were put.
async fn load(live: &LiveStream, batch: &[backlog::Pending]) -> Result<Vec<Vec<u8>>, DeliveryFailure> {
    let segments = lock(&live.backlog).segments_for(batch).map_err(DeliveryFailure::Backlog)?;
    tokio::task::spawn_blocking(move || {
        let mut records = Vec::new();
        for (segment, locations) in segments {
            records.extend(backlog::read_records(segment.as_ref(), &locations)?);
        }
        Ok::<_, StorageFailure>(records)
    })
    .await?
    .map_err(DeliveryFailure::Backlog)
}

async fn attempt(
    inner: &Arc<Inner>,
    live: &LiveStream,
    meta: &super::meta_store::StreamMeta,
    batch: &[backlog::Pending],
    progress: &mut Progress,
) -> Result<(), DeliveryFailure> {
    let raw = load(live, batch).await?;
    let oldest_ms = batch[0].arrival_ms;
    let processors = meta.destination.processors();
    if let Destination::Bucket(b) = &meta.destination {
        if let Some(backup) = b.source_backup().filter(|_| !progress.done("backup")) {
            write_object(inner, meta, backup, raw.clone(), oldest_ms, None, &[]).await?;
            progress.wrote("backup".into());
        }
    }
    let raw = match processors.iter().find(|p| p.kind == "RecordDeAggregation") {
        Some(p) => processing::deaggregate(raw, p),
        None => raw,
    };
    let (raw, failed) = match processors.iter().find(|p| p.kind == "Lambda") {
        Some(lambda) => transform(inner, meta, lambda, raw, oldest_ms).await?,
        None => (raw, Vec::new()),
    };
    if !failed.is_empty() && !progress.done("lambda-failed") {
        write_object(inner, meta, meta.destination.bucket(), failed, oldest_ms, Some("processing-failed"), &[]).await?;
        progress.wrote("lambda-failed".into());
    }
    match &meta.destination {
        Destination::Bucket(b) => match b.partition_query() {
            Some(query) => deliver_partitioned(inner, meta, b, query, raw, oldest_ms, progress).await,
            None => write_object(inner, meta, b, processing::process(raw, processors), oldest_ms, None, &[]).await,
        },
        Destination::HttpEndpoint(h) => {
            let records = processing::process(raw, processors);
            let arn = super::DeliveryStreamId::new(&meta.scope, &meta.name).arn();
            post(inner, h, &arn, &records).await?;
            if h.backs_up_all() {
                write_object(inner, meta, &h.bucket, records, oldest_ms, None, &[]).await?;
            }
            Ok(())
        }
    }
}

/// Dynamic partitioning: each record's keys from the JQ query (run in the query
/// sandbox); one object per set of keys (records in their order within it). Records
/// the query fails on, records whose keys make an object key no bucket can hold, and
/// records of partitions past [`MAX_ACTIVE_PARTITIONS`] go under the error prefix, each
/// kind in its own object; the rest of the batch is delivered as usual.
async fn deliver_partitioned(
    inner: &Arc<Inner>,
    meta: &super::meta_store::StreamMeta,
    b: &BucketDestination,
    query: &str,
    raw: Vec<Vec<u8>>,
    oldest_ms: i64,
    progress: &mut Progress,
) -> Result<(), DeliveryFailure> {
    let (raw, outcomes) = inner.partition_keys(query, raw).await?;
    let processors = meta.destination.processors();
    let naming = naming_of(meta, b)?;
    let wanted = naming.partition_keys();
    let mut groups: Vec<(PartitionKeys, Vec<Vec<u8>>)> = Vec::new();
    let mut index: HashMap<PartitionKeys, usize> = HashMap::new();
    let mut failed: Vec<(Vec<u8>, &'static str, String)> = Vec::new();
    let mut incomplete = Vec::new();
    let mut over_limit = Vec::new();
    for (record, outcome) in raw.into_iter().zip(outcomes) {
        let keys = match outcome {
            Ok(keys) => keys,
            Err(why) => {
                failed.push((record, "DynamicPartitioning.MetadataExtractionFailed", why));
                continue;
            }
        };
        // A key the prefix names but the query did not give: the record fails.
        if !wanted.iter().all(|k| keys.iter().any(|(name, _)| name == k)) {
            incomplete.push(record);
            continue;
        }
        if let Some(&at) = index.get(&keys) {
            groups[at].1.push(record);
            continue;
        }
        if groups.len() >= MAX_ACTIVE_PARTITIONS {
            over_limit.push(record);
            continue;
        }
        let key = naming.data_key(&KeyContext {
            arrival_ms: oldest_ms,
            error_output_type: None,
            partition_keys: &keys,
            random: &|| uuid::Uuid::nil().to_string(),
        });
        match key.and_then(|k| crate::buckets::check_key(&k)) {
            Ok(()) => {
                index.insert(keys.clone(), groups.len());
                groups.push((keys, vec![record]));
            }
            Err(why) => failed.push((
                record,
                "DynamicPartitioning.InvalidPartitionKey",
                format!("the record's partition keys make an object key that cannot be written: {why}"),
            )),
        }
    }
    for (keys, records) in groups {
        let part = format!("partition:{}", serde_json::to_string(&keys).unwrap_or_default());
        if progress.done(&part) {
            continue;
        }
        write_object(inner, meta, b, processing::process(records, processors), oldest_ms, None, &keys).await?;
        progress.wrote(part);
    }
    if !incomplete.is_empty() && !progress.done("incomplete") {
        let records = processing::process(incomplete, processors);
        write_object(inner, meta, b, records, oldest_ms, Some("processing-failed"), &[]).await?;
        progress.wrote("incomplete".into());
    }
    let now = inner.clock.now_ms();
    if !failed.is_empty() && !progress.done("failed") {
        let failed = failed
            .iter()
            .map(|(r, code, why)| processing::failure_record(r, oldest_ms, now, code, why, None))
            .collect();
        write_object(inner, meta, b, failed, oldest_ms, Some("processing-failed"), &[]).await?;
        progress.wrote("failed".into());
    }
    if !over_limit.is_empty() && !progress.done("over-limit") {
        tracing::warn!(stream = %meta.name, records = over_limit.len(), limit = MAX_ACTIVE_PARTITIONS,
            "records of partitions past the active-partition limit went under the error prefix");
        let why = format!("The batch already has {MAX_ACTIVE_PARTITIONS} active partitions.");
        let records = over_limit
            .iter()
            .map(|r| {
                processing::failure_record(
                    r,
                    oldest_ms,
                    now,
                    "DynamicPartitioning.ActivePartitionsExceeded",
                    &why,
                    None,
                )
            })
            .collect();
        write_object(inner, meta, b, records, oldest_ms, Some("activePartitionExceeded"), &[]).await?;
        progress.wrote("over-limit".into());
    }
    Ok(())
}

fn naming_of(meta: &super::meta_store::StreamMeta, b: &BucketDestination) -> Result<KeyNaming, DeliveryFailure> {
    let ext = b.file_extension.clone().unwrap_or_else(|| b.compression.extension().to_string());
    KeyNaming::new(&meta.name, meta.version, b.prefix.as_deref(), b.error_output_prefix.as_deref(), &ext)
        .map_err(DeliveryFailure::Settings)
}

/// The Lambda processor: the records sent to the function in invocations of up to
/// BufferSizeInMBs (1 MiB by default), each retried NumberOfRetries times (3); returns
/// the records it kept (transformed, in order) and, as Firehose's failure records, those
/// it failed or whose invocation kept failing.
async fn transform(
    inner: &Arc<Inner>,
    meta: &super::meta_store::StreamMeta,
    processor: &super::settings::Processor,
    raw: Vec<Vec<u8>>,
    oldest_ms: i64,
) -> Result<(Vec<Vec<u8>>, Vec<Vec<u8>>), DeliveryFailure> {
    let arn = processor.parameter("LambdaArn").unwrap_or_default().to_string();
    let url = inner.function_url(&arn).map_err(DeliveryFailure::Settings)?;
    let retries: u32 = processor.parameter("NumberOfRetries").and_then(|n| n.parse().ok()).unwrap_or(3);
    let chunk_bytes = processor
        .parameter("BufferSizeInMBs")
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(1 << 20, |mb| (mb * 1_048_576.0) as usize)
        .max(1);
    let stream_arn = super::DeliveryStreamId::new(&meta.scope, &meta.name).arn();
    let (mut kept, mut failed) = (Vec::new(), Vec::new());
    let mut at = 0;
    while at < raw.len() {
        let mut end = at + 1;
        let mut size = raw[at].len();
        while end < raw.len() && size + raw[end].len() <= chunk_bytes {
            size += raw[end].len();
            end += 1;
        }
        let chunk = &raw[at..end];
        let body = super::lambda::invocation(
            &uuid::Uuid::new_v4().to_string(),
            &stream_arn,
            &meta.scope.region,
            oldest_ms,
            chunk,
        );
        let mut attempt = 0;
        let outcome = loop {
            let out = invoke(inner, &url, body.clone(), chunk.len()).await;
            let Err(e) = &out else { break out };
            attempt += 1;
            tracing::warn!(stream = %meta.name, function = %arn, attempt, error = %e, "the Lambda processor failed");
            if attempt > retries {
                break out;
            }
        };
        let now = inner.clock.now_ms();
        match outcome {
            Ok(results) => {
                for (r, t) in chunk.iter().zip(results) {
                    match t {
                        super::lambda::Transformed::Ok(data) => kept.push(data),
                        super::lambda::Transformed::Dropped => {}
                        super::lambda::Transformed::Failed => failed.push(processing::failure_record(
                            r,
                            oldest_ms,
                            now,
                            "Lambda.ProcessingFailedStatus",
                            "ProcessingFailed status set for record",
                            Some(&arn),
                        )),
                    }
                }
            }
            Err(e) => failed.extend(chunk.iter().map(|r| {
                processing::failure_record(r, oldest_ms, now, "Lambda.FunctionError", &e.to_string(), Some(&arn))
            })),
        }
        at = end;
    }
    Ok((kept, failed))
}

async fn invoke(
    inner: &Inner,
    url: &str,
    body: Vec<u8>,
    sent: usize,
) -> Result<Vec<super::lambda::Transformed>, DeliveryFailure> {
    let resp = inner
        .http
        .post(url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(DeliveryFailure::FunctionUnreachable)?;
    let status = resp.status().as_u16();
    // A Lambda's response is at most 6 MB.
    let body = read_capped(resp, 6 << 20).await?;
    if status != 200 {
        return Err(DeliveryFailure::FunctionStatus(status));
    }
    super::lambda::read_answer(sent, &body).map_err(DeliveryFailure::FunctionAnswer)
}

/// The batch's retry window is over: an HTTP endpoint's data goes to its bucket under
/// the error prefix; a bucket's is dropped.
async fn give_up(
    inner: &Arc<Inner>,
    live: &LiveStream,
    meta: &super::meta_store::StreamMeta,
    batch: &[backlog::Pending],
    why: &DeliveryFailure,
) -> Outcome {
    let records = batch.len() as u64;
    let bytes: u64 = batch.iter().map(|p| u64::from(p.data_len)).sum();
    match &meta.destination {
        Destination::HttpEndpoint(h) => {
            let loaded = match load(live, batch).await {
                Ok(r) => processing::process(r, meta.destination.processors()),
                Err(e) => return Outcome::Failed(e),
            };
            match write_object(inner, meta, &h.bucket, loaded, batch[0].arrival_ms, Some("http-endpoint-failed"), &[])
                .await
            {
                Ok(()) => {
                    tracing::warn!(stream = %meta.name, records, error = %why, "retry time over; the batch was written under the error prefix");
                    if let Some(m) = &inner.options.metrics {
                        m.count_delivery("error_output", records, bytes);
                    }
                    Outcome::Delivered
                }
                Err(e) => Outcome::Failed(DeliveryFailure::ErrorOutput { why: why.to_string(), output: Box::new(e) }),
            }
        }
        Destination::Bucket(_) => {
            tracing::error!(stream = %meta.name, records, bytes, error = %why, "records older than 24 hours could not be delivered; they are dropped");
            if let Some(m) = &inner.options.metrics {
                m.count_delivery("expired", records, bytes);
            }
            Outcome::Delivered
        }
    }
}

async fn write_object(
    inner: &Arc<Inner>,
    meta: &super::meta_store::StreamMeta,
    b: &BucketDestination,
    records: Vec<Vec<u8>>,
    oldest_ms: i64,
    error_output_type: Option<&'static str>,
    partition_keys: &[(String, String)],
) -> Result<(), DeliveryFailure> {
    let naming = naming_of(meta, b)?;
    let random = || uuid::Uuid::new_v4().to_string();
    let ctx = KeyContext { arrival_ms: oldest_ms, error_output_type, partition_keys, random: &random };
    let key = match error_output_type {
        Some(_) => naming.error_key(&ctx),
        None => naming.data_key(&ctx),
    }
    .map_err(DeliveryFailure::Settings)?;
    let bucket = b.bucket_name().map_err(DeliveryFailure::Settings)?.to_string();
    if error_output_type.is_none() {
        if let Some((schema, compression)) = inner.conversion(b).map_err(DeliveryFailure::Settings)? {
            return write_parquet(inner, meta, b, &bucket, key, records, oldest_ms, schema, compression).await;
        }
    }
    let format = b.compression;
    // A ZIP's one entry is named as the object, without its extension.
    let entry = key.rsplit('/').next().unwrap_or("data").trim_end_matches(".zip").to_string();
    let body = tokio::task::spawn_blocking(move || compression::compress_named(format, records.concat(), &entry))
        .await?
        .map_err(DeliveryFailure::Compress)?;
    inner.buckets.write(&meta.scope.account, &bucket, &key, body).await.map_err(DeliveryFailure::Write)
}

/// A converting destination's object: the records as Parquet; those that do not fit
/// the schema under the error prefix (`format-conversion-failed`).
#[allow(clippy::too_many_arguments)]
async fn write_parquet(
    inner: &Arc<Inner>,
    meta: &super::meta_store::StreamMeta,
    b: &BucketDestination,
    bucket: &str,
    key: String,
    records: Vec<Vec<u8>>,
    oldest_ms: i64,
    schema: Arc<arrow_schema::Schema>,
    compression: parquet::basic::Compression,
) -> Result<(), DeliveryFailure> {
    let (file, failed, records) = tokio::task::spawn_blocking(move || {
        super::format_conversion::to_parquet(&schema, compression, &records).map(|(f, failed)| (f, failed, records))
    })
    .await?
    .map_err(DeliveryFailure::Convert)?;
    if let Some(file) = file {
        inner.buckets.write(&meta.scope.account, bucket, &key, file).await.map_err(DeliveryFailure::Write)?;
    }
    if !failed.is_empty() {
        let now = inner.clock.now_ms();
        let failures = failed
            .iter()
            .map(|(i, why)| {
                processing::failure_record(
                    &records[*i],
                    oldest_ms,
                    now,
                    "DataFormatConversion.MalformedData",
                    why,
                    None,
                )
            })
            .collect();
        Box::pin(write_object(inner, meta, b, failures, oldest_ms, Some("format-conversion-failed"), &[])).await?;
    }
    Ok(())
}

async fn post(
    inner: &Inner,
    d: &HttpDestination,
    source_arn: &str,
    records: &[Vec<u8>],
) -> Result<(), DeliveryFailure> {
    inner.check_outbound(&d.endpoint.url).map_err(DeliveryFailure::Settings)?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let req = http_endpoint::build_request(d, source_arn, &request_id, inner.clock.now_ms(), records)
        .map_err(DeliveryFailure::Compress)?;
    let mut call = inner.http.post(&d.endpoint.url);
    for (name, value) in &req.headers {
        call = call.header(*name, value);
    }
    let resp = call.body(req.body).send().await.map_err(DeliveryFailure::EndpointUnreachable)?;
    let status = resp.status().as_u16();
    // An acknowledgement is small; a huge body is not one.
    let body = read_capped(resp, 64 * 1024).await?;
    http_endpoint::check_response(&req.request_id, status, &body).map_err(DeliveryFailure::EndpointRefused)
}

async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, DeliveryFailure> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(DeliveryFailure::ResponseRead)? {
        if body.len() + chunk.len() > cap {
            return Err(DeliveryFailure::ResponseTooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
