//! Who is connected to which channel, and the routing of signalling messages between
//! them (ConnectAsMaster / ConnectAsViewer). In memory only: a connection is a
//! [`Membership`] with a bounded outbox the WebSocket task drains; dropping the
//! membership leaves the channel.
//!
//! - One master per channel: a newer master replaces the older one, whose connection
//!   is told to close. The same for a viewer reconnecting with the same client id.
//! - At most [`HubLimits::max_viewers`] viewers per channel (AWS: 10).
//! - A viewer's message while no master is connected is held for the channel's
//!   `MessageTtlSeconds` (at most [`HubLimits::max_pending`] messages and
//!   [`HubLimits::max_pending_bytes`] per channel, oldest dropped; at most
//!   [`HubLimits::max_pending_bytes_total`] across channels, past which new ones are
//!   refused) and delivered when a master connects. Expired messages are swept (at most
//!   once a second, on the next join or send), and a deleted channel's go with it
//!   ([`Hub::forget`]).
//! - A recipient whose outbox is full is not reading: the message is refused to the
//!   sender rather than buffered without bound.
//! - A storage session may claim a connected viewer (JoinStorageSessionAsViewer): while
//!   the [`ViewerClaim`] lives, that viewer's messages go to the session instead of the
//!   master, and the session sends to the viewer as a master would.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::clock::SharedClock;
use crate::wire::kvs_signaling::{ClientMessage, Delivery, Refusal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "MASTER",
            Role::Viewer => "VIEWER",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubLimits {
    pub max_viewers: usize,
    /// Messages waiting for one connection's socket.
    pub outbox: usize,
    /// Messages held for an absent master, per channel.
    pub max_pending: usize,
    /// Bytes of messages held for an absent master, per channel.
    pub max_pending_bytes: usize,
    /// Bytes of messages held, across every channel.
    pub max_pending_bytes_total: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            max_viewers: 10,
            outbox: 64,
            max_pending: 100,
            max_pending_bytes: 256 * 1024,
            max_pending_bytes_total: 32 << 20,
        }
    }
}

/// What a connection's task is told to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Deliver this message (the connection's task renders it for its socket).
    Message(Delivery),
    /// Close: a newer connection with the same role and id replaced this one.
    Replaced,
}

/// What became of a routed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// In the recipient's outbox.
    Delivered,
    /// Held for a master that is not connected.
    Held,
}

impl Routed {
    pub fn as_str(self) -> &'static str {
        match self {
            Routed::Delivered => "delivered",
            Routed::Held => "held",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    #[error("the channel already has {0} viewers connected, the most it may have")]
    TooManyViewers(usize),
    #[error("no viewer '{0}' is connected to the channel; connect it as VIEWER first")]
    NoViewer(String),
}

struct Member {
    conn: u64,
    tx: mpsc::Sender<Outbound>,
}

struct Pending {
    expires_ms: i64,
    message: Delivery,
}

/// The rooms, and what their held messages weigh together.
#[derive(Default)]
struct Rooms {
    by_arn: HashMap<String, Room>,
    pending_bytes: usize,
    last_sweep_ms: i64,
}

impl std::ops::Deref for Rooms {
    type Target = HashMap<String, Room>;
    fn deref(&self) -> &Self::Target {
        &self.by_arn
    }
}

impl std::ops::DerefMut for Rooms {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.by_arn
    }
}

impl Rooms {
    /// Drops held messages that expired (at most once a second), and rooms left empty.
    fn sweep(&mut self, now_ms: i64) {
        if now_ms - self.last_sweep_ms < 1000 {
            return;
        }
        self.last_sweep_ms = now_ms;
        let mut freed = 0;
        self.by_arn.retain(|_, room| {
            room.pending.retain(|p| {
                let keep = p.expires_ms >= now_ms;
                if !keep {
                    freed += p.message.weight();
                }
                keep
            });
            !room.is_empty()
        });
        self.pending_bytes = self.pending_bytes.saturating_sub(freed);
    }
}

#[derive(Default)]
struct Room {
    master: Option<Member>,
    viewers: HashMap<String, Member>,
    /// Viewers whose messages a storage session takes: viewer id → the session's outbox.
    claims: HashMap<String, Member>,
    pending: VecDeque<Pending>,
}

impl Room {
    fn is_empty(&self) -> bool {
        self.master.is_none() && self.viewers.is_empty() && self.claims.is_empty() && self.pending.is_empty()
    }
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    rooms: Mutex<Rooms>,
    next_conn: AtomicU64,
    clock: SharedClock,
    limits: HubLimits,
}

/// One connection's place in a channel; leaving is dropping it.
pub struct Membership {
    hub: Hub,
    pub channel_arn: String,
    pub role: Role,
    /// The viewer's client id; empty for the master.
    pub client_id: String,
    conn: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let (conn, id) = (self.conn, self.client_id.as_str());
        self.hub.leave_room(&self.channel_arn, |room| match self.role {
            Role::Master => {
                if room.master.as_ref().is_some_and(|m| m.conn == conn) {
                    room.master = None;
                }
            }
            Role::Viewer => remove_if_current(&mut room.viewers, id, conn),
        });
    }
}

/// A storage session's hold on one viewer; releasing it is dropping it.
pub struct ViewerClaim {
    hub: Hub,
    pub channel_arn: String,
    pub client_id: String,
    conn: u64,
}

impl Drop for ViewerClaim {
    fn drop(&mut self) {
        let (conn, id) = (self.conn, self.client_id.as_str());
        self.hub.leave_room(&self.channel_arn, |room| remove_if_current(&mut room.claims, id, conn));
    }
}

/// Removes `id`'s entry if it is still connection `conn` (not a newer one that replaced it).
fn remove_if_current(members: &mut HashMap<String, Member>, id: &str, conn: u64) {
    if members.get(id).is_some_and(|m| m.conn == conn) {
        members.remove(id);
    }
}

impl Hub {
    pub fn new(clock: SharedClock, limits: HubLimits) -> Self {
        Hub {
            inner: Arc::new(HubInner {
                rooms: Mutex::new(Rooms::default()),
                next_conn: AtomicU64::new(1),
                clock,
                limits,
            }),
        }
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A channel is gone (deleted): its held messages are dropped and its connections
    /// told to close.
    pub fn forget(&self, channel_arn: &str) {
        let mut rooms = self.rooms();
        if let Some(room) = rooms.by_arn.remove(channel_arn) {
            let held: usize = room.pending.iter().map(|p| p.message.weight()).sum();
            rooms.pending_bytes = rooms.pending_bytes.saturating_sub(held);
            for m in room.master.iter().chain(room.viewers.values()).chain(room.claims.values()) {
                let _ = m.tx.try_send(Outbound::Replaced);
            }
        }
    }

    /// Bytes of messages held for absent masters, across channels.
    pub fn pending_bytes(&self) -> usize {
        self.rooms().pending_bytes
    }

    /// Takes something out of a channel's room (`leave`), and the room with it once empty.
    fn leave_room(&self, channel_arn: &str, leave: impl FnOnce(&mut Room)) {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(channel_arn) else { return };
        leave(room);
        if room.is_empty() {
            rooms.remove(channel_arn);
        }
    }

    /// Connects to `channel_arn` as `role` (`client_id` for a viewer). Returns the
    /// membership and the outbox the connection's task drains.
    pub fn join(
        &self,
        channel_arn: &str,
        role: Role,
        client_id: &str,
    ) -> Result<(Membership, mpsc::Receiver<Outbound>), HubError> {
        let (tx, rx) = mpsc::channel(self.inner.limits.outbox);
        let conn = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let now = self.inner.clock.now_ms();
        let mut rooms = self.rooms();
        rooms.sweep(now);
        let mut released = 0;
        let room = rooms.entry(channel_arn.to_string()).or_default();
        match role {
            Role::Master => {
                if let Some(old) = room.master.replace(Member { conn, tx: tx.clone() }) {
                    let _ = old.tx.try_send(Outbound::Replaced);
                }
                // What viewers sent while no master was here, if still current.
                for p in room.pending.drain(..) {
                    released += p.message.weight();
                    if p.expires_ms >= now {
                        let _ = tx.try_send(Outbound::Message(p.message));
                    }
                }
            }
            Role::Viewer => {
                if !room.viewers.contains_key(client_id) && room.viewers.len() >= self.inner.limits.max_viewers {
                    let n = room.viewers.len();
                    if room.is_empty() {
                        rooms.remove(channel_arn);
                    }
                    return Err(HubError::TooManyViewers(n));
                }
                if let Some(old) = room.viewers.insert(client_id.to_string(), Member { conn, tx: tx.clone() }) {
                    let _ = old.tx.try_send(Outbound::Replaced);
                }
            }
        }
        rooms.pending_bytes = rooms.pending_bytes.saturating_sub(released);
        let membership = Membership {
            hub: self.clone(),
            channel_arn: channel_arn.to_string(),
            role,
            client_id: if role == Role::Viewer { client_id.to_string() } else { String::new() },
            conn,
        };
        Ok((membership, rx))
    }

    /// Claims the connected viewer `client_id` for a storage session: its messages come
    /// to the returned outbox from now on. A newer claim replaces an older one (told
    /// [`Outbound::Replaced`]).
    pub fn claim_viewer(
        &self,
        channel_arn: &str,
        client_id: &str,
    ) -> Result<(ViewerClaim, mpsc::Receiver<Outbound>), HubError> {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(channel_arn).filter(|r| r.viewers.contains_key(client_id)) else {
            return Err(HubError::NoViewer(client_id.to_string()));
        };
        let (tx, rx) = mpsc::channel(self.inner.limits.outbox);
        let conn = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = room.claims.insert(client_id.to_string(), Member { conn, tx }) {
            let _ = old.tx.try_send(Outbound::Replaced);
        }
        let claim = ViewerClaim {
            hub: self.clone(),
            channel_arn: channel_arn.to_string(),
            client_id: client_id.to_string(),
            conn,
        };
        Ok((claim, rx))
    }

    /// Sends `msg` from a storage session to the viewer it claimed.
    pub fn send_to_claimed(&self, claim: &ViewerClaim, msg: ClientMessage) -> Result<Routed, Refusal> {
        let cid = msg.correlation_id.clone();
        let rooms = self.rooms();
        let Some(viewer) = rooms.get(&claim.channel_arn).and_then(|r| r.viewers.get(&claim.client_id)) else {
            return Err(Refusal::invalid(cid, format!("the viewer '{}' is not connected", claim.client_id)));
        };
        deliver(viewer, Delivery::from_client("", msg), cid)
    }

    /// Routes a message from `from`: a master's to the viewer it names, a viewer's to
    /// the storage session that claimed it, else to the master (held for `ttl_s` while
    /// none is connected).
    pub fn send(&self, from: &Membership, msg: ClientMessage, ttl_s: u32) -> Result<Routed, Refusal> {
        let cid = msg.correlation_id.clone();
        let now = self.inner.clock.now_ms();
        let limits = self.inner.limits;
        let mut guard = self.rooms();
        guard.sweep(now);
        let rooms = &mut *guard;
        let room = rooms.by_arn.entry(from.channel_arn.clone()).or_default();
        match from.role {
            Role::Master => {
                let Some(recipient) = msg.recipient_client_id.as_deref() else {
                    return Err(Refusal::invalid(cid, "recipientClientId is required when the master sends"));
                };
                let Some(viewer) = room.viewers.get(recipient) else {
                    return Err(Refusal::invalid(cid, format!("the viewer '{recipient}' is not connected")));
                };
                deliver(viewer, Delivery::from_client("", msg), cid)
            }
            Role::Viewer => {
                let message = Delivery::from_client(&from.client_id, msg);
                if let Some(session) = room.claims.get(&from.client_id) {
                    return deliver(session, message, cid);
                }
                match &room.master {
                    Some(master) => deliver(master, message, cid),
                    None => {
                        let weight = message.weight();
                        if weight > limits.max_pending_bytes {
                            return Err(held_full(cid));
                        }
                        let mut held: usize = room.pending.iter().map(|p| p.message.weight()).sum();
                        while !room.pending.is_empty()
                            && (room.pending.len() >= limits.max_pending || held + weight > limits.max_pending_bytes)
                        {
                            if let Some(old) = room.pending.pop_front() {
                                held -= old.message.weight();
                                rooms.pending_bytes = rooms.pending_bytes.saturating_sub(old.message.weight());
                            }
                        }
                        if rooms.pending_bytes + weight > limits.max_pending_bytes_total {
                            return Err(held_full(cid));
                        }
                        rooms.pending_bytes += weight;
                        let expires_ms = now + i64::from(ttl_s) * 1000;
                        room.pending.push_back(Pending { expires_ms, message });
                        Ok(Routed::Held)
                    }
                }
            }
        }
    }

    /// (master connected, viewers connected) of a channel.
    pub fn presence(&self, channel_arn: &str) -> (bool, usize) {
        self.rooms().get(channel_arn).map_or((false, 0), |r| (r.master.is_some(), r.viewers.len()))
    }

    /// Connections across all channels.
    pub fn connections(&self) -> usize {
        self.rooms().values().map(|r| usize::from(r.master.is_some()) + r.viewers.len()).sum()
    }
}

/// Puts `message` in `to`'s outbox, or refuses it when that outbox is full.
fn deliver(to: &Member, message: Delivery, correlation_id: Option<String>) -> Result<Routed, Refusal> {
    to.tx.try_send(Outbound::Message(message)).map(|()| Routed::Delivered).map_err(|_| slow(correlation_id))
}

fn held_full(correlation_id: Option<String>) -> Refusal {
    Refusal {
        correlation_id,
        error_type: "ClientLimitExceededException",
        status_code: 400,
        description: "no master is connected and no more messages can be held for one; try again once it connects"
            .into(),
    }
}

fn slow(correlation_id: Option<String>) -> Refusal {
    Refusal {
        correlation_id,
        error_type: "ClientLimitExceededException",
        status_code: 400,
        description: "the recipient is not reading its messages; the message was not delivered".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::wire::kvs_signaling::{parse_client_message, Action};

    const ARN: &str = "arn:aws:kinesisvideo:us-east-1:123456789012:channel/c/1";

    fn hub(clock: Arc<ManualClock>) -> Hub {
        Hub::new(
            clock,
            HubLimits {
                max_viewers: 2,
                outbox: 4,
                max_pending: 3,
                max_pending_bytes: 1024,
                max_pending_bytes_total: 4096,
            },
        )
    }

    fn big(n: usize) -> ClientMessage {
        let payload = "A".repeat(n);
        parse_client_message(&format!(r#"{{"action":"SDP_OFFER","messagePayload":"{payload}"}}"#)).unwrap()
    }

    #[test]
    fn held_messages_are_bounded_expire_and_leave_with_their_channel() {
        let clock = Arc::new(ManualClock::new(0));
        let h = hub(clock.clone());
        // Per channel: by bytes, oldest dropped; one message over the channel's bound is refused.
        let arns: Vec<String> = (0..8).map(|i| format!("{ARN}{i}")).collect();
        let (v, _rx) = h.join(&arns[0], Role::Viewer, "v").unwrap();
        assert!(h.send(&v, big(2000), 60).is_err());
        for _ in 0..5 {
            h.send(&v, big(400), 60).unwrap();
        }
        assert!(h.pending_bytes() <= 1024, "{}", h.pending_bytes());
        // Across channels: past the total, new held messages are refused.
        let mut refused = 0;
        let mut viewers = Vec::new();
        for arn in &arns[1..] {
            let (v, rx) = h.join(arn, Role::Viewer, "v").unwrap();
            for _ in 0..2 {
                refused += usize::from(h.send(&v, big(400), 60).is_err());
            }
            viewers.push((v, rx));
        }
        assert!(refused > 0 && h.pending_bytes() <= 4096, "{refused} {}", h.pending_bytes());
        // Expired ones are swept on the next send or join, rooms and all.
        drop(viewers);
        drop(v);
        clock.advance_us(61_000_000);
        let (_other, _orx) = h.join("arn:other", Role::Viewer, "x").unwrap();
        assert_eq!(h.pending_bytes(), 0);
        // A deleted channel's held messages go, and its connections are told to close.
        let (v, mut vrx) = h.join(ARN, Role::Viewer, "v").unwrap();
        h.send(&v, big(100), 60).unwrap();
        h.forget(ARN);
        assert_eq!(h.pending_bytes(), 0);
        assert_eq!(vrx.try_recv(), Ok(Outbound::Replaced));
    }

    fn msg(action: &str, to: Option<&str>) -> ClientMessage {
        let to = to.map(|t| format!(r#","recipientClientId":"{t}""#)).unwrap_or_default();
        parse_client_message(&format!(r#"{{"action":"{action}","messagePayload":"e30="{to},"correlationId":"k"}}"#))
            .unwrap()
    }

    /// The next message in an outbox: (action, sender).
    fn next(rx: &mut mpsc::Receiver<Outbound>) -> (Action, String) {
        match rx.try_recv() {
            Ok(Outbound::Message(d)) => (d.action, d.sender_client_id),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn offers_wait_for_the_master_until_their_ttl() {
        let clock = Arc::new(ManualClock::new(0));
        let h = hub(clock.clone());
        let (v1, _v1rx) = h.join(ARN, Role::Viewer, "v1").unwrap();
        h.send(&v1, msg("SDP_OFFER", None), 5).unwrap();
        clock.advance_us(6_000_000);
        h.send(&v1, msg("ICE_CANDIDATE", None), 5).unwrap();
        let (_m, mut mrx) = h.join(ARN, Role::Master, "").unwrap();
        assert_eq!(next(&mut mrx), (Action::IceCandidate, "v1".into()));
        assert!(mrx.try_recv().is_err(), "the expired offer was not delivered");
    }

    #[test]
    fn masters_answer_viewers_by_id_and_newer_connections_replace_older() {
        let h = hub(Arc::new(ManualClock::new(0)));
        let (m, _mrx) = h.join(ARN, Role::Master, "").unwrap();
        let (_v1, mut v1rx) = h.join(ARN, Role::Viewer, "v1").unwrap();
        h.send(&m, msg("SDP_ANSWER", Some("v1")), 60).unwrap();
        assert_eq!(next(&mut v1rx), (Action::SdpAnswer, String::new()));
        assert_eq!(h.send(&m, msg("SDP_ANSWER", None), 60).unwrap_err().correlation_id.as_deref(), Some("k"));
        assert!(h.send(&m, msg("SDP_ANSWER", Some("nobody")), 60).is_err());
        // v1 again: the older connection is told to close, the newer gets the messages.
        let (_v1b, mut v1brx) = h.join(ARN, Role::Viewer, "v1").unwrap();
        assert_eq!(v1rx.try_recv(), Ok(Outbound::Replaced));
        h.send(&m, msg("ICE_CANDIDATE", Some("v1")), 60).unwrap();
        assert_eq!(next(&mut v1brx).0, Action::IceCandidate);
        // A viewer limit of 2: a third id is refused.
        let (_v2, _) = h.join(ARN, Role::Viewer, "v2").unwrap();
        assert_eq!(h.join(ARN, Role::Viewer, "v3").err(), Some(HubError::TooManyViewers(2)));
        assert_eq!(h.presence(ARN), (true, 2));
    }

    #[test]
    fn a_claimed_viewer_talks_to_its_storage_session_not_the_master() {
        let h = hub(Arc::new(ManualClock::new(0)));
        let (_m, mut mrx) = h.join(ARN, Role::Master, "").unwrap();
        assert_eq!(h.claim_viewer(ARN, "v1").err(), Some(HubError::NoViewer("v1".into())));
        let (v1, mut v1rx) = h.join(ARN, Role::Viewer, "v1").unwrap();
        let (claim, mut crx) = h.claim_viewer(ARN, "v1").unwrap();
        h.send_to_claimed(&claim, msg("SDP_OFFER", None)).unwrap();
        assert_eq!(next(&mut v1rx), (Action::SdpOffer, String::new()));
        h.send(&v1, msg("SDP_ANSWER", None), 60).unwrap();
        assert_eq!(next(&mut crx), (Action::SdpAnswer, "v1".into()));
        assert!(mrx.try_recv().is_err(), "the master saw nothing");
        // A newer claim replaces the older; released, the viewer talks to the master again.
        let (claim2, _c2rx) = h.claim_viewer(ARN, "v1").unwrap();
        assert_eq!(crx.try_recv(), Ok(Outbound::Replaced));
        drop(claim);
        h.send(&v1, msg("ICE_CANDIDATE", None), 60).unwrap();
        assert!(mrx.try_recv().is_err(), "the older claim's release left the newer in place");
        drop(claim2);
        h.send(&v1, msg("ICE_CANDIDATE", None), 60).unwrap();
        assert_eq!(next(&mut mrx).0, Action::IceCandidate);
        drop(v1);
        assert_eq!(h.claim_viewer(ARN, "v1").err(), Some(HubError::NoViewer("v1".into())));
        // A claimed viewer that left: sending to it is refused.
        let (v9, _v9rx) = h.join(ARN, Role::Viewer, "v9").unwrap();
        let (claim9, _) = h.claim_viewer(ARN, "v9").unwrap();
        drop(v9);
        assert!(h.send_to_claimed(&claim9, msg("SDP_OFFER", None)).is_err());
    }

    #[test]
    fn a_recipient_not_reading_is_refused_not_buffered_and_leaving_cleans_up() {
        let h = hub(Arc::new(ManualClock::new(0)));
        let (m, _mrx) = h.join(ARN, Role::Master, "").unwrap();
        let (v1, _v1rx) = h.join(ARN, Role::Viewer, "v1").unwrap();
        for _ in 0..4 {
            h.send(&m, msg("ICE_CANDIDATE", Some("v1")), 60).unwrap();
        }
        let r = h.send(&m, msg("ICE_CANDIDATE", Some("v1")), 60).unwrap_err();
        assert_eq!(r.error_type, "ClientLimitExceededException");
        drop(v1);
        drop(m);
        assert_eq!(h.presence(ARN), (false, 0));
        assert_eq!(h.connections(), 0);
    }
}
