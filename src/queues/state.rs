//! One queue's messages in memory and the rules that move them: delay, visibility,
//! FIFO group locking and deduplication, retention, the dead-letter threshold.
//!
//! Pure: every operation takes the current time in milliseconds and returns what
//! changed, so the engine can persist it; nothing here does I/O or reads a clock.

use std::collections::{BTreeSet, HashMap};

use super::config::QueueConfig;
use super::message::StoredMessage;

/// The FIFO deduplication interval.
pub const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;
pub const STANDARD_INFLIGHT_LIMIT: usize = 120_000;
pub const FIFO_INFLIGHT_LIMIT: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DedupEntry {
    pub expires_ms: i64,
    pub message_id: String,
    pub sequence_number: Option<String>,
}

/// What `receive` decided.
#[derive(Debug, Default)]
pub struct Received {
    /// Messages now in flight (copies with the new receive count).
    pub messages: Vec<StoredMessage>,
    /// Messages past the queue's maxReceiveCount, removed here for the dead-letter queue.
    pub to_dead_letter: Vec<StoredMessage>,
    /// Messages past retention, removed.
    pub expired: Vec<u64>,
    /// The in-flight limit was reached (standard queues answer OverLimit).
    pub over_limit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleCheck {
    /// The handle is the message's latest receipt and the message is in flight.
    Current,
    /// The message was received again since (or is no longer in flight).
    Stale,
    /// The message is gone (deleted, expired, moved).
    Gone,
}

#[derive(Debug, Default)]
pub struct QueueState {
    pub config: QueueConfig,
    messages: HashMap<u64, StoredMessage>,
    /// Visible now, by sequence.
    ready: BTreeSet<u64>,
    /// Hidden until a time: (visible_at_ms, seq), delayed or in flight.
    hidden: BTreeSet<(i64, u64)>,
    in_flight: HashMap<u64, ()>,
    /// FIFO: messages in flight per group.
    group_in_flight: HashMap<String, u32>,
    dedup: HashMap<String, DedupEntry>,
    next_seq: u64,
    pub last_purge_ms: Option<i64>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig::new(false)
    }
}

impl QueueState {
    pub fn new(config: QueueConfig) -> Self {
        QueueState { config, next_seq: 1, ..Default::default() }
    }

    /// Restores a stored message (at start-up). Messages that were in flight become
    /// visible at their stored time, as after a visibility timeout.
    pub fn restore(&mut self, m: StoredMessage) {
        self.next_seq = self.next_seq.max(m.seq.saturating_add(1));
        self.place(m.seq, m.visible_at_ms, false);
        self.messages.insert(m.seq, m);
    }

    /// Restores a deduplication entry (at start-up).
    pub fn restore_dedup(&mut self, key: String, entry: DedupEntry) {
        self.dedup.insert(key, entry);
    }

    fn place(&mut self, seq: u64, visible_at_ms: i64, in_flight: bool) {
        self.ready.remove(&seq);
        if in_flight {
            self.in_flight.insert(seq, ());
        }
        if visible_at_ms > 0 {
            self.hidden.insert((visible_at_ms, seq));
        } else {
            self.ready.insert(seq);
        }
    }

    pub fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Moves messages whose hidden time has passed back to visible.
    pub fn promote(&mut self, now_ms: i64) {
        while let Some(&(at, seq)) = self.hidden.first() {
            if at > now_ms {
                break;
            }
            self.hidden.pop_first();
            if self.in_flight.remove(&seq).is_some() {
                self.release_group(seq);
            }
            if let Some(m) = self.messages.get_mut(&seq) {
                m.visible_at_ms = 0;
                self.ready.insert(seq);
            }
        }
    }

    fn release_group(&mut self, seq: u64) {
        let Some(g) = self.messages.get(&seq).and_then(|m| m.group_id.clone()) else { return };
        if let Some(n) = self.group_in_flight.get_mut(&g) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.group_in_flight.remove(&g);
            }
        }
    }

    /// When the next hidden message becomes visible, if any.
    pub fn next_visible_ms(&self) -> Option<i64> {
        self.hidden.first().map(|(at, _)| *at)
    }

    /// A FIFO deduplication hit within the window, if any.
    pub fn duplicate_of(&mut self, key: &str, now_ms: i64) -> Option<DedupEntry> {
        match self.dedup.get(key) {
            Some(e) if e.expires_ms > now_ms => Some(e.clone()),
            Some(_) => {
                self.dedup.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn remember_dedup(&mut self, key: String, entry: DedupEntry) {
        self.dedup.insert(key, entry);
    }

    /// Forgets deduplication entries past their window; returns their keys.
    pub fn expire_dedup(&mut self, now_ms: i64) -> Vec<String> {
        let gone: Vec<String> =
            self.dedup.iter().filter(|(_, e)| e.expires_ms <= now_ms).map(|(k, _)| k.clone()).collect();
        for k in &gone {
            self.dedup.remove(k);
        }
        gone
    }

    /// Adds a new message (already numbered with `next_seq`).
    pub fn add(&mut self, m: StoredMessage) {
        self.place(m.seq, m.visible_at_ms, false);
        self.messages.insert(m.seq, m);
    }

    fn expired(&self, m: &StoredMessage, now_ms: i64) -> bool {
        m.sent_ms + i64::from(self.config.retention_s) * 1000 <= now_ms
    }

    /// Takes up to `max` visible messages, hiding them for `visibility_ms`.
    pub fn receive(&mut self, max: usize, visibility_ms: i64, now_ms: i64) -> Received {
        self.promote(now_ms);
        let mut out = Received::default();
        let limit = if self.config.fifo { FIFO_INFLIGHT_LIMIT } else { STANDARD_INFLIGHT_LIMIT };
        let max_receives = self.config.redrive.as_ref().map(|r| r.max_receive_count);
        // Groups locked by earlier receives; groups taken by this one may give more.
        let mut taken_groups: Vec<String> = Vec::new();
        let candidates: Vec<u64> = self.ready.iter().copied().collect();
        for seq in candidates {
            if out.messages.len() >= max {
                break;
            }
            let Some(m) = self.messages.get(&seq) else {
                self.ready.remove(&seq);
                continue;
            };
            if self.expired(m, now_ms) {
                out.expired.push(seq);
                continue;
            }
            if let Some(g) = &m.group_id {
                if self.config.fifo && self.group_in_flight.contains_key(g) && !taken_groups.contains(g) {
                    continue;
                }
            }
            if max_receives.is_some_and(|n| m.receive_count >= n) {
                if let Some(m) = self.remove(seq) {
                    out.to_dead_letter.push(m);
                }
                continue;
            }
            if self.in_flight.len() >= limit {
                out.over_limit = true;
                break;
            }
            let visible_at = now_ms + visibility_ms;
            let Some(m) = self.messages.get_mut(&seq) else { continue };
            m.receive_count += 1;
            m.first_receive_ms.get_or_insert(now_ms);
            m.visible_at_ms = if visibility_ms > 0 { visible_at } else { 0 };
            let snapshot = m.clone();
            if visibility_ms > 0 {
                if let Some(g) = &snapshot.group_id {
                    if self.config.fifo {
                        *self.group_in_flight.entry(g.clone()).or_insert(0) += 1;
                        if !taken_groups.contains(g) {
                            taken_groups.push(g.clone());
                        }
                    }
                }
                self.place(seq, visible_at, true);
            }
            out.messages.push(snapshot);
        }
        for seq in &out.expired {
            self.remove(*seq);
        }
        out
    }

    /// Takes the first visible message out of the queue (a message move task).
    pub fn take_next_visible(&mut self, now_ms: i64) -> Option<StoredMessage> {
        self.promote(now_ms);
        let seq = *self.ready.first()?;
        self.remove(seq)
    }

    /// Removes a message wherever it is.
    pub fn remove(&mut self, seq: u64) -> Option<StoredMessage> {
        let m = self.messages.get(&seq)?;
        let at = m.visible_at_ms;
        self.ready.remove(&seq);
        self.hidden.remove(&(at, seq));
        if self.in_flight.remove(&seq).is_some() {
            self.release_group(seq);
        }
        self.messages.remove(&seq)
    }

    /// How a receipt (message `seq`, received as its `receive_count`-th receive)
    /// relates to the message now.
    pub fn check_handle(&self, seq: u64, receive_count: u32) -> HandleCheck {
        match self.messages.get(&seq) {
            None => HandleCheck::Gone,
            Some(m) if m.receive_count == receive_count && self.in_flight.contains_key(&seq) => HandleCheck::Current,
            Some(_) => HandleCheck::Stale,
        }
    }

    /// Sets an in-flight message's remaining visibility; 0 makes it visible now.
    pub fn change_visibility(&mut self, seq: u64, timeout_ms: i64, now_ms: i64) -> Option<StoredMessage> {
        let m = self.messages.get(&seq)?;
        let old = m.visible_at_ms;
        self.hidden.remove(&(old, seq));
        let at = if timeout_ms > 0 { now_ms + timeout_ms } else { 0 };
        if at == 0 {
            if self.in_flight.remove(&seq).is_some() {
                self.release_group(seq);
            }
            self.ready.insert(seq);
        } else {
            self.hidden.insert((at, seq));
        }
        let m = self.messages.get_mut(&seq)?;
        m.visible_at_ms = at;
        Some(m.clone())
    }

    /// Whether message `seq` is in flight (received and not yet visible again).
    pub fn is_in_flight(&self, seq: u64) -> bool {
        self.in_flight.contains_key(&seq)
    }

    pub fn get(&self, seq: u64) -> Option<&StoredMessage> {
        self.messages.get(&seq)
    }

    /// Removes every message; returns their sequence numbers.
    pub fn purge(&mut self) -> Vec<u64> {
        let all: Vec<u64> = self.messages.keys().copied().collect();
        self.messages.clear();
        self.ready.clear();
        self.hidden.clear();
        self.in_flight.clear();
        self.group_in_flight.clear();
        all
    }

    /// Removes messages past retention; returns their sequence numbers.
    pub fn expire(&mut self, now_ms: i64) -> Vec<u64> {
        let gone: Vec<u64> = self.messages.values().filter(|m| self.expired(m, now_ms)).map(|m| m.seq).collect();
        for s in &gone {
            self.remove(*s);
        }
        gone
    }

    /// (visible, delayed, in flight) counts.
    pub fn counts(&self, now_ms: i64) -> (usize, usize, usize) {
        let (mut due, mut delayed, mut in_flight) = (0, 0, 0);
        for (at, seq) in &self.hidden {
            if *at <= now_ms {
                due += 1;
            } else if self.in_flight.contains_key(seq) {
                in_flight += 1;
            } else {
                delayed += 1;
            }
        }
        (self.ready.len() + due, delayed, in_flight)
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queues::config::RedrivePolicy;

    fn msg(state: &mut QueueState, group: Option<&str>, now: i64, delay_ms: i64) -> u64 {
        let seq = state.next_seq();
        state.add(StoredMessage {
            seq,
            id: format!("m{seq}"),
            body: format!("body {seq}"),
            attributes: Default::default(),
            system_attributes: Default::default(),
            sent_ms: now,
            sender_id: "s".into(),
            group_id: group.map(str::to_string),
            dedup_id: None,
            sequence_number: None,
            receive_count: 0,
            first_receive_ms: None,
            visible_at_ms: if delay_ms > 0 { now + delay_ms } else { 0 },
            dead_letter_source_arn: None,
            payload_ref: None,
        });
        seq
    }

    fn seqs(r: &Received) -> Vec<u64> {
        r.messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn visibility_hides_then_returns_a_message() {
        let mut s = QueueState::new(QueueConfig::new(false));
        let a = msg(&mut s, None, 0, 0);
        assert_eq!(seqs(&s.receive(10, 30_000, 0)), vec![a]);
        assert!(s.receive(10, 30_000, 29_999).messages.is_empty());
        let again = s.receive(10, 30_000, 30_000);
        assert_eq!(seqs(&again), vec![a]);
        assert_eq!(again.messages[0].receive_count, 2);
        assert_eq!(s.check_handle(a, 1), HandleCheck::Stale);
        assert_eq!(s.check_handle(a, 2), HandleCheck::Current);
        s.remove(a);
        assert_eq!(s.check_handle(a, 2), HandleCheck::Gone);
    }

    #[test]
    fn delay_and_counts() {
        let mut s = QueueState::new(QueueConfig::new(false));
        msg(&mut s, None, 0, 5_000);
        msg(&mut s, None, 0, 0);
        assert_eq!(s.counts(0), (1, 1, 0));
        assert_eq!(s.receive(10, 1000, 0).messages.len(), 1);
        assert_eq!(s.counts(0), (0, 1, 1));
        assert_eq!(s.counts(5_000), (2, 0, 0));
        assert_eq!(s.next_visible_ms(), Some(1000));
    }

    #[test]
    fn fifo_groups_are_locked_while_in_flight_and_keep_order() {
        let mut s = QueueState::new(QueueConfig::new(true));
        let a1 = msg(&mut s, Some("a"), 0, 0);
        let b1 = msg(&mut s, Some("b"), 0, 0);
        let a2 = msg(&mut s, Some("a"), 0, 0);
        // One receive may take several of a group, in order.
        assert_eq!(seqs(&s.receive(2, 10_000, 0)), vec![a1, b1]);
        // Group a is locked by a1 in flight; b has nothing more.
        assert!(s.receive(10, 10_000, 1).messages.is_empty());
        s.remove(a1);
        assert_eq!(seqs(&s.receive(10, 10_000, 2)), vec![a2]);
        // b1's visibility runs out: it comes back first in its group.
        assert_eq!(seqs(&s.receive(10, 10_000, 10_000)), vec![b1]);
    }

    #[test]
    fn change_visibility_to_zero_unlocks_the_group() {
        let mut s = QueueState::new(QueueConfig::new(true));
        let a1 = msg(&mut s, Some("a"), 0, 0);
        let a2 = msg(&mut s, Some("a"), 0, 0);
        assert_eq!(seqs(&s.receive(1, 10_000, 0)), vec![a1]);
        s.change_visibility(a1, 0, 1);
        assert_eq!(seqs(&s.receive(10, 10_000, 1)), vec![a1, a2]);
    }

    #[test]
    fn past_max_receive_count_a_message_goes_to_the_dead_letter_queue() {
        let mut c = QueueConfig::new(false);
        c.redrive = Some(RedrivePolicy { dead_letter_target_arn: "arn".into(), max_receive_count: 2 });
        let mut s = QueueState::new(c);
        let a = msg(&mut s, None, 0, 0);
        assert_eq!(s.receive(1, 1, 0).messages.len(), 1);
        assert_eq!(s.receive(1, 1, 1).messages.len(), 1);
        let third = s.receive(1, 1, 2);
        assert!(third.messages.is_empty());
        assert_eq!(third.to_dead_letter.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![a]);
        assert!(s.is_empty());
    }

    #[test]
    fn retention_removes_old_messages() {
        let mut c = QueueConfig::new(false);
        c.retention_s = 60;
        let mut s = QueueState::new(c);
        let a = msg(&mut s, None, 0, 0);
        msg(&mut s, None, 30_000, 0);
        assert_eq!(s.expire(60_000), vec![a]);
        assert_eq!(s.len(), 1);
    }
}
