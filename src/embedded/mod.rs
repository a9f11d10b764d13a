//! What the embedded implementations of the engines' storage traits share: sled,
//! opened one way, with format versions and the upgrade to scoped keys. Each engine's
//! implementation lives in its own `embedded` module (`video_store::embedded`,
//! `queues::embedded`, …); only those, and this, name sled.

pub mod sled_db;

/// The log filter when `KINESCOPE_LOG` is not set: `info`, with sled's own chatter
/// (page flushes, segment reuse) at `warn`.
pub const DEFAULT_LOG_FILTER: &str = "info,sled=warn";
