//! The catalog side of the store: creating, resolving, listing, changing and deleting
//! streams (their records are in [`super::catalog`], kept by the [`super::index::StreamCatalog`]).
use std::collections::BTreeMap;

use tokio::sync::{oneshot, watch};

use super::*;
use crate::scope::NamePage;

impl VideoStore {
    /// `arn:PARTITION:kinesisvideo:REGION:ACCOUNT:stream/NAME/CREATION_MS`.
    pub fn stream_arn(scope: &Scope, name: &str, creation_ms: i64) -> String {
        scope.arn("kinesisvideo", &format!("stream/{name}/{creation_ms}"))
    }

    /// Creates a stream in `scope` (the caller's account and region).
    pub async fn create_stream(&self, scope: &Scope, req: NewStream) -> Result<StreamRecord, StoreError> {
        catalog::validate_stream_name(&req.name)?;
        if let Some(d) = &req.device_name {
            catalog::validate_device_name(d)?;
        }
        if let Some(m) = &req.media_type {
            catalog::validate_media_type(m)?;
        }
        if let Some(k) = &req.kms_key_id {
            if k.is_empty() || k.len() > 2048 {
                return Err(StoreError::InvalidArgument("KmsKeyId must be 1 to 2048 characters".into()));
            }
        }
        let retention = req.data_retention_hours.unwrap_or(self.inner.config.default_retention_hours);
        if retention > catalog::MAX_RETENTION_HOURS {
            return Err(StoreError::InvalidArgument(format!(
                "DataRetentionInHours {retention} is above the maximum of {}",
                catalog::MAX_RETENTION_HOURS
            )));
        }
        if req.tags.len() > catalog::MAX_TAGS {
            return Err(StoreError::TooManyTags { max: catalog::MAX_TAGS, would_have: req.tags.len() });
        }
        catalog::validate_tags(&req.tags)?;
        if let Some(tier) = &req.storage_tier {
            catalog::validate_storage_tier(tier)?;
        }
        if self.inner.catalog.get(scope, &req.name)?.is_some() {
            return Err(StoreError::StreamExists(req.name));
        }
        let now_ms = self.inner.clock.now_ms();
        let record = StreamRecord {
            id: self.inner.catalog.new_stream_id()?,
            arn: Self::stream_arn(scope, &req.name, now_ms),
            scope: scope.clone(),
            name: req.name,
            device_name: req.device_name,
            media_type: req.media_type,
            kms_key_id: req.kms_key_id.unwrap_or_else(|| scope.arn("kms", "alias/aws/kinesisvideo")),
            version: catalog::new_version(),
            status: StreamStatus::Active,
            creation_time_ms: now_ms,
            data_retention_hours: retention,
            tags: req.tags,
            storage_tier: req.storage_tier.unwrap_or_else(|| "HOT".into()),
            notification: None,
            image_generation: None,
            frame_metadata_stream: None,
            publish_tokens_not_before_us: 0,
        };
        // Durable before it is acknowledged.
        self.inner.catalog.insert_new(&record).await?;
        Ok(record)
    }

    /// Finds a stream of `scope` by name, ARN, or both (they must then agree). An ARN
    /// of another account or region names no stream the caller can see.
    pub fn resolve(&self, scope: &Scope, name: Option<&str>, arn: Option<&str>) -> Result<StreamRecord, StoreError> {
        let arn_name = match arn {
            Some(a) => {
                let (arn_scope, name, _) = parse_stream_arn(a)
                    .ok_or_else(|| StoreError::InvalidArgument(format!("'{a}' is not a stream ARN")))?;
                if &arn_scope != scope {
                    return Err(StoreError::StreamNotFound(a.to_string()));
                }
                Some(name)
            }
            None => None,
        };
        let name = match (name, arn_name.as_deref()) {
            (Some(n), Some(a)) if n != a => {
                return Err(StoreError::InvalidArgument("StreamName and StreamARN name different streams".into()))
            }
            (Some(n), _) => n.to_string(),
            (None, Some(a)) => a.to_string(),
            (None, None) => return Err(StoreError::InvalidArgument("StreamName or StreamARN is required".into())),
        };
        let record = self.inner.catalog.get(scope, &name)?.ok_or_else(|| StoreError::StreamNotFound(name.clone()))?;
        if let Some(a) = arn {
            if record.arn != a {
                return Err(StoreError::StreamNotFound(a.to_string()));
            }
        }
        Ok(record)
    }

    /// The streams of `scope` in name order.
    pub fn list_streams(&self, scope: &Scope, page: NamePage<'_>) -> Result<Vec<StreamRecord>, StoreError> {
        self.inner.catalog.list(scope, page)
    }

    /// Applies `change` to a stream record under compare-and-swap, retrying on races.
    pub(super) async fn modify(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        mut change: impl FnMut(&mut StreamRecord) -> Result<(), StoreError>,
    ) -> Result<StreamRecord, StoreError> {
        loop {
            let old = self.resolve(scope, name, arn)?;
            let mut new = old.clone();
            change(&mut new)?;
            match self.inner.catalog.replace(&old, &new).await {
                Ok(()) => return Ok(new),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Revokes every WHIP publishing token of the stream issued until now.
    pub async fn revoke_publish_tokens(&self, scope: &Scope, name: &str) -> Result<StreamRecord, StoreError> {
        let now = self.inner.clock.now_us();
        self.modify(scope, Some(name), None, |r| {
            r.publish_tokens_not_before_us = now;
            Ok(())
        })
        .await
    }

    /// Sets (or with `None` removes) a stream's notification settings.
    pub async fn set_notification(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        settings: Option<NotificationSettings>,
    ) -> Result<StreamRecord, StoreError> {
        self.change_event_settings(scope, name, arn, |r| r.notification = settings.clone()).await
    }

    /// Sets (or with `None` removes) a stream's image-generation settings.
    pub async fn set_image_generation(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        settings: Option<ImageGenerationSettings>,
    ) -> Result<StreamRecord, StoreError> {
        self.change_event_settings(scope, name, arn, |r| r.image_generation = settings.clone()).await
    }

    /// Binds (or with `None` unbinds) the data stream describing a stream's frames.
    pub async fn set_frame_metadata_stream(
        &self,
        scope: &Scope,
        name: &str,
        data_stream_arn: Option<String>,
    ) -> Result<StreamRecord, StoreError> {
        self.modify(scope, Some(name), None, |r| {
            r.frame_metadata_stream = data_stream_arn.clone();
            Ok(())
        })
        .await
    }

    pub(super) async fn change_event_settings(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        mut change: impl FnMut(&mut StreamRecord),
    ) -> Result<StreamRecord, StoreError> {
        let r = self
            .modify(scope, name, arn, |r| {
                change(r);
                Ok(())
            })
            .await?;
        self.inner.settings_changes.send_modify(|n| *n += 1);
        Ok(r)
    }

    /// Every stream with notification or image-generation settings, of every scope.
    pub fn streams_with_events(&self) -> Result<Vec<StreamRecord>, StoreError> {
        Ok(self
            .inner
            .catalog
            .all()?
            .into_iter()
            .filter(|r| r.notification.is_some() || r.image_generation.is_some())
            .collect())
    }

    /// Changes whenever [`Self::streams_with_events`] may have.
    pub fn settings_changes(&self) -> watch::Receiver<u64> {
        self.inner.settings_changes.subscribe()
    }

    pub(super) fn check_version(record: &StreamRecord, given: &str) -> Result<(), StoreError> {
        if record.version != given {
            return Err(StoreError::VersionMismatch { given: given.into(), current: record.version.clone() });
        }
        Ok(())
    }

    pub async fn update_stream(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        current_version: &str,
        device_name: Option<String>,
        media_type: Option<String>,
    ) -> Result<StreamRecord, StoreError> {
        if let Some(d) = &device_name {
            catalog::validate_device_name(d)?;
        }
        if let Some(m) = &media_type {
            catalog::validate_media_type(m)?;
        }
        self.modify(scope, name, arn, |r| {
            Self::check_version(r, current_version)?;
            if device_name.is_some() {
                r.device_name = device_name.clone();
            }
            if media_type.is_some() {
                r.media_type = media_type.clone();
            }
            r.version = catalog::new_version();
            Ok(())
        })
        .await
    }

    /// UpdateStreamStorageConfiguration: the default storage tier (stored and reported;
    /// `HOT` and `WARM` are the same storage here). Bumps the version.
    pub async fn set_storage_tier(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        current_version: &str,
        tier: &str,
    ) -> Result<StreamRecord, StoreError> {
        catalog::validate_storage_tier(tier)?;
        self.modify(scope, name, arn, |r| {
            Self::check_version(r, current_version)?;
            r.storage_tier = tier.to_string();
            r.version = catalog::new_version();
            Ok(())
        })
        .await
    }

    /// Changes retention; a decrease removes data now past it before returning.
    pub async fn update_retention(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        current_version: &str,
        change: RetentionChange,
    ) -> Result<StreamRecord, StoreError> {
        let record = self
            .modify(scope, name, arn, |r| {
                Self::check_version(r, current_version)?;
                let new = match change {
                    RetentionChange::Increase(h) => r.data_retention_hours.checked_add(h),
                    RetentionChange::Decrease(h) => r.data_retention_hours.checked_sub(h),
                };
                match new {
                    Some(h) if h <= catalog::MAX_RETENTION_HOURS => r.data_retention_hours = h,
                    _ => {
                        return Err(StoreError::InvalidArgument(format!(
                            "the resulting retention must be between 0 and {} hours (current {})",
                            catalog::MAX_RETENTION_HOURS,
                            r.data_retention_hours
                        )))
                    }
                }
                r.version = catalog::new_version();
                Ok(())
            })
            .await?;
        self.sweep_stream(&record).await?;
        Ok(record)
    }

    pub async fn tag_stream(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        catalog::validate_tags(tags)?;
        self.modify(scope, name, arn, |r| {
            let mut merged = r.tags.clone();
            merged.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
            if merged.len() > catalog::MAX_TAGS {
                return Err(StoreError::TooManyTags { max: catalog::MAX_TAGS, would_have: merged.len() });
            }
            r.tags = merged;
            Ok(())
        })
        .await
        .map(|_| ())
    }

    pub async fn untag_stream(
        &self,
        scope: &Scope,
        name: Option<&str>,
        arn: Option<&str>,
        keys: &[String],
    ) -> Result<(), StoreError> {
        self.modify(scope, name, arn, |r| {
            for k in keys {
                r.tags.remove(k);
            }
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Deletes a stream: its record at once, then its index entries and files.
    pub async fn delete_stream(
        &self,
        scope: &Scope,
        arn: &str,
        current_version: Option<&str>,
    ) -> Result<(), StoreError> {
        let record = loop {
            let record = self.resolve(scope, None, Some(arn))?;
            if let Some(v) = current_version {
                Self::check_version(&record, v)?;
            }
            match self.inner.catalog.remove_if(&record).await {
                Ok(()) => break record,
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        };
        if record.notification.is_some() || record.image_generation.is_some() {
            self.inner.settings_changes.send_modify(|n| *n += 1);
        }
        // Under the append lock, so no append of this stream can queue behind the delete.
        let live = self.live(record.id)?;
        let rx = {
            let mut next = live.next_fragment.lock().await;
            next.deleted = true;
            let (reply, rx) = oneshot::channel();
            self.send(WriterCmd::DeleteStream { stream: record.id, reply }).await?;
            rx
        };
        live.edge.send_modify(|e| e.deleted = true);
        live.parts_lock().clear();
        live.parts_changed();
        self.inner.recent.remove_stream(record.id);
        rx.await.map_err(|_| StoreError::ShuttingDown)?
    }
}
