//! The queue store's format upgrades, one file per step, run in order at open from the
//! format found up to the current one (3). Each step is safe to run again after a crash
//! part way: the format is recorded only once every step has finished.

mod v1_to_v2;
mod v2_to_v3;

use super::payload_log::PayloadLog;
use crate::scope::Scope;
use crate::storage_failure::StorageFailure;

/// Brings a store found at format `found` to the current format.
pub fn run(
    found: u32,
    queues: &sled::Tree,
    data: &sled::Tree,
    payloads: &PayloadLog,
    default_scope: &Scope,
) -> Result<(), StorageFailure> {
    if found < 2 {
        let moved = v1_to_v2::run(queues, default_scope)?;
        if moved > 0 {
            tracing::info!(queues = moved, account = %default_scope.account, region = %default_scope.region, "queue store upgraded to format 2 (queues scoped by account and region)");
        }
    }
    if found < 3 {
        let moved = v2_to_v3::run(data, payloads)?;
        if moved > 0 {
            tracing::info!(messages = moved, "queue store upgraded to format 3 (payloads in data/queues/payloads)");
        }
    }
    Ok(())
}
