//! Retention: whole segment files past a stream's retention, swept by the writer.

use tokio::sync::oneshot;

use super::*;

impl VideoStore {
    pub(super) async fn sweep_stream(&self, record: &StreamRecord) -> Result<SweepStats, StoreError> {
        let cutoff = self.inner.clock.now_us() - record.retention_us(self.inner.config.live_buffer_us);
        let (reply, rx) = oneshot::channel();
        self.send(WriterCmd::Sweep { stream: record.id, cutoff_us: cutoff, reply }).await?;
        rx.await.map_err(|_| StoreError::ShuttingDown)?
    }

    /// Removes, for every stream, the whole segment files past its retention.
    pub async fn sweep_expired(&self) -> Result<SweepStats, StoreError> {
        let mut total = SweepStats::default();
        for record in self.inner.catalog.all()? {
            let s = self.sweep_stream(&record).await?;
            total.segments += s.segments;
            total.fragments += s.fragments;
            total.bytes += s.bytes;
        }
        Ok(total)
    }
}
