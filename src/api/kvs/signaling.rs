//! WebRTC signalling on the wire: GetSignalingChannelEndpoint (`kinesisvideo`),
//! GetIceServerConfig and SendAlexaOfferToMaster (`kinesis-video-signaling`), and the
//! WebSocket the KVS WebRTC SDKs connect to as master or viewer (ConnectAsMaster /
//! ConnectAsViewer), signed with a presigned URL (`api::auth`). Messages are parsed by
//! `wire::kvs_signaling` and routed by `signaling::hub`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::KvsState;
use crate::api::error::ApiError;
use crate::api::protocol::RestJson;
use crate::api::registry::Scoped;
use crate::signaling::channel::ChannelRecord;
use crate::signaling::hub::{Hub, HubError, Membership, Outbound, Role};
use crate::signaling::TurnServers;
use crate::wire::kvs_signaling::{self, Action, Refusal};

/// The path of the signalling WebSocket on both listeners.
pub const WEBSOCKET_PATH: &str = "/v1/signaling";
/// How long a connected client's session lasts (AWS: 45 minutes); it gets `GO_AWAY`
/// and is closed, and reconnects.
pub const SESSION_LIMIT: Duration = Duration::from_secs(45 * 60);
/// A connection that sends nothing for this long is closed (AWS: 10 minutes).
pub const IDLE_LIMIT: Duration = Duration::from_secs(10 * 60);
/// A client whose socket takes no bytes for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where clients reach signalling, and the TURN servers they are given.
#[derive(Clone)]
pub struct SignalingSettings {
    /// What GetSignalingChannelEndpoint returns for `HTTPS` (and `WEBRTC`).
    pub https_endpoint: String,
    /// What it returns for `WSS`: `wss://…/v1/signaling` with the HTTPS listener,
    /// else `ws://…` on the HTTP one (the KVS SDK for JavaScript insists on `wss://`).
    pub wss_endpoint: String,
    pub turn: Option<TurnServers>,
    pub hub: Hub,
    /// Turns true when the server stops: every connection gets `GO_AWAY` and closes.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl SignalingSettings {
    /// Endpoints derived from the server's public URLs (`https_url` when the HTTPS
    /// listener runs).
    pub fn new(
        public_url: &str,
        https_url: Option<&str>,
        turn: Option<TurnServers>,
        hub: Hub,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let base = https_url.unwrap_or(public_url).trim_end_matches('/');
        let ws_base = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            format!("ws://{}", base.trim_start_matches("http://"))
        };
        SignalingSettings {
            https_endpoint: base.to_string(),
            wss_endpoint: format!("{ws_base}{WEBSOCKET_PATH}"),
            turn,
            hub,
            stopping,
        }
    }
}

pub fn routes() -> Router<KvsState> {
    Router::new()
        .route("/getSignalingChannelEndpoint", post(get_signaling_channel_endpoint))
        .route("/v1/get-ice-server-config", post(get_ice_server_config))
        .route("/v1/send-alexa-offer-to-master", post(send_alexa_offer_to_master))
        .route(WEBSOCKET_PATH, get(connect))
}

type Answer<T> = Result<RestJson<T>, ApiError>;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointConfiguration {
    protocols: Option<Vec<String>>,
    role: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetSignalingChannelEndpointInput {
    #[serde(rename = "ChannelARN")]
    channel_arn: String,
    single_master_channel_endpoint_configuration: Option<EndpointConfiguration>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceEndpoint {
    protocol: String,
    resource_endpoint: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetSignalingChannelEndpointOutput {
    resource_endpoint_list: Vec<ResourceEndpoint>,
}

async fn get_signaling_channel_endpoint(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<GetSignalingChannelEndpointInput>,
) -> Answer<GetSignalingChannelEndpointOutput> {
    let channel = s.signaling.resolve(&s.scope, None, Some(&i.channel_arn))?;
    let config = i.single_master_channel_endpoint_configuration;
    let (protocols, role) = match config {
        Some(c) => (c.protocols.unwrap_or_else(|| vec!["WSS".into(), "HTTPS".into()]), c.role),
        None => (vec!["WSS".into(), "HTTPS".into()], None),
    };
    if protocols.is_empty() || protocols.len() > 5 {
        return Err(ApiError::invalid_argument("Protocols must hold 1 to 5 protocols"));
    }
    if let Some(r) = role.as_deref().filter(|r| !matches!(*r, "MASTER" | "VIEWER")) {
        return Err(ApiError::invalid_argument(format!("Role '{r}' must be MASTER or VIEWER")));
    }
    let mut list = Vec::with_capacity(protocols.len());
    for p in protocols {
        let endpoint = match p.as_str() {
            "WSS" => s.webrtc.wss_endpoint.clone(),
            "HTTPS" => s.webrtc.https_endpoint.clone(),
            "WEBRTC" => {
                if channel.storage_stream().is_none() {
                    return Err(ApiError::invalid_argument(format!(
                        "the channel {} does not record media (UpdateMediaStorageConfiguration); WEBRTC has no endpoint",
                        channel.name
                    )));
                }
                s.webrtc.https_endpoint.clone()
            }
            other => {
                return Err(ApiError::invalid_argument(format!("Protocol '{other}' must be WSS, HTTPS or WEBRTC")))
            }
        };
        list.push(ResourceEndpoint { protocol: p, resource_endpoint: endpoint });
    }
    Ok(RestJson(GetSignalingChannelEndpointOutput { resource_endpoint_list: list }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetIceServerConfigInput {
    #[serde(rename = "ChannelARN")]
    channel_arn: String,
    client_id: Option<String>,
    service: Option<String>,
    username: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IceServer {
    uris: Vec<String>,
    username: String,
    password: String,
    ttl: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetIceServerConfigOutput {
    ice_server_list: Vec<IceServer>,
}

/// The configured TURN servers with credentials valid for their TTL. With none
/// configured the list is empty: peers use host (and STUN-free) candidates only.
async fn get_ice_server_config(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<GetIceServerConfigInput>,
) -> Answer<GetIceServerConfigOutput> {
    let channel = s.signaling.resolve(&s.scope, None, Some(&i.channel_arn))?;
    if let Some(svc) = i.service.as_deref().filter(|v| *v != "TURN") {
        return Err(ApiError::invalid_argument(format!("Service '{svc}' must be TURN")));
    }
    for (field, v) in [("ClientId", &i.client_id), ("Username", &i.username)] {
        if let Some(v) = v {
            if v.is_empty() || v.chars().count() > 256 {
                return Err(ApiError::invalid_argument(format!("{field} must be 1 to 256 characters")));
            }
        }
    }
    let Some(turn) = &s.webrtc.turn else {
        return Ok(RestJson(GetIceServerConfigOutput { ice_server_list: Vec::new() }));
    };
    let who = i.username.or(i.client_id).unwrap_or_else(|| channel.name.clone());
    let expires = s.store.clock().now_us() / 1_000_000 + i64::from(turn.ttl_secs);
    let (username, password) = crate::wire::turn_rest::credentials(&turn.secret, &who, expires);
    Ok(RestJson(GetIceServerConfigOutput {
        ice_server_list: vec![IceServer { uris: turn.uris.clone(), username, password, ttl: turn.ttl_secs }],
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendAlexaOfferToMasterInput {
    #[serde(rename = "ChannelARN")]
    channel_arn: String,
    sender_client_id: String,
    message_payload: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendAlexaOfferToMasterOutput {
    answer: String,
}

/// Delivers an SDP offer to the master as if from a viewer `SenderClientId`, and
/// answers with the master's SDP answer (waiting up to the channel's message TTL).
async fn send_alexa_offer_to_master(
    Scoped(s): Scoped<KvsState>,
    RestJson(i): RestJson<SendAlexaOfferToMasterInput>,
) -> Answer<SendAlexaOfferToMasterOutput> {
    let channel = s.signaling.resolve(&s.scope, None, Some(&i.channel_arn))?;
    kvs_signaling::check_client_id(&i.sender_client_id)
        .map_err(|why| ApiError::invalid_argument(format!("SenderClientId: {why}")))?;
    let frame = serde_json::json!({"action": "SDP_OFFER", "messagePayload": i.message_payload}).to_string();
    let offer = kvs_signaling::parse_client_message(&frame)
        .map_err(|r| ApiError::invalid_argument(format!("MessagePayload: {}", r.description)))?;
    let (membership, mut outbox) =
        s.webrtc.hub.join(&channel.arn, Role::Viewer, &i.sender_client_id).map_err(hub_error)?;
    let sent = s.webrtc.hub.send(&membership, offer, channel.message_ttl_s);
    s.metrics.signaling_held_bytes.set(s.webrtc.hub.pending_bytes() as i64);
    sent.map_err(refusal_error)?;
    let wait = Duration::from_secs(u64::from(channel.message_ttl_s));
    let answer = tokio::time::timeout(wait, async {
        while let Some(out) = outbox.recv().await {
            if let Outbound::Text(t) = out {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                if v["messageType"] == Action::SdpAnswer.as_str() {
                    return v["messagePayload"].as_str().map(str::to_string);
                }
            }
        }
        None
    })
    .await;
    match answer {
        Ok(Some(answer)) => Ok(RestJson(SendAlexaOfferToMasterOutput { answer })),
        _ => Err(ApiError::not_found(format!(
            "no master of {} answered within {} s (MessageTtlSeconds)",
            channel.name, channel.message_ttl_s
        ))),
    }
}

fn hub_error(e: HubError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "ClientLimitExceededException", e.to_string())
}

fn refusal_error(r: Refusal) -> ApiError {
    let status = StatusCode::from_u16(r.status_code).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::new(status, r.error_type, r.description)
}

/// The WebSocket: `X-Amz-ChannelARN` (and `X-Amz-ClientId` for a viewer) in the
/// presigned query, which `api::auth` verified.
async fn connect(
    Scoped(s): Scoped<KvsState>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let arn = q.get("X-Amz-ChannelARN").ok_or_else(|| ApiError::invalid_argument("X-Amz-ChannelARN is required"))?;
    let channel = s.signaling.resolve(&s.scope, None, Some(arn))?;
    let (role, client_id) = match q.get("X-Amz-ClientId") {
        Some(id) => {
            kvs_signaling::check_client_id(id)
                .map_err(|why| ApiError::invalid_argument(format!("X-Amz-ClientId: {why}")))?;
            (Role::Viewer, id.clone())
        }
        None => (Role::Master, String::new()),
    };
    let (membership, outbox) = s.webrtc.hub.join(&channel.arn, role, &client_id).map_err(hub_error)?;
    tracing::info!(channel = %channel.name, role = role.as_str(), client = %client_id, "signalling client connected");
    let settings = s.clone();
    Ok(ws
        .max_message_size(READ_LIMIT_BYTES)
        .max_frame_size(READ_LIMIT_BYTES)
        .on_upgrade(move |socket| session(socket, membership, outbox, settings, channel)))
}

/// Frames up to this size are read whole (and refused with 1009 if over the 16 KiB a
/// signalling message may be), so the client's socket gets our close frame instead of
/// a reset from unread bytes; bigger ones end the connection as they arrive.
const READ_LIMIT_BYTES: usize = 256 * 1024;

/// One connection until it closes, is replaced, or its 45 minutes are up.
async fn session(
    socket: WebSocket,
    membership: Membership,
    mut outbox: mpsc::Receiver<Outbound>,
    s: KvsState,
    channel: ChannelRecord,
) {
    s.metrics.signaling_client(membership.role.as_str(), 1);
    let (mut sink, mut stream) = socket.split();
    let deadline = tokio::time::sleep(SESSION_LIMIT);
    tokio::pin!(deadline);
    // A connection that sends nothing (not even a ping) for IDLE_LIMIT is closed, as
    // AWS closes idle signalling connections: it holds a place under the cap.
    let idle = tokio::time::sleep(IDLE_LIMIT);
    tokio::pin!(idle);
    let hub = s.webrtc.hub.clone();
    let mut stopping = s.webrtc.stopping.clone();
    let ending = loop {
        tokio::select! {
            frame = stream.next() => {
                idle.as_mut().reset(tokio::time::Instant::now() + IDLE_LIMIT);
                match frame {
                Some(Ok(Message::Text(text))) if text.len() > kvs_signaling::MAX_FRAME_BYTES => {
                    let frame = axum::extract::ws::CloseFrame { code: 1009, reason: "message too big".into() };
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
                    // The closing handshake: the client's close frame, briefly.
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while let Some(Ok(m)) = stream.next().await {
                            if matches!(m, Message::Close(_)) {
                                break;
                            }
                        }
                    })
                    .await;
                    break "a message over the size limit";
                }
                Some(Ok(Message::Text(text))) => {
                    let parsed = kvs_signaling::parse_client_message(text.as_str());
                    let action = parsed.as_ref().map_or("invalid", |m| m.action.as_str());
                    let result = parsed.and_then(|msg| {
                        // The TTL as the channel has it now (an update applies to later messages).
                        let ttl = s.signaling.message_ttl(&s.scope, &channel.arn).unwrap_or(channel.message_ttl_s);
                        hub.send(&membership, msg, ttl)
                    });
                    s.metrics.signaling_held_bytes.set(hub.pending_bytes() as i64);
                    s.metrics.count_signaling_message(action, result.as_ref().map_or("refused", |r| r.as_str()));
                    if let Err(refusal) = result {
                        tracing::debug!(channel = %channel.name, error = %refusal, "signalling message refused");
                        if let Some(status) = kvs_signaling::render_status(&refusal) {
                            if send(&mut sink, status).await.is_err() {
                                break "the client stopped reading";
                            }
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    s.metrics.count_signaling_message("invalid", "refused");
                    let refusal = Refusal::invalid(None, "binary frames are not signalling messages");
                    tracing::debug!(channel = %channel.name, error = %refusal, "signalling message refused");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => break "closed by the client",
                Some(Err(e)) => {
                    // tungstenite's capacity error is the one a client causes on purpose:
                    // say so with 1009 (message too big) before closing.
                    let text = e.to_string();
                    if text.contains("Space limit exceeded") || text.contains("too long") {
                        let frame = axum::extract::ws::CloseFrame { code: 1009, reason: "message too big".into() };
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
                        break "a message over the size limit";
                    }
                    break "connection lost";
                }
            }},
            () = &mut idle => {
                let _ = send(&mut sink, kvs_signaling::render_go_away()).await;
                break "idle for 10 minutes";
            }
            out = outbox.recv() => match out {
                Some(Outbound::Text(text)) => {
                    if send(&mut sink, text).await.is_err() {
                        break "the client stopped reading";
                    }
                }
                Some(Outbound::Replaced) | None => {
                    let _ = send(&mut sink, kvs_signaling::render_go_away()).await;
                    break "replaced by a newer connection";
                }
            },
            () = &mut deadline => {
                let _ = send(&mut sink, kvs_signaling::render_go_away()).await;
                break "the 45-minute session ended";
            }
            () = server_stopping(&mut stopping) => {
                let _ = send(&mut sink, kvs_signaling::render_go_away()).await;
                break "the server is stopping";
            }
        }
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
    s.metrics.signaling_client(membership.role.as_str(), -1);
    tracing::info!(channel = %channel.name, role = membership.role.as_str(), client = %membership.client_id, why = ending, "signalling client disconnected");
}

/// Resolves when the server starts stopping; never if nobody can stop it (tests).
async fn server_stopping(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    let stopped = stopping.wait_for(|stop| *stop).await.map(|_| ()).is_ok();
    if !stopped {
        std::future::pending::<()>().await;
    }
}

async fn send(sink: &mut futures_util::stream::SplitSink<WebSocket, Message>, text: String) -> Result<(), ()> {
    match tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
