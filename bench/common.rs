//! What every benchmark binary shares: the scale knob, the runtime and a scratch
//! directory on the same disk as the build. Included with `#[path = "common.rs"] mod
//! common;` since bench targets are separate crates.
#![allow(dead_code)]

/// `KINESCOPE_BENCH_SCALE` (default 1.0) shrinks or grows every run's size or duration.
pub fn scale() -> f64 {
    std::env::var("KINESCOPE_BENCH_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0)
}

/// `n` scaled, but never below `min`.
pub fn scaled(n: usize, min: usize) -> usize {
    ((n as f64 * scale()).round() as usize).max(min)
}

/// The runtime and a scratch directory under `target/`, or `None` when cargo only asks
/// the binary to `--list` its benchmarks (as `cargo test --benches` does).
pub fn setup() -> Option<(tokio::runtime::Runtime, tempfile::TempDir)> {
    if std::env::args().any(|a| a == "--list") {
        return None;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    std::fs::create_dir_all("target").ok();
    let tmp = tempfile::tempdir_in("target").expect("temp dir");
    Some((rt, tmp))
}

/// This process's resident memory, bytes.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// The median of a benchmark's runs, and their spread (lowest, highest).
pub fn median_spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}
