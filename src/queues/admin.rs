//! Queue administration: create, delete, list, attributes, tags, permissions,
//! purge, dead-letter sources.

use super::*;

impl QueueEngine {
    /// Checks that a redrive target exists, has the source's type and admits it.
    pub(super) fn check_redrive(&self, name: &str, config: &QueueConfig) -> Result<(), QueueError> {
        let Some(r) = &config.redrive else { return Ok(()) };
        let (dlq_name, dlq) = self.queue_by_arn(&r.dead_letter_target_arn).ok_or_else(|| {
            QueueError::InvalidParameterValue(format!(
                "Value {} for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.",
                r.dead_letter_target_arn
            ))
        })?;
        let dlq_config = lock(&dlq.state).config.clone();
        if dlq_config.fifo != config.fifo {
            return Err(QueueError::InvalidParameterValue(
                "Value for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be same type of queue as the source.".into(),
            ));
        }
        if dlq_name == name {
            return Err(QueueError::InvalidParameterValue("A queue cannot be its own dead-letter queue".into()));
        }
        if !dlq_config.allows_source(&self.arn(name)) {
            return Err(QueueError::InvalidParameterValue(
                "Value for parameter RedrivePolicy is invalid. Reason: the dead-letter queue's RedriveAllowPolicy does not allow this queue.".into(),
            ));
        }
        Ok(())
    }

    // ---- queues -------------------------------------------------------------------

    /// CreateQueue: creates, or returns quietly when the queue exists with the same
    /// attributes.
    pub async fn create_queue(
        &self,
        name: &str,
        attributes: &BTreeMap<String, String>,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), QueueError> {
        let fifo = validate_queue_name(name)?;
        if attributes.get("FifoQueue").is_some_and(|v| v.eq_ignore_ascii_case("true")) && !fifo {
            return Err(QueueError::InvalidParameterValue("The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.".into()));
        }
        let config = QueueConfig::new(fifo).with(attributes, true)?;
        self.check_redrive(name, &config)?;
        let record = {
            let _guard = lock(&self.inner.create_lock);
            if let Ok(existing) = self.queue(name) {
                let current = lock(&existing.state).config.clone();
                if current == config {
                    return Ok(());
                }
                let differing: Vec<String> = config
                    .to_map()
                    .into_iter()
                    .filter(|(k, v)| current.to_map().get(k) != Some(v))
                    .map(|(k, _)| k)
                    .collect();
                return Err(QueueError::QueueNameExists(differing.join(", ")));
            }
            let now = self.now_ms();
            if let Some(at) = lock(&self.inner.deleted_names).get(name) {
                if now - at < DELETED_NAME_HOLD_MS {
                    return Err(QueueError::QueueDeletedRecently);
                }
            }
            for k in tags.keys() {
                if k.is_empty() || k.len() > 128 {
                    return Err(QueueError::InvalidParameterValue(format!(
                        "Tag key '{k}' must be 1 to 128 characters"
                    )));
                }
            }
            let record = QueueRecord {
                id: self.inner.store.next_queue_id()?,
                name: name.to_string(),
                config: config.clone(),
                tags: tags.clone(),
                permissions: BTreeMap::new(),
                created_s: now / 1000,
                modified_s: now / 1000,
            };
            self.inner.store.put_queue(&record)?;
            self.inner.queues.write().unwrap_or_else(|p| p.into_inner()).insert(
                name.to_string(),
                Arc::new(Queue {
                    record: Mutex::new(record.clone()),
                    state: Mutex::new(QueueState::new(config)),
                    notify: Notify::new(),
                    deleted: AtomicBool::new(false),
                }),
            );
            record
        };
        self.inner.store.flush().await?;
        tracing::info!(queue = %record.name, fifo = record.config.fifo, "queue created");
        Ok(())
    }

    pub async fn delete_queue(&self, name: &str) -> Result<(), QueueError> {
        let q = self.queue(name)?;
        let record = lock(&q.record).clone();
        self.inner.queues.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        q.deleted.store(true, Ordering::SeqCst);
        q.notify.notify_waiters();
        lock(&self.inner.deleted_names).insert(name.to_string(), self.now_ms());
        self.inner.store.delete_queue(&record)?;
        self.inner.store.flush().await?;
        tracing::info!(queue = %name, "queue deleted");
        Ok(())
    }

    /// Queue names with `prefix`, sorted.
    pub fn list_queues(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect();
        names.sort();
        names
    }

    pub fn exists(&self, name: &str) -> bool {
        self.queue(name).is_ok()
    }

    /// GetQueueAttributes: `names` may hold `All`.
    pub fn get_attributes(&self, name: &str, names: &[String]) -> Result<BTreeMap<String, String>, QueueError> {
        let q = self.queue(name)?;
        let now = self.now_ms();
        let record = lock(&q.record).clone();
        let (visible, delayed, in_flight, config) = {
            let s = lock(&q.state);
            let (v, d, i) = s.counts(now);
            (v, d, i, s.config.clone())
        };
        let mut all = config.to_map();
        all.insert("ApproximateNumberOfMessages".into(), visible.to_string());
        all.insert("ApproximateNumberOfMessagesDelayed".into(), delayed.to_string());
        all.insert("ApproximateNumberOfMessagesNotVisible".into(), in_flight.to_string());
        all.insert("CreatedTimestamp".into(), record.created_s.to_string());
        all.insert("LastModifiedTimestamp".into(), record.modified_s.to_string());
        all.insert("QueueArn".into(), self.arn(name));
        let known = |n: &str| {
            n == "All"
                || all.contains_key(n)
                || config::READ_ONLY.contains(&n)
                || matches!(
                    n,
                    "Policy"
                        | "RedrivePolicy"
                        | "RedriveAllowPolicy"
                        | "FifoQueue"
                        | "ContentBasedDeduplication"
                        | "KmsMasterKeyId"
                        | "KmsDataKeyReusePeriodSeconds"
                        | "DeduplicationScope"
                        | "FifoThroughputLimit"
                        | "SqsManagedSseEnabled"
                )
        };
        if let Some(bad) = names.iter().find(|n| !known(n)) {
            return Err(QueueError::InvalidAttributeName(format!("Unknown Attribute {bad}.")));
        }
        if names.iter().any(|n| n == "All") {
            return Ok(all);
        }
        Ok(all.into_iter().filter(|(k, _)| names.contains(k)).collect())
    }

    pub async fn set_attributes(&self, name: &str, attributes: &BTreeMap<String, String>) -> Result<(), QueueError> {
        let q = self.queue(name)?;
        let current = lock(&q.state).config.clone();
        let config = current.with(attributes, false)?;
        self.check_redrive(name, &config)?;
        let record = {
            let mut r = lock(&q.record);
            r.config = config.clone();
            r.modified_s = self.now_ms() / 1000;
            r.clone()
        };
        lock(&q.state).config = config;
        self.inner.store.put_queue(&record)?;
        self.inner.store.flush().await?;
        q.notify.notify_waiters();
        Ok(())
    }

    pub(super) async fn update_record(
        &self,
        name: &str,
        change: impl FnOnce(&mut QueueRecord) -> Result<(), QueueError>,
    ) -> Result<(), QueueError> {
        let q = self.queue(name)?;
        let record = {
            let mut r = lock(&q.record);
            let mut copy = r.clone();
            change(&mut copy)?;
            *r = copy.clone();
            copy
        };
        self.inner.store.put_queue(&record)?;
        self.inner.store.flush().await
    }

    pub async fn tag_queue(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<(), QueueError> {
        self.update_record(name, |r| {
            r.tags.extend(tags.clone());
            Ok(())
        })
        .await
    }

    pub async fn untag_queue(&self, name: &str, keys: &[String]) -> Result<(), QueueError> {
        self.update_record(name, |r| {
            for k in keys {
                r.tags.remove(k);
            }
            Ok(())
        })
        .await
    }

    pub fn list_tags(&self, name: &str) -> Result<BTreeMap<String, String>, QueueError> {
        Ok(lock(&self.queue(name)?.record).tags.clone())
    }

    pub async fn add_permission(
        &self,
        name: &str,
        label: &str,
        accounts: &[String],
        actions: &[String],
    ) -> Result<(), QueueError> {
        if label.is_empty()
            || label.len() > 80
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(QueueError::InvalidParameterValue(format!(
                "Label '{label}' must be 1 to 80 alphanumerics, hyphens or underscores"
            )));
        }
        if accounts.is_empty() || actions.is_empty() {
            return Err(QueueError::MissingParameter("AWSAccountIds and Actions are required".into()));
        }
        if actions.len() > 7 {
            return Err(QueueError::OverLimit("A policy statement may name at most 7 actions".into()));
        }
        self.update_record(name, |r| {
            if r.permissions.contains_key(label) {
                return Err(QueueError::InvalidParameterValue(format!(
                    "Value {label} for parameter Label is invalid. Reason: Already exists."
                )));
            }
            r.permissions.insert(label.to_string(), (accounts.to_vec(), actions.to_vec()));
            Ok(())
        })
        .await
    }

    pub async fn remove_permission(&self, name: &str, label: &str) -> Result<(), QueueError> {
        self.update_record(name, |r| {
            r.permissions.remove(label).map(|_| ()).ok_or_else(|| {
                QueueError::InvalidParameterValue(format!(
                    "Value {label} for parameter Label is invalid. Reason: can't find label."
                ))
            })
        })
        .await
    }

    /// The permissions granted with AddPermission, as an IAM policy document.
    pub fn policy(&self, name: &str) -> Result<Option<String>, QueueError> {
        let record = lock(&self.queue(name)?.record).clone();
        if record.permissions.is_empty() {
            return Ok(None);
        }
        let statements: Vec<serde_json::Value> = record
            .permissions
            .iter()
            .map(|(label, (accounts, actions))| {
                serde_json::json!({
                    "Sid": label,
                    "Effect": "Allow",
                    "Principal": { "AWS": accounts.iter().map(|a| format!("arn:aws:iam::{a}:root")).collect::<Vec<_>>() },
                    "Action": actions.iter().map(|a| format!("SQS:{a}")).collect::<Vec<_>>(),
                    "Resource": self.arn(name),
                })
            })
            .collect();
        Ok(Some(serde_json::json!({ "Version": "2012-10-17", "Id": format!("{}/SQSDefaultPolicy", self.arn(name)), "Statement": statements }).to_string()))
    }

    pub async fn purge_queue(&self, name: &str) -> Result<(), QueueError> {
        let q = self.queue(name)?;
        let now = self.now_ms();
        let (id, removed) = {
            let mut s = lock(&q.state);
            if s.last_purge_ms.is_some_and(|t| now - t < PURGE_INTERVAL_MS) {
                return Err(QueueError::PurgeQueueInProgress(self.arn(name)));
            }
            s.last_purge_ms = Some(now);
            (lock(&q.record).id, s.purge())
        };
        self.inner.store.remove_messages(id, &removed)?;
        self.inner.store.flush().await
    }

    /// Queues whose RedrivePolicy points at `name`.
    pub fn dead_letter_sources(&self, name: &str) -> Result<Vec<String>, QueueError> {
        self.queue(name)?;
        let arn = self.arn(name);
        let queues = self.inner.queues.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<String> = queues
            .iter()
            .filter(|(_, q)| lock(&q.state).config.redrive.as_ref().is_some_and(|r| r.dead_letter_target_arn == arn))
            .map(|(n, _)| n.clone())
            .collect();
        out.sort();
        Ok(out)
    }
}
