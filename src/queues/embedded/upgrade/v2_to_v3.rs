//! Format 2 → 3: each message record holding its payload inline has it moved to the
//! payload log (synced), then the records are rewritten in one atomic batch. A crash in
//! between leaves format 2 and the upgrade runs again (the payloads appended the first
//! time are then unreferenced and swept). Returns how many moved.

use crate::queues::embedded::payload_log::PayloadLog;
use crate::queues::message::StoredMessage;
use crate::storage_failure::StorageFailure;

/// Message records: kind `M`.
const KIND_MESSAGE: u8 = b'M';

fn storage(e: impl std::error::Error + Send + Sync + 'static) -> StorageFailure {
    StorageFailure::caused("upgrade the queue store to format 3", e)
}

pub fn run(data: &sled::Tree, payloads: &PayloadLog) -> Result<usize, StorageFailure> {
    let mut batch = sled::Batch::default();
    let mut moved = 0;
    for item in data.scan_prefix([KIND_MESSAGE]) {
        let (k, v) = item.map_err(storage)?;
        let mut m: StoredMessage = serde_json::from_slice(&v).map_err(storage)?;
        if !m.has_payload() {
            continue;
        }
        m.payload_ref = Some(payloads.append(&serde_json::to_vec(&m.payload()).map_err(storage)?).map_err(storage)?);
        batch.insert(k, serde_json::to_vec(&m.without_payload()).map_err(storage)?);
        moved += 1;
    }
    payloads.sync().map_err(storage)?;
    data.apply_batch(batch).map_err(storage)?;
    data.flush().map_err(storage)?;
    Ok(moved)
}
