//! The WebRTC protocol server (as `rtsp/` is the RTSP one, both over the same stream
//! core): WHIP publishers, WHEP viewers, KVS storage sessions, and the signalling
//! channels' WebSocket clients.
//!
//! - [`peer`]: a peer connection as the server builds them (codecs asked of
//!   [`crate::codec`], host candidates, non-trickle answers), the candidate screen, the
//!   table of sessions.
//! - [`recorder`]: what every recorded peer goes through (WHIP publishers, storage
//!   sessions' masters): its RTP into an [`crate::ingest::publisher::Publisher`].
//! - [`whip`]: WHIP publishing: offers, sessions, stream-scoped publishing tokens.
//! - [`whep`]: WHEP viewing, from stored fragments then the live bus.
//! - [`storage_session`]: JoinStorageSession (and as viewer): the server joins a
//!   signalling channel, records the master, mixes the voices.
//! - [`signaling_client`]: a KVS signalling client's WebSocket connection, from the
//!   upgrade the API hands over to its close.
//!
//! The HTTP layer (`api::kvs`) only adapts requests to these and maps their errors.

pub mod peer;
pub mod recorder;
pub mod signaling_client;
pub mod storage_session;
pub mod whep;
pub mod whip;
