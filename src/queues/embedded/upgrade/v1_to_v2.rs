//! Format 1 → 2: queue records were keyed by name, all in the server's default scope;
//! from format 2 they carry their scope and are keyed `ACCOUNT/REGION/NAME`. Every
//! record is moved into the default scope. Returns how many moved.

use crate::scope::Scope;
use crate::storage_failure::StorageFailure;

pub fn run(queues: &sled::Tree, default_scope: &Scope) -> Result<usize, StorageFailure> {
    crate::embedded::sled_db::upgrade_to_scoped_keys(queues, default_scope)
        .map_err(|e| StorageFailure::caused("upgrade the queue store to format 2", e))
}
