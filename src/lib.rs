//! Kinescope: a self-hosted video ingestion and playback server that speaks the Kinesis
//! Video Streams wire protocols.
//!
//! Layout (see ARCHITECTURE.md for the path of a fragment through it):
//!
//! * [`wire`]: pure byte formats (fragmented MP4 boxes, per-track and progressive MP4
//!   writers, SigV4, a small XML writer).
//! * [`video_store`]: the fragment store engine (sled index + append-only segment files).
//! * [`ingest`]: producers in (PutMedia's fragmented MP4).
//! * [`playback`]: stored fragments out (GetMedia, fragment lists, HLS/DASH sessions,
//!   playlists and manifests, clips).
//! * [`web`]: the embedded watch page at `/`.
//! * [`api`]: the only layer that knows AWS shapes: dispatch, auth, errors, one module
//!   per service.
//! * [`app`], [`config`], [`cli`]: the process: configuration, wiring, the command line.

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod data_streams;
pub mod ingest;
pub mod media;
pub mod metrics;
pub mod playback;
pub mod queues;
pub mod secrets;
pub mod sled_open;
pub mod video_store;
pub mod web;
pub mod wire;
