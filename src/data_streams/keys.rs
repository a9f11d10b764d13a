//! The two numbers Kinesis exposes as decimal strings: hash keys (128-bit, where a
//! partition key lands) and sequence numbers (where a record sits in its shard). Pure.

use md5::{Digest, Md5};

/// The hash key of a partition key: its MD5 read as a big-endian 128-bit integer, as
/// Kinesis routes records.
pub fn hash_of_partition_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// A hash key as the API writes it (`^(0|([1-9]\d{0,38}))$`), or `None`.
pub fn parse_hash_key(s: &str) -> Option<u128> {
    let canonical = s == "0" || (!s.is_empty() && !s.starts_with('0') && s.len() <= 39);
    if !canonical || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `n` contiguous ranges that split the 2^128 key space evenly, as CreateStream and
/// UpdateShardCount lay shards out: range `i` starts at ⌊i·2^128/n⌋.
pub fn uniform_ranges(n: u32) -> Vec<(u128, u128)> {
    if n <= 1 {
        return vec![(0, u128::MAX)];
    }
    let n = u128::from(n);
    // 2^128 = n·q + r + 1, so 2^128 / n = q + (r + 1) / n exactly.
    let (q, r) = (u128::MAX / n, u128::MAX % n);
    let (whole, rest) = (q + (r + 1) / n, (r + 1) % n);
    let start = |i: u128| i * whole + (i * rest) / n;
    (0..n).map(|i| (start(i), if i + 1 == n { u128::MAX } else { start(i + 1) - 1 })).collect()
}

/// Sequence numbers are a per-stream counter, written as 56 decimal digits starting
/// with `49` like AWS's, so that they compare the same as strings and as numbers.
pub fn format_sequence(counter: u64) -> String {
    // Written by hand: `format!("49{counter:054}")` pads one character at a time, which
    // was the largest cost of draining a shard.
    const ZEROS: &str = "000000000000000000000000000000000000000000000000000000";
    let digits = counter.to_string();
    let mut s = String::with_capacity(56);
    s.push_str("49");
    s.push_str(&ZEROS[..54 - digits.len()]);
    s.push_str(&digits);
    s
}

/// The counter of a sequence number this server wrote, or `None`.
pub fn parse_sequence(s: &str) -> Option<u64> {
    let digits = s.strip_prefix("49")?;
    if digits.len() != 54 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (high, low) = digits.split_at(54 - 20);
    if high.bytes().any(|b| b != b'0') {
        return None;
    }
    low.parse().ok()
}

/// `shardId-000000000007` for shard 7.
pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

pub fn parse_shard_id(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("shardId-")?;
    if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_ranges_match_aws_boundaries() {
        let two = uniform_ranges(2);
        assert_eq!(two[0], (0, 170141183460469231731687303715884105727));
        assert_eq!(two[1], (170141183460469231731687303715884105728, u128::MAX));
        let three = uniform_ranges(3);
        assert_eq!(three[1].0, 113427455640312821154458202477256070485);
        assert_eq!(three[2].0, 226854911280625642308916404954512140970);
        for n in [1, 5, 7, 64, 1000] {
            let r = uniform_ranges(n);
            assert_eq!(r.len(), n as usize);
            assert_eq!((r[0].0, r[r.len() - 1].1), (0, u128::MAX));
            assert!(r.windows(2).all(|w| w[0].1 + 1 == w[1].0));
        }
    }

    #[test]
    fn partition_keys_hash_by_md5() {
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(hash_of_partition_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }

    #[test]
    fn hash_keys_and_sequences_parse_only_canonical_forms() {
        assert_eq!(parse_hash_key("0"), Some(0));
        assert_eq!(parse_hash_key(&u128::MAX.to_string()), Some(u128::MAX));
        for bad in ["", "01", "-1", "1a", "340282366920938463463374607431768211456"] {
            assert_eq!(parse_hash_key(bad), None, "{bad}");
        }
        let s = format_sequence(12345);
        assert_eq!(s.len(), 56);
        assert!(format_sequence(9) < format_sequence(10));
        assert_eq!(parse_sequence(&s), Some(12345));
        assert_eq!(parse_sequence(&format_sequence(u64::MAX)), Some(u64::MAX));
        for n in [0, 1, 9, 10, 12345, u64::MAX] {
            assert_eq!(format_sequence(n), format!("49{n:054}"));
        }
        for bad in ["12345", "48000", &format!("49{}", "9".repeat(54)), &format!("49{}x", "0".repeat(53))] {
            assert_eq!(parse_sequence(bad), None, "{bad}");
        }
        assert_eq!(parse_shard_id(&shard_id(7)), Some(7));
        assert_eq!(parse_shard_id("shardId-7"), None);
    }
}
