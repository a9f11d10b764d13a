//! Process metrics, rendered in the Prometheus text exposition format at `/metrics`.
//!
//! A handful of counters and one histogram do not need a metrics framework: atomics
//! for the hot counters, a mutex-guarded map for the labelled request counter.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the PERSISTED-ack latency histogram buckets.
const ACK_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; ACK_BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe_secs(&self, secs: f64) {
        for (i, &le) in ACK_BUCKETS.iter().enumerate() {
            if secs <= le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str) {
        for (i, le) in ACK_BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {}", self.buckets[i].load(Ordering::Relaxed));
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub fragments_persisted: AtomicU64,
    pub fragments_rejected: AtomicU64,
    pub ack_latency: Histogram,
    /// RTSP publishers and pulled cameras.
    pub rtsp_packets: AtomicU64,
    pub rtsp_packets_lost: AtomicU64,
    pub rtsp_units_dropped: AtomicU64,
}

impl Metrics {
    pub fn count_request(&self, api: &str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((api.to_string(), status)).or_default() += 1;
    }

    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP kinescope_requests_total API requests by operation and HTTP status.\n");
        out.push_str("# TYPE kinescope_requests_total counter\n");
        for ((api, status), n) in self.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "kinescope_requests_total{{api=\"{api}\",status=\"{status}\"}} {n}");
        }
        let counters = [
            ("kinescope_bytes_in_total", "Request body bytes received.", &self.bytes_in),
            ("kinescope_bytes_out_total", "Response body bytes sent.", &self.bytes_out),
            (
                "kinescope_fragments_persisted_total",
                "Fragments made durable and acknowledged PERSISTED.",
                &self.fragments_persisted,
            ),
            (
                "kinescope_fragments_rejected_total",
                "Fragments refused with an ERROR acknowledgement.",
                &self.fragments_rejected,
            ),
            ("kinescope_rtsp_packets_total", "RTP packets (or camera frames) received over RTSP.", &self.rtsp_packets),
            (
                "kinescope_rtsp_packets_lost_total",
                "RTP packets missing from the sequence (UDP gaps, camera-reported loss).",
                &self.rtsp_packets_lost,
            ),
            (
                "kinescope_rtsp_units_dropped_total",
                "Access units dropped: a packet of theirs lost or malformed, or before parameters were known.",
                &self.rtsp_units_dropped,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
        }
        out.push_str("# HELP kinescope_put_media_ack_latency_seconds Time from RECEIVED to PERSISTED per fragment.\n");
        out.push_str("# TYPE kinescope_put_media_ack_latency_seconds histogram\n");
        self.ack_latency.render(&mut out, "kinescope_put_media_ack_latency_seconds");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.count_request("CreateStream", 200);
        m.count_request("CreateStream", 200);
        m.ack_latency.observe_secs(0.003);
        let text = m.render();
        assert!(text.contains("kinescope_requests_total{api=\"CreateStream\",status=\"200\"} 2"));
        assert!(text.contains("kinescope_put_media_ack_latency_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("kinescope_put_media_ack_latency_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(text.contains("kinescope_put_media_ack_latency_seconds_count 1"));
        assert!(text.contains("kinescope_rtsp_packets_lost_total 0"));
    }
}
