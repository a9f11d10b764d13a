//! Enhanced fan-out consumers (register, describe, list, deregister, tags), resource
//! policies, and the account's limits.

use super::*;

impl DataStreamEngine {
    pub(super) fn consumer_view(&self, stream: &DataStreamId, c: &ConsumerMeta, now: i64) -> ConsumerView {
        let ready = c.created_s * 1000 + self.inner.options.update_delay_ms;
        ConsumerView {
            name: c.name.clone(),
            arn: self.consumer_arn(stream, c),
            stream_arn: stream.arn(),
            created_s: c.created_s,
            status: if now < ready { "CREATING" } else { "ACTIVE" },
        }
    }

    pub fn register_consumer(
        &self,
        name: &DataStreamId,
        consumer: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<ConsumerView> {
        if !name_ok(consumer) {
            return Err(invalid(format!("ConsumerName '{consumer}' must be 1-128 characters from [a-zA-Z0-9_.-].")));
        }
        check_tags(&tags)?;
        self.update(name, |m, now| {
            if m.consumers.iter().any(|c| c.name == consumer) {
                return Err(DataStreamError::ResourceInUse(format!(
                    "Consumer {consumer} under stream {name} already exists."
                )));
            }
            if m.consumers.len() >= MAX_CONSUMERS_PER_STREAM {
                return Err(DataStreamError::LimitExceeded(format!(
                    "Stream {name} already has {MAX_CONSUMERS_PER_STREAM} consumers, the limit."
                )));
            }
            let c = ConsumerMeta { name: consumer.to_string(), created_s: now / 1000, tags };
            let view = self.consumer_view(name, &c, now);
            m.consumers.push(c);
            Ok(view)
        })
    }

    /// The stream and consumer a consumer ARN names.
    pub fn resolve_consumer_arn(&self, arn: &str) -> Result<(DataStreamId, String)> {
        let not_found = || DataStreamError::ResourceNotFound(format!("Consumer {arn} not found."));
        let stream = DataStreamId::from_arn(arn).map_err(|_| not_found())?;
        let rest = arn.split_once("/consumer/").map(|(_, r)| r).ok_or_else(not_found)?;
        let (consumer, created) = rest.rsplit_once(':').ok_or_else(not_found)?;
        let handle = self.handle(&stream).map_err(|_| not_found())?;
        let state = handle.lock();
        state
            .meta
            .consumers
            .iter()
            .find(|c| c.name == consumer && c.created_s.to_string() == created)
            .map(|c| (stream.clone(), c.name.clone()))
            .ok_or_else(not_found)
    }

    pub fn describe_consumer(&self, name: &DataStreamId, consumer: &str) -> Result<ConsumerView> {
        let handle = self.handle(name)?;
        let state = handle.lock();
        state
            .meta
            .consumers
            .iter()
            .find(|c| c.name == consumer)
            .map(|c| self.consumer_view(name, c, self.now_ms()))
            .ok_or_else(|| {
                DataStreamError::ResourceNotFound(format!("Consumer {consumer} under stream {name} not found."))
            })
    }

    pub fn list_consumers(&self, name: &DataStreamId) -> Result<Vec<ConsumerView>> {
        let handle = self.handle(name)?;
        let state = handle.lock();
        let now = self.now_ms();
        let mut v: Vec<ConsumerView> = state.meta.consumers.iter().map(|c| self.consumer_view(name, c, now)).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    pub fn deregister_consumer(&self, name: &DataStreamId, consumer: &str) -> Result<()> {
        self.update(name, |m, _| {
            let before = m.consumers.len();
            m.consumers.retain(|c| c.name != consumer);
            if m.consumers.len() == before {
                return Err(DataStreamError::ResourceNotFound(format!(
                    "Consumer {consumer} under stream {name} not found."
                )));
            }
            Ok(())
        })
    }

    pub fn consumer_tags(&self, name: &DataStreamId, consumer: &str) -> Result<BTreeMap<String, String>> {
        let handle = self.handle(name)?;
        let state = handle.lock();
        state.meta.consumers.iter().find(|c| c.name == consumer).map(|c| c.tags.clone()).ok_or_else(|| {
            DataStreamError::ResourceNotFound(format!("Consumer {consumer} under stream {name} not found."))
        })
    }

    pub fn update_consumer_tags(
        &self,
        name: &DataStreamId,
        consumer: &str,
        f: impl FnOnce(&mut BTreeMap<String, String>) -> Result<()>,
    ) -> Result<()> {
        self.update(name, |m, _| {
            let c = m.consumers.iter_mut().find(|c| c.name == consumer).ok_or_else(|| {
                DataStreamError::ResourceNotFound(format!("Consumer {consumer} under stream {name} not found."))
            })?;
            f(&mut c.tags)?;
            if c.tags.len() > MAX_TAGS {
                return Err(DataStreamError::LimitExceeded(format!("A consumer can have at most {MAX_TAGS} tags.")));
            }
            Ok(())
        })
    }

    pub fn resource_policy(&self, arn: &str) -> Result<Option<String>> {
        self.inner.meta.policy(arn).map_err(DataStreamError::Storage)
    }

    pub fn set_resource_policy(&self, arn: &str, policy: Option<&str>) -> Result<()> {
        self.inner.meta.set_policy(arn, policy).map_err(DataStreamError::Storage)
    }

    /// (shard limit, open shards, on-demand streams) of one account and region, for
    /// DescribeLimits.
    pub fn limits(&self, scope: &Scope) -> (u32, u32, u32) {
        let (mut open, mut on_demand) = (0, 0);
        for h in self.handles_in(scope) {
            let state = h.lock();
            open += state.meta.shard_map.open_count();
            on_demand += u32::from(state.meta.mode == StreamMode::OnDemand);
        }
        (self.inner.options.shard_limit, open, on_demand)
    }
}
