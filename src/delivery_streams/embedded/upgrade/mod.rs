//! The delivery-stream store's format upgrades, one file per step, run in order at open
//! from the format found up to the current one (3; 2 → 3 rewrites nothing: format 3
//! only adds an optional member). Each step is safe to run again after
//! a crash part way: the format is recorded only once every step has finished.

mod v1_to_v2;

use crate::storage_failure::StorageFailure;

/// Brings a store found at format `found` to the current format.
pub fn run(found: u32, db: &sled::Db) -> Result<(), StorageFailure> {
    if found < 2 {
        let moved = v1_to_v2::run(db)?;
        if moved > 0 {
            tracing::info!(
                streams = moved,
                "delivery-stream store upgraded to format 2 (settings in the engine's terms)"
            );
        }
    }
    Ok(())
}
