//! Stored fragments out to readers.
//!
//! - [`get_media`]: GetMedia's live follower and GetMediaForFragmentList.
//! - [`session`]: the signed streaming-session tokens of HLS and DASH URLs.
//! - [`selection`]: which fragments a session shows now (LIVE, LIVE_REPLAY, ON_DEMAND).
//! - [`hls`], [`dash`]: the playlists and the manifest written from that selection.
//! - [`clip`]: GetClip's progressive MP4.

pub mod clip;
pub mod dash;
pub mod frame_metadata;
pub mod get_media;
pub mod hls;
pub mod ll_hls;
pub mod matroska_chunk;
pub mod rtsp_play;
pub mod selection;
pub mod session;
