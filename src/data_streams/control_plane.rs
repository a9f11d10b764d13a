//! The control plane: create, delete, describe and list streams; retention,
//! resharding (split, merge, uniform scaling), mode, record size, encryption,
//! enhanced monitoring, tags.

use super::*;

impl DataStreamEngine {
    pub fn create_stream(&self, name: &DataStreamId, new: NewDataStream) -> Result<StreamView> {
        let NewDataStream { shard_count, mode, max_record_kib, tags, distribution, warm_throughput_mibps } = new;
        let mode = mode.unwrap_or(StreamMode::Provisioned);
        if !name_ok(&name.name) {
            return Err(invalid(format!("StreamName '{name}' must be 1-128 characters from [a-zA-Z0-9_.-].")));
        }
        let count = match (mode, shard_count) {
            (StreamMode::Provisioned, Some(n)) if n >= 1 => n,
            (StreamMode::Provisioned, Some(_)) => return Err(invalid("ShardCount must be at least 1.")),
            (StreamMode::Provisioned, None) => return Err(invalid("ShardCount is required for a PROVISIONED stream.")),
            (StreamMode::OnDemand, _) => ON_DEMAND_SHARDS,
        };
        if count > MAX_SHARDS_PER_STREAM {
            return Err(DataStreamError::LimitExceeded(format!(
                "A stream can have at most {MAX_SHARDS_PER_STREAM} shards; {count} were requested."
            )));
        }
        let kib = max_record_kib.unwrap_or(DEFAULT_MAX_RECORD_KIB);
        if !(DEFAULT_MAX_RECORD_KIB..=MAX_RECORD_KIB).contains(&kib) {
            return Err(DataStreamError::Validation(format!(
                "MaxRecordSizeInKiB must be between {DEFAULT_MAX_RECORD_KIB} and {MAX_RECORD_KIB}; got {kib}."
            )));
        }
        check_tags(&tags)?;
        if tags.len() > MAX_TAGS {
            return Err(invalid(format!("A stream can have at most {MAX_TAGS} tags.")));
        }
        if mode == StreamMode::Provisioned && distribution.is_some() {
            return Err(invalid("RecordDistributionStrategy can only be set on an ON_DEMAND stream."));
        }
        if let Some(mibps) = warm_throughput_mibps {
            self.check_warm_throughput(&name.scope, mode, mibps)?;
        }
        let open = self.open_shards_total(&name.scope);
        if open + count > self.inner.options.shard_limit {
            return Err(DataStreamError::LimitExceeded(format!(
                "This request would exceed the shard limit for the account {}: {} open, {count} requested, limit {}.",
                name.scope.account, open, self.inner.options.shard_limit
            )));
        }
        let now = self.now_ms();
        let uid = self.inner.next_uid.fetch_add(1, Ordering::SeqCst);
        let meta = StreamMeta {
            name: name.name.clone(),
            scope: name.scope.clone(),
            uid,
            created_ms: now,
            mode,
            retention_hours: DEFAULT_RETENTION_HOURS,
            shard_map: ShardMap::new(count, 1, now),
            tags,
            consumers: Vec::new(),
            encryption_key: None,
            max_record_kib: kib,
            enhanced_metrics: BTreeSet::new(),
            scaling_ops_ms: Vec::new(),
            updating_until_ms: 0,
            distribution: distribution.unwrap_or_default(),
            warm_throughput_mibps,
        };
        let mut reg = self.inner.registry.write().unwrap_or_else(|p| p.into_inner());
        if reg.by_name.contains_key(&name.key()) {
            return Err(DataStreamError::ResourceInUse(format!(
                "Stream {name} under account {} already exists.",
                name.scope.account
            )));
        }
        let (log, _) =
            self.inner.logs.open(&uid.to_string(), self.inner.options.roll).map_err(DataStreamError::Storage)?;
        self.save(&meta)?;
        let state = StreamState::new(meta, log, now);
        let view = self.view(&state, now);
        let handle = Arc::new(StreamHandle { uid, state: Mutex::new(state), published: watch::channel(0).0 });
        reg.by_uid.insert(uid, handle.clone());
        reg.by_name.insert(name.key(), handle);
        tracing::info!(stream = %name, shards = count, mode = mode.as_str(), "data stream created");
        Ok(view)
    }

    pub fn delete_stream(&self, name: &DataStreamId, enforce_consumer_deletion: bool) -> Result<()> {
        let handle = self.handle(name)?;
        {
            let state = handle.lock();
            if !state.meta.consumers.is_empty() && !enforce_consumer_deletion {
                return Err(DataStreamError::ResourceInUse(format!(
                    "Stream {name} has {} registered consumers; deregister them or set EnforceConsumerDeletion.",
                    state.meta.consumers.len()
                )));
            }
        }
        {
            let mut reg = self.inner.registry.write().unwrap_or_else(|p| p.into_inner());
            reg.by_name.remove(&name.key());
            reg.by_uid.remove(&handle.uid);
        }
        self.inner.meta.delete(name).map_err(DataStreamError::Storage)?;
        handle.lock().deleted = true;
        handle.notify();
        if let Err(e) = self.inner.logs.remove(&handle.uid.to_string()) {
            tracing::warn!(stream = %name, error = %e, "could not remove a deleted stream's records");
        }
        tracing::info!(stream = %name, "data stream deleted");
        Ok(())
    }

    pub fn describe(&self, name: &DataStreamId) -> Result<StreamView> {
        let handle = self.handle(name)?;
        let state = handle.lock();
        Ok(self.view(&state, self.now_ms()))
    }

    /// Every stream of `scope`, in name order.
    pub fn list(&self, scope: &Scope) -> Vec<StreamView> {
        let now = self.now_ms();
        self.handles_in(scope).iter().map(|h| self.view(&h.lock(), now)).collect()
    }

    /// Runs `f` on a stream's metadata and saves it if `f` succeeds.
    pub(super) fn update<T>(
        &self,
        name: &DataStreamId,
        f: impl FnOnce(&mut StreamMeta, i64) -> Result<T>,
    ) -> Result<T> {
        let handle = self.handle(name)?;
        let mut state = handle.lock();
        let now = self.now_ms();
        let mut meta = state.meta.clone();
        let out = f(&mut meta, now)?;
        self.save(&meta)?;
        state.meta = meta;
        Ok(out)
    }

    pub(super) fn require_active(&self, meta: &StreamMeta, now: i64) -> Result<()> {
        match self.status(meta, now) {
            "ACTIVE" => Ok(()),
            s => Err(DataStreamError::ResourceInUse(format!(
                "Stream {} under account {} not ACTIVE, instead in state {s}",
                meta.name, meta.scope.account
            ))),
        }
    }

    /// Increase- or DecreaseStreamRetentionPeriod: the bounds are checked first, then
    /// the direction, each with Kinesis's text.
    pub fn change_retention(&self, name: &DataStreamId, hours: i64, increase: bool) -> Result<()> {
        if hours < i64::from(DEFAULT_RETENTION_HOURS) {
            return Err(invalid(format!(
                "Minimum allowed retention period is {DEFAULT_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too short."
            )));
        }
        if hours > i64::from(MAX_RETENTION_HOURS) {
            return Err(invalid(format!(
                "Maximum allowed retention period is {MAX_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too long."
            )));
        }
        self.update(name, |m, now| {
            self.require_active(m, now)?;
            let current = i64::from(m.retention_hours);
            if increase && hours < current {
                return Err(invalid(format!(
                    "Requested retention period ({hours} hours) for stream {name} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API."
                )));
            }
            if !increase && hours > current {
                return Err(invalid(format!(
                    "Requested retention period ({hours} hours) for stream {name} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API."
                )));
            }
            m.retention_hours = hours as u32;
            Ok(())
        })
    }

    /// Applies a resharding step under the stream's lock, so that no put is routed
    /// between the old and the new topology.
    pub(super) fn reshard(
        &self,
        name: &DataStreamId,
        op: impl FnOnce(&mut ShardMap, &mut Counter, i64) -> Result<(), ReshardError>,
    ) -> Result<()> {
        let handle = self.handle(name)?;
        {
            let mut state = handle.lock();
            let now = self.now_ms();
            self.require_active(&state.meta, now)?;
            if state.meta.mode == StreamMode::OnDemand {
                return Err(on_demand(name));
            }
            let mut meta = state.meta.clone();
            let mut next_seq = state.next_seq;
            op(&mut meta.shard_map, &mut Counter(&mut next_seq), now).map_err(|e| reshard_error(name, e))?;
            let open = meta.shard_map.open_count();
            if open > MAX_SHARDS_PER_STREAM {
                return Err(DataStreamError::LimitExceeded(format!(
                    "A stream can have at most {MAX_SHARDS_PER_STREAM} open shards."
                )));
            }
            meta.updating_until_ms = now + self.inner.options.update_delay_ms;
            self.save(&meta)?;
            state.meta = meta;
            state.next_seq = next_seq;
            state.ensure_shard_slots(now);
        }
        handle.notify();
        Ok(())
    }

    pub(super) fn shard_index(&self, name: &DataStreamId, shard: &str) -> Result<u32> {
        parse_shard_id(shard).ok_or_else(|| {
            DataStreamError::ResourceNotFound(format!(
                "Could not find shard {shard} in stream {name} under account {}.",
                name.scope.account
            ))
        })
    }

    pub fn split_shard(&self, name: &DataStreamId, shard: &str, new_starting_hash_key: u128) -> Result<()> {
        let index = self.shard_index(name, shard)?;
        self.reshard(name, |map, counter, now| map.split(index, new_starting_hash_key, counter, now).map(|_| ()))
    }

    pub fn merge_shards(&self, name: &DataStreamId, shard: &str, adjacent: &str) -> Result<()> {
        let (a, b) = (self.shard_index(name, shard)?, self.shard_index(name, adjacent)?);
        self.reshard(name, |map, counter, now| map.merge(a, b, counter, now).map(|_| ()))
    }

    /// UpdateShardCount (UNIFORM_SCALING); returns (current, target).
    pub fn update_shard_count(&self, name: &DataStreamId, target: u32) -> Result<(u32, u32)> {
        let handle = self.handle(name)?;
        let current = {
            let state = handle.lock();
            let now = self.now_ms();
            if state.meta.mode == StreamMode::OnDemand {
                return Err(on_demand(name));
            }
            let current = state.meta.shard_map.open_count();
            if target == 0 || target > current * 2 || target * 2 < current {
                return Err(invalid(format!(
                    "UpdateShardCount can scale from {current} shards to between {} and {} shards; {target} was requested.",
                    current.div_ceil(2),
                    current * 2
                )));
            }
            if target > MAX_SHARDS_PER_STREAM {
                return Err(DataStreamError::LimitExceeded(format!(
                    "A stream can have at most {MAX_SHARDS_PER_STREAM} shards."
                )));
            }
            let recent = state.meta.scaling_ops_ms.iter().filter(|t| **t > now - DAY_MS).count();
            if recent >= SCALING_OPS_PER_DAY {
                return Err(DataStreamError::LimitExceeded(format!(
                    "Stream {name} has been scaled {recent} times in the last 24 hours; the limit is {SCALING_OPS_PER_DAY}."
                )));
            }
            current
        };
        if target > current && self.open_shards_total(&name.scope) + target - current > self.inner.options.shard_limit {
            return Err(DataStreamError::LimitExceeded(format!(
                "Scaling to {target} shards would exceed the account's shard limit of {}.",
                self.inner.options.shard_limit
            )));
        }
        if target != current {
            self.reshard(name, |map, counter, now| map.scale_uniform(target, counter, now))?;
        }
        self.update(name, |m, now| {
            m.scaling_ops_ms.retain(|t| *t > now - DAY_MS);
            m.scaling_ops_ms.push(now);
            Ok(())
        })?;
        Ok((current, target))
    }

    /// UpdateStreamMode; `warm_throughput_mibps` only when switching to on-demand.
    pub fn set_stream_mode(
        &self,
        name: &DataStreamId,
        mode: StreamMode,
        warm_throughput_mibps: Option<u32>,
    ) -> Result<()> {
        if let Some(mibps) = warm_throughput_mibps {
            if mode != StreamMode::OnDemand {
                return Err(invalid("WarmThroughputMiBps can only be given when switching to ON_DEMAND."));
            }
            self.check_warm_throughput(&name.scope, mode, mibps)?;
        }
        self.update(name, |m, now| {
            self.require_active(m, now)?;
            if m.mode == mode {
                return Err(invalid(format!("Stream {name} is already in {} mode.", mode.as_str())));
            }
            m.mode = mode;
            if mode == StreamMode::Provisioned {
                // AUTO and warm throughput are on-demand notions.
                m.distribution = RecordDistribution::UserPartitionKey;
                m.warm_throughput_mibps = None;
            } else if warm_throughput_mibps.is_some() {
                m.warm_throughput_mibps = warm_throughput_mibps;
            }
            m.updating_until_ms = now + self.inner.options.update_delay_ms;
            Ok(())
        })
    }

    /// UpdateStreamRecordDistributionStrategy: takes effect for the next record put.
    pub fn set_record_distribution(&self, name: &DataStreamId, distribution: RecordDistribution) -> Result<()> {
        self.update(name, |m, _| {
            if m.mode != StreamMode::OnDemand {
                return Err(invalid(format!(
                    "Stream {name} under account {} is PROVISIONED; a record distribution strategy applies to ON_DEMAND streams only.",
                    name.scope.account
                )));
            }
            m.distribution = distribution;
            Ok(())
        })
    }

    /// UpdateStreamWarmThroughput: stored and reported. This server has no capacity to
    /// warm (on-demand streams take what the disk takes), so the current throughput is
    /// the target as soon as it is set. Returns the target.
    pub fn set_warm_throughput(&self, name: &DataStreamId, mibps: u32) -> Result<u32> {
        let mode = self.handle(name)?.lock().meta.mode;
        self.check_warm_throughput(&name.scope, mode, mibps)?;
        self.update(name, |m, now| {
            self.require_active(m, now)?;
            m.warm_throughput_mibps = Some(mibps);
            Ok(mibps)
        })
    }

    fn check_warm_throughput(&self, scope: &Scope, mode: StreamMode, mibps: u32) -> Result<()> {
        if mode != StreamMode::OnDemand {
            return Err(invalid("Warm throughput applies to ON_DEMAND streams only."));
        }
        if mibps > MAX_WARM_THROUGHPUT_MIBPS {
            return Err(invalid(format!(
                "WarmThroughputMiBps {mibps} exceeds the maximum of {MAX_WARM_THROUGHPUT_MIBPS} MiB/s per stream."
            )));
        }
        let now = self.now_ms();
        let on = self.commitment(scope)?.is_some_and(|c| c.ends_ms.is_none_or(|end| end > now));
        if !on {
            return Err(invalid(format!(
                "Warm throughput needs the account's MinimumThroughputBillingCommitment ENABLED (UpdateAccountSettings); account {} has it off.",
                scope.account
            )));
        }
        Ok(())
    }

    /// The account's billing commitment, if it ever had one.
    pub fn commitment(&self, scope: &Scope) -> Result<Option<ThroughputCommitment>> {
        self.inner.meta.commitment(scope).map_err(DataStreamError::Storage)
    }

    /// UpdateAccountSettings: ENABLED starts a commitment (or keeps the running one);
    /// DISABLED ends it, at once if its minimum term has passed, else at the term's end.
    pub fn set_commitment(&self, scope: &Scope, enabled: bool) -> Result<ThroughputCommitment> {
        let now = self.now_ms();
        let current = self.commitment(scope)?.filter(|c| c.ends_ms.is_none_or(|end| end > now));
        let next = match (current, enabled) {
            (Some(c), true) => ThroughputCommitment { ends_ms: None, ..c },
            (None, true) => {
                ThroughputCommitment { started_ms: now, earliest_end_ms: now + COMMITMENT_MINIMUM_MS, ends_ms: None }
            }
            (Some(c), false) => ThroughputCommitment { ends_ms: Some(c.earliest_end_ms.max(now)), ..c },
            (None, false) => {
                return Err(invalid(format!(
                    "Account {} has no MinimumThroughputBillingCommitment to disable.",
                    scope.account
                )))
            }
        };
        self.inner.meta.set_commitment(scope, &next).map_err(DataStreamError::Storage)?;
        Ok(next)
    }

    pub fn set_max_record_size(&self, name: &DataStreamId, kib: u32) -> Result<()> {
        if !(DEFAULT_MAX_RECORD_KIB..=MAX_RECORD_KIB).contains(&kib) {
            return Err(DataStreamError::Validation(format!(
                "MaxRecordSizeInKiB must be between {DEFAULT_MAX_RECORD_KIB} and {MAX_RECORD_KIB}; got {kib}."
            )));
        }
        self.update(name, |m, now| {
            self.require_active(m, now)?;
            m.max_record_kib = kib;
            Ok(())
        })
    }

    /// Start (`Some(key)`) or stop (`None`) server-side encryption: stored and
    /// reported; records are not encrypted at rest by this server.
    pub fn set_encryption(&self, name: &DataStreamId, key_id: Option<String>) -> Result<()> {
        self.update(name, |m, now| {
            self.require_active(m, now)?;
            m.encryption_key = key_id;
            Ok(())
        })
    }

    /// Enables or disables enhanced metrics; returns (before, after).
    pub fn set_enhanced_metrics(
        &self,
        name: &DataStreamId,
        metrics: &[String],
        enable: bool,
    ) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
        const ALL: [&str; 7] = [
            "IncomingBytes",
            "IncomingRecords",
            "OutgoingBytes",
            "OutgoingRecords",
            "WriteProvisionedThroughputExceeded",
            "ReadProvisionedThroughputExceeded",
            "IteratorAgeMilliseconds",
        ];
        let mut chosen = BTreeSet::new();
        for m in metrics {
            match m.as_str() {
                "ALL" => chosen.extend(ALL.iter().map(|s| s.to_string())),
                s if ALL.contains(&s) => {
                    chosen.insert(s.to_string());
                }
                s => return Err(invalid(format!("Unknown shard-level metric '{s}'."))),
            }
        }
        self.update(name, |m, _| {
            let before = m.enhanced_metrics.clone();
            if enable {
                m.enhanced_metrics.extend(chosen);
            } else {
                m.enhanced_metrics.retain(|x| !chosen.contains(x));
            }
            Ok((before, m.enhanced_metrics.clone()))
        })
    }

    pub fn add_tags(&self, name: &DataStreamId, tags: BTreeMap<String, String>) -> Result<()> {
        check_tags(&tags)?;
        self.update(name, |m, _| {
            let mut merged = m.tags.clone();
            merged.extend(tags);
            if merged.len() > MAX_TAGS {
                return Err(DataStreamError::LimitExceeded(format!(
                    "Stream {name} would have {} tags; the limit is {MAX_TAGS}.",
                    merged.len()
                )));
            }
            m.tags = merged;
            Ok(())
        })
    }

    pub fn remove_tags(&self, name: &DataStreamId, keys: &[String]) -> Result<()> {
        self.update(name, |m, _| {
            for k in keys {
                m.tags.remove(k);
            }
            Ok(())
        })
    }
}

/// Resharding an On-Demand stream, in Kinesis's words.
fn on_demand(name: &DataStreamId) -> DataStreamError {
    DataStreamError::Validation(format!(
        "Request is invalid. Stream {name} under account {} is in On-Demand mode.",
        name.scope.account
    ))
}

/// A refused resharding step as Kinesis reports it, naming the stream and account.
fn reshard_error(name: &DataStreamId, e: ReshardError) -> DataStreamError {
    let account = &name.scope.account;
    match e {
        ReshardError::NoSuchShard(shard) => DataStreamError::ResourceNotFound(format!(
            "Could not find shard {shard} in stream {name} under account {account}."
        )),
        ReshardError::Count(_) => DataStreamError::Validation(e.to_string()),
        ReshardError::Closed(shard) => invalid(format!(
            "Shard {shard} in stream {name} under account {account} has already been merged or split, and thus is not eligible for merging or splitting."
        )),
        ReshardError::KeyOutsideShard { key, shard, start, end } => invalid(format!(
            "NewStartingHashKey {key} used in SplitShard() on shard {shard} in stream {name} under account {account} is not both greater than one plus the shard's StartingHashKey {start} and less than the shard's EndingHashKey {end}."
        )),
        ReshardError::NotAdjacent(a, b) => invalid(format!(
            "Shards {a} and {b} in stream {name} under account {account} are not an adjacent pair of shards eligible for merging"
        )),
    }
}
