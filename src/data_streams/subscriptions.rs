//! Enhanced fan-out subscriptions (SubscribeToShard): a subscription reads like
//! GetRecords and waits on the stream's watch channel, so a push follows a put by one
//! wake-up; it ends after 5 minutes, on a takeover, or at a closed shard's end.

use super::*;

impl DataStreamEngine {
    /// Starts a SubscribeToShard push for a registered consumer.
    pub fn subscribe(&self, consumer_arn: &str, shard: &str, start: StartingPosition) -> Result<Subscription> {
        let (stream, consumer) = self.resolve_consumer_arn(consumer_arn)?;
        let handle = self.handle(&stream)?;
        let (index, pos) = {
            let state = handle.lock();
            let info = self.shard_for_read(&state, shard)?;
            (info.index, self.start_of(&state, info, &start)?)
        };
        let now = self.now_ms();
        let key = (handle.uid, consumer, index);
        let generation = self.inner.subscription_gen.fetch_add(1, Ordering::SeqCst);
        {
            let mut subs = self.inner.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((started, _)) = subs.get(&key) {
                if now - started < SUBSCRIPTION_TAKEOVER_MS {
                    return Err(DataStreamError::ResourceInUse(format!(
                        "Another active subscription exists for consumer {consumer_arn} on shard {shard}; retry after 5 seconds."
                    )));
                }
            }
            subs.insert(key.clone(), (now, generation));
        }
        Ok(Subscription {
            engine: self.clone(),
            handle,
            key,
            generation,
            shard: index,
            pos,
            ends_ms: now + SUBSCRIPTION_MS,
            done: false,
        })
    }
}

/// One SubscribeToShardEvent.
#[derive(Debug, Clone)]
pub struct SubscriptionEvent {
    pub records: Vec<Record>,
    pub continuation_sequence_number: String,
    pub millis_behind_latest: i64,
    pub child_shards: Vec<ChildShard>,
}

/// A live SubscribeToShard push: records as they are published, an empty event every
/// 5 seconds of quiet, for up to 5 minutes or until a newer subscription takes over.
pub struct Subscription {
    engine: DataStreamEngine,
    handle: Arc<StreamHandle>,
    key: SubscriptionKey,
    generation: u64,
    shard: u32,
    pos: u64,
    ends_ms: i64,
    done: bool,
}

const HEARTBEAT: Duration = Duration::from_secs(5);
/// A subscription's events are kept small enough to push at once.
const EVENT_RECORD_LIMIT: u32 = 1000;

impl Subscription {
    fn superseded(&self) -> bool {
        let subs = self.engine.inner.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        subs.get(&self.key).is_none_or(|(_, g)| *g != self.generation)
    }

    /// The next event, or `None` when the subscription is over.
    pub async fn next_event(&mut self) -> Option<Result<SubscriptionEvent, DataStreamError>> {
        if self.done || self.superseded() {
            return None;
        }
        let mut changes = self.handle.published.subscribe();
        let started = self.engine.now_ms();
        loop {
            changes.borrow_and_update();
            let batch = match self.engine.read_from(&self.handle, self.shard, self.pos, EVENT_RECORD_LIMIT, false).await
            {
                Ok(b) => b,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let now = self.engine.now_ms();
            if !batch.records.is_empty() || batch.shard_done || now - started >= HEARTBEAT.as_millis() as i64 {
                self.pos = batch.next_pos;
                self.done = batch.shard_done;
                return Some(Ok(SubscriptionEvent {
                    continuation_sequence_number: format_sequence(self.pos.saturating_sub(1)),
                    records: batch.records,
                    millis_behind_latest: batch.millis_behind,
                    child_shards: batch.children,
                }));
            }
            if now >= self.ends_ms || self.superseded() {
                return None;
            }
            let wait = HEARTBEAT.saturating_sub(Duration::from_millis((now - started) as u64));
            let wait = wait.min(Duration::from_millis((self.ends_ms - now) as u64));
            let _ = tokio::time::timeout(wait, changes.changed()).await;
        }
    }
}
