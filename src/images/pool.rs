//! The image threads: a fixed number of OS threads that render jobs from a bounded
//! queue, so that images (GetImages, image generation) never take more CPU than they
//! were given and never starve ingest of the async runtime's threads.
//!
//! Admission is by bytes: a job holds the access units it decodes and the pictures it
//! makes ([`RenderJob::output_bytes`]; the access units are up to a whole GOP,
//! and a fragment may be 50 MB), so a caller first takes as many KiB of the pool's byte
//! budget as its job holds, waiting (asynchronously) while the budget is spent. Queued
//! jobs never hold more than the budget (a single larger job takes all of it), however
//! many requests arrive.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::render::{render, RenderError, RenderJob};
use crate::metrics::Metrics;

pub type RenderResults = Vec<Result<Vec<u8>, RenderError>>;

struct Task {
    job: RenderJob,
    reply: oneshot::Sender<RenderResults>,
    _place: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

#[derive(Debug, thiserror::Error)]
#[error("the image threads have stopped")]
pub struct PoolStopped;

/// The byte budget of queued and running jobs, by default.
pub const DEFAULT_BUDGET_BYTES: u64 = 256 * 1024 * 1024;

/// A handle on the image threads; clones share them.
#[derive(Clone)]
pub struct RenderPool {
    tasks: SyncSender<Task>,
    /// A place in the channel per job.
    places: Arc<Semaphore>,
    /// KiB of media the queued and running jobs may hold.
    budget_kib: Arc<Semaphore>,
    total_kib: u32,
    metrics: Arc<Metrics>,
}

impl RenderPool {
    /// Starts `threads` image threads (at least one) behind a queue of at most `queue`
    /// jobs holding at most `budget_bytes` of media between them.
    pub fn start(threads: usize, queue: usize, budget_bytes: u64, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let queue = queue.max(1);
        let total_kib = u32::try_from(budget_bytes / 1024).unwrap_or(u32::MAX).clamp(1, 1 << 30);
        let (tasks, receiver) = sync_channel::<Task>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads.max(1) {
            let receiver = receiver.clone();
            let metrics = metrics.clone();
            std::thread::Builder::new().name(format!("image-{i}")).spawn(move || work(&receiver, &metrics))?;
        }
        Ok(RenderPool {
            tasks,
            places: Arc::new(Semaphore::new(queue)),
            budget_kib: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            metrics,
        })
    }

    /// Renders `job` on an image thread, waiting for a place in the queue and for its
    /// bytes in the budget first (a job larger than the whole budget takes all of it).
    pub async fn render(&self, job: RenderJob) -> Result<RenderResults, PoolStopped> {
        // The media it decodes and the pictures it makes.
        let bytes = job.units.iter().map(|u| u.annex_b.len() as u64).sum::<u64>() + job.output_bytes();
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).clamp(1, self.total_kib);
        let bytes_permit = self.budget_kib.clone().acquire_many_owned(kib).await.map_err(|_| PoolStopped)?;
        let place = self.places.clone().acquire_owned().await.map_err(|_| PoolStopped)?;
        let (reply, answer) = oneshot::channel();
        self.metrics.image_queue_depth.inc();
        // A place is held, so the channel has room: this never blocks the runtime.
        if self.tasks.try_send(Task { job, reply, _place: place, _bytes: bytes_permit }).is_err() {
            self.metrics.image_queue_depth.dec();
            return Err(PoolStopped);
        }
        answer.await.map_err(|_| PoolStopped)
    }
}

fn work(receiver: &Mutex<Receiver<Task>>, metrics: &Metrics) {
    loop {
        let task = {
            let Ok(guard) = receiver.lock() else { return };
            match guard.recv() {
                Ok(t) => t,
                Err(_) => return,
            }
        };
        let started = Instant::now();
        let job = &task.job;
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| render(job))).unwrap_or_else(|_| {
            tracing::error!("an image render panicked; its images are reported as media errors");
            vec![Err(RenderError::Codec("the renderer failed".into())); job.wanted.len()]
        });
        metrics.image_render_seconds.observe(started.elapsed().as_secs_f64());
        metrics.image_queue_depth.dec();
        // The caller may have gone (a dropped request): nothing to do then.
        let _ = task.reply.send(results);
    }
}
