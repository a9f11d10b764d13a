//! Optional per-shard throughput limits (off by default): 1 MiB/s and 1,000 records/s
//! in, 5 reads/s and 2 MiB/s out, as AWS enforces them, so that users can exercise
//! their retry logic. Token buckets refilled continuously; pure, time passed in.

#[derive(Debug, Clone)]
struct Bucket {
    capacity: f64,
    tokens: f64,
    per_ms: f64,
    at_ms: i64,
}

impl Bucket {
    fn new(per_second: f64, now_ms: i64) -> Self {
        Bucket { capacity: per_second, tokens: per_second, per_ms: per_second / 1000.0, at_ms: now_ms }
    }

    fn refill(&mut self, now_ms: i64) {
        let dt = (now_ms - self.at_ms).max(0) as f64;
        self.tokens = (self.tokens + dt * self.per_ms).min(self.capacity);
        self.at_ms = now_ms;
    }
}

pub const WRITE_BYTES_PER_S: f64 = 1_048_576.0;
pub const WRITE_RECORDS_PER_S: f64 = 1000.0;
pub const READ_CALLS_PER_S: f64 = 5.0;
pub const READ_BYTES_PER_S: f64 = 2_097_152.0;

#[derive(Debug, Clone)]
pub struct ShardThrottle {
    write_bytes: Bucket,
    write_records: Bucket,
    read_calls: Bucket,
    read_bytes: Bucket,
}

impl ShardThrottle {
    pub fn new(now_ms: i64) -> Self {
        ShardThrottle {
            write_bytes: Bucket::new(WRITE_BYTES_PER_S, now_ms),
            write_records: Bucket::new(WRITE_RECORDS_PER_S, now_ms),
            read_calls: Bucket::new(READ_CALLS_PER_S, now_ms),
            read_bytes: Bucket::new(READ_BYTES_PER_S, now_ms),
        }
    }

    /// Takes room for one record of `bytes`, or refuses without taking anything.
    pub fn admit_write(&mut self, bytes: usize, now_ms: i64) -> bool {
        self.write_bytes.refill(now_ms);
        self.write_records.refill(now_ms);
        if self.write_records.tokens < 1.0 || self.write_bytes.tokens < bytes as f64 {
            return false;
        }
        self.write_records.tokens -= 1.0;
        self.write_bytes.tokens -= bytes as f64;
        true
    }

    /// Takes one read call; refused when the calls or the bytes of earlier reads
    /// are used up.
    pub fn admit_read(&mut self, now_ms: i64) -> bool {
        self.read_calls.refill(now_ms);
        self.read_bytes.refill(now_ms);
        if self.read_calls.tokens < 1.0 || self.read_bytes.tokens <= 0.0 {
            return false;
        }
        self.read_calls.tokens -= 1.0;
        true
    }

    /// Charges what a read returned (may go negative: a 10 MiB read blocks the
    /// shard's reads for the next seconds, as on AWS).
    pub fn charge_read(&mut self, bytes: usize) {
        self.read_bytes.tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_are_limited_per_second() {
        let mut t = ShardThrottle::new(0);
        assert_eq!((0..1200).filter(|_| t.admit_write(10, 0)).count(), 1000);
        assert!(t.admit_write(10, 2));
        let mut t = ShardThrottle::new(0);
        assert!(t.admit_write(1_000_000, 0));
        assert!(!t.admit_write(100_000, 0));
        assert!(t.admit_write(100_000, 100));
        assert_eq!((0..10).filter(|_| t.admit_read(0)).count(), 5);
        assert!(t.admit_read(200));
        t.charge_read(10 << 20);
        assert!(!t.admit_read(1000));
        assert!(t.admit_read(5000));
    }
}
