//! The signalling channels' catalog behind [`ChannelStore`]: the engine's only way to
//! its records. Every change is a compare-and-swap of one whole record, durable before
//! it returns, so concurrent changes never lose one another. The embedded
//! implementation is [`super::embedded`] (sled); [`conformance`] is what every
//! implementation must pass.

use super::channel::ChannelRecord;
use crate::scope::{NamePage, Scope};
use crate::storage_failure::StorageFailure;

/// The channel catalog.
#[async_trait::async_trait]
pub trait ChannelStore: Send + Sync + 'static {
    /// The channel `name` of `scope`, if any.
    fn get(&self, scope: &Scope, name: &str) -> Result<Option<ChannelRecord>, StorageFailure>;
    /// How many channels `scope` has.
    fn count(&self, scope: &Scope) -> Result<usize, StorageFailure>;
    /// The channels of `scope` in name order whose names start with `prefix`, after the
    /// name `after`, at most `limit`.
    fn list(&self, scope: &Scope, page: NamePage<'_>) -> Result<Vec<ChannelRecord>, StorageFailure>;
    /// Every channel of every scope.
    fn all(&self) -> Result<Vec<ChannelRecord>, StorageFailure>;
    /// Stores a new channel unless its scope has one of that name; whether it did.
    async fn insert_new(&self, record: &ChannelRecord) -> Result<bool, StorageFailure>;
    /// Replaces `old` by `new` (same scope and name) if the stored record is still
    /// `old`; whether it did (false: it changed meanwhile, or is gone).
    async fn replace(&self, old: &ChannelRecord, new: &ChannelRecord) -> Result<bool, StorageFailure>;
    /// Removes `old` if the stored record is still it; whether it did.
    async fn remove(&self, old: &ChannelRecord) -> Result<bool, StorageFailure>;
}

/// The behaviour the engine relies on, as checks any [`ChannelStore`] must pass. `open`
/// opens the same store each time (the previous one dropped first).
#[doc(hidden)]
pub mod conformance {
    use std::collections::BTreeMap;

    use super::*;
    use crate::signaling::channel::{MediaStorage, MediaStorageStatus};

    fn record(scope: &Scope, name: &str, version: &str) -> ChannelRecord {
        ChannelRecord {
            scope: scope.clone(),
            arn: crate::signaling::channel::channel_arn(scope, name, 1_700_000_000_000),
            name: name.into(),
            channel_type: "SINGLE_MASTER".into(),
            creation_time_ms: 1_700_000_000_000,
            message_ttl_s: 60,
            version: version.into(),
            tags: BTreeMap::new(),
            media_storage: MediaStorage { status: MediaStorageStatus::Disabled, stream_arn: None },
        }
    }

    pub async fn run<S: ChannelStore>(open: impl Fn() -> S) {
        let here = Scope::new("123456789012", "us-west-2");
        let there = Scope::new("210987654321", "us-west-2");
        {
            let s = open();
            // Names are unique per scope, not across scopes.
            assert!(s.insert_new(&record(&here, "door", "v1")).await.unwrap());
            assert!(!s.insert_new(&record(&here, "door", "v9")).await.unwrap(), "a name is taken once per scope");
            assert!(s.insert_new(&record(&there, "door", "v1")).await.unwrap());
            assert_eq!(s.get(&here, "door").unwrap().unwrap().version, "v1", "the first insert stays");
            assert!(s.get(&here, "yard").unwrap().is_none());
            // Compare-and-swap: a change against a stale record is refused.
            let v1 = s.get(&here, "door").unwrap().unwrap();
            let mut v2 = v1.clone();
            v2.version = "v2".into();
            v2.message_ttl_s = 30;
            assert!(s.replace(&v1, &v2).await.unwrap());
            let mut stale = v1.clone();
            stale.version = "v3".into();
            assert!(!s.replace(&v1, &stale).await.unwrap(), "v1 is no longer what is stored");
            assert!(!s.remove(&v1).await.unwrap(), "nor can it be removed");
            assert_eq!(s.get(&here, "door").unwrap().unwrap(), v2);
        }
        // Durable: what returned is there after a reopen.
        let s = open();
        let v2 = s.get(&here, "door").unwrap().expect("kept across a restart");
        assert_eq!(v2.message_ttl_s, 30);
        // Listing: name order, prefix, after, limit, per scope.
        for n in ["gate", "garage", "attic"] {
            assert!(s.insert_new(&record(&here, n, "v1")).await.unwrap());
        }
        let names = |l: Vec<ChannelRecord>| l.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(
            names(s.list(&here, NamePage { prefix: "", after: None, limit: 10 }).unwrap()),
            ["attic", "door", "garage", "gate"]
        );
        assert_eq!(
            names(s.list(&here, NamePage { prefix: "ga", after: None, limit: 10 }).unwrap()),
            ["garage", "gate"]
        );
        assert_eq!(
            names(s.list(&here, NamePage { prefix: "", after: Some("door"), limit: 2 }).unwrap()),
            ["garage", "gate"]
        );
        assert_eq!(names(s.list(&there, NamePage { prefix: "", after: None, limit: 10 }).unwrap()), ["door"]);
        assert_eq!(s.count(&here).unwrap(), 4);
        assert_eq!(s.all().unwrap().len(), 5);
        // Removal, only of the current record.
        assert!(s.remove(&v2).await.unwrap());
        assert!(s.get(&here, "door").unwrap().is_none());
        drop(s);
        assert!(open().get(&here, "door").unwrap().is_none(), "a removal is durable");
    }
}
