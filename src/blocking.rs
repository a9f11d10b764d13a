//! Waiting, from synchronous code, for work that runs on another runtime (the cluster
//! stores' traits are synchronous; their requests are async and run on the store's
//! runtime). The caller's thread waits on a channel, so a caller on any runtime never
//! deadlocks with the work it waits for; on a multi-threaded runtime the wait is
//! announced (`block_in_place`), so that the runtime moves its other tasks to other
//! threads instead of stalling them behind a network round trip.

use std::future::Future;

/// Runs `fut` on `runtime` and waits for its output here; `None` if the runtime
/// dropped it (shutting down).
pub fn wait_on<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    fut: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(fut.await);
    });
    let on_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_worker {
        tokio::task::block_in_place(|| rx.recv().ok())
    } else {
        rx.recv().ok()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn waits_from_plain_threads_and_from_runtime_workers() {
        let other = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let handle = other.handle().clone();
        assert_eq!(super::wait_on(&handle, async { 7 }), Some(7));
        let caller = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let h = handle.clone();
        let got = caller.block_on(async move { tokio::spawn(async move { super::wait_on(&h, async { 8 }) }).await });
        assert_eq!(got.unwrap(), Some(8));
        other.shutdown_background();
    }
}
