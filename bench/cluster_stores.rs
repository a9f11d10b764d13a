//! What a durable step costs on the cluster backend's PostgreSQL stores against the
//! embedded ones, the same calls through the same traits, in one process on this
//! machine: the per-operation cost a scale-out estimate starts from.
//!
//! `cargo bench --bench cluster_stores` starts a throwaway PostgreSQL (fsync on, its
//! defaults otherwise, on this machine's disk) and, in three interleaved rounds,
//! times on each backend:
//!
//! * **fragment commit**: one writer group's index commit (a fragment and its
//!   segment's summary) — what every PutMedia fragment costs after its bytes;
//! * **message send**: a queue's `write_new` of one message with its deduplication
//!   entry, then `flush` — what an SQS SendMessage waits for;
//! * **record batch**: a record log append of 100 records and its segment sync — what
//!   a Kinesis PutRecords of 100 records waits for.
//!
//! Printed: operations per second (median and spread of the rounds), p50 and p99
//! latency of the median round, and the ratio PostgreSQL ÷ embedded. Scale the
//! operation counts with KINESCOPE_BENCH_SCALE.

use std::collections::BTreeMap;
use std::time::Instant;

use kinescope::data_streams::record_log::{encode_frame, Frame, RecordLogs, RollPolicy};
use kinescope::postgres::Database;
use kinescope::queues::config::QueueConfig;
use kinescope::queues::state::DedupEntry;
use kinescope::queues::store::{QueueRecord, QueueStorage};
use kinescope::scope::Scope;
use kinescope::video_store::index::{FragmentIndex, IndexCommit};
use kinescope::video_store::records::{FragmentMeta, SegmentMeta};

#[path = "common.rs"]
mod common;
#[path = "../tests/support/servers.rs"]
mod servers;

const ROUNDS: usize = 3;

/// One timed run: operations per second and per-operation latencies (µs).
struct Run {
    per_s: f64,
    latencies_us: Vec<f64>,
}

fn timed(n: usize, mut op: impl FnMut(usize)) -> Run {
    let mut latencies_us = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        op(i);
        latencies_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Run { per_s: n as f64 / start.elapsed().as_secs_f64(), latencies_us }
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn report(what: &str, embedded: Vec<Run>, cluster: Vec<Run>) {
    let summary = |runs: &[Run]| {
        let (median, low, high) = common::median_spread(runs.iter().map(|r| r.per_s).collect());
        let mid =
            runs.iter().min_by(|a, b| (a.per_s - median).abs().total_cmp(&(b.per_s - median).abs())).expect("runs");
        (median, low, high, percentile(&mid.latencies_us, 0.5), percentile(&mid.latencies_us, 0.99))
    };
    let ratios: Vec<f64> = embedded.iter().zip(&cluster).map(|(e, c)| c.per_s / e.per_s).collect();
    let (e, c) = (summary(&embedded), summary(&cluster));
    let (r, rl, rh) = common::median_spread(ratios);
    println!(
        "{what}: embedded {:.0} ({:.0}–{:.0})/s, p50 {:.0} µs, p99 {:.0} µs; PostgreSQL {:.0} ({:.0}–{:.0})/s, p50 {:.0} µs, p99 {:.0} µs; PostgreSQL ÷ embedded {r:.2} ({rl:.2}–{rh:.2})",
        e.0, e.1, e.2, e.3, e.4, c.0, c.1, c.2, c.3, c.4
    );
}

fn fragment(n: u64) -> (FragmentMeta, SegmentMeta) {
    let f = FragmentMeta {
        fragment_number: n,
        producer_ts_us: n as i64 * 2_000_000,
        server_ts_us: n as i64 * 2_000_000,
        duration_us: 2_000_000,
        segment_id: 1,
        offset: n * 500_000,
        len: 500_000,
        crc: 7,
        init_id: 1,
        chunk_count: 1,
        flags: 0,
    };
    let s = SegmentMeta {
        segment_id: 1,
        first_fragment: 1,
        last_fragment: n,
        fragment_count: n,
        min_server_ts_us: 2_000_000,
        max_server_ts_us: f.server_ts_us,
        created_us: 2_000_000,
        bytes: (n + 1) * 500_000,
    };
    (f, s)
}

fn commit_fragments(index: &dyn FragmentIndex, stream: u64, n: usize) -> Run {
    timed(n, |i| {
        let (f, s) = fragment(i as u64 + 1);
        let commit = IndexCommit { inits: vec![], fragments: vec![(stream, f)], segments: vec![(stream, s)] };
        index.commit(&commit).expect("commit");
    })
}

fn queue(id: u64) -> QueueRecord {
    QueueRecord {
        id,
        name: format!("bench-{id}"),
        scope: Scope::new("123456789012", "us-east-1"),
        config: QueueConfig::new(false),
        tags: BTreeMap::new(),
        permissions: BTreeMap::new(),
        created_s: 1,
        modified_s: 1,
    }
}

fn send_messages(store: &dyn QueueStorage, rt: &tokio::runtime::Runtime, n: usize) -> Run {
    let q = queue(store.next_queue_id().expect("queue id"));
    store.put_queue(&q).expect("queue");
    timed(n, |i| {
        let mut m =
            vec![kinescope::queues::store::conformance::message(i as u64 + 1, "a detection: {\"box\":[1,2,3,4]}")];
        let entry = DedupEntry { expires_ms: 300_000, message_id: m[0].id.clone(), sequence_number: None };
        let key = format!("dedup-{i}");
        store.write_new(q.id, &mut m, &[(key.as_str(), &entry)]).expect("write");
        rt.block_on(store.flush()).expect("flush");
    })
}

fn append_batches(logs: &dyn RecordLogs, log: &str, n: usize) -> Run {
    let (mut log, _) = logs.open(log, RollPolicy::default()).expect("open the log");
    let mut seq = 0u64;
    timed(n, |_| {
        let mut bytes = Vec::new();
        for _ in 0..100 {
            seq += 1;
            let data = format!("{{\"camera\":\"cam{}\",\"frame\":{seq},\"label\":\"person\"}}", seq % 8);
            encode_frame(
                &mut bytes,
                &Frame { shard: (seq % 4) as u32, seq, arrival_ms: 1, partition_key: "cam", data: data.as_bytes() },
            );
        }
        log.append(&bytes, 1).expect("append");
        log.active().expect("a segment").sync().expect("sync");
    })
}

fn main() {
    let Some((rt, tmp)) = common::setup() else { return };
    let n = common::scaled(2000, 50);
    eprintln!("[1/2] a throwaway PostgreSQL (fsync on)…");
    let pg = servers::Postgres::start_durable();
    let url = pg.database("bench");
    let db = Database::open(&url).expect("open the cluster database");
    let scope = Scope::new("123456789012", "us-east-1");
    let backend =
        kinescope::video_store::embedded::open(&tmp.path().join("video"), &scope, 64 << 20).expect("embedded index");
    let pg_index = kinescope::video_store::postgres_index::PgFragmentIndex::new(db.clone());
    let sled_queues =
        kinescope::queues::embedded::SledQueues::open(&tmp.path().join("queues"), &scope).expect("queues");
    let pg_queues = kinescope::queues::postgres::PgQueues::new(db.clone());
    let files = kinescope::data_streams::embedded::log_files::LogFiles::new(tmp.path().join("logs"));
    let pg_logs = kinescope::data_streams::postgres_log::PgRecordLogs::new(db.clone());

    eprintln!("[2/2] {ROUNDS} interleaved rounds of {n} operations each…");
    let (mut fe, mut fc, mut me, mut mc, mut re, mut rc) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let stream = round as u64 + 1;
        let log = format!("bench-{round}");
        // Alternate which side goes first.
        if round % 2 == 0 {
            fe.push(commit_fragments(backend.index.as_ref(), stream, n));
            fc.push(commit_fragments(&pg_index, stream, n));
            me.push(send_messages(&sled_queues, &rt, n));
            mc.push(send_messages(&pg_queues, &rt, n));
            re.push(append_batches(&files, &log, n / 4));
            rc.push(append_batches(&pg_logs, &log, n / 4));
        } else {
            fc.push(commit_fragments(&pg_index, stream, n));
            fe.push(commit_fragments(backend.index.as_ref(), stream, n));
            mc.push(send_messages(&pg_queues, &rt, n));
            me.push(send_messages(&sled_queues, &rt, n));
            rc.push(append_batches(&pg_logs, &log, n / 4));
            re.push(append_batches(&files, &log, n / 4));
        }
        eprintln!("  round {} done", round + 1);
    }
    report("fragment commit", fe, fc);
    report("message send", me, mc);
    report("record batch (100 records)", re, rc);
}
