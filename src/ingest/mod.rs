//! Producers in: protocol-specific byte streams turned into stored fragments.
//!
//! * [`fragmenter`]: sans-IO fragmented MP4 → keyframe-aligned fragments.
//! * [`put_media`]: a PutMedia session over HTTP: body in, acknowledgements out.
//! * [`publisher`]: a live source's RTP (or frames) → timed frames → fragments; fed by
//!   the RTSP server's publisher sessions and by [`rtsp_pull`].
//! * [`rtsp_pull`]: IP cameras pulled with retina, reconnected with backoff.
//! * [`whip`]: WebRTC publishers (WHIP): the peer's RTP into a [`publisher`].
//! * [`storage_session`]: JoinStorageSession: a signalling channel's master recorded
//!   through the same path, the server joining the channel as a viewer.

pub mod fragmenter;
pub mod publisher;
pub mod put_media;
pub mod rtsp_pull;
pub mod storage_session;
pub mod whip;
