//! Messages: send (with FIFO deduplication), receive (visibility, long polls,
//! dead-letter moves, ReceiveRequestAttemptId replays), delete, change visibility.

use super::*;

impl QueueEngine {
    /// Checks a message against the queue's rules; returns its size in bytes.
    pub(super) fn check_send(config: &QueueConfig, req: &SendRequest) -> Result<usize, QueueError> {
        check_body(&req.body)?;
        let size = req.body.len() + check_attributes(&req.attributes)?;
        if size > config.maximum_message_size as usize {
            return Err(QueueError::InvalidParameterValue(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
                config.maximum_message_size
            )));
        }
        for (n, a) in &req.system_attributes {
            if n != "AWSTraceHeader" || a.data_type != "String" {
                return Err(QueueError::InvalidParameterValue(format!(
                    "Message system attribute '{n}' is not supported on send"
                )));
            }
        }
        if let Some(d) = req.delay_s {
            if d > 900 {
                return Err(invalid_value(d, "DelaySeconds", "DelaySeconds must be >= 0 and <= 900."));
            }
            if config.fifo && d > 0 {
                return Err(invalid_value(d, "DelaySeconds", NOT_FOR_THIS_QUEUE_TYPE));
            }
        }
        if config.fifo {
            let group = req.group_id.as_deref().ok_or_else(|| {
                QueueError::MissingParameter("The request must contain the parameter MessageGroupId.".into())
            })?;
            check_fifo_id("MessageGroupId", group)?;
            match &req.dedup_id {
                Some(d) => check_fifo_id("MessageDeduplicationId", d)?,
                None if config.content_based_deduplication => {}
                None => {
                    return Err(QueueError::InvalidParameterValue(
                        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly".into(),
                    ))
                }
            }
        } else {
            if let Some(d) = &req.dedup_id {
                return Err(invalid_value(d, "MessageDeduplicationId", NOT_FOR_THIS_QUEUE_TYPE));
            }
            if let Some(g) = &req.group_id {
                check_fifo_id("MessageGroupId", g)?;
            }
        }
        Ok(size)
    }

    /// SendMessage.
    pub async fn send(&self, name: &QueueId, req: SendRequest) -> Result<SendResult, QueueError> {
        self.send_batch(name, vec![req]).await?.pop().unwrap_or(Err(QueueError::EmptyBatchRequest("SendMessageBatch")))
    }

    /// Sends several messages with one flush; each gets its own result, in order.
    pub async fn send_batch(
        &self,
        name: &QueueId,
        reqs: Vec<SendRequest>,
    ) -> Result<Vec<Result<SendResult, QueueError>>, QueueError> {
        let q = self.queue(name)?;
        let bytes: usize = reqs.iter().map(|r| r.body.len() + 256).sum();
        self.inner.disk.check(bytes as u64)?;
        let now = self.now_ms();
        let config = lock(&q.state).config.clone();
        if config.fifo {
            // On a FIFO queue these fail the whole request, not the one entry.
            if reqs.iter().any(|r| r.group_id.is_none()) {
                return Err(QueueError::MissingParameter(
                    "The request must contain the parameter MessageGroupId.".into(),
                ));
            }
            if !config.content_based_deduplication && reqs.iter().any(|r| r.dedup_id.is_none()) {
                return Err(QueueError::InvalidParameterValue(
                    "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly".into(),
                ));
            }
        }
        let checked: Vec<Result<usize, QueueError>> = reqs.iter().map(|r| Self::check_send(&config, r)).collect();
        let _fifo_send = if config.fifo { Some(q.fifo_send.lock().await) } else { None };
        let (queue_id, _) = {
            let r = lock(&q.record);
            (r.id, ())
        };
        let mut results: Vec<Result<SendResult, QueueError>> = Vec::with_capacity(reqs.len());
        let mut new_messages: Vec<StoredMessage> = Vec::new();
        let mut new_dedup: Vec<(String, DedupEntry)> = Vec::new();
        {
            let mut s = lock(&q.state);
            for (req, check) in reqs.into_iter().zip(checked) {
                if let Err(e) = check {
                    results.push(Err(e));
                    continue;
                }
                let dedup_key = config.fifo.then(|| {
                    let id =
                        req.dedup_id.clone().unwrap_or_else(|| crate::wire::sigv4::sha256_hex(req.body.as_bytes()));
                    match config.passthrough.get("DeduplicationScope").map(String::as_str) {
                        Some("messageGroup") => format!("{}\u{0}{id}", req.group_id.clone().unwrap_or_default()),
                        _ => id,
                    }
                });
                let md5_of_body = crate::wire::sqs_md5::md5_hex(req.body.as_bytes());
                if let Some(key) = &dedup_key {
                    // An earlier entry of this batch, or a durable earlier send.
                    let earlier = new_dedup.iter().find(|(k, _)| k == key).map(|(_, e)| e.clone());
                    if let Some(hit) = earlier.or_else(|| s.duplicate_of(key, now)) {
                        let probe = StoredMessage {
                            seq: 0,
                            id: hit.message_id.clone(),
                            attributes: req.attributes.clone(),
                            system_attributes: req.system_attributes.clone(),
                            sent_ms: now,
                            ..StoredMessage::default()
                        };
                        results.push(Ok(SendResult {
                            message_id: hit.message_id,
                            md5_of_body,
                            md5_of_attributes: probe.md5_of_attributes(),
                            md5_of_system_attributes: probe.md5_of_system_attributes(),
                            sequence_number: hit.sequence_number,
                        }));
                        continue;
                    }
                }
                let seq = s.next_seq();
                let delay = req.delay_s.unwrap_or(config.delay_s);
                let m = StoredMessage {
                    seq,
                    id: uuid::Uuid::new_v4().to_string(),
                    body: req.body,
                    attributes: req.attributes,
                    system_attributes: req.system_attributes,
                    sent_ms: now,
                    sender_id: name.scope.account.clone(),
                    group_id: req.group_id,
                    dedup_id: req
                        .dedup_id
                        .clone()
                        .or_else(|| dedup_key.as_ref().map(|_| String::new()))
                        .filter(|d| !d.is_empty()),
                    sequence_number: config.fifo.then(|| fifo_sequence_number(seq)),
                    visible_at_ms: if delay > 0 { now + i64::from(delay) * 1000 } else { 0 },
                    ..StoredMessage::default()
                };
                if let Some(key) = dedup_key {
                    let entry = DedupEntry {
                        expires_ms: now + DEDUP_WINDOW_MS,
                        message_id: m.id.clone(),
                        sequence_number: m.sequence_number.clone(),
                    };
                    new_dedup.push((key, entry));
                }
                results.push(Ok(SendResult {
                    message_id: m.id.clone(),
                    md5_of_body: m.md5_of_body(),
                    md5_of_attributes: m.md5_of_attributes(),
                    md5_of_system_attributes: m.md5_of_system_attributes(),
                    sequence_number: m.sequence_number.clone(),
                }));
                new_messages.push(m);
            }
        }
        if new_messages.is_empty() {
            return Ok(results);
        }
        let written = self.inner.store.write_new(
            queue_id,
            &mut new_messages,
            &new_dedup.iter().map(|(k, e)| (k.as_str(), e)).collect::<Vec<_>>(),
        );
        let durable = match written {
            Ok(()) => self.inner.store.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = durable {
            tracing::error!(queue = %name, error = %e, "send not persisted");
            return Err(e.into());
        }
        {
            // Durable now: receivable, and remembered for deduplication.
            let mut s = lock(&q.state);
            for m in new_messages {
                s.add(m.without_payload());
            }
            for (key, entry) in new_dedup {
                s.remember_dedup(key, entry);
            }
        }
        q.notify.notify_waiters();
        Ok(results)
    }

    pub(super) fn receipt(&self, queue_id: u64, m: &StoredMessage) -> String {
        let r = Receipt { q: queue_id, s: m.seq, r: m.receive_count };
        self.inner.receipts.sign(&serde_json::to_vec(&r).unwrap_or_default())
    }

    pub(super) fn open_receipt(&self, queue_id: u64, handle: &str) -> Result<Receipt, QueueError> {
        let bytes =
            self.inner.receipts.open(handle).map_err(|_| QueueError::ReceiptHandleIsInvalid(handle.to_string()))?;
        let r: Receipt =
            serde_json::from_slice(&bytes).map_err(|_| QueueError::ReceiptHandleIsInvalid(handle.to_string()))?;
        if r.q != queue_id {
            return Err(QueueError::ReceiptHandleIsInvalid(handle.to_string()));
        }
        Ok(r)
    }

    /// One attempt to receive: applies retention and dead-lettering on the way.
    pub(super) fn try_receive(
        &self,
        name: &QueueId,
        q: &Queue,
        max: usize,
        visibility_ms: i64,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let now = self.now_ms();
        let queue_id = lock(&q.record).id;
        let (got, redrive) = {
            let mut s = lock(&q.state);
            let got = s.receive(max, visibility_ms, now);
            (got, s.config.redrive.clone())
        };
        if got.over_limit && got.messages.is_empty() && !lock(&q.state).config.fifo {
            return Err(QueueError::OverLimit("Too many messages in flight (the limit is 120000)".into()));
        }
        if !got.expired.is_empty() {
            self.inner.store.remove_messages(queue_id, &got.expired)?;
        }
        for m in got.to_dead_letter {
            self.dead_letter(name, queue_id, m, redrive.as_ref().map(|r| r.dead_letter_target_arn.as_str()), now)?;
        }
        if !got.messages.is_empty() {
            self.inner.store.write(queue_id, &got.messages.iter().collect::<Vec<_>>(), &[])?;
        }
        // Payloads live on disk only: read back for what is handed out.
        let mut out = Vec::with_capacity(got.messages.len());
        let mut torn = Vec::new();
        for m in got.messages {
            match self.inner.store.payload(&m)? {
                Some(p) => {
                    let receipt_handle = self.receipt(queue_id, &m);
                    out.push(ReceivedMessage { receipt_handle, message: m.with_payload(p) });
                }
                None => {
                    // Its record reached disk before its payload and a crash came in
                    // between: the send was never acknowledged, so it never existed.
                    tracing::warn!(queue = %name, message = %m.id, "a message whose payload a crash cut off is dropped (its send was never acknowledged)");
                    torn.push(m.seq);
                }
            }
        }
        if !torn.is_empty() {
            let mut s = lock(&q.state);
            torn.iter().for_each(|seq| drop(s.remove(*seq)));
            drop(s);
            self.inner.store.remove_messages(queue_id, &torn)?;
        }
        Ok(out)
    }

    /// Moves a message that passed maxReceiveCount to the dead-letter queue, keeping
    /// its id, body and first send time.
    pub(super) fn dead_letter(
        &self,
        name: &QueueId,
        from_id: u64,
        m: StoredMessage,
        target: Option<&str>,
        now: i64,
    ) -> Result<(), QueueError> {
        let Some((dlq_name, dlq)) = target.and_then(|arn| self.queue_by_arn(arn)) else {
            // The dead-letter queue is gone: keep the message where it is.
            tracing::warn!(queue = %name, "dead-letter queue missing; message kept");
            if let Ok(q) = self.queue(name) {
                lock(&q.state).add(StoredMessage { visible_at_ms: 0, ..m });
            }
            return Ok(());
        };
        let moved = self.transfer(from_id, m, &dlq, Some(name.arn()))?;
        tracing::debug!(queue = %name, dead_letter_queue = %dlq_name, message = %moved.id, "message moved to the dead-letter queue");
        let _ = now;
        Ok(())
    }

    /// Moves message `m` (stored under queue `from_id`) into `dest`, renumbered and
    /// fresh (no receives), in one atomic store batch; wakes `dest`'s waiters.
    pub(super) fn transfer(
        &self,
        from_id: u64,
        m: StoredMessage,
        dest: &Queue,
        dead_letter_source_arn: Option<String>,
    ) -> Result<StoredMessage, QueueError> {
        let dest_id = lock(&dest.record).id;
        let from_seq = m.seq;
        let moved = {
            let mut s = lock(&dest.state);
            let seq = s.next_seq();
            let moved = StoredMessage {
                seq,
                receive_count: 0,
                first_receive_ms: None,
                visible_at_ms: 0,
                sequence_number: m.sequence_number.as_ref().map(|_| fifo_sequence_number(seq)),
                dead_letter_source_arn,
                ..m
            };
            s.add(moved.without_payload());
            moved
        };
        self.inner.store.move_message(from_id, from_seq, dest_id, &moved)?;
        dest.notify.notify_waiters();
        Ok(moved)
    }

    /// ReceiveMessage, long-polling up to the wait time; wakes as soon as a message
    /// may be available.
    pub async fn receive(&self, name: &QueueId, req: ReceiveRequest) -> Result<Vec<ReceivedMessage>, QueueError> {
        let q = self.queue(name)?;
        if !(1..=10).contains(&req.max_messages) {
            return Err(QueueError::InvalidParameterValue(format!(
                "Value {} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.",
                req.max_messages
            )));
        }
        let config = lock(&q.state).config.clone();
        let visibility_s = req.visibility_timeout_s.unwrap_or(config.visibility_timeout_s);
        if visibility_s > 43_200 {
            return Err(QueueError::InvalidParameterValue("VisibilityTimeout must be 0 to 43200".into()));
        }
        let wait_s = req.wait_time_s.unwrap_or(config.receive_wait_s);
        if wait_s > 20 {
            return Err(QueueError::InvalidParameterValue(format!(
                "Value {wait_s} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
            )));
        }
        let attempt_key = match &req.attempt_id {
            Some(a) if config.fifo => {
                check_fifo_id("ReceiveRequestAttemptId", a)?;
                let key = (name.key(), a.clone());
                if let Some(hit) = self.replay_attempt(&q, &key) {
                    return Ok(hit);
                }
                Some(key)
            }
            _ => None,
        };
        let got = self.receive_waiting(name, &q, &req, visibility_s, wait_s).await?;
        if let Some(key) = attempt_key {
            let now = self.now_ms();
            let mut attempts = lock(&self.inner.attempts);
            attempts.retain(|_, a| a.expires_ms > now);
            attempts.insert(key, Attempt { expires_ms: now + DEDUP_WINDOW_MS, received: got.clone() });
        }
        Ok(got)
    }

    /// The messages an earlier receive with the same attempt id returned, if every one
    /// is still in flight under that receipt.
    pub(super) fn replay_attempt(&self, q: &Queue, key: &(String, String)) -> Option<Vec<ReceivedMessage>> {
        let now = self.now_ms();
        let attempts = lock(&self.inner.attempts);
        let a = attempts.get(key).filter(|a| a.expires_ms > now)?;
        let s = lock(&q.state);
        a.received
            .iter()
            .all(|r| s.check_handle(r.message.seq, r.message.receive_count) == HandleCheck::Current)
            .then(|| a.received.clone())
    }

    pub(super) async fn receive_waiting(
        &self,
        name: &QueueId,
        q: &Queue,
        req: &ReceiveRequest,
        visibility_s: u32,
        wait_s: u32,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(wait_s));
        loop {
            let notified = q.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if q.deleted.load(Ordering::SeqCst) {
                return Err(QueueError::QueueDoesNotExist);
            }
            let got = self.try_receive(name, q, req.max_messages as usize, i64::from(visibility_s) * 1000)?;
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            // Sleep until a send wakes us, a hidden message becomes visible, or time is up.
            let mut wake = deadline;
            if let Some(at) = lock(&q.state).next_visible_ms() {
                let ms = (at - self.now_ms()).max(1) as u64;
                wake = wake.min(now + Duration::from_millis(ms));
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// DeleteMessage. Any receipt handle of the message deletes it, the one of an
    /// earlier receive too (as SQS does, though its documentation allows otherwise);
    /// deleting a message already gone succeeds.
    pub fn delete_message(&self, name: &QueueId, handle: &str) -> Result<(), QueueError> {
        let q = self.queue(name)?;
        let queue_id = lock(&q.record).id;
        let r = self.open_receipt(queue_id, handle)?;
        let removed = lock(&q.state).remove(r.s).is_some();
        if removed {
            self.inner.store.remove_messages(queue_id, &[r.s])?;
            q.notify.notify_waiters();
        }
        Ok(())
    }

    pub fn change_visibility(&self, name: &QueueId, handle: &str, timeout_s: i64) -> Result<(), QueueError> {
        let q = self.queue(name)?;
        if !(0..=43_200).contains(&timeout_s) {
            return Err(QueueError::InvalidParameterValue(format!(
                "Value {timeout_s} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."
            )));
        }
        let queue_id = lock(&q.record).id;
        let r = self.open_receipt(queue_id, handle)?;
        let now = self.now_ms();
        // Any receipt handle of an in-flight message changes it (an earlier receive's
        // too, as on SQS); a message that is visible or gone is not in flight.
        let changed = {
            let mut s = lock(&q.state);
            if !s.is_in_flight(r.s) {
                return Err(QueueError::MessageNotInflight);
            }
            s.change_visibility(r.s, timeout_s * 1000, now)
        };
        if let Some(m) = changed {
            self.inner.store.write(queue_id, &[&m], &[])?;
        }
        q.notify.notify_waiters();
        Ok(())
    }
}
