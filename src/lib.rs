//! Kinescope: a self-hosted video ingestion and playback server that speaks the Kinesis
//! Video Streams wire protocols.
//!
//! Layout (see ARCHITECTURE.md for the path of a fragment through it):
//!
//! * [`wire`]: pure byte formats (fragmented MP4 boxes, per-track and progressive MP4
//!   writers, SigV4, XML, RTSP, SDP, RTP, CBOR, the AWS event stream).
//! * [`video_store`]: the fragment store engine (sled index + append-only segment files).
//! * [`media`]: codec-neutral samples and the muxer that makes fragments of them.
//! * [`ingest`]: producers in (PutMedia's fragmented MP4, RTSP publishers and cameras).
//! * [`playback`]: stored fragments out (GetMedia, fragment lists, HLS/DASH sessions,
//!   playlists and manifests, clips, RTSP PLAY).
//! * [`queues`], [`data_streams`]: the SQS and Kinesis Data Streams engines.
//! * [`buckets`]: the buckets delivery streams and image generation write, and S3 reads.
//! * [`web`]: the embedded watch page at `/`.
//! * [`api`]: the only layer that knows AWS shapes: dispatch, auth, errors, one module
//!   per service.
//! * [`app`], [`config`], [`cli`]: the process: configuration, wiring, the command line.

pub mod api;
pub mod app;
pub mod blocking;
pub mod buckets;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod credentials;
pub mod data_streams;
pub mod delivery_streams;
pub mod disk_space;
pub mod durable_file;
pub mod egress;
pub mod embedded;
pub mod images;
pub mod ingest;
pub mod media;
pub mod metrics;
pub mod playback;
pub mod postgres;
pub mod queues;
pub mod rtsp;
pub mod scope;
pub mod secrets;
pub mod signaling;

pub mod storage_failure;
pub mod stream_channels;
pub mod stream_events;
pub mod stream_queues;
pub mod sts;
pub mod tls_provider;
pub mod video_store;
pub mod web;
pub mod webrtc;
pub mod wire;
