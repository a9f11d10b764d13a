//! What running dynamic partitioning's JQ queries in a worker process costs: a batch's
//! partition keys through the query sandbox (`kinescope query-worker`: one process per
//! batch, records framed over its pipes, a per-record budget) against the same query
//! run in this process with jaq, as the server did before the sandbox. Interleaved,
//! 5 rounds per batch size, median and spread; the ratio is sandbox time / in-process
//! time.

#[path = "common.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kinescope::delivery_streams::jq::PartitionQuery;
use kinescope::delivery_streams::query_sandbox::{QueryLimits, QuerySandbox};

const QUERY: &str = r#"{cam: .camera, day: (.ts | strftime("%Y-%m-%d"))}"#;
const ROUNDS: usize = 5;

fn records(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"camera":"cam-{}","ts":{},"label":"person","score":0.93,"box":[0.1,0.2,0.3,0.4],"frame":{i}}}"#,
                i % 40,
                1_796_025_909 + i
            )
            .into_bytes()
        })
        .collect()
}

fn in_process(records: &[Vec<u8>]) -> usize {
    let q = PartitionQuery::compile(QUERY).expect("the query compiles");
    records.iter().filter(|r| q.keys(r).is_ok()).count()
}

fn sandboxed(sandbox: &QuerySandbox, records: &Arc<Vec<Vec<u8>>>) -> usize {
    sandbox.keys(QUERY, records.clone()).expect("the sandbox runs").iter().filter(|o| o.is_ok()).count()
}

fn main() {
    let Some((_rt, _tmp)) = common::setup() else { return };
    let program = std::path::PathBuf::from(env!("CARGO_BIN_EXE_kinescope"));
    let sandbox = QuerySandbox::new(program, QueryLimits::default());
    println!("partition keys of one batch: query sandbox vs jaq in this process ({ROUNDS} interleaved rounds)");
    for n in [common::scaled(50, 10), common::scaled(500, 50), common::scaled(5_000, 500)] {
        let batch = Arc::new(records(n));
        let (mut inside, mut outside) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let t = Instant::now();
            assert_eq!(in_process(&batch), n);
            inside.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            assert_eq!(sandboxed(&sandbox, &batch), n);
            outside.push(t.elapsed().as_secs_f64());
        }
        let ratios: Vec<f64> = inside.iter().zip(&outside).map(|(a, b)| b / a).collect();
        let (i_med, i_lo, i_hi) = common::median_spread(inside);
        let (o_med, o_lo, o_hi) = common::median_spread(outside);
        let (r_med, r_lo, r_hi) = common::median_spread(ratios);
        let ms = |s: f64| Duration::from_secs_f64(s).as_secs_f64() * 1000.0;
        println!(
            "  {n:>5} records: in process {:.2} ms ({:.2}-{:.2}), sandbox {:.2} ms ({:.2}-{:.2}); ratio {r_med:.2} ({r_lo:.2}-{r_hi:.2}); sandbox {:.0} records/s",
            ms(i_med),
            ms(i_lo),
            ms(i_hi),
            ms(o_med),
            ms(o_lo),
            ms(o_hi),
            n as f64 / o_med
        );
    }
}
