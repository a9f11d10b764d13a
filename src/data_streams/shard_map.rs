//! A stream's shard topology: every shard it ever had, their hash-key ranges, lineage
//! and sequence-number bounds, and the resharding operations over them. Pure: the
//! caller passes the sequence counter and the time.
//!
//! Resharding closes parents and opens children in one step. A closed shard's
//! `ending_seq` is the last counter value it could hold; its children start after it,
//! so a reader that drains a parent and then its children sees every record once.
//! UpdateShardCount is composed of splits and merges, as AWS does it, so every child
//! names at most two parents (`ParentShardId`, `AdjacentParentShardId`).

use serde::{Deserialize, Serialize};

use super::keys::{shard_id, uniform_ranges};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: u32,
    pub parent: Option<u32>,
    pub adjacent_parent: Option<u32>,
    #[serde(with = "u128_string")]
    pub start_key: u128,
    #[serde(with = "u128_string")]
    pub end_key: u128,
    pub start_seq: u64,
    pub end_seq: Option<u64>,
    pub created_ms: i64,
    pub closed_ms: Option<i64>,
}

impl ShardInfo {
    pub fn is_open(&self) -> bool {
        self.end_seq.is_none()
    }

    pub fn id(&self) -> String {
        shard_id(self.index)
    }
}

/// Why a resharding operation was refused; the engine maps these to AWS's errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReshardError {
    #[error("Shard {0} does not exist")]
    NoSuchShard(String),
    #[error("Shard {0} is closed and cannot be resharded")]
    Closed(String),
    #[error("NewStartingHashKey {key} is not both greater than one plus shard {shard}'s StartingHashKey {start} and less than its EndingHashKey {end}")]
    KeyOutsideShard { key: u128, shard: String, start: u128, end: u128 },
    #[error("Shards {0} and {1} are not adjacent: their hash key ranges do not touch")]
    NotAdjacent(String, String),
    #[error("{0}")]
    Count(String),
}

/// Counter values the topology hands out, kept by the caller.
pub struct Counter<'a>(pub &'a mut u64);

impl Counter<'_> {
    /// Closes at the last value handed out, but never before `start` (an empty shard),
    /// and moves the counter past it.
    fn close_at(&mut self, start: u64) -> u64 {
        let end = self.0.saturating_sub(1).max(start);
        *self.0 = end + 1;
        end
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    pub shards: Vec<ShardInfo>,
}

impl ShardMap {
    pub fn new(count: u32, next_seq: u64, now_ms: i64) -> Self {
        let shards = uniform_ranges(count)
            .into_iter()
            .enumerate()
            .map(|(i, (start_key, end_key))| ShardInfo {
                index: i as u32,
                parent: None,
                adjacent_parent: None,
                start_key,
                end_key,
                start_seq: next_seq,
                end_seq: None,
                created_ms: now_ms,
                closed_ms: None,
            })
            .collect();
        ShardMap { shards }
    }

    pub fn get(&self, index: u32) -> Option<&ShardInfo> {
        self.shards.get(index as usize)
    }

    pub fn open(&self) -> impl Iterator<Item = &ShardInfo> {
        self.shards.iter().filter(|s| s.is_open())
    }

    pub fn open_count(&self) -> u32 {
        self.open().count() as u32
    }

    /// The open shard whose range holds `hash`. Open shards always cover the key space.
    pub fn route(&self, hash: u128) -> u32 {
        self.open().find(|s| s.start_key <= hash && hash <= s.end_key).map_or(0, |s| s.index)
    }

    /// The open shards that took over from `index` (ChildShards at a closed shard's end).
    pub fn children(&self, index: u32) -> Vec<&ShardInfo> {
        self.shards.iter().filter(|s| s.parent == Some(index) || s.adjacent_parent == Some(index)).collect()
    }

    fn open_shard(&self, index: u32) -> Result<&ShardInfo, ReshardError> {
        let s = self.get(index).ok_or_else(|| ReshardError::NoSuchShard(shard_id(index)))?;
        if !s.is_open() {
            return Err(ReshardError::Closed(s.id()));
        }
        Ok(s)
    }

    fn push_child(&mut self, parents: (u32, Option<u32>), keys: (u128, u128), start_seq: u64, now_ms: i64) -> u32 {
        let index = self.shards.len() as u32;
        self.shards.push(ShardInfo {
            index,
            parent: Some(parents.0),
            adjacent_parent: parents.1,
            start_key: keys.0,
            end_key: keys.1,
            start_seq,
            end_seq: None,
            created_ms: now_ms,
            closed_ms: None,
        });
        index
    }

    fn close(&mut self, index: u32, counter: &mut Counter, now_ms: i64) {
        let s = &mut self.shards[index as usize];
        s.end_seq = Some(counter.close_at(s.start_seq));
        s.closed_ms = Some(now_ms);
    }

    /// SplitShard: `index` closes; two children take `[start, key)` and `[key, end]`.
    pub fn split(
        &mut self,
        index: u32,
        key: u128,
        counter: &mut Counter,
        now_ms: i64,
    ) -> Result<(u32, u32), ReshardError> {
        let s = self.open_shard(index)?;
        // Kinesis's rule: StartingHashKey + 1 < key < EndingHashKey.
        if key <= s.start_key.saturating_add(1) || key >= s.end_key {
            return Err(ReshardError::KeyOutsideShard { key, shard: s.id(), start: s.start_key, end: s.end_key });
        }
        let (start, end) = (s.start_key, s.end_key);
        self.close(index, counter, now_ms);
        let seq = *counter.0;
        let a = self.push_child((index, None), (start, key - 1), seq, now_ms);
        let b = self.push_child((index, None), (key, end), seq, now_ms);
        Ok((a, b))
    }

    /// MergeShards: two adjacent open shards close; one child covers both ranges.
    pub fn merge(
        &mut self,
        index: u32,
        adjacent: u32,
        counter: &mut Counter,
        now_ms: i64,
    ) -> Result<u32, ReshardError> {
        let (a, b) = (self.open_shard(index)?, self.open_shard(adjacent)?);
        let touching = a.end_key.checked_add(1) == Some(b.start_key) || b.end_key.checked_add(1) == Some(a.start_key);
        if index == adjacent || !touching {
            return Err(ReshardError::NotAdjacent(a.id(), b.id()));
        }
        let keys = (a.start_key.min(b.start_key), a.end_key.max(b.end_key));
        self.close(index, counter, now_ms);
        self.close(adjacent, counter, now_ms);
        Ok(self.push_child((index, Some(adjacent)), keys, *counter.0, now_ms))
    }

    /// The open shards in hash key order.
    fn open_by_key(&self) -> Vec<u32> {
        let mut open: Vec<&ShardInfo> = self.open().collect();
        open.sort_by_key(|s| s.start_key);
        open.into_iter().map(|s| s.index).collect()
    }

    /// UpdateShardCount with UNIFORM_SCALING, planned as Kinesis plans it (the shard
    /// totals it leaves were measured on AWS: 2→4 leaves 6 shards, 4→5 15, 10→13 37,
    /// 4→2 6, 5→3 7): to grow, every open shard splits in two; then neighbouring
    /// pairs merge, in key order, until `target` remain. No plan leaves more
    /// short-lived shards than that.
    pub fn scale_uniform(&mut self, target: u32, counter: &mut Counter, now_ms: i64) -> Result<(), ReshardError> {
        if target > self.open_count() {
            for index in self.open_by_key() {
                let s = &self.shards[index as usize];
                let (start, end) = (s.start_key, s.end_key);
                let middle = start + (end - start) / 2 + 1;
                if middle > start.saturating_add(1) && middle < end {
                    self.split(index, middle, counter, now_ms)?;
                }
            }
        }
        while self.open_count() > target {
            let mut merges = self.open_count() - target;
            let open = self.open_by_key();
            for pair in open.chunks_exact(2) {
                if merges == 0 {
                    break;
                }
                self.merge(pair[0], pair[1], counter, now_ms)?;
                merges -= 1;
            }
        }
        if self.open_count() != target {
            return Err(ReshardError::Count(format!("scaling reached {} shards, not {target}", self.open_count())));
        }
        Ok(())
    }
}

/// u128 as a decimal string in JSON (serde_json cannot hold it as a number).
mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers_key_space(m: &ShardMap) -> bool {
        let mut open: Vec<&ShardInfo> = m.open().collect();
        open.sort_by_key(|s| s.start_key);
        open[0].start_key == 0
            && open[open.len() - 1].end_key == u128::MAX
            && open.windows(2).all(|w| w[0].end_key + 1 == w[1].start_key)
    }

    #[test]
    fn split_and_merge_keep_the_key_space_covered_and_sequences_ordered() {
        let mut next = 10;
        let mut m = ShardMap::new(2, next, 0);
        let mid = m.shards[0].end_key / 2;
        let (a, b) = m.split(0, mid, &mut Counter(&mut next), 1).unwrap();
        assert!(covers_key_space(&m));
        assert_eq!(m.shards[0].end_seq, Some(10));
        assert_eq!((m.shards[a as usize].start_seq, m.shards[b as usize].parent), (11, Some(0)));
        assert_eq!(m.route(mid), b);
        assert_eq!(m.route(mid - 1), a);

        next = 50;
        let c = m.merge(b, 1, &mut Counter(&mut next), 2).unwrap();
        assert!(covers_key_space(&m));
        let child = &m.shards[c as usize];
        assert_eq!((child.parent, child.adjacent_parent, child.start_seq), (Some(b), Some(1), 50));
        assert_eq!(m.children(b).len(), 1);

        assert_eq!(m.merge(a, 1, &mut Counter(&mut next), 3), Err(ReshardError::Closed(shard_id(1))));
        assert!(matches!(m.split(a, 0, &mut Counter(&mut next), 3), Err(ReshardError::KeyOutsideShard { .. })));
        assert!(matches!(m.split(99, 5, &mut Counter(&mut next), 3), Err(ReshardError::NoSuchShard(_))));
        let far = m.open().map(|s| s.index).collect::<Vec<_>>();
        assert_eq!(far.len(), 2);
    }

    #[test]
    fn uniform_scaling_leaves_the_shard_totals_kinesis_leaves() {
        // (from, to, every shard the stream then has, as measured on AWS).
        for (from, to, total) in [(2, 4, 6), (4, 5, 15), (10, 13, 37), (4, 2, 6), (5, 3, 7), (1, 2, 3), (8, 4, 12)] {
            let mut next = 1;
            let mut m = ShardMap::new(from, next, 0);
            m.scale_uniform(to, &mut Counter(&mut next), 1).unwrap();
            assert_eq!(m.open_count(), to, "{from}->{to}");
            assert_eq!(m.shards.len(), total, "{from}->{to}");
            assert!(covers_key_space(&m));
            // Children start after every parent's end.
            for s in &m.shards {
                for p in [s.parent, s.adjacent_parent].into_iter().flatten() {
                    assert!(m.shards[p as usize].end_seq.unwrap() < s.start_seq);
                }
            }
        }
    }

    #[test]
    fn the_map_round_trips_through_json() {
        let m = ShardMap::new(3, 1, 5);
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<ShardMap>(&j).unwrap(), m);
    }
}
