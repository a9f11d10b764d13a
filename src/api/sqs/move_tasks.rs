//! Message move tasks (redrive out of a dead-letter queue): StartMessageMoveTask,
//! ListMessageMoveTasks, CancelMessageMoveTask.

use serde::{Deserialize, Serialize};

use super::{invalid, lenient, SqsState};
use crate::queues::move_task::{MoveTask, TaskStatus};
use crate::queues::QueueError;

type Result<T> = std::result::Result<T, QueueError>;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartInput {
    source_arn: String,
    destination_arn: Option<String>,
    #[serde(default, deserialize_with = "lenient::int")]
    max_number_of_messages_per_second: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartOutput {
    task_handle: String,
}

pub async fn start(s: SqsState, i: StartInput) -> Result<StartOutput> {
    let rate = i
        .max_number_of_messages_per_second
        .map(|r| u32::try_from(r).map_err(|_| invalid("MaxNumberOfMessagesPerSecond", "must be 1 to 500")))
        .transpose()?;
    let task_handle = s.engine.start_move_task(&i.source_arn, i.destination_arn.as_deref(), rate)?;
    Ok(StartOutput { task_handle })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListInput {
    source_arn: String,
    #[serde(default, deserialize_with = "lenient::int")]
    max_results: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskOut {
    status: &'static str,
    source_arn: String,
    approximate_number_of_messages_moved: u64,
    approximate_number_of_messages_to_move: u64,
    started_timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_handle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_number_of_messages_per_second: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<String>,
}

impl From<&MoveTask> for TaskOut {
    fn from(t: &MoveTask) -> Self {
        let (status, failure_reason) = t.status();
        TaskOut {
            status: status.as_str(),
            source_arn: t.source_arn.clone(),
            approximate_number_of_messages_moved: t.moved(),
            approximate_number_of_messages_to_move: t.to_move,
            started_timestamp: t.started_ms,
            // Only a running task can still be cancelled by its handle.
            task_handle: (status == TaskStatus::Running).then(|| t.handle.clone()),
            destination_arn: t.destination_arn.clone(),
            max_number_of_messages_per_second: t.rate,
            failure_reason,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListOutput {
    results: Vec<TaskOut>,
}

pub async fn list(s: SqsState, i: ListInput) -> Result<ListOutput> {
    let max = i.max_results.unwrap_or(1);
    if !(1..=10).contains(&max) {
        return Err(invalid("MaxResults", "must be 1 to 10"));
    }
    let tasks = s.engine.list_move_tasks(&i.source_arn, max as usize)?;
    Ok(ListOutput { results: tasks.iter().map(|t| TaskOut::from(t.as_ref())).collect() })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CancelInput {
    task_handle: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CancelOutput {
    approximate_number_of_messages_moved: u64,
}

pub async fn cancel(s: SqsState, i: CancelInput) -> Result<CancelOutput> {
    Ok(CancelOutput { approximate_number_of_messages_moved: s.engine.cancel_move_task(&i.task_handle)? })
}
