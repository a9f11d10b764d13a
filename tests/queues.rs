//! The queue engine through its Rust API, on its storage trait: every test opens the
//! engine with `QueueEngine::open_with` over a `QueueStorage` made by `storage()`, so a
//! second implementation runs the same tests by changing that one function. Time is a
//! `ManualClock`: visibility, delays and retention are stepped, not slept.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kinescope::clock::ManualClock;
use kinescope::queues::embedded::SledQueues;
use kinescope::queues::store::QueueStorage;
use kinescope::queues::{QueueEngine, QueueError, QueueId, ReceiveRequest, SendRequest};
use kinescope::scope::Scope;

const T0_US: i64 = 1_700_000_000_000_000;
const KEY: [u8; 32] = [7; 32];

fn scope() -> Scope {
    Scope::new("123456789012", "us-east-1")
}

fn storage(dir: &Path) -> Arc<dyn QueueStorage> {
    Arc::new(SledQueues::open(&dir.join("queues"), &scope()).expect("open the queue store"))
}

fn open(dir: &Path, clock: &Arc<ManualClock>) -> QueueEngine {
    QueueEngine::open_with(storage(dir), KEY, clock.clone()).expect("open the engine")
}

fn send(body: &str) -> SendRequest {
    SendRequest { body: body.to_string(), ..SendRequest::default() }
}

fn receive(max: u32, visibility_s: Option<u32>) -> ReceiveRequest {
    ReceiveRequest { max_messages: max, visibility_timeout_s: visibility_s, wait_time_s: Some(0), attempt_id: None }
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn bodies(got: &[kinescope::queues::ReceivedMessage]) -> Vec<String> {
    got.iter().map(|m| m.message.body.clone()).collect()
}

#[tokio::test]
async fn a_received_message_is_hidden_until_its_visibility_ends_then_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_US));
    let q = open(dir.path(), &clock);
    let id = QueueId::new(&scope(), "jobs");
    q.create_queue(&id, &attrs(&[("VisibilityTimeout", "30")]), &BTreeMap::new()).await.unwrap();
    q.send(&id, send("one")).await.unwrap();
    q.send(&id, send("two")).await.unwrap();

    let first = q.receive(&id, receive(1, None)).await.unwrap();
    assert_eq!(bodies(&first), ["one"], "oldest first");
    assert_eq!(first[0].message.receive_count, 1);
    let second = q.receive(&id, receive(10, None)).await.unwrap();
    assert_eq!(bodies(&second), ["two"], "a message in flight is not handed out twice");
    assert!(q.receive(&id, receive(10, None)).await.unwrap().is_empty());

    clock.advance_us(29_000_000);
    assert!(q.receive(&id, receive(10, None)).await.unwrap().is_empty(), "still hidden at 29 s");
    clock.advance_us(2_000_000);
    let again = q.receive(&id, receive(10, None)).await.unwrap();
    assert_eq!(bodies(&again), ["one", "two"], "visible again after 30 s");
    assert_eq!(again[0].message.receive_count, 2);
    assert!(
        matches!(q.delete_message(&id, &first[0].receipt_handle), Ok(()) | Err(QueueError::ReceiptHandleIsInvalid(_))),
        "an old handle deletes or is refused, never deletes another message"
    );
}

#[tokio::test]
async fn deleted_and_changed_visibility_messages_behave_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_US));
    let id = QueueId::new(&scope(), "work");
    {
        let q = open(dir.path(), &clock);
        q.create_queue(&id, &BTreeMap::new(), &BTreeMap::new()).await.unwrap();
        for body in ["a", "b", "c"] {
            q.send(&id, send(body)).await.unwrap();
        }
        let got = q.receive(&id, receive(3, Some(60))).await.unwrap();
        assert_eq!(bodies(&got), ["a", "b", "c"]);
        q.delete_message(&id, &got[0].receipt_handle).unwrap();
        q.change_visibility(&id, &got[1].receipt_handle, 0).unwrap();
        let back = q.receive(&id, receive(10, Some(60))).await.unwrap();
        assert_eq!(bodies(&back), ["b"], "visibility 0 puts it back at once");
        q.delete_message(&id, &back[0].receipt_handle).unwrap();
    }
    // A restart: the delete of "a" and "b" may be redone at most (SQS allows a
    // redelivery), but "c", sent and acknowledged, is never lost.
    let q = open(dir.path(), &clock);
    clock.advance_us(61_000_000);
    let after = bodies(&q.receive(&id, receive(10, None)).await.unwrap());
    assert!(after.contains(&"c".to_string()), "{after:?}");
    assert!(!after.contains(&"a".to_string()), "a deleted message stays deleted: {after:?}");
}

#[tokio::test]
async fn fifo_deduplicates_within_five_minutes_and_keeps_group_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_US));
    let q = open(dir.path(), &clock);
    let id = QueueId::new(&scope(), "orders.fifo");
    q.create_queue(&id, &attrs(&[("FifoQueue", "true")]), &BTreeMap::new()).await.unwrap();
    let fifo = |body: &str, group: &str, dedup: &str| SendRequest {
        body: body.to_string(),
        group_id: Some(group.to_string()),
        dedup_id: Some(dedup.to_string()),
        ..SendRequest::default()
    };
    let a = q.send(&id, fifo("a1", "a", "d1")).await.unwrap();
    let dup = q.send(&id, fifo("a1 again", "a", "d1")).await.unwrap();
    assert_eq!(a.message_id, dup.message_id, "a duplicate is answered as the first, not stored");
    q.send(&id, fifo("a2", "a", "d2")).await.unwrap();
    q.send(&id, fifo("b1", "b", "d3")).await.unwrap();
    let got = q.receive(&id, receive(10, None)).await.unwrap();
    let got = bodies(&got);
    assert_eq!(got.iter().filter(|b| b.starts_with('a')).collect::<Vec<_>>(), ["a1", "a2"], "group order");
    assert!(got.contains(&"b1".to_string()));
    assert!(!got.contains(&"a1 again".to_string()));
    assert!(sequence(&a.sequence_number) > 0, "FIFO messages carry a sequence number: {:?}", a.sequence_number);

    clock.advance_us(5 * 60 * 1_000_000 + 1_000_000);
    let later = q.send(&id, fifo("a1 later", "a", "d1")).await.unwrap();
    assert_ne!(later.message_id, a.message_id, "past the window the same id is a new message");
}

fn sequence(s: &Option<String>) -> u128 {
    s.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn a_message_received_too_often_moves_to_its_dead_letter_queue() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_US));
    let q = open(dir.path(), &clock);
    let dlq = QueueId::new(&scope(), "jobs-dlq");
    q.create_queue(&dlq, &BTreeMap::new(), &BTreeMap::new()).await.unwrap();
    let redrive = format!(r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":"2"}}"#, dlq.arn());
    let id = QueueId::new(&scope(), "jobs");
    q.create_queue(&id, &attrs(&[("RedrivePolicy", &redrive), ("VisibilityTimeout", "5")]), &BTreeMap::new())
        .await
        .unwrap();
    q.send(&id, send("poison")).await.unwrap();
    for _ in 0..2 {
        assert_eq!(bodies(&q.receive(&id, receive(1, None)).await.unwrap()), ["poison"]);
        clock.advance_us(6_000_000);
    }
    assert!(q.receive(&id, receive(1, None)).await.unwrap().is_empty(), "a third receive moves it instead");
    assert_eq!(bodies(&q.receive(&dlq, receive(1, None)).await.unwrap()), ["poison"]);
    assert_eq!(q.dead_letter_sources(&dlq).unwrap(), vec!["jobs".to_string()], "the source queue, by name");
}

#[tokio::test]
async fn delays_retention_and_queue_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_US));
    let q = open(dir.path(), &clock);
    let id = QueueId::new(&scope(), "short");
    q.create_queue(&id, &attrs(&[("MessageRetentionPeriod", "60")]), &BTreeMap::new()).await.unwrap();
    q.send(&id, SendRequest { delay_s: Some(10), ..send("later") }).await.unwrap();
    assert!(q.receive(&id, receive(1, None)).await.unwrap().is_empty(), "delayed");
    clock.advance_us(10_000_000);
    let got = q.receive(&id, receive(1, Some(0))).await.unwrap();
    assert_eq!(bodies(&got), ["later"]);
    clock.advance_us(61_000_000);
    assert!(q.sweep().unwrap() >= 1, "past retention");
    assert!(q.receive(&id, receive(1, None)).await.unwrap().is_empty());

    q.delete_queue(&id).await.unwrap();
    assert!(matches!(q.send(&id, send("x")).await, Err(QueueError::QueueDoesNotExist)));
    drop(q);
    let q = open(dir.path(), &clock);
    assert!(!q.exists(&id), "a deleted queue stays deleted after a restart");
    assert!(q.list_queues(&scope(), "").is_empty());
}

#[tokio::test]
async fn queues_of_other_accounts_are_not_seen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_US));
    let q = open(dir.path(), &clock);
    let mine = QueueId::new(&scope(), "shared-name");
    let theirs = QueueId::new(&Scope::new("210987654321", "us-east-1"), "shared-name");
    q.create_queue(&mine, &BTreeMap::new(), &BTreeMap::new()).await.unwrap();
    q.create_queue(&theirs, &BTreeMap::new(), &BTreeMap::new()).await.unwrap();
    q.send(&theirs, send("private")).await.unwrap();
    assert!(q.receive(&mine, receive(10, None)).await.unwrap().is_empty());
    assert_eq!(q.list_queues(&scope(), "").len(), 1);
}
