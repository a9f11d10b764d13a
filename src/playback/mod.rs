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
pub mod ts_segment;

/// What the playback tests share.
#[cfg(test)]
pub(crate) mod test_fixtures {
    use crate::wire::fmp4::{parse_init, InitInfo};

    /// fixtures/av.mp4 (ffmpeg, H.264 + AAC, one moof per keyframe): its init segment
    /// and its first fragment (moof + mdat).
    pub fn av_first_fragment() -> (InitInfo, Vec<u8>) {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/av.mp4")).unwrap();
        let mut boxes = Vec::new();
        let mut pos = 0;
        while pos + 8 <= bytes.len() {
            let size = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            boxes.push(pos..pos + size);
            pos += size;
        }
        let init = parse_init(&bytes[..boxes[2].start]).unwrap();
        (init, bytes[boxes[2].start..boxes[3].end].to_vec())
    }
}
