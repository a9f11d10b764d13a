//! Queue administration: create, delete, list, attributes, tags, permissions,
//! purge, dead-letter sources.

use super::*;

/// Most tags a queue holds.
pub const MAX_TAGS: usize = 50;

/// Actions AddPermission can grant to other accounts (`*` is all of them).
const GRANTABLE_ACTIONS: [&str; 9] = [
    "*",
    "ChangeMessageVisibility",
    "DeleteMessage",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "PurgeQueue",
    "ReceiveMessage",
    "SendMessage",
];

/// Actions only the queue's owner may call, which AddPermission refuses to grant.
const OWNER_ONLY_ACTIONS: [&str; 10] = [
    "AddPermission",
    "RemovePermission",
    "CreateQueue",
    "DeleteQueue",
    "SetQueueAttributes",
    "TagQueue",
    "UntagQueue",
    "ListQueueTags",
    "ListQueues",
    "StartMessageMoveTask",
];

/// Tag keys of 1 to 128 characters, values of at most 256.
fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), QueueError> {
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(QueueError::InvalidParameterValue(
                "Tag keys must be between 1 and 128 characters in length.".into(),
            ));
        }
        if v.chars().count() > 256 {
            return Err(QueueError::InvalidParameterValue(
                "Tag values may only be up to 256 characters in length.".into(),
            ));
        }
    }
    Ok(())
}

impl QueueEngine {
    /// Checks that a redrive target exists, has the source's type and admits it.
    pub(super) fn check_redrive(&self, name: &QueueId, config: &QueueConfig) -> Result<(), QueueError> {
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
        if &dlq_name == name {
            return Err(QueueError::InvalidParameterValue("A queue cannot be its own dead-letter queue".into()));
        }
        if !dlq_config.allows_source(&name.arn()) {
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
        name: &QueueId,
        attributes: &BTreeMap<String, String>,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), QueueError> {
        let fifo = validate_queue_name(&name.name)?;
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
            if let Some(at) = lock(&self.inner.deleted_names).get(&name.key()) {
                if now - at < DELETED_NAME_HOLD_MS {
                    return Err(QueueError::QueueDeletedRecently);
                }
            }
            check_tags(tags)?;
            if tags.len() > MAX_TAGS {
                return Err(QueueError::InvalidParameterValue(format!("Too many tags added for queue {}.", name.name)));
            }
            let record = QueueRecord {
                id: self.inner.store.next_queue_id()?,
                name: name.name.clone(),
                scope: name.scope.clone(),
                config: config.clone(),
                tags: tags.clone(),
                permissions: BTreeMap::new(),
                created_s: now / 1000,
                modified_s: now / 1000,
            };
            self.inner.store.put_queue(&record)?;
            self.inner.queues.write().unwrap_or_else(|p| p.into_inner()).insert(
                name.key(),
                Arc::new(Queue {
                    record: Mutex::new(record.clone()),
                    state: Mutex::new(QueueState::new(config)),
                    notify: Notify::new(),
                    deleted: AtomicBool::new(false),
                    fifo_send: tokio::sync::Mutex::new(()),
                }),
            );
            record
        };
        self.inner.store.flush().await?;
        tracing::info!(queue = %record.name, fifo = record.config.fifo, "queue created");
        Ok(())
    }

    pub async fn delete_queue(&self, name: &QueueId) -> Result<(), QueueError> {
        let q = self.queue(name)?;
        let record = lock(&q.record).clone();
        self.inner.queues.write().unwrap_or_else(|p| p.into_inner()).remove(&name.key());
        q.deleted.store(true, Ordering::SeqCst);
        q.notify.notify_waiters();
        lock(&self.inner.deleted_names).insert(name.key(), self.now_ms());
        self.inner.store.delete_queue(&record)?;
        self.inner.store.flush().await?;
        tracing::info!(queue = %name, "queue deleted");
        Ok(())
    }

    /// The names of the queues of `scope` with `prefix`, sorted.
    pub fn list_queues(&self, scope: &Scope, prefix: &str) -> Vec<String> {
        let start = scope.key(prefix);
        let mut names: Vec<String> = self
            .inner
            .queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|k| k.starts_with(&start))
            .filter_map(|k| Scope::split_key(k).map(|(_, n)| n.to_string()))
            .collect();
        names.sort();
        names
    }

    pub fn exists(&self, name: &QueueId) -> bool {
        self.queue(name).is_ok()
    }

    /// GetQueueAttributes: `names` may hold `All`.
    pub fn get_attributes(&self, name: &QueueId, names: &[String]) -> Result<BTreeMap<String, String>, QueueError> {
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
        all.insert("QueueArn".into(), name.arn());
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

    pub async fn set_attributes(
        &self,
        name: &QueueId,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), QueueError> {
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
        name: &QueueId,
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
        Ok(self.inner.store.flush().await?)
    }

    /// TagQueue: adds or replaces tags; a queue holds at most 50.
    pub async fn tag_queue(&self, name: &QueueId, tags: &BTreeMap<String, String>) -> Result<(), QueueError> {
        self.update_record(name, |r| {
            if tags.is_empty() {
                return Err(QueueError::MissingParameter("The request must contain the parameter Tags.".into()));
            }
            check_tags(tags)?;
            let mut merged = r.tags.clone();
            merged.extend(tags.clone());
            if merged.len() > MAX_TAGS {
                return Err(QueueError::InvalidParameterValue(format!("Too many tags added for queue {}.", name.name)));
            }
            r.tags = merged;
            Ok(())
        })
        .await
    }

    pub async fn untag_queue(&self, name: &QueueId, keys: &[String]) -> Result<(), QueueError> {
        self.update_record(name, |r| {
            if keys.is_empty() || keys.iter().any(|k| k.is_empty() || k.chars().count() > 128) {
                return Err(QueueError::InvalidParameterValue(
                    "Tag keys must be between 1 and 128 characters in length.".into(),
                ));
            }
            for k in keys {
                r.tags.remove(k);
            }
            Ok(())
        })
        .await
    }

    pub fn list_tags(&self, name: &QueueId) -> Result<BTreeMap<String, String>, QueueError> {
        Ok(lock(&self.queue(name)?.record).tags.clone())
    }

    /// AddPermission: grants `actions` on the queue to `accounts` under `label`.
    pub async fn add_permission(
        &self,
        name: &QueueId,
        label: &str,
        accounts: &[String],
        actions: &[String],
    ) -> Result<(), QueueError> {
        if label.is_empty()
            || label.len() > 80
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid_value(
                label,
                "Label",
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
            ));
        }
        if actions.is_empty() {
            return Err(QueueError::MissingParameter("The request must contain the parameter Actions.".into()));
        }
        if accounts.is_empty() {
            return Err(invalid_value("[]", "PrincipalId", "Unable to verify."));
        }
        if let Some(bad) = accounts.iter().find(|a| !crate::scope::is_account(a)) {
            return Err(invalid_value(bad, "PrincipalId", "Unable to verify."));
        }
        for action in actions {
            if !GRANTABLE_ACTIONS.contains(&action.as_str()) {
                let reason = if OWNER_ONLY_ACTIONS.contains(&action.as_str()) {
                    "Only the queue owner is allowed to invoke this action."
                } else {
                    "Please refer to the appropriate WSDL for a list of valid actions."
                };
                return Err(invalid_value(format!("SQS:{action}"), "ActionName", reason));
            }
        }
        if actions.len() > 7 {
            return Err(QueueError::OverLimit(format!("{} Actions were found, maximum allowed is 7.", actions.len())));
        }
        self.update_record(name, |r| {
            if r.permissions.contains_key(label) {
                return Err(invalid_value(label, "Label", "Already exists."));
            }
            r.permissions.insert(label.to_string(), (accounts.to_vec(), actions.to_vec()));
            Ok(())
        })
        .await
    }

    pub async fn remove_permission(&self, name: &QueueId, label: &str) -> Result<(), QueueError> {
        self.update_record(name, |r| {
            r.permissions
                .remove(label)
                .map(|_| ())
                .ok_or_else(|| invalid_value(label, "Label", "can't find label on existing policy."))
        })
        .await
    }

    /// The permissions granted with AddPermission, as the policy document SQS writes
    /// for them (`2008-10-17`, one statement per label, a single principal or action
    /// as a string).
    pub fn policy(&self, name: &QueueId) -> Result<Option<String>, QueueError> {
        let record = lock(&self.queue(name)?.record).clone();
        if record.permissions.is_empty() {
            return Ok(None);
        }
        let one_or_many = |items: Vec<String>| match <[String; 1]>::try_from(items) {
            Ok([one]) => serde_json::Value::String(one),
            Err(many) => serde_json::json!(many),
        };
        let statements: Vec<serde_json::Value> = record
            .permissions
            .iter()
            .map(|(label, (accounts, actions))| {
                let principals = accounts.iter().map(|a| format!("arn:{}:iam::{a}:root", name.scope.partition()));
                serde_json::json!({
                    "Sid": label,
                    "Effect": "Allow",
                    "Principal": { "AWS": one_or_many(principals.collect()) },
                    "Action": one_or_many(actions.iter().map(|a| format!("SQS:{a}")).collect()),
                    "Resource": name.arn(),
                })
            })
            .collect();
        let policy = serde_json::json!({
            "Version": "2008-10-17",
            "Id": format!("{}/SQSDefaultPolicy", name.arn()),
            "Statement": statements,
        });
        Ok(Some(policy.to_string()))
    }

    pub async fn purge_queue(&self, name: &QueueId) -> Result<(), QueueError> {
        let q = self.queue(name)?;
        let now = self.now_ms();
        let (id, removed) = {
            let mut s = lock(&q.state);
            if s.last_purge_ms.is_some_and(|t| now - t < PURGE_INTERVAL_MS) {
                return Err(QueueError::PurgeQueueInProgress(name.name.clone()));
            }
            s.last_purge_ms = Some(now);
            (lock(&q.record).id, s.purge())
        };
        self.inner.store.remove_messages(id, &removed)?;
        Ok(self.inner.store.flush().await?)
    }

    /// The names of the queues whose RedrivePolicy points at `name`.
    pub fn dead_letter_sources(&self, name: &QueueId) -> Result<Vec<String>, QueueError> {
        self.queue(name)?;
        let arn = name.arn();
        let queues = self.inner.queues.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<String> = queues
            .iter()
            .filter(|(_, q)| lock(&q.state).config.redrive.as_ref().is_some_and(|r| r.dead_letter_target_arn == arn))
            .filter_map(|(k, _)| Scope::split_key(k).map(|(_, n)| n.to_string()))
            .collect();
        out.sort();
        Ok(out)
    }
}
