//! Producers in: protocol-specific byte streams turned into stored fragments.
//!
//! * [`fragmenter`]: sans-IO fragmented MP4 → keyframe-aligned fragments.
//! * [`put_media`]: a PutMedia session over HTTP: body in, acknowledgements out.

pub mod fragmenter;
pub mod put_media;
pub mod rtp_depacketize;
pub mod rtsp_publish;
pub mod rtsp_pull;
pub mod rtsp_server;
