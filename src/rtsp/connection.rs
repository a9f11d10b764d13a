//! One RTSP connection: reads bytes, parses requests and interleaved frames
//! ([`crate::wire::rtsp::parse`], which says "need more" instead of blocking), answers
//! requests, and becomes a publisher or a player session. The socket is only touched
//! here.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::player_session::PlayerSession;
use super::publisher_session::{PublisherSession, UdpPacket};
use super::{Refusal, RtspServer};
use crate::scope::Scope;
use crate::wire::rtsp::{self, Message, Request};

/// The session timeout announced in `Session` headers.
const SESSION_TIMEOUT_S: u32 = 60;
const PUBLIC_METHODS: &str = "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// What the connection became.
enum Role {
    None,
    Publisher(Box<PublisherSession>),
    Player(Box<PlayerSession>),
}

struct Connection {
    server: RtspServer,
    peer: SocketAddr,
    local_ip: IpAddr,
    id: String,
    role: Role,
    udp_tx: mpsc::Sender<UdpPacket>,
    play_tx: mpsc::Sender<Vec<u8>>,
    /// TEARDOWN, or the publication failed.
    closed: bool,
    /// When the peer last sent anything: a request, RTP or RTCP, over TCP or UDP.
    last_heard: tokio::time::Instant,
}

pub async fn serve(server: RtspServer, mut sock: TcpStream, peer: SocketAddr, mut stop: watch::Receiver<bool>) {
    let local_ip = sock.local_addr().map(|a| a.ip()).unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    let (udp_tx, mut udp_rx) = mpsc::channel::<UdpPacket>(1024);
    let (play_tx, mut play_rx) = mpsc::channel::<Vec<u8>>(16);
    let id = hex::encode(crate::secrets::random_bytes::<8>().unwrap_or([7; 8]));
    let (idle_timeout, write_timeout) = (server.limits.idle_timeout, server.limits.write_timeout);
    let last_heard = tokio::time::Instant::now();
    let mut conn =
        Connection { server, peer, local_ip, id, role: Role::None, udp_tx, play_tx, closed: false, last_heard };
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Everything complete in the buffer first; the consumed bytes are dropped once
        // per read, not once per message (a read holds dozens of RTP packets).
        let mut consumed = 0;
        loop {
            match rtsp::parse(&buf[consumed..]) {
                Ok(Some((msg, n))) => {
                    consumed += n;
                    if let Some(reply) = conn.message(msg).await {
                        if sock.write_all(&reply).await.is_err() {
                            return conn.end("connection lost").await;
                        }
                    }
                    if conn.closed {
                        return conn.end("TEARDOWN").await;
                    }
                }
                Ok(None) => {
                    buf.drain(..consumed);
                    break;
                }
                Err(e) => {
                    tracing::info!(error = %e, "malformed RTSP input; closing");
                    let _ = sock.write_all(&rtsp::response(400, "Bad Request", None, &[], b"")).await;
                    return conn.end("malformed input").await;
                }
            }
        }
        tokio::select! {
            read = tokio::time::timeout(idle_timeout, sock.read(&mut chunk)) => match read {
                Ok(Ok(0)) | Ok(Err(_)) => return conn.end("the peer went away").await,
                Ok(Ok(n)) => {
                    conn.last_heard = tokio::time::Instant::now();
                    buf.extend_from_slice(&chunk[..n]);
                }
                // A viewer needs not speak while it is sent media; a UDP publisher
                // speaks on its UDP ports, and is idle when those fall silent too.
                Err(_) if conn.playing() => {}
                Err(_) if conn.recording_over_udp() && conn.last_heard.elapsed() < idle_timeout => {}
                Err(_) => {
                    conn.server.metrics.count_refusal("rtsp", "idle_timeout");
                    return conn.end("idle timeout").await;
                }
            },
            Some(packet) = udp_rx.recv() => {
                conn.last_heard = tokio::time::Instant::now();
                if let Role::Publisher(p) = &mut conn.role {
                    if let Err(e) = p.udp(packet).await {
                        tracing::warn!(error = %e, "RTSP publication failed; ending it");
                        return conn.end("publication failed").await;
                    }
                }
            }
            Some(bytes) = play_rx.recv() => {
                match tokio::time::timeout(write_timeout, sock.write_all(&bytes)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return conn.end("the viewer went away").await,
                    Err(_) => {
                        conn.server.metrics.count_refusal("rtsp", "slow_reader");
                        return conn.end("the viewer stopped reading").await;
                    }
                }
            }
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return conn.end("server shutting down").await,
        }
    }
}

impl Connection {
    /// A viewer is being sent media.
    fn playing(&self) -> bool {
        matches!(&self.role, Role::Player(p) if p.playing())
    }

    /// Media arrives over UDP (the TCP connection may then stay silent).
    fn recording_over_udp(&self) -> bool {
        match &self.role {
            Role::Publisher(p) => p.recording_over_udp(),
            Role::Player(_) | Role::None => false,
        }
    }

    async fn message(&mut self, msg: Message) -> Option<Vec<u8>> {
        match msg {
            Message::Interleaved { channel, payload } => {
                if let Role::Publisher(p) = &mut self.role {
                    if let Err(e) = p.interleaved(channel, &payload).await {
                        tracing::warn!(error = %e, "RTSP publication failed; ending it");
                        self.closed = true;
                    }
                }
                None
            }
            Message::Response { .. } => None,
            Message::Request(req) => Some(self.request(req).await),
        }
    }

    async fn request(&mut self, req: Request) -> Vec<u8> {
        let cseq = req.cseq().map(str::to_string);
        let cseq = cseq.as_deref();
        let session = ("Session", format!("{};timeout={SESSION_TIMEOUT_S}", self.id));
        let needs_auth = matches!(req.method.as_str(), "ANNOUNCE" | "SETUP" | "DESCRIBE");
        let caller = self.server.digest.caller(&req);
        let Some(scope) = caller.map(|c| c.scope).or_else(|| (!needs_auth).then(|| self.server.digest.default_scope()))
        else {
            return rtsp::response(
                401,
                "Unauthorized",
                cseq,
                &[("WWW-Authenticate", self.server.digest.challenge())],
                b"",
            );
        };
        let answer = match req.method.as_str() {
            "OPTIONS" => Ok(vec![("Public", PUBLIC_METHODS.to_string())]),
            "ANNOUNCE" => self.announce(&req, &scope).await.map(|()| Vec::new()),
            "SETUP" => self.setup(&req).await.map(|transport| vec![("Transport", transport), session.clone()]),
            "RECORD" => match &mut self.role {
                Role::Publisher(p) => p.record(&self.server).map(|()| vec![session.clone()]),
                _ => Err(Refusal::wrong_state("SETUP first")),
            },
            "DESCRIBE" => {
                return match PlayerSession::describe(&self.server, &req, &scope) {
                    Ok((player, sdp)) => {
                        self.become_role(Role::Player(Box::new(player))).await;
                        let base = format!("{}/", req.uri.trim_end_matches('/'));
                        rtsp::response(
                            200,
                            "OK",
                            cseq,
                            &[("Content-Type", "application/sdp".into()), ("Content-Base", base)],
                            sdp.as_bytes(),
                        )
                    }
                    Err(r) => refuse(&req, cseq, r),
                };
            }
            "PLAY" => match &mut self.role {
                Role::Player(p) => p
                    .play(&self.server, self.play_tx.clone())
                    .map(|()| vec![session.clone(), ("Range", "npt=now-".into())]),
                _ => Err(Refusal::wrong_state("DESCRIBE and SETUP first")),
            },
            "TEARDOWN" => {
                self.closed = true;
                Ok(vec![session.clone()])
            }
            "GET_PARAMETER" | "SET_PARAMETER" => Ok(vec![session.clone()]),
            "PAUSE" => Err(Refusal::new(501, "Not Implemented", "live streams cannot be paused")),
            _ => Err(Refusal::new(501, "Not Implemented", "")),
        };
        match answer {
            Ok(headers) => rtsp::response(200, "OK", cseq, &headers, b""),
            Err(r) => refuse(&req, cseq, r),
        }
    }

    async fn announce(&mut self, req: &Request, scope: &Scope) -> Result<(), Refusal> {
        let publisher = PublisherSession::announce(&self.server, req, scope).await?;
        self.become_role(Role::Publisher(Box::new(publisher))).await;
        Ok(())
    }

    async fn setup(&mut self, req: &Request) -> Result<String, Refusal> {
        let transport = || {
            req.header("transport")
                .and_then(rtsp::parse_transport)
                .ok_or_else(|| Refusal::unsupported_transport("only RTP/AVP over TCP or UDP"))
        };
        match &mut self.role {
            Role::Player(p) => p.setup(req, &transport()?),
            Role::Publisher(p) => p.setup(req, &transport()?, self.local_ip, self.peer, &self.udp_tx).await,
            Role::None => Err(Refusal::wrong_state("ANNOUNCE first")),
        }
    }

    /// A new ANNOUNCE or DESCRIBE replaces what the connection was doing.
    async fn become_role(&mut self, role: Role) {
        self.end_role("replaced by a new session").await;
        self.role = role;
    }

    async fn end_role(&mut self, why: &str) {
        match &mut self.role {
            Role::Publisher(p) => p.end(why).await,
            Role::Player(p) => p.end(why),
            Role::None => {}
        }
        self.role = Role::None;
    }

    async fn end(mut self, why: &str) {
        self.end_role(why).await;
    }
}

fn refuse(req: &Request, cseq: Option<&str>, r: Refusal) -> Vec<u8> {
    tracing::info!(method = %req.method, status = r.status, why = %r.why, "RTSP request refused");
    rtsp::response(r.status, r.reason, cseq, &[], r.why.as_bytes())
}
