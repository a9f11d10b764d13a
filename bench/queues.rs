//! Queue engine benchmark, without HTTP: send → receive → delete cycles per second,
//! one message at a time and in batches of 10, from 1 and 32 concurrent tasks, and
//! the wake-up latency of a long poll when a message arrives.
//!
//! `cargo bench --bench queues`. The reference, measured in the same run on the same
//! disk, is the storage floor: the same number of messages written straight into a
//! sled tree, flushed, and removed again, with the same batching and concurrency. The
//! HTTP comparison against moto is `bench/sqs_vs_moto.py`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kinescope::clock::SystemClock;
use kinescope::queues::{QueueEngine, QueueId, ReceiveRequest, SendRequest};
use kinescope::scope::Scope;

#[path = "common.rs"]
mod common;
use common::scale;

fn send(body: String) -> SendRequest {
    SendRequest { body, ..Default::default() }
}

/// Runs `clients` tasks doing send→receive→delete cycles of `batch` messages for
/// `seconds`; returns messages per second.
async fn cycles(engine: &QueueEngine, queue: &QueueId, clients: usize, batch: usize, seconds: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let engine = engine.clone();
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut i = 0u64;
            while Instant::now() < deadline {
                let reqs: Vec<SendRequest> = (0..batch).map(|j| send(format!("client {c} message {i}.{j}"))).collect();
                i += 1;
                engine.send_batch(&queue, reqs).await.expect("send");
                let got = engine
                    .receive(
                        &queue,
                        ReceiveRequest {
                            max_messages: batch as u32,
                            visibility_timeout_s: Some(30),
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("receive");
                for m in &got {
                    engine.delete_message(&queue, &m.receipt_handle).expect("delete");
                }
                done += got.len() as u64;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    total as f64 / seconds
}

/// The storage floor: `clients` threads inserting `batch` message-sized values into
/// sled, flushing, and removing them, for `seconds`; returns messages per second.
fn raw_sled(dir: &std::path::Path, clients: usize, batch: usize, seconds: f64) -> f64 {
    let db = sled::Config::new().path(dir).open().expect("sled");
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut done = 0u64;
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let mut add = sled::Batch::default();
                    let mut remove = sled::Batch::default();
                    for j in 0..batch {
                        let key = format!("{c}/{i}/{j}");
                        add.insert(key.as_bytes(), format!("client {c} message {i}.{j} with its metadata").as_bytes());
                        remove.remove(key.as_bytes());
                    }
                    i += 1;
                    db.apply_batch(add).expect("insert");
                    db.flush().expect("flush");
                    db.apply_batch(remove).expect("remove");
                    done += batch as u64;
                }
                done
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    total as f64 / seconds
}

fn main() {
    let Some((rt, tmp)) = common::setup() else { return };
    let scope = Scope::new("000000000000", "us-east-1");
    let engine = QueueEngine::open(tmp.path(), Arc::new(SystemClock), &scope).expect("engine");
    let seconds = 3.0 * scale();
    println!("kinescope queue engine benchmark — data in {}, {seconds:.1} s per cell", tmp.path().display());
    let mut rows = Vec::new();
    rt.block_on(async {
        for (i, (clients, batch)) in [(1, 1), (1, 10), (32, 1), (32, 10)].into_iter().enumerate() {
            let q = QueueId::new(&scope, &format!("bench-{i}"));
            engine.create_queue(&q, &BTreeMap::new(), &BTreeMap::new()).await.expect("queue");
            println!("[{}/4] {clients} client(s), batches of {batch}…", i + 1);
            let rate = cycles(&engine, &q, clients, batch, seconds).await;
            let floor =
                tokio::task::block_in_place(|| raw_sled(&tmp.path().join(format!("raw-{i}")), clients, batch, seconds));
            rows.push((clients, batch, rate, floor));
        }
        // Long-poll wake-up: a receiver waits; a send arrives; time until it returns.
        let wake = QueueId::new(&scope, "wake");
        engine.create_queue(&wake, &BTreeMap::new(), &BTreeMap::new()).await.expect("queue");
        let mut lat = Vec::new();
        let n = (200.0 * scale()).max(20.0) as usize;
        println!("[wake] {n} long polls woken by a send…");
        for i in 0..n {
            let e = engine.clone();
            let q = wake.clone();
            let waiter = tokio::spawn(async move {
                let got = e
                    .receive(&q, ReceiveRequest { max_messages: 1, wait_time_s: Some(5), ..Default::default() })
                    .await
                    .expect("receive");
                let at = Instant::now();
                for m in got {
                    e.delete_message(&q, &m.receipt_handle).expect("delete");
                }
                at
            });
            tokio::time::sleep(Duration::from_millis(5)).await;
            let sent = Instant::now();
            engine.send(&wake, send(format!("wake {i}"))).await.expect("send");
            let woke = waiter.await.expect("waiter");
            lat.push(woke.saturating_duration_since(sent));
        }
        lat.sort();
        let p = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
        println!();
        println!(
            "| clients | batch | engine messages/s (send+receive+delete) | sled insert+flush+remove floor | ratio |"
        );
        println!("|---|---|---|---|---|");
        for (c, b, r, f) in &rows {
            println!("| {c} | {b} | {r:.0} | {f:.0} | {:.2} |", r / f);
        }
        println!(
            "| long-poll wake-up after a send (incl. the send's flush) | | p50 {:.2} ms, p99 {:.2} ms | | |",
            p(0.5),
            p(0.99)
        );
    });
}
