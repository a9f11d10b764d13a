//! The Kinesis Video WebRTC signalling messages on the WebSocket (ConnectAsMaster,
//! ConnectAsViewer), as the KVS WebRTC SDKs send and read them. Pure: text in, typed
//! messages out, and events rendered back to text.
//!
//! Client → service (one JSON object per text frame):
//! `{"action": "SDP_OFFER"|"SDP_ANSWER"|"ICE_CANDIDATE", "recipientClientId": "…",
//! "messagePayload": "<base64>", "correlationId": "…"}`; `recipientClientId` is needed
//! when the master sends and ignored when a viewer does.
//!
//! Service → client: `{"senderClientId", "messageType", "messagePayload",
//! "statusResponse": {"correlationId", "errorType", "statusCode", "description"}}`,
//! `messageType` one of the actions, `GO_AWAY`, `RECONNECT_ICE_SERVER` or
//! `STATUS_RESPONSE` (only for a message that carried a `correlationId` and failed).

use base64::Engine;
use serde::{Deserialize, Serialize};

/// The longest `messagePayload` (base64 characters), as AWS documents it (10K).
pub const MAX_PAYLOAD_CHARS: usize = 10 * 1024;
/// Client ids: 1–256 characters; a viewer's may not start with `AWS_`.
pub const MAX_CLIENT_ID_CHARS: usize = 256;
/// The longest text frame accepted (a payload at its limit plus the envelope).
pub const MAX_FRAME_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "SDP_OFFER")]
    SdpOffer,
    #[serde(rename = "SDP_ANSWER")]
    SdpAnswer,
    #[serde(rename = "ICE_CANDIDATE")]
    IceCandidate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::SdpOffer => "SDP_OFFER",
            Action::SdpAnswer => "SDP_ANSWER",
            Action::IceCandidate => "ICE_CANDIDATE",
        }
    }
}

/// A message a client sent, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    pub action: Action,
    pub recipient_client_id: Option<String>,
    pub message_payload: String,
    pub correlation_id: Option<String>,
}

/// Why a frame was refused, with what the status response carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
pub struct Refusal {
    /// The frame's `correlationId`, when it could be read.
    pub correlation_id: Option<String>,
    pub error_type: &'static str,
    pub status_code: u16,
    pub description: String,
}

impl Refusal {
    pub fn invalid(correlation_id: Option<String>, description: impl Into<String>) -> Self {
        Refusal {
            correlation_id,
            error_type: "InvalidArgumentException",
            status_code: 400,
            description: description.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMessage {
    action: Option<String>,
    recipient_client_id: Option<String>,
    message_payload: Option<String>,
    correlation_id: Option<String>,
}

fn is_base64(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// Parses and checks one text frame.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, Refusal> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(Refusal::invalid(None, format!("a message may hold at most {MAX_FRAME_BYTES} bytes")));
    }
    let raw: RawMessage = serde_json::from_str(text)
        .map_err(|e| Refusal::invalid(None, format!("the message is not a JSON object: {e}")))?;
    let correlation_id = raw.correlation_id.filter(|c| !c.is_empty());
    if let Some(c) = &correlation_id {
        if c.chars().count() > 256 {
            return Err(Refusal::invalid(None, "correlationId may hold at most 256 characters"));
        }
    }
    let cid = || correlation_id.clone();
    let action = match raw.action.as_deref() {
        Some("SDP_OFFER") => Action::SdpOffer,
        Some("SDP_ANSWER") => Action::SdpAnswer,
        Some("ICE_CANDIDATE") => Action::IceCandidate,
        Some(other) => {
            return Err(Refusal::invalid(
                cid(),
                format!("action '{other}' must be SDP_OFFER, SDP_ANSWER or ICE_CANDIDATE"),
            ))
        }
        None => return Err(Refusal::invalid(cid(), "action is required")),
    };
    let payload = raw.message_payload.unwrap_or_default();
    check_payload(&payload).map_err(|why| Refusal::invalid(cid(), format!("messagePayload: {why}")))?;
    let recipient = raw.recipient_client_id.filter(|r| !r.is_empty());
    if let Some(r) = &recipient {
        check_client_id(r).map_err(|why| Refusal::invalid(cid(), format!("recipientClientId: {why}")))?;
    }
    Ok(ClientMessage { action, recipient_client_id: recipient, message_payload: payload, correlation_id })
}

/// A `messagePayload`: 1 to [`MAX_PAYLOAD_CHARS`] characters of base64.
pub fn check_payload(payload: &str) -> Result<(), String> {
    if payload.is_empty() || payload.len() > MAX_PAYLOAD_CHARS || !is_base64(payload) {
        return Err(format!("must be 1 to {MAX_PAYLOAD_CHARS} characters of base64"));
    }
    Ok(())
}

/// A viewer's client id: 1–256 characters, printable, not starting with `AWS_`.
pub fn check_client_id(id: &str) -> Result<(), String> {
    let n = id.chars().count();
    if n == 0 || n > MAX_CLIENT_ID_CHARS {
        return Err(format!("a client id must be 1 to {MAX_CLIENT_ID_CHARS} characters"));
    }
    if id.chars().any(char::is_control) {
        return Err("a client id may not hold control characters".into());
    }
    if id.starts_with("AWS_") {
        return Err("a client id may not start with AWS_".into());
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusResponse<'a> {
    correlation_id: &'a str,
    error_type: &'a str,
    status_code: String,
    description: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    sender_client_id: &'a str,
    message_type: &'a str,
    message_payload: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_response: Option<StatusResponse<'a>>,
}

/// A message on its way to its recipient, as the hub routes it: who sent it (the
/// viewer's client id, or empty for the master), what it is, and its payload as the
/// sender wrote it (base64, checked by [`parse_client_message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub sender_client_id: String,
    pub action: Action,
    pub message_payload: String,
}

impl Delivery {
    /// `msg` as sent by `sender` (empty for the master); its payload moves, uncopied.
    pub fn from_client(sender: &str, msg: ClientMessage) -> Self {
        Delivery { sender_client_id: sender.to_string(), action: msg.action, message_payload: msg.message_payload }
    }

    /// What holding it costs, in bytes (its text without the JSON envelope).
    pub fn weight(&self) -> usize {
        self.sender_client_id.len() + self.message_payload.len()
    }

    /// The text frame its recipient's WebSocket is sent.
    pub fn render(&self) -> String {
        let e = Event {
            sender_client_id: &self.sender_client_id,
            message_type: self.action.as_str(),
            message_payload: &self.message_payload,
            status_response: None,
        };
        serde_json::to_string(&e).unwrap_or_default()
    }

    /// The payload decoded from base64 (`None` if it is not base64).
    pub fn payload_bytes(&self) -> Option<Vec<u8>> {
        base64::engine::general_purpose::STANDARD.decode(self.message_payload.as_bytes()).ok()
    }
}

/// The `messagePayload` of an SDP offer or answer as the KVS SDKs write it: base64 of
/// `{"type": "offer"|"answer", "sdp": …}`.
pub fn session_description_payload(kind: &str, sdp: &str) -> String {
    let json = serde_json::json!({ "type": kind, "sdp": sdp }).to_string();
    base64::engine::general_purpose::STANDARD.encode(json)
}

/// The SDP of an offer or answer payload (decoded from base64), if it is `kind`.
pub fn session_description(payload: &[u8], kind: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Description {
        #[serde(rename = "type")]
        kind: String,
        sdp: String,
    }
    let d: Description = serde_json::from_slice(payload).ok()?;
    (d.kind == kind).then_some(d.sdp)
}

/// The status response for a refused message that carried a correlation id.
pub fn render_status(refusal: &Refusal) -> Option<String> {
    let correlation_id = refusal.correlation_id.as_deref()?;
    let e = Event {
        sender_client_id: "",
        message_type: "STATUS_RESPONSE",
        message_payload: "",
        status_response: Some(StatusResponse {
            correlation_id,
            error_type: refusal.error_type,
            status_code: refusal.status_code.to_string(),
            description: &refusal.description,
        }),
    };
    serde_json::to_string(&e).ok()
}

/// `GO_AWAY`: the service is about to close the connection; reconnect.
pub fn render_go_away() -> String {
    let e = Event { sender_client_id: "", message_type: "GO_AWAY", message_payload: "", status_response: None };
    serde_json::to_string(&e).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_payloads_decode_to_the_description_sent() {
        let d = Delivery {
            sender_client_id: String::new(),
            action: Action::SdpAnswer,
            message_payload: session_description_payload("answer", "v=0\r\n"),
        };
        let payload = d.payload_bytes().unwrap();
        assert_eq!(session_description(&payload, "answer").as_deref(), Some("v=0\r\n"));
        assert_eq!(session_description(&payload, "offer"), None);
        let bad = Delivery { message_payload: "%%%".into(), ..d };
        assert_eq!(bad.payload_bytes(), None);
    }

    #[test]
    fn sdk_frames_parse() {
        // What SignalingClient.sendSdpOffer sends as a viewer (no recipient).
        let m = parse_client_message(r#"{"action":"SDP_OFFER","messagePayload":"eyJ0eXBlIjoib2ZmZXIifQ=="}"#).unwrap();
        assert_eq!((m.action, m.recipient_client_id, m.correlation_id), (Action::SdpOffer, None, None));
        let m = parse_client_message(
            r#"{"action":"ICE_CANDIDATE","messagePayload":"e30=","recipientClientId":"viewer-1","correlationId":"c1"}"#,
        )
        .unwrap();
        assert_eq!(m.recipient_client_id.as_deref(), Some("viewer-1"));
        assert_eq!(m.correlation_id.as_deref(), Some("c1"));
    }

    #[test]
    fn bad_frames_are_refused_with_their_correlation_id() {
        let r = parse_client_message(r#"{"action":"HELLO","messagePayload":"e30=","correlationId":"c9"}"#).unwrap_err();
        assert_eq!((r.correlation_id.as_deref(), r.status_code), (Some("c9"), 400));
        let status = render_status(&r).unwrap();
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(v["messageType"], "STATUS_RESPONSE");
        assert_eq!(v["statusResponse"]["correlationId"], "c9");
        assert_eq!(v["statusResponse"]["statusCode"], "400");
        assert!(parse_client_message("not json").unwrap_err().correlation_id.is_none());
        assert!(parse_client_message(r#"{"action":"SDP_OFFER","messagePayload":"not base64!"}"#).is_err());
        assert!(parse_client_message(r#"{"action":"SDP_OFFER","messagePayload":""}"#).is_err());
        let big = format!(r#"{{"action":"SDP_OFFER","messagePayload":"{}"}}"#, "A".repeat(MAX_PAYLOAD_CHARS + 1));
        assert!(parse_client_message(&big).is_err());
        assert!(parse_client_message(r#"{"action":"SDP_OFFER","messagePayload":"e30=","recipientClientId":"AWS_x"}"#)
            .is_err());
        assert_eq!(render_status(&Refusal::invalid(None, "x")), None, "no correlation id, no status response");
    }

    #[test]
    fn deliveries_render_as_the_sdk_reads_them() {
        let m = parse_client_message(r#"{"action":"SDP_OFFER","messagePayload":"e30="}"#).unwrap();
        let d = Delivery::from_client("viewer-1", m);
        assert_eq!(d.weight(), "viewer-1".len() + 4);
        let v: serde_json::Value = serde_json::from_str(&d.render()).unwrap();
        assert_eq!(v["senderClientId"], "viewer-1");
        assert_eq!(v["messageType"], "SDP_OFFER");
        assert_eq!(v["messagePayload"], "e30=");
        assert!(v.get("statusResponse").is_none());
        let v: serde_json::Value = serde_json::from_str(&render_go_away()).unwrap();
        assert_eq!(v["messageType"], "GO_AWAY");
    }
}
