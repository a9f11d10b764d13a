//! WebRTC signalling channels (the `kinesisvideo` channel operations): a durable
//! catalog of channels, one record per channel keyed by its scope and name, behind
//! [`channel_store::ChannelStore`]. Like the video store's catalog, every change is a
//! compare-and-swap of the whole record and is durable before it is answered. No HTTP
//! here: `api` drives it.
//!
//! - [`channel`]: the record, ARNs and the rules of its fields (pure).
//! - [`channel_store`]: the catalog's trait and its conformance suite;
//!   [`embedded`]: its implementation in sled (`data/signaling/`).
//! - [`hub`]: who is connected to which channel and the routing of their messages (in
//!   memory).

pub mod channel;
pub mod channel_store;
pub mod embedded;
pub mod hub;
pub mod postgres;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::clock::SharedClock;
use crate::scope::{NamePage, Scope};
use crate::storage_failure::StorageFailure;
use channel::{ChannelRecord, MediaStorage, MediaStorageStatus};
use channel_store::ChannelStore;

/// Channels one account may have in one region (AWS's default quota).
pub const MAX_CHANNELS_PER_SCOPE: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    #[error("The requested channel is not found or not active: {0}")]
    ChannelNotFound(String),
    #[error("The signaling channel {0} already exists")]
    ChannelExists(String),
    #[error("The channel version {given} does not match the current version {current}")]
    VersionMismatch { given: String, current: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("a channel can have at most {max} tags; this change would give it {would_have}")]
    TooManyTags { max: usize, would_have: usize },
    #[error("this account already has {0} signaling channels in this region, the most it may have")]
    TooManyChannels(usize),
    #[error(transparent)]
    Storage(#[from] StorageFailure),
}

/// The TURN servers GetIceServerConfig hands out, with time-limited credentials made
/// from the secret they share with this server (`wire::turn_rest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnServers {
    pub uris: Vec<String>,
    pub secret: String,
    /// Credential lifetime, 30–86400 s.
    pub ttl_secs: u32,
}

/// What CreateSignalingChannel asks for.
pub struct NewChannel {
    pub name: String,
    pub channel_type: Option<String>,
    pub message_ttl_s: Option<i64>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct SignalingEngine {
    inner: Arc<Inner>,
}

struct Inner {
    channels: Arc<dyn ChannelStore>,
    clock: SharedClock,
    /// Channel ARN → MessageTtlSeconds, for the signalling hot path (every message
    /// routed needs the channel's current TTL). Filled on first use, replaced by every
    /// change made through this engine, removed on delete.
    ttl_cache: std::sync::RwLock<std::collections::HashMap<String, u32>>,
}

impl SignalingEngine {
    /// Opens (or creates) the embedded catalog in `data_dir/signaling`.
    pub fn open(data_dir: &Path, clock: SharedClock) -> Result<Self, SignalingError> {
        Ok(Self::with_store(Arc::new(embedded::SledChannels::open(data_dir)?), clock))
    }

    /// The engine over any channel store.
    pub fn with_store(channels: Arc<dyn ChannelStore>, clock: SharedClock) -> Self {
        SignalingEngine { inner: Arc::new(Inner { channels, clock, ttl_cache: Default::default() }) }
    }

    /// CreateSignalingChannel in `scope` (the caller's account and region).
    pub async fn create(&self, scope: &Scope, req: NewChannel) -> Result<ChannelRecord, SignalingError> {
        channel::validate_name(&req.name)?;
        let channel_type = req.channel_type.unwrap_or_else(|| "SINGLE_MASTER".into());
        match channel_type.as_str() {
            "SINGLE_MASTER" => {}
            "FULL_MESH" => {
                return Err(SignalingError::InvalidArgument(
                    "ChannelType FULL_MESH is not supported; use SINGLE_MASTER".into(),
                ))
            }
            other => {
                return Err(SignalingError::InvalidArgument(format!(
                    "ChannelType '{other}' must be SINGLE_MASTER or FULL_MESH"
                )))
            }
        }
        let ttl = match req.message_ttl_s {
            Some(t) => channel::validate_ttl(t)?,
            None => channel::DEFAULT_MESSAGE_TTL_S,
        };
        channel::validate_tags(&req.tags)?;
        let existing = self.inner.channels.count(scope)?;
        if existing >= MAX_CHANNELS_PER_SCOPE {
            return Err(SignalingError::TooManyChannels(existing));
        }
        let now_ms = self.inner.clock.now_ms();
        let record = ChannelRecord {
            scope: scope.clone(),
            arn: channel::channel_arn(scope, &req.name, now_ms),
            name: req.name,
            channel_type,
            creation_time_ms: now_ms,
            message_ttl_s: ttl,
            version: channel::new_version(),
            tags: req.tags,
            media_storage: MediaStorage { status: MediaStorageStatus::Disabled, stream_arn: None },
        };
        if !self.inner.channels.insert_new(&record).await? {
            return Err(SignalingError::ChannelExists(record.name));
        }
        Ok(record)
    }

    /// A channel of `scope` by name, ARN or both (they must then agree). An ARN of
    /// another account or region names no channel the caller can see.
    pub fn resolve(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
    ) -> Result<ChannelRecord, SignalingError> {
        let arn_name = match arn {
            Some(a) => {
                let (arn_scope, name) = channel::parse_channel_arn(a)
                    .ok_or_else(|| SignalingError::InvalidArgument(format!("'{a}' is not a signaling channel ARN")))?;
                if &arn_scope != scope {
                    return Err(SignalingError::ChannelNotFound(a.to_string()));
                }
                Some(name)
            }
            None => None,
        };
        let name = match (name, arn_name.as_deref()) {
            (Some(n), Some(a)) if n != a => {
                return Err(SignalingError::InvalidArgument(
                    "ChannelName and ChannelARN name different channels".into(),
                ))
            }
            (Some(n), _) => n.to_string(),
            (None, Some(a)) => a.to_string(),
            (None, None) => {
                return Err(SignalingError::InvalidArgument("ChannelName or ChannelARN is required".into()))
            }
        };
        let record = match self.inner.channels.get(scope, &name)? {
            Some(r) => r,
            None => return Err(SignalingError::ChannelNotFound(arn.unwrap_or(&name).to_string())),
        };
        if arn.is_some_and(|a| a != record.arn) {
            return Err(SignalingError::ChannelNotFound(arn.unwrap_or_default().to_string()));
        }
        Ok(record)
    }

    /// The current MessageTtlSeconds of a channel (cached; `None` if it is gone).
    pub fn message_ttl(&self, scope: &Scope, arn: &str) -> Option<u32> {
        if let Some(ttl) = self.ttl_cache().get(arn) {
            return Some(*ttl);
        }
        let ttl = self.resolve(scope, None, Some(arn)).ok()?.message_ttl_s;
        self.ttl_cache_mut().insert(arn.to_string(), ttl);
        Some(ttl)
    }

    fn ttl_cache(&self) -> std::sync::RwLockReadGuard<'_, std::collections::HashMap<String, u32>> {
        self.inner.ttl_cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn ttl_cache_mut(&self) -> std::sync::RwLockWriteGuard<'_, std::collections::HashMap<String, u32>> {
        self.inner.ttl_cache.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The channels of `scope` in name order, names starting with `prefix`, after
    /// `after` (a name), at most `limit`.
    pub fn list(&self, scope: &Scope, page: NamePage<'_>) -> Result<Vec<ChannelRecord>, SignalingError> {
        Ok(self.inner.channels.list(scope, page)?)
    }

    /// Every channel whose media storage records into `stream_arn`.
    pub fn storing_into(&self, stream_arn: &str) -> Result<Vec<ChannelRecord>, SignalingError> {
        Ok(self.inner.channels.all()?.into_iter().filter(|r| r.storage_stream() == Some(stream_arn)).collect())
    }

    /// Applies `change` to a channel under compare-and-swap, retrying on races.
    async fn modify(
        &self,
        scope: &Scope,
        arn: &str,
        mut change: impl FnMut(&mut ChannelRecord) -> Result<(), SignalingError>,
    ) -> Result<ChannelRecord, SignalingError> {
        loop {
            let old = self.resolve(scope, None, Some(arn))?;
            let mut new = old.clone();
            change(&mut new)?;
            if self.inner.channels.replace(&old, &new).await? {
                self.ttl_cache_mut().insert(new.arn.clone(), new.message_ttl_s);
                return Ok(new);
            }
        }
    }

    fn check_version(record: &ChannelRecord, given: Option<&str>) -> Result<(), SignalingError> {
        match given {
            Some(v) if v != record.version => {
                Err(SignalingError::VersionMismatch { given: v.into(), current: record.version.clone() })
            }
            _ => Ok(()),
        }
    }

    /// UpdateSignalingChannel: a new message TTL (for messages sent from now on).
    pub async fn update(
        &self,
        scope: &Scope,
        arn: &str,
        version: &str,
        ttl: Option<i64>,
    ) -> Result<ChannelRecord, SignalingError> {
        let ttl = ttl.map(channel::validate_ttl).transpose()?;
        self.modify(scope, arn, |r| {
            Self::check_version(r, Some(version))?;
            if let Some(t) = ttl {
                r.message_ttl_s = t;
            }
            r.version = channel::new_version();
            Ok(())
        })
        .await
    }

    /// DeleteSignalingChannel, optionally only at `version`.
    pub async fn delete(
        &self,
        scope: &Scope,
        arn: &str,
        version: Option<&str>,
    ) -> Result<ChannelRecord, SignalingError> {
        loop {
            let old = self.resolve(scope, None, Some(arn))?;
            Self::check_version(&old, version)?;
            if self.inner.channels.remove(&old).await? {
                self.ttl_cache_mut().remove(&old.arn);
                return Ok(old);
            }
        }
    }

    pub async fn tag(
        &self,
        scope: &Scope,
        arn: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<ChannelRecord, SignalingError> {
        channel::validate_tags(tags)?;
        self.modify(scope, arn, |r| {
            let mut merged = r.tags.clone();
            merged.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
            if merged.len() > channel::MAX_TAGS {
                return Err(SignalingError::TooManyTags { max: channel::MAX_TAGS, would_have: merged.len() });
            }
            r.tags = merged;
            Ok(())
        })
        .await
    }

    pub async fn untag(&self, scope: &Scope, arn: &str, keys: &[String]) -> Result<ChannelRecord, SignalingError> {
        self.modify(scope, arn, |r| {
            keys.iter().for_each(|k| drop(r.tags.remove(k)));
            Ok(())
        })
        .await
    }

    /// UpdateMediaStorageConfiguration. The caller has checked that the stream exists,
    /// keeps data, and records no other channel.
    pub async fn set_media_storage(
        &self,
        scope: &Scope,
        arn: &str,
        storage: MediaStorage,
    ) -> Result<ChannelRecord, SignalingError> {
        self.modify(scope, arn, |r| {
            r.media_storage = storage.clone();
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn engine(dir: &Path) -> SignalingEngine {
        SignalingEngine::open(dir, Arc::new(ManualClock::new(1_700_000_000_000_000))).unwrap()
    }

    fn new(name: &str) -> NewChannel {
        NewChannel { name: name.into(), channel_type: None, message_ttl_s: None, tags: BTreeMap::new() }
    }

    #[tokio::test]
    async fn channels_are_durable_scoped_and_versioned() {
        let dir = tempfile::tempdir().unwrap();
        let here = Scope::new("123456789012", "us-west-2");
        let elsewhere = Scope::new("123456789012", "eu-west-1");
        let arn = {
            let e = engine(dir.path());
            let c = e.create(&here, new("door")).await.unwrap();
            assert_eq!((c.message_ttl_s, c.channel_type.as_str()), (60, "SINGLE_MASTER"));
            assert!(matches!(e.create(&here, new("door")).await, Err(SignalingError::ChannelExists(_))));
            e.create(&elsewhere, new("door")).await.expect("another region, another channel");
            assert!(matches!(e.resolve(&elsewhere, None, Some(&c.arn)), Err(SignalingError::ChannelNotFound(_))));
            let stale = c.version.clone();
            assert_eq!(e.message_ttl(&here, &c.arn), Some(60));
            let updated = e.update(&here, &c.arn, &c.version, Some(30)).await.unwrap();
            assert_eq!(updated.message_ttl_s, 30);
            assert_eq!(e.message_ttl(&here, &c.arn), Some(30), "the cache follows updates");
            assert!(matches!(
                e.update(&here, &c.arn, &stale, Some(40)).await,
                Err(SignalingError::VersionMismatch { .. })
            ));
            c.arn
        };
        let e = engine(dir.path());
        let c = e.resolve(&here, Some("door"), Some(&arn)).expect("kept across a restart");
        assert_eq!(c.message_ttl_s, 30);
        assert_eq!(e.list(&here, NamePage { prefix: "", after: None, limit: 10 }).unwrap().len(), 1);
        e.delete(&here, &arn, Some(&c.version)).await.unwrap();
        assert!(e.list(&here, NamePage { prefix: "", after: None, limit: 10 }).unwrap().is_empty());
        assert_eq!(e.message_ttl(&here, &arn), None);
    }
}
