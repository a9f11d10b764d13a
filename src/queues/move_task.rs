//! Message move tasks (StartMessageMoveTask / ListMessageMoveTasks /
//! CancelMessageMoveTask): redrive messages out of a dead-letter queue, back to their
//! source queues or to one destination, at a bounded rate.
//!
//! A task moves the messages that were in the dead-letter queue when it started
//! (`ApproximateNumberOfMessagesToMove`), one at a time, each in one atomic store
//! batch. Tasks live in memory: a restart ends a running task (messages already moved
//! stay moved), and the task list starts empty.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::*;

/// The default and largest rate (messages per second).
pub const MAX_RATE: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Running,
    Completed,
    Cancelling,
    Cancelled,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Running => "RUNNING",
            TaskStatus::Completed => "COMPLETED",
            TaskStatus::Cancelling => "CANCELLING",
            TaskStatus::Cancelled => "CANCELLED",
            TaskStatus::Failed => "FAILED",
        }
    }
}

/// What a task handle carries (opaque to clients, base64url JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HandleBody {
    pub source: String,
    pub id: String,
}

pub struct MoveTask {
    pub handle: String,
    pub source_arn: String,
    pub destination_arn: Option<String>,
    pub rate: Option<u32>,
    pub to_move: u64,
    pub started_ms: i64,
    pub moved: AtomicU64,
    pub cancel: AtomicBool,
    pub status: Mutex<(TaskStatus, Option<String>)>,
}

impl MoveTask {
    pub fn status(&self) -> (TaskStatus, Option<String>) {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, status: TaskStatus, reason: Option<String>) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = (status, reason);
    }

    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::SeqCst)
    }
}

impl QueueEngine {
    pub(super) fn source_queue(&self, source_arn: &str) -> Result<(QueueId, Arc<Queue>), QueueError> {
        self.queue_by_arn(source_arn).ok_or_else(|| {
            QueueError::ResourceNotFound(format!(
                "The resource that you specified for the SourceArn parameter doesn't exist: {source_arn}"
            ))
        })
    }

    /// StartMessageMoveTask: moves the messages now in dead-letter queue `source_arn`
    /// back to where they came from, or to `destination_arn`.
    pub fn start_move_task(
        &self,
        source_arn: &str,
        destination_arn: Option<&str>,
        rate: Option<u32>,
    ) -> Result<String, QueueError> {
        let (source, q) = self.source_queue(source_arn)?;
        if self.dead_letter_sources(&source)?.is_empty() {
            return Err(QueueError::InvalidParameterValue(format!(
                "Source queue {source_arn} must be configured as a dead-letter queue of another queue."
            )));
        }
        if let Some(d) = destination_arn {
            if self.queue_by_arn(d).is_none() {
                return Err(QueueError::ResourceNotFound(format!(
                    "The resource that you specified for the DestinationArn parameter doesn't exist: {d}"
                )));
            }
        }
        if rate.is_some_and(|r| !(1..=move_task::MAX_RATE).contains(&r)) {
            return Err(QueueError::InvalidParameterValue("MaxNumberOfMessagesPerSecond must be 1 to 500".into()));
        }
        let mut tasks = lock(&self.inner.tasks);
        let list = tasks.entry(source.key()).or_default();
        if list.iter().any(|t| t.status().0 == move_task::TaskStatus::Running) {
            return Err(QueueError::InvalidParameterValue(format!(
                "There is already a message move task running for {source_arn}."
            )));
        }
        let body = move_task::HandleBody { source: source_arn.to_string(), id: uuid::Uuid::new_v4().to_string() };
        let handle = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&body).unwrap_or_default(),
        );
        let to_move = lock(&q.state).len() as u64;
        let task = Arc::new(move_task::MoveTask {
            handle: handle.clone(),
            source_arn: source_arn.to_string(),
            destination_arn: destination_arn.map(str::to_string),
            rate,
            to_move,
            started_ms: self.now_ms(),
            moved: Default::default(),
            cancel: Default::default(),
            status: Mutex::new((move_task::TaskStatus::Running, None)),
        });
        list.push(task.clone());
        let engine = self.clone();
        tokio::spawn(async move { engine.run_move_task(source, task).await });
        Ok(handle)
    }

    pub(super) async fn run_move_task(&self, source: QueueId, task: Arc<move_task::MoveTask>) {
        use move_task::TaskStatus;
        let pause = Duration::from_secs_f64(1.0 / f64::from(task.rate.unwrap_or(move_task::MAX_RATE)));
        while task.moved() < task.to_move {
            if task.cancel.load(Ordering::SeqCst) {
                task.set(TaskStatus::Cancelled, None);
                return;
            }
            match self.move_one(&source, task.destination_arn.as_deref()) {
                Ok(true) => {
                    task.moved.fetch_add(1, Ordering::SeqCst);
                }
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(queue = %source, error = %e, "message move task failed");
                    task.set(TaskStatus::Failed, Some(e.to_string()));
                    return;
                }
            }
            tokio::time::sleep(pause).await;
        }
        if let Err(e) = self.inner.store.flush().await {
            task.set(TaskStatus::Failed, Some(e.to_string()));
            return;
        }
        task.set(TaskStatus::Completed, None);
    }

    /// Moves one visible message out of `source`; false when none is left.
    pub(super) fn move_one(&self, source: &QueueId, destination_arn: Option<&str>) -> Result<bool, QueueError> {
        let src = self.queue(source)?;
        let src_id = lock(&src.record).id;
        let Some(m) = lock(&src.state).take_next_visible(self.now_ms()) else { return Ok(false) };
        let target = destination_arn.map(str::to_string).or_else(|| m.dead_letter_source_arn.clone());
        let Some((dest_name, dest)) = target.as_deref().and_then(|arn| self.queue_by_arn(arn)) else {
            lock(&src.state).add(m);
            return Err(QueueError::ResourceNotFound(format!(
                "the destination queue {} does not exist",
                target.unwrap_or_else(|| "(unknown source)".into())
            )));
        };
        let moved = self.transfer(src_id, m, &dest, None)?;
        tracing::debug!(from = %source, to = %dest_name, message = %moved.id, "message moved back");
        Ok(true)
    }

    /// ListMessageMoveTasks: the most recent tasks of a source queue, newest first.
    pub fn list_move_tasks(&self, source_arn: &str, max: usize) -> Result<Vec<Arc<move_task::MoveTask>>, QueueError> {
        let (source, _) = self.source_queue(source_arn)?;
        let tasks = lock(&self.inner.tasks);
        Ok(tasks.get(&source.key()).map(|l| l.iter().rev().take(max).cloned().collect()).unwrap_or_default())
    }

    /// CancelMessageMoveTask: returns how many messages were moved.
    pub fn cancel_move_task(&self, handle: &str) -> Result<u64, QueueError> {
        let tasks = lock(&self.inner.tasks);
        let task = tasks
            .values()
            .flatten()
            .find(|t| t.handle == handle)
            .ok_or_else(|| QueueError::ResourceNotFound(format!("Task does not exist: {handle}")))?;
        if task.status().0 != move_task::TaskStatus::Running {
            return Err(QueueError::InvalidParameterValue("Only a RUNNING task can be cancelled.".into()));
        }
        task.cancel.store(true, Ordering::SeqCst);
        task.set(move_task::TaskStatus::Cancelling, None);
        Ok(task.moved())
    }
}
