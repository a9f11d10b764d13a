//! Where each stream's event follower has got to, behind [`CursorStore`]: the follower's
//! only way to its state. The embedded implementation is [`super::embedded`] (sled);
//! [`conformance`] is what every implementation must pass.

use crate::storage_failure::StorageFailure;
use crate::video_store::StreamId;

/// Where a stream's follower has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    pub next_fragment: u64,
    /// The next image time (µs on the image clock); `i64::MIN` before the first.
    pub next_image_us: i64,
}

/// Why a cursor could not be had or kept.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("the event cursors' store failed: {0}")]
    Storage(#[source] StorageFailure),
    /// There is a cursor, but it cannot be understood (damaged, or written by a newer
    /// Kinescope). Never reported as "no cursor": that would restart a follower at the
    /// live edge and skip every event in between.
    #[error("the event cursor of stream {stream} cannot be read (damaged, or from a newer Kinescope): {why}")]
    Unreadable { stream: StreamId, why: String },
}

/// The followers' cursors, one per stream.
#[async_trait::async_trait]
pub trait CursorStore: Send + Sync + 'static {
    /// The stream's cursor; `None` when it has none yet.
    fn get(&self, stream: StreamId) -> Result<Option<Cursor>, CursorError>;
    /// Sets the stream's cursor; durable once this returns.
    async fn put(&self, stream: StreamId, cursor: &Cursor) -> Result<(), CursorError>;
    /// Forgets the stream's cursor (its events were turned off or it was deleted).
    fn remove(&self, stream: StreamId) -> Result<(), CursorError>;
    /// The streams that have a cursor.
    fn streams(&self) -> Result<Vec<StreamId>, CursorError>;
}

/// The behaviour the follower relies on, as checks any [`CursorStore`] must pass.
/// `open` opens the same store each time (the previous one dropped first): a reopen
/// is a restart.
#[doc(hidden)]
pub mod conformance {
    use super::*;

    pub async fn run<S: CursorStore>(open: impl Fn() -> S) {
        absent_then_set_then_overwritten(&open()).await;
        durable_across_a_reopen(&open).await;
        removed_and_listed(&open()).await;
    }

    async fn absent_then_set_then_overwritten<S: CursorStore>(s: &S) {
        assert!(s.get(1).unwrap().is_none(), "no cursor before the first put");
        let a = Cursor { next_fragment: 7, next_image_us: i64::MIN };
        s.put(1, &a).await.unwrap();
        assert_eq!(s.get(1).unwrap(), Some(a));
        let b = Cursor { next_fragment: 8, next_image_us: 1_700_000_000_000_000 };
        s.put(1, &b).await.unwrap();
        assert_eq!(s.get(1).unwrap(), Some(b), "the newest put wins");
        assert!(s.get(2).unwrap().is_none(), "streams do not share cursors");
    }

    async fn durable_across_a_reopen<S: CursorStore>(open: &impl Fn() -> S) {
        let c = Cursor { next_fragment: 42, next_image_us: -5 };
        {
            let s = open();
            s.put(3, &c).await.unwrap();
        }
        assert_eq!(open().get(3).unwrap(), Some(c), "a put that returned survives a restart");
    }

    async fn removed_and_listed<S: CursorStore>(s: &S) {
        let c = Cursor { next_fragment: 1, next_image_us: 0 };
        s.put(10, &c).await.unwrap();
        s.put(u64::MAX, &c).await.unwrap();
        let listed = s.streams().unwrap();
        assert!(listed.contains(&10) && listed.contains(&u64::MAX), "{listed:?}");
        s.remove(10).unwrap();
        s.remove(10).unwrap();
        assert!(s.get(10).unwrap().is_none());
        assert!(!s.streams().unwrap().contains(&10));
    }
}
