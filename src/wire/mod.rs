//! Wire formats as pure functions over bytes: no sockets, no files, no clocks.
//! Each is unit-tested on fixtures and fuzzed (see `fuzz/`); the async code that moves
//! bytes lives elsewhere and calls into these.

pub mod aws_chunked;
pub mod bmff;
pub mod cbor;
pub mod ebml;
pub mod eventstream;
pub mod fmp4;
pub mod kpl;
pub mod kvs_signaling;
pub mod matroska;
pub mod mp4_tracks;
pub mod mpegts;
pub mod rtcp;
pub mod rtp;
pub mod rtsp;
pub mod sdp;
pub mod sigv2;
pub mod sigv4;
pub mod sqs_md5;
pub mod turn_rest;
pub mod xml;
