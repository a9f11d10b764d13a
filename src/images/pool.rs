//! The image threads: a fixed number of OS threads that render jobs from a bounded
//! queue, so that images (GetImages, image generation) never take more CPU than they
//! were given and never starve ingest of the async runtime's threads.
//!
//! Admission is a semaphore with as many permits as the queue has places: a caller
//! waits (asynchronously) for a place, so the queue never grows past its bound however
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
}

#[derive(Debug, thiserror::Error)]
#[error("the image threads have stopped")]
pub struct PoolStopped;

/// A handle on the image threads; clones share them.
#[derive(Clone)]
pub struct RenderPool {
    tasks: SyncSender<Task>,
    places: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl RenderPool {
    /// Starts `threads` image threads (at least one) behind a queue of `queue` jobs.
    pub fn start(threads: usize, queue: usize, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let queue = queue.max(1);
        let (tasks, receiver) = sync_channel::<Task>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads.max(1) {
            let receiver = receiver.clone();
            let metrics = metrics.clone();
            std::thread::Builder::new().name(format!("image-{i}")).spawn(move || work(&receiver, &metrics))?;
        }
        Ok(RenderPool { tasks, places: Arc::new(Semaphore::new(queue)), metrics })
    }

    /// Renders `job` on an image thread, waiting for a place in the queue first.
    pub async fn render(&self, job: RenderJob) -> Result<RenderResults, PoolStopped> {
        let place = self.places.clone().acquire_owned().await.map_err(|_| PoolStopped)?;
        let (reply, answer) = oneshot::channel();
        self.metrics.image_queue_depth.inc();
        // A place is held, so the channel has room: this never blocks the runtime.
        if self.tasks.try_send(Task { job, reply, _place: place }).is_err() {
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
