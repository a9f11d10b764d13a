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
