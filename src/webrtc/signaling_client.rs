//! One signalling client's connection (a KVS WebRTC SDK connected as master or viewer),
//! from the WebSocket upgrade to its close: its messages parsed
//! (`wire::kvs_signaling`) and routed through the hub, the hub's messages for it sent,
//! and the session's limits (45 minutes, 10 idle minutes, a 16 KiB message, the server
//! stopping) enforced with `GO_AWAY` or a close frame.
//!
//! The HTTP layer upgrades the request and hands over the socket through
//! [`ClientSocket`], so this loop knows nothing of the WebSocket library (and its tests
//! drive it with a socket of their own).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::scope::Scope;
use crate::signaling::channel::ChannelRecord;
use crate::signaling::hub::{Hub, Membership, Outbound};
use crate::signaling::SignalingEngine;
use crate::wire::kvs_signaling::{self, Refusal};

/// How long a connected client's session lasts (AWS: 45 minutes); it gets `GO_AWAY`
/// and is closed, and reconnects.
pub const SESSION_LIMIT: Duration = Duration::from_secs(45 * 60);
/// A connection that sends nothing for this long is closed (AWS: 10 minutes).
pub const IDLE_LIMIT: Duration = Duration::from_secs(10 * 60);

/// What the client's socket delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary,
    /// A ping or a pong.
    Control,
    /// A message over the socket's read limit (the library refused it).
    TooBig,
    /// The client closed, or the connection ended.
    Closed,
    /// The connection failed.
    Lost,
}

/// The client's socket as the HTTP layer hands it over. Each call is bounded in time by
/// the implementation (a client that stops reading does not hold a task).
#[async_trait::async_trait]
pub trait ClientSocket: Send {
    /// The next frame (cancel-safe: the loop races it against the hub).
    async fn recv(&mut self) -> Incoming;
    /// Sends a text frame; `false` when it could not be written in time.
    async fn send(&mut self, text: String) -> bool;
    /// Sends a close frame with `code` and `reason`, then waits briefly for the
    /// client's own close.
    async fn close_with(&mut self, code: u16, reason: &str);
    /// Closes the connection.
    async fn close(&mut self);
}

/// What a client's loop needs of the server.
#[derive(Clone)]
pub struct ClientContext {
    pub hub: Hub,
    pub signaling: SignalingEngine,
    pub metrics: Arc<Metrics>,
    /// Turns true when the server stops: the client gets `GO_AWAY`.
    pub stopping: watch::Receiver<bool>,
    pub session_limit: Duration,
    pub idle_limit: Duration,
}

/// Serves one connected client until it closes, is replaced, goes idle, its session
/// ends or the server stops; returns why it ended.
pub async fn serve(
    mut socket: impl ClientSocket,
    membership: Membership,
    mut outbox: mpsc::Receiver<Outbound>,
    cx: ClientContext,
    scope: Scope,
    channel: ChannelRecord,
) -> &'static str {
    cx.metrics.signaling_client(membership.role.as_str(), 1);
    let deadline = tokio::time::sleep(cx.session_limit);
    tokio::pin!(deadline);
    // A connection that sends nothing (not even a ping) for the idle limit is closed,
    // as AWS closes idle signalling connections: it holds a place under the cap.
    let idle = tokio::time::sleep(cx.idle_limit);
    tokio::pin!(idle);
    let mut stopping = cx.stopping.clone();
    let ending = loop {
        tokio::select! {
            frame = socket.recv() => {
                idle.as_mut().reset(tokio::time::Instant::now() + cx.idle_limit);
                match frame {
                    Incoming::Text(text) if text.len() > kvs_signaling::MAX_FRAME_BYTES => {
                        socket.close_with(1009, "message too big").await;
                        break "a message over the size limit";
                    }
                    Incoming::TooBig => {
                        socket.close_with(1009, "message too big").await;
                        break "a message over the size limit";
                    }
                    Incoming::Text(text) => {
                        if let Err(refusal) = route(&cx, &membership, &scope, &channel, &text) {
                            tracing::debug!(channel = %channel.name, error = %refusal, "signalling message refused");
                            if let Some(status) = kvs_signaling::render_status(&refusal) {
                                if !socket.send(status).await {
                                    break "the client stopped reading";
                                }
                            }
                        }
                    }
                    Incoming::Binary => {
                        cx.metrics.count_signaling_message("invalid", "refused");
                        let refusal = Refusal::invalid(None, "binary frames are not signalling messages");
                        tracing::debug!(channel = %channel.name, error = %refusal, "signalling message refused");
                    }
                    Incoming::Control => {}
                    Incoming::Closed => break "closed by the client",
                    Incoming::Lost => break "connection lost",
                }
            },
            () = &mut idle => {
                let _ = socket.send(kvs_signaling::render_go_away()).await;
                break "idle for 10 minutes";
            }
            out = outbox.recv() => match out {
                Some(Outbound::Message(message)) => {
                    if !socket.send(message.render()).await {
                        break "the client stopped reading";
                    }
                }
                Some(Outbound::Replaced) | None => {
                    let _ = socket.send(kvs_signaling::render_go_away()).await;
                    break "replaced by a newer connection";
                }
            },
            () = &mut deadline => {
                let _ = socket.send(kvs_signaling::render_go_away()).await;
                break "the 45-minute session ended";
            }
            () = server_stopping(&mut stopping) => {
                let _ = socket.send(kvs_signaling::render_go_away()).await;
                break "the server is stopping";
            }
        }
    };
    socket.close().await;
    cx.metrics.signaling_client(membership.role.as_str(), -1);
    tracing::info!(channel = %channel.name, role = membership.role.as_str(), client = %membership.client_id, why = ending, "signalling client disconnected");
    ending
}

/// A client's message: parsed, then handed to the hub with the channel's current TTL.
fn route(
    cx: &ClientContext,
    membership: &Membership,
    scope: &Scope,
    channel: &ChannelRecord,
    text: &str,
) -> Result<(), Refusal> {
    let parsed = kvs_signaling::parse_client_message(text);
    let action = parsed.as_ref().map_or("invalid", |m| m.action.as_str());
    let result = parsed.and_then(|msg| {
        // The TTL as the channel has it now (an update applies to later messages).
        let ttl = cx.signaling.message_ttl(scope, &channel.arn).unwrap_or(channel.message_ttl_s);
        cx.hub.send(membership, msg, ttl)
    });
    cx.metrics.signaling_held_bytes.set(cx.hub.pending_bytes() as i64);
    cx.metrics.count_signaling_message(action, result.as_ref().map_or("refused", |r| r.as_str()));
    result.map(|_| ())
}

/// Resolves when the server starts stopping; never if nobody can stop it (tests).
async fn server_stopping(stopping: &mut watch::Receiver<bool>) {
    let stopped = stopping.wait_for(|stop| *stop).await.map(|_| ()).is_ok();
    if !stopped {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::clock::{ManualClock, SharedClock};
    use crate::signaling::hub::{HubLimits, Role};
    use crate::signaling::NewChannel;
    use crate::wire::kvs_signaling::Action;

    /// A socket that delivers `incoming` in order, then waits for ever; what the loop
    /// sent and closed with is kept.
    struct Scripted {
        incoming: VecDeque<Incoming>,
        sent: Arc<Mutex<Vec<String>>>,
        closed_with: Arc<Mutex<Option<u16>>>,
    }

    #[async_trait::async_trait]
    impl ClientSocket for Scripted {
        async fn recv(&mut self) -> Incoming {
            match self.incoming.pop_front() {
                Some(i) => i,
                None => std::future::pending().await,
            }
        }
        async fn send(&mut self, text: String) -> bool {
            self.sent.lock().unwrap().push(text);
            true
        }
        async fn close_with(&mut self, code: u16, _reason: &str) {
            *self.closed_with.lock().unwrap() = Some(code);
        }
        async fn close(&mut self) {}
    }

    struct Setup {
        cx: ClientContext,
        channel: ChannelRecord,
        scope: Scope,
        stop: watch::Sender<bool>,
        _dir: tempfile::TempDir,
    }

    async fn setup(idle_limit: Duration) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let clock: SharedClock = Arc::new(ManualClock::new(1_700_000_000_000_000));
        let signaling = SignalingEngine::open(dir.path(), clock.clone()).unwrap();
        let scope = Scope::new("123456789012", "us-east-1");
        let req = NewChannel { name: "door".into(), channel_type: None, message_ttl_s: None, tags: Default::default() };
        let channel = signaling.create(&scope, req).await.unwrap();
        let (stop, stopping) = watch::channel(false);
        let cx = ClientContext {
            hub: Hub::new(clock, HubLimits::default()),
            signaling,
            metrics: Arc::new(Metrics::default()),
            stopping,
            session_limit: SESSION_LIMIT,
            idle_limit,
        };
        Setup { cx, channel, scope, stop, _dir: dir }
    }

    type Sent = Arc<Mutex<Vec<String>>>;
    type ClosedWith = Arc<Mutex<Option<u16>>>;

    fn socket(incoming: Vec<Incoming>) -> (Scripted, Sent, ClosedWith) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(None));
        (Scripted { incoming: incoming.into(), sent: sent.clone(), closed_with: closed.clone() }, sent, closed)
    }

    #[tokio::test]
    async fn a_viewers_offer_reaches_the_master_and_a_bad_message_gets_its_status() {
        let s = setup(IDLE_LIMIT).await;
        let (master, mut master_outbox) = s.cx.hub.join(&s.channel.arn, Role::Master, "").unwrap();
        let (viewer, outbox) = s.cx.hub.join(&s.channel.arn, Role::Viewer, "v1").unwrap();
        let offer = r#"{"action":"SDP_OFFER","messagePayload":"eyJ0eXBlIjoib2ZmZXIifQ=="}"#;
        let bad = r#"{"action":"SDP_OFFER","messagePayload":"!!","correlationId":"c-1"}"#;
        let (sock, sent, _) = socket(vec![Incoming::Text(offer.into()), Incoming::Text(bad.into()), Incoming::Closed]);
        let why = serve(sock, viewer, outbox, s.cx.clone(), s.scope.clone(), s.channel.clone()).await;
        assert_eq!(why, "closed by the client");
        match master_outbox.try_recv() {
            Ok(Outbound::Message(d)) => assert_eq!((d.action, d.sender_client_id.as_str()), (Action::SdpOffer, "v1")),
            other => panic!("the master got {other:?}"),
        }
        let sent = sent.lock().unwrap();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].contains("STATUS_RESPONSE") && sent[0].contains("c-1"), "{}", sent[0]);
        drop(master);
    }

    #[tokio::test]
    async fn oversized_binary_and_lost_frames_end_or_are_refused_as_they_should() {
        let s = setup(IDLE_LIMIT).await;
        let (viewer, outbox) = s.cx.hub.join(&s.channel.arn, Role::Viewer, "v1").unwrap();
        let huge = "x".repeat(kvs_signaling::MAX_FRAME_BYTES + 1);
        let (sock, sent, closed) = socket(vec![Incoming::Binary, Incoming::Control, Incoming::Text(huge)]);
        let why = serve(sock, viewer, outbox, s.cx.clone(), s.scope.clone(), s.channel.clone()).await;
        assert_eq!(why, "a message over the size limit");
        assert_eq!(*closed.lock().unwrap(), Some(1009));
        assert!(sent.lock().unwrap().is_empty(), "a binary frame is refused without an answer");
        let (viewer, outbox) = s.cx.hub.join(&s.channel.arn, Role::Viewer, "v2").unwrap();
        let (sock, _, _) = socket(vec![Incoming::Lost]);
        assert_eq!(serve(sock, viewer, outbox, s.cx.clone(), s.scope, s.channel).await, "connection lost");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_replaced_and_stopping_clients_get_go_away() {
        let s = setup(Duration::from_secs(600)).await;
        let (viewer, outbox) = s.cx.hub.join(&s.channel.arn, Role::Viewer, "v1").unwrap();
        let (sock, sent, _) = socket(vec![]);
        let why = serve(sock, viewer, outbox, s.cx.clone(), s.scope.clone(), s.channel.clone()).await;
        assert_eq!(why, "idle for 10 minutes");
        assert!(sent.lock().unwrap()[0].contains("GO_AWAY"));

        let (first, outbox) = s.cx.hub.join(&s.channel.arn, Role::Viewer, "v2").unwrap();
        let (_second, _rx) = s.cx.hub.join(&s.channel.arn, Role::Viewer, "v2").unwrap();
        let (sock, sent, _) = socket(vec![]);
        let why = serve(sock, first, outbox, s.cx.clone(), s.scope.clone(), s.channel.clone()).await;
        assert_eq!(why, "replaced by a newer connection");
        assert!(sent.lock().unwrap()[0].contains("GO_AWAY"));

        let (viewer, outbox) = s.cx.hub.join(&s.channel.arn, Role::Viewer, "v3").unwrap();
        let (sock, sent, _) = socket(vec![]);
        let task = tokio::spawn(serve(sock, viewer, outbox, s.cx.clone(), s.scope.clone(), s.channel.clone()));
        tokio::task::yield_now().await;
        s.stop.send(true).unwrap();
        assert_eq!(task.await.unwrap(), "the server is stopping");
        assert!(sent.lock().unwrap()[0].contains("GO_AWAY"));
    }
}
