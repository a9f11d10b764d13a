//! WebRTC signalling on the wire: GetSignalingChannelEndpoint (`kinesisvideo`),
//! GetIceServerConfig and SendAlexaOfferToMaster (`kinesis-video-signaling`), and the
//! WebSocket the KVS WebRTC SDKs connect to as master or viewer (ConnectAsMaster /
//! ConnectAsViewer), signed with a presigned URL (`api::auth`): the upgrade is here, the
//! connection's loop is `webrtc::signaling_client`'s. Messages are parsed by
//! `wire::kvs_signaling` and routed by `signaling::hub`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::Query;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use super::KvsState;
use crate::api::error::ApiError;
use crate::api::protocol::RestJson;
use crate::api::registry::Scoped;
use crate::signaling::hub::{Hub, Outbound, Role};
use crate::signaling::TurnServers;
use crate::webrtc::signaling_client::{self, ClientContext, ClientSocket, Incoming, IDLE_LIMIT, SESSION_LIMIT};
use crate::wire::kvs_signaling::{self, Action, ClientMessage};

/// The path of the signalling WebSocket on both listeners.
pub const WEBSOCKET_PATH: &str = "/v1/signaling";
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
    kvs_signaling::check_payload(&i.message_payload)
        .map_err(|why| ApiError::invalid_argument(format!("MessagePayload: {why}")))?;
    let offer = ClientMessage {
        action: Action::SdpOffer,
        recipient_client_id: None,
        message_payload: i.message_payload,
        correlation_id: None,
    };
    let (membership, mut outbox) = s.webrtc.hub.join(&channel.arn, Role::Viewer, &i.sender_client_id)?;
    let sent = s.webrtc.hub.send(&membership, offer, channel.message_ttl_s);
    s.metrics.signaling_held_bytes.set(s.webrtc.hub.pending_bytes() as i64);
    sent?;
    let wait = Duration::from_secs(u64::from(channel.message_ttl_s));
    let answer = tokio::time::timeout(wait, async {
        while let Some(out) = outbox.recv().await {
            if let Outbound::Message(d) = out {
                if d.action == Action::SdpAnswer {
                    return Some(d.message_payload);
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
    let (membership, outbox) = s.webrtc.hub.join(&channel.arn, role, &client_id)?;
    tracing::info!(channel = %channel.name, role = role.as_str(), client = %client_id, "signalling client connected");
    let cx = ClientContext {
        hub: s.webrtc.hub.clone(),
        signaling: s.signaling.clone(),
        metrics: s.metrics.clone(),
        stopping: s.webrtc.stopping.clone(),
        session_limit: SESSION_LIMIT,
        idle_limit: IDLE_LIMIT,
    };
    let scope = s.scope.clone();
    Ok(ws.max_message_size(READ_LIMIT_BYTES).max_frame_size(READ_LIMIT_BYTES).on_upgrade(move |socket| async move {
        signaling_client::serve(Socket(socket), membership, outbox, cx, scope, channel).await;
    }))
}

/// Frames up to this size are read whole (and refused with 1009 if over the 16 KiB a
/// signalling message may be), so the client's socket gets our close frame instead of
/// a reset from unread bytes; bigger ones end the connection as they arrive.
const READ_LIMIT_BYTES: usize = 256 * 1024;

/// The upgraded WebSocket as the signalling client loop (`webrtc::signaling_client`)
/// takes it.
struct Socket(WebSocket);

#[async_trait::async_trait]
impl ClientSocket for Socket {
    async fn recv(&mut self) -> Incoming {
        match self.0.recv().await {
            Some(Ok(Message::Text(text))) => Incoming::Text(text.to_string()),
            Some(Ok(Message::Binary(_))) => Incoming::Binary,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Control,
            Some(Ok(Message::Close(_))) | None => Incoming::Closed,
            // tungstenite's capacity error is the one a client causes on purpose.
            Some(Err(e)) if e.to_string().contains("Space limit exceeded") || e.to_string().contains("too long") => {
                Incoming::TooBig
            }
            Some(Err(_)) => Incoming::Lost,
        }
    }

    async fn send(&mut self, text: String) -> bool {
        matches!(tokio::time::timeout(WRITE_TIMEOUT, self.0.send(Message::Text(text.into()))).await, Ok(Ok(())))
    }

    async fn close_with(&mut self, code: u16, reason: &str) {
        let frame = axum::extract::ws::CloseFrame { code, reason: reason.to_string().into() };
        let _ = tokio::time::timeout(WRITE_TIMEOUT, self.0.send(Message::Close(Some(frame)))).await;
        // The closing handshake: the client's close frame, briefly.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(m)) = self.0.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    async fn close(&mut self) {
        let _ = tokio::time::timeout(WRITE_TIMEOUT, self.0.send(Message::Close(None))).await;
    }
}
