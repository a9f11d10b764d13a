//! Iterators and reads: signed shard iterators (every starting position, 5-minute
//! expiry, bound to the stream's incarnation) and GetRecords over the shard index.

use super::*;

impl DataStreamEngine {
    pub(super) fn iterator_token(&self, uid: u64, shard: u32, pos: u64) -> String {
        let mut p = Vec::with_capacity(28);
        p.extend_from_slice(&uid.to_be_bytes());
        p.extend_from_slice(&shard.to_be_bytes());
        p.extend_from_slice(&pos.to_be_bytes());
        p.extend_from_slice(&self.now_ms().to_be_bytes());
        self.inner.signer.sign(&p)
    }

    pub(super) fn open_iterator(&self, token: &str) -> Result<(u64, u32, u64, i64)> {
        let bad = || invalid(format!("Invalid ShardIterator: {}", token.chars().take(64).collect::<String>()));
        let p = self.inner.signer.open(token).map_err(|_| bad())?;
        if p.len() != 28 {
            return Err(bad());
        }
        let u64_at = |i: usize| u64::from_be_bytes(p[i..i + 8].try_into().unwrap_or([0; 8]));
        let shard = u32::from_be_bytes(p[8..12].try_into().unwrap_or([0; 4]));
        Ok((u64_at(0), shard, u64_at(12), u64_at(20) as i64))
    }

    pub(super) fn shard_for_read<'a>(&self, state: &'a StreamState, shard: &str) -> Result<&'a ShardInfo> {
        let name = &state.meta.name;
        let missing = || {
            DataStreamError::ResourceNotFound(format!(
                "Shard {shard} in stream {name} under account {} does not exist",
                state.meta.scope.account
            ))
        };
        let index = parse_shard_id(shard).ok_or_else(missing)?;
        state.meta.shard_map.get(index).ok_or_else(missing)
    }

    /// The first counter value a starting position reads from in a shard.
    pub(super) fn start_of(&self, state: &StreamState, info: &ShardInfo, start: &StartingPosition) -> Result<u64> {
        let recs = &state.shards[info.index as usize];
        let parse = |s: &str| {
            let seq = parse_sequence(s).ok_or_else(|| {
                invalid(format!(
                    "StartingSequenceNumber {s} used in GetShardIterator on shard {} in stream {} under account {} is invalid.",
                    info.id(),
                    state.meta.name,
                    state.meta.scope.account
                ))
            })?;
            let end = info.end_seq.unwrap_or(u64::MAX);
            if seq.saturating_add(1) < info.start_seq || seq > end {
                return Err(invalid(format!(
                    "StartingSequenceNumber {s} used in GetShardIterator on shard {} in stream {} under account {} is invalid because it did not come from this shard.",
                    info.id(),
                    state.meta.name,
                    state.meta.scope.account
                )));
            }
            Ok(seq)
        };
        Ok(match start {
            StartingPosition::TrimHorizon => 0,
            StartingPosition::Latest => state.next_seq.max(info.start_seq),
            StartingPosition::AtSequence(s) => parse(s)?,
            StartingPosition::AfterSequence(s) => parse(s)? + 1,
            StartingPosition::AtTimestamp(ms) => {
                // No record at or after the time yet: start after the shard's newest
                // indexed record, not at the stream's counter, so records being synced
                // right now (numbered, not yet indexed) are not skipped.
                let i = recs.entries.partition_point(|e| e.arrival_ms < *ms);
                recs.entries.get(i).map_or_else(
                    || recs.entries.back().map_or(info.start_seq, |e| e.seq + 1).max(info.start_seq),
                    |e| e.seq,
                )
            }
        })
    }

    pub fn get_shard_iterator(&self, name: &DataStreamId, shard: &str, start: StartingPosition) -> Result<String> {
        let handle = self.handle(name)?;
        let state = handle.lock();
        let info = self.shard_for_read(&state, shard)?;
        let pos = self.start_of(&state, info, &start)?;
        Ok(self.iterator_token(handle.uid, info.index, pos))
    }

    pub(super) fn handle_by_uid(&self, uid: u64) -> Result<Arc<StreamHandle>> {
        let reg = self.inner.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.by_uid.get(&uid).cloned().ok_or_else(|| {
            DataStreamError::ResourceNotFound("The stream this iterator was made for no longer exists.".into())
        })
    }

    /// Up to `limit` records (and 10 MiB) from `pos` in a shard.
    pub(super) async fn read_from(
        &self,
        handle: &StreamHandle,
        shard: u32,
        pos: u64,
        limit: u32,
        throttled: bool,
    ) -> Result<ReadBatch> {
        let now = self.now_ms();
        let (picked, files, shard_done, next_pos, children, tip_gap) = {
            let mut state = handle.lock();
            if state.deleted {
                return Err(DataStreamError::ResourceNotFound("The stream was deleted.".into()));
            }
            if shard as usize >= state.shards.len() {
                return Err(DataStreamError::ResourceNotFound(format!("Shard {} does not exist", shard_id(shard))));
            }
            if throttled && self.inner.options.throughput_limits {
                let t = &mut state.throttles[shard as usize];
                if !t.admit_read(now) {
                    return Err(DataStreamError::ProvisionedThroughputExceeded(format!(
                        "Rate exceeded for shard {} in stream {} under account {}.",
                        shard_id(shard),
                        state.meta.name,
                        state.meta.scope.account
                    )));
                }
            }
            let horizon = now - state.retention_ms();
            let info = state.meta.shard_map.get(shard).cloned();
            let recs = &state.shards[shard as usize];
            let mut i = recs.entries.partition_point(|e| e.seq < pos);
            while recs.entries.get(i).is_some_and(|e| e.arrival_ms < horizon) {
                i += 1;
            }
            let mut picked = Vec::new();
            let mut bytes = 0usize;
            while let Some(e) = recs.entries.get(i) {
                if picked.len() as u32 >= limit
                    || (bytes + e.at.len as usize > MAX_GET_RECORDS_BYTES && !picked.is_empty())
                {
                    break;
                }
                bytes += e.at.len as usize;
                picked.push(*e);
                i += 1;
            }
            let more_after = recs.entries.get(i).map(|e| e.arrival_ms);
            let next_pos = picked.last().map_or(pos, |e| e.seq.saturating_add(1));
            // Closed, nothing still on its way in, and everything read.
            let shard_done = more_after.is_none() && recs.pending == 0 && info.as_ref().is_some_and(|s| !s.is_open());
            let children = if shard_done {
                state
                    .meta
                    .shard_map
                    .children(shard)
                    .into_iter()
                    .map(|c| ChildShard {
                        shard_id: c.id(),
                        parent_shards: [c.parent, c.adjacent_parent].into_iter().flatten().map(shard_id).collect(),
                        hash_key_range: (c.start_key, c.end_key),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let mut files = BTreeMap::new();
            for e in &picked {
                if let std::collections::btree_map::Entry::Vacant(v) = files.entry(e.at.segment) {
                    if let Some(f) = state.log.segment(e.at.segment) {
                        v.insert(f);
                    }
                }
            }
            if throttled && self.inner.options.throughput_limits {
                state.throttles[shard as usize].charge_read(bytes);
            }
            (picked, files, shard_done, next_pos, children, more_after.map_or(0, |t| (now - t).max(0)))
        };
        let records = tokio::task::spawn_blocking(move || -> Result<Vec<Record>> {
            let mut out = Vec::with_capacity(picked.len());
            let mut start = 0;
            while start < picked.len() {
                let seg = picked[start].at.segment;
                let end = picked[start..].iter().position(|e| e.at.segment != seg).map_or(picked.len(), |n| start + n);
                let locations: Vec<Location> = picked[start..end].iter().map(|e| e.at).collect();
                let file = files.get(&seg).ok_or_else(|| storage_failed(format!("segment {seg} is gone")))?;
                let bytes = file.read(&locations).map_err(DataStreamError::Storage)?;
                let mut at = 0;
                for e in &picked[start..end] {
                    let (f, n) = decode_frame(&bytes[at..])
                        .map_err(|err| storage_failed(format!("record {} in segment {seg}: {err}", e.seq)))?
                        .ok_or_else(|| storage_failed(format!("record {} in segment {seg} is cut short", e.seq)))?;
                    out.push(Record {
                        sequence_number: format_sequence(f.seq),
                        arrival_ms: f.arrival_ms,
                        partition_key: f.partition_key.to_string(),
                        data: f.data.to_vec(),
                    });
                    at += n;
                }
                start = end;
            }
            Ok(out)
        })
        .await
        .map_err(storage)??;
        Ok(ReadBatch { records, next_pos, shard_done, children, millis_behind: tip_gap })
    }

    pub async fn get_records(&self, iterator: &str, limit: Option<u32>) -> Result<GetRecordsOutput> {
        let limit = limit.unwrap_or(MAX_GET_RECORDS_LIMIT);
        if !(1..=MAX_GET_RECORDS_LIMIT).contains(&limit) {
            return Err(invalid(format!("Limit must be between 1 and {MAX_GET_RECORDS_LIMIT}; got {limit}.")));
        }
        let (uid, shard, pos, issued) = self.open_iterator(iterator)?;
        let now = self.now_ms();
        if now - issued > ITERATOR_TTL_MS {
            return Err(DataStreamError::ExpiredIterator(format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ITERATOR_TTL_MS} milliseconds.",
                fmt_ms(issued),
                fmt_ms(now)
            )));
        }
        let handle = self.handle_by_uid(uid)?;
        let batch = self.read_from(&handle, shard, pos, limit, true).await?;
        Ok(GetRecordsOutput {
            next_iterator: (!batch.shard_done).then(|| self.iterator_token(uid, shard, batch.next_pos)),
            records: batch.records,
            millis_behind_latest: batch.millis_behind,
            child_shards: batch.children,
        })
    }
}

pub(super) struct ReadBatch {
    pub(super) records: Vec<Record>,
    pub(super) next_pos: u64,
    pub(super) shard_done: bool,
    pub(super) children: Vec<ChildShard>,
    pub(super) millis_behind: i64,
}

pub(super) fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339())
}
