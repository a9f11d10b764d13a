//! Producers in: protocol-specific byte streams turned into stored fragments.
//!
//! * [`fragmenter`]: sans-IO fragmented MP4 → keyframe-aligned fragments.
//! * [`put_media`]: a PutMedia session over HTTP: body in, acknowledgements out.
//! * [`publisher`]: a live source's RTP (or frames) → timed frames → fragments; fed by
//!   the RTSP server's publisher sessions and by [`rtsp_pull`].
//! * [`rtsp_pull`]: IP cameras pulled with retina, reconnected with backoff.
//!
//! WebRTC publishers (WHIP, storage sessions) are the [`crate::webrtc`] server's; they
//! feed a [`publisher`] too.

pub mod fragmenter;
pub mod mkv_fragmenter;
pub mod publisher;
pub mod put_media;
pub mod rtsp_pull;
