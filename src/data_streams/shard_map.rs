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
    #[error("NewStartingHashKey {key} is not inside shard {shard}'s hash key range (its start excluded)")]
    KeyOutsideShard { key: u128, shard: String },
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
        if key <= s.start_key || key > s.end_key {
            return Err(ReshardError::KeyOutsideShard { key, shard: s.id() });
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

    /// UpdateShardCount with UNIFORM_SCALING: splits every open shard at the target's
    /// boundaries that fall inside it, then merges the pieces of each target range.
    pub fn scale_uniform(&mut self, target: u32, counter: &mut Counter, now_ms: i64) -> Result<(), ReshardError> {
        let boundaries: Vec<u128> = uniform_ranges(target).iter().skip(1).map(|r| r.0).collect();
        for key in &boundaries {
            let holder = self.route(*key);
            if self.shards[holder as usize].start_key != *key {
                self.split(holder, *key, counter, now_ms)?;
            }
        }
        for (start, end) in uniform_ranges(target) {
            loop {
                let mut pieces: Vec<&ShardInfo> =
                    self.open().filter(|s| s.start_key >= start && s.end_key <= end).collect();
                if pieces.len() <= 1 {
                    break;
                }
                pieces.sort_by_key(|s| s.start_key);
                let (a, b) = (pieces[0].index, pieces[1].index);
                self.merge(a, b, counter, now_ms)?;
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
    fn uniform_scaling_gives_every_child_at_most_two_parents() {
        for (from, to) in [(1, 2), (2, 1), (3, 4), (5, 3), (4, 8), (8, 4), (7, 13)] {
            let mut next = 1;
            let mut m = ShardMap::new(from, next, 0);
            m.scale_uniform(to, &mut Counter(&mut next), 1).unwrap();
            assert_eq!(m.open_count(), to, "{from}->{to}");
            assert!(covers_key_space(&m));
            let ranges = uniform_ranges(to);
            let mut open: Vec<&ShardInfo> = m.open().collect();
            open.sort_by_key(|s| s.start_key);
            for (s, r) in open.iter().zip(&ranges) {
                assert_eq!((s.start_key, s.end_key), *r);
            }
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
