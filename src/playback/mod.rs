//! Stored fragments out to readers. [`get_media`]: GetMedia's live follower and
//! GetMediaForFragmentList. (HLS, DASH, clips and images join with the playback issue.)

pub mod get_media;
