//! [`StreamCatalog`] and [`FragmentIndex`] in the cluster database (PostgreSQL), so
//! that any node can answer for any stream:
//!
//! | table | row |
//! |---|---|
//! | `video_streams` | one stream record (JSON), keyed by account, region and name |
//! | `video_fragments` | one fragment: number, producer and server time (indexed with the number, the orders time scans go in), its fixed record |
//! | `video_segments` | one segment summary |
//! | `video_inits` | one init segment |
//! | `video_high_water` | the highest fragment number and segment id ever removed |
//!
//! Ids come from the sequence `video_stream_ids`. A writer group's commit, a removal
//! and recovery's drop are each one transaction; a committed transaction is durable,
//! so [`FragmentIndex::flush`] has nothing left to do. Rows whose record cannot be
//! decoded are reported as unreadable and left where they are.
//!
//! The traits' methods that are synchronous wait for the database on the calling
//! thread ([`Database::wait`]).

use std::collections::BTreeSet;
use std::future::Future;

use bytes::Bytes;
use deadpool_postgres::Object;

use super::catalog::StreamRecord;
use super::index::{
    FragmentIndex, IndexCommit, NextNumbers, SegmentChange, StreamCatalog, TimePosition, UnreadableRecord,
};
use super::records::{FragmentMeta, SegmentMeta, StreamId};
use super::{StoreError, TimeKind};
use crate::postgres::tokio_postgres;
use crate::postgres::{like_prefix, Database};
use crate::scope::{NamePage, Scope};

const STORE: &str = "the video index (cluster database)";

fn db_failed(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Storage(crate::postgres::failed(&format!("{STORE}: {what}"), e))
}

/// A number or a position bound as a BIGINT: numbers stay below 2^63, and a bound of
/// `u64::MAX` ("after every number") becomes the greatest BIGINT, keeping its order.
fn n(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    crate::postgres::from_bigint(v)
}

/// Runs `work` with a pooled connection on the database's runtime, waiting for it here.
fn with<T, F, Fut>(db: &Database, what: &'static str, work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(Object) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send,
{
    let pool = db.pool().clone();
    db.wait(async move {
        let client = pool.get().await.map_err(|e| StoreError::Storage(crate::postgres::failed(STORE, e)))?;
        work(client).await.map_err(db_failed(what))
    })?
}

/// As [`with`], awaited.
async fn with_async<T, F, Fut>(db: &Database, what: &'static str, work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(Object) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send,
{
    let pool = db.pool().clone();
    db.run(async move {
        let client = pool.get().await.map_err(|e| StoreError::Storage(crate::postgres::failed(STORE, e)))?;
        work(client).await.map_err(db_failed(what))
    })
    .await?
}

/// The stream catalog in the cluster database.
pub struct PgStreamCatalog {
    db: Database,
}

impl PgStreamCatalog {
    pub fn new(db: Database) -> Self {
        PgStreamCatalog { db }
    }
}

fn encode_record(r: &StreamRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(r).map_err(|e| StoreError::Corrupt(format!("encoding stream record: {e}")))
}

fn decode_record(v: &[u8]) -> Result<StreamRecord, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt(format!("decoding stream record: {e}")))
}

#[async_trait::async_trait]
impl StreamCatalog for PgStreamCatalog {
    fn new_stream_id(&self) -> Result<StreamId, StoreError> {
        with(&self.db, "taking a stream id", |c| async move {
            Ok(u(c.query_one("SELECT nextval('video_stream_ids')", &[]).await?.get(0)))
        })
    }

    fn get(&self, scope: &Scope, name: &str) -> Result<Option<StreamRecord>, StoreError> {
        let (a, r, nm) = (scope.account.clone(), scope.region.clone(), name.to_string());
        let row = with(&self.db, "reading a record", move |c| async move {
            c.query_opt(
                "SELECT record FROM video_streams WHERE account = $1 AND region = $2 AND name = $3",
                &[&a, &r, &nm],
            )
            .await
            .map(|r| r.map(|r| r.get::<_, Vec<u8>>(0)))
        })?;
        row.map(|v| decode_record(&v)).transpose()
    }

    async fn insert_new(&self, record: &StreamRecord) -> Result<(), StoreError> {
        let v = encode_record(record)?;
        let (id, a, r, nm) =
            (n(record.id), record.scope.account.clone(), record.scope.region.clone(), record.name.clone());
        let inserted = with_async(&self.db, "inserting a record", move |c| async move {
            c.execute(
                "INSERT INTO video_streams (id, account, region, name, record) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT DO NOTHING",
                &[&id, &a, &r, &nm, &v],
            )
            .await
        })
        .await?;
        if inserted == 1 {
            Ok(())
        } else {
            Err(StoreError::StreamExists(record.name.clone()))
        }
    }

    async fn replace(&self, old: &StreamRecord, new: &StreamRecord) -> Result<(), StoreError> {
        if (&old.scope, &old.name) != (&new.scope, &new.name) {
            return Err(StoreError::Conflict(old.name.clone()));
        }
        let (ov, nv) = (encode_record(old)?, encode_record(new)?);
        let (a, r, nm) = (old.scope.account.clone(), old.scope.region.clone(), old.name.clone());
        let changed = with_async(&self.db, "replacing a record", move |c| async move {
            c.execute(
                "UPDATE video_streams SET record = $5 WHERE account = $1 AND region = $2 AND name = $3 AND record = $4",
                &[&a, &r, &nm, &ov, &nv],
            )
            .await
        })
        .await?;
        if changed == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict(old.name.clone()))
        }
    }

    async fn remove_if(&self, old: &StreamRecord) -> Result<(), StoreError> {
        let ov = encode_record(old)?;
        let (a, r, nm) = (old.scope.account.clone(), old.scope.region.clone(), old.name.clone());
        let removed = with_async(&self.db, "removing a record", move |c| async move {
            c.execute(
                "DELETE FROM video_streams WHERE account = $1 AND region = $2 AND name = $3 AND record = $4",
                &[&a, &r, &nm, &ov],
            )
            .await
        })
        .await?;
        if removed == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict(old.name.clone()))
        }
    }

    fn list(&self, scope: &Scope, page: NamePage<'_>) -> Result<Vec<StreamRecord>, StoreError> {
        let (a, r) = (scope.account.clone(), scope.region.clone());
        let (like, after, limit) =
            (like_prefix(page.prefix), page.after.unwrap_or("").to_string(), n(page.limit as u64));
        // Names compare byte by byte (COLLATE "C"), as the embedded catalog orders them.
        let rows = with(&self.db, "listing records", move |c| async move {
            let rows = c
                .query(
                    "SELECT record FROM video_streams
                     WHERE account = $1 AND region = $2 AND name LIKE $3 AND name COLLATE \"C\" > $4
                     ORDER BY name COLLATE \"C\" LIMIT $5",
                    &[&a, &r, &like, &after, &limit],
                )
                .await?;
            Ok(rows.into_iter().map(|r| r.get::<_, Vec<u8>>(0)).collect::<Vec<_>>())
        })?;
        rows.iter().map(|v| decode_record(v)).collect()
    }

    fn all_and_unreadable(&self) -> Result<(Vec<StreamRecord>, Vec<UnreadableRecord>), StoreError> {
        let rows = with(&self.db, "reading every record", |c| async move {
            let rows = c.query("SELECT account, region, name, record FROM video_streams ORDER BY id", &[]).await?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    (
                        format!("{}/{}/{}", r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, String>(2)),
                        r.get::<_, Vec<u8>>(3),
                    )
                })
                .collect::<Vec<_>>())
        })?;
        let (mut readable, mut unreadable) = (Vec::new(), Vec::new());
        for (key, v) in rows {
            match decode_record(&v) {
                Ok(r) => readable.push(r),
                Err(e) => {
                    tracing::warn!(key, error = %e, "a stream record cannot be read; it is kept and not listed");
                    unreadable.push(UnreadableRecord { key: key.into_bytes(), value: v, number: None });
                }
            }
        }
        Ok((readable, unreadable))
    }
}

/// The fragment index in the cluster database.
pub struct PgFragmentIndex {
    db: Database,
}

impl PgFragmentIndex {
    pub fn new(db: Database) -> Self {
        PgFragmentIndex { db }
    }

    /// Makes every stream's next segment id at least `first` (never lowering one). A
    /// cluster writer calls it at takeover with ids of its own epoch, so that no segment
    /// it makes shares an id (and with it the media objects' prefix) with one a former
    /// writer may still be writing to after losing its lease.
    pub fn start_segments_at(&self, first: u64) -> Result<(), StoreError> {
        let floor = n(first.saturating_sub(1));
        with(&self.db, "reserving segment ids", move |c| async move {
            c.execute(
                "INSERT INTO video_high_water (stream, fragment, segment) SELECT id, 0, $1 FROM video_streams
                 ON CONFLICT (stream) DO UPDATE SET segment = GREATEST(video_high_water.segment, EXCLUDED.segment)",
                &[&floor],
            )
            .await
            .map(|_| ())
        })
    }

    /// Fragment records from `sql` (its first column the record), in its order.
    fn fragments(
        &self,
        what: &'static str,
        sql: &'static str,
        params: Vec<i64>,
    ) -> Result<Vec<FragmentMeta>, StoreError> {
        let rows = with(&self.db, what, move |c| async move {
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
            let rows = c.query(sql, &refs).await?;
            Ok(rows.into_iter().map(|r| r.get::<_, Vec<u8>>(0)).collect::<Vec<_>>())
        })?;
        rows.iter()
            .map(|v| FragmentMeta::decode(v).ok_or_else(|| StoreError::Corrupt("an unreadable fragment record".into())))
            .collect()
    }
}

/// Raises a stream's high water marks (numbers never handed out again) in `tx`.
async fn raise_high_water(
    tx: &tokio_postgres::Transaction<'_>,
    stream: i64,
    fragment: u64,
    segment: u64,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO video_high_water (stream, fragment, segment) VALUES ($1, $2, $3)
         ON CONFLICT (stream) DO UPDATE SET fragment = GREATEST(video_high_water.fragment, EXCLUDED.fragment),
                                            segment = GREATEST(video_high_water.segment, EXCLUDED.segment)",
        &[&stream, &n(fragment), &n(segment)],
    )
    .await
    .map(|_| ())
}

fn time_column(kind: TimeKind) -> bool {
    matches!(kind, TimeKind::Producer)
}

impl FragmentIndex for PgFragmentIndex {
    fn commit(&self, commit: &IndexCommit) -> Result<(), StoreError> {
        if commit.is_empty() {
            return Ok(());
        }
        let inits: Vec<(i64, i32, Vec<u8>)> =
            commit.inits.iter().map(|(s, id, b)| (n(*s), *id as i32, b.to_vec())).collect();
        let fragments: Vec<(i64, i64, i64, i64, Vec<u8>)> = commit
            .fragments
            .iter()
            .map(|(s, m)| (n(*s), n(m.fragment_number), m.producer_ts_us, m.server_ts_us, m.encode().to_vec()))
            .collect();
        let segments: Vec<(i64, i64, Vec<u8>)> =
            commit.segments.iter().map(|(s, m)| (n(*s), n(m.segment_id), m.encode().to_vec())).collect();
        with(&self.db, "committing a group", move |mut c| async move {
            let tx = c.transaction().await?;
            for (s, id, b) in &inits {
                tx.execute(
                    "INSERT INTO video_inits (stream, init, bytes) VALUES ($1, $2, $3)
                     ON CONFLICT (stream, init) DO UPDATE SET bytes = EXCLUDED.bytes",
                    &[s, id, b],
                )
                .await?;
            }
            for (s, num, p, sv, m) in &fragments {
                tx.execute(
                    "INSERT INTO video_fragments (stream, number, producer_us, server_us, meta) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (stream, number) DO UPDATE
                     SET producer_us = EXCLUDED.producer_us, server_us = EXCLUDED.server_us, meta = EXCLUDED.meta",
                    &[s, num, p, sv, m],
                )
                .await?;
            }
            for (s, id, m) in &segments {
                tx.execute(
                    "INSERT INTO video_segments (stream, segment, meta) VALUES ($1, $2, $3)
                     ON CONFLICT (stream, segment) DO UPDATE SET meta = EXCLUDED.meta",
                    &[s, id, m],
                )
                .await?;
            }
            tx.commit().await
        })
    }

    fn fragment(&self, stream: StreamId, number: u64) -> Result<Option<FragmentMeta>, StoreError> {
        Ok(self
            .fragments(
                "reading a fragment",
                "SELECT meta FROM video_fragments WHERE stream = $1 AND number = $2",
                vec![n(stream), n(number)],
            )?
            .pop())
    }

    fn fragments_from(&self, stream: StreamId, from: u64, limit: usize) -> Result<Vec<FragmentMeta>, StoreError> {
        self.fragments(
            "scanning fragments",
            "SELECT meta FROM video_fragments WHERE stream = $1 AND number >= $2 ORDER BY number LIMIT $3",
            vec![n(stream), n(from), n(limit as u64)],
        )
    }

    fn last_fragments(&self, stream: StreamId, limit: usize) -> Result<Vec<FragmentMeta>, StoreError> {
        let mut newest = self.fragments(
            "scanning the newest fragments",
            "SELECT meta FROM video_fragments WHERE stream = $1 ORDER BY number DESC LIMIT $2",
            vec![n(stream), n(limit as u64)],
        )?;
        newest.reverse();
        Ok(newest)
    }

    fn fragments_by_time(
        &self,
        stream: StreamId,
        kind: TimeKind,
        from: TimePosition,
        to: TimePosition,
        limit: usize,
    ) -> Result<Vec<FragmentMeta>, StoreError> {
        let sql = if time_column(kind) {
            "SELECT meta FROM video_fragments WHERE stream = $1
             AND (producer_us, number) >= ($2, $3) AND (producer_us, number) <= ($4, $5)
             ORDER BY producer_us, number LIMIT $6"
        } else {
            "SELECT meta FROM video_fragments WHERE stream = $1
             AND (server_us, number) >= ($2, $3) AND (server_us, number) <= ($4, $5)
             ORDER BY server_us, number LIMIT $6"
        };
        self.fragments(
            "scanning fragments by time",
            sql,
            vec![n(stream), from.0, n(from.1), to.0, n(to.1), n(limit as u64)],
        )
    }

    fn fragment_before(
        &self,
        stream: StreamId,
        kind: TimeKind,
        at: TimePosition,
    ) -> Result<Option<FragmentMeta>, StoreError> {
        let sql = if time_column(kind) {
            "SELECT meta FROM video_fragments WHERE stream = $1 AND (producer_us, number) <= ($2, $3)
             ORDER BY producer_us DESC, number DESC LIMIT 1"
        } else {
            "SELECT meta FROM video_fragments WHERE stream = $1 AND (server_us, number) <= ($2, $3)
             ORDER BY server_us DESC, number DESC LIMIT 1"
        };
        Ok(self.fragments("finding a fragment by time", sql, vec![n(stream), at.0, n(at.1)])?.pop())
    }

    fn init(&self, stream: StreamId, init_id: u32) -> Result<Option<Bytes>, StoreError> {
        let (s, id) = (n(stream), init_id as i32);
        with(&self.db, "reading an init segment", move |c| async move {
            let row = c.query_opt("SELECT bytes FROM video_inits WHERE stream = $1 AND init = $2", &[&s, &id]).await?;
            Ok(row.map(|r| Bytes::from(r.get::<_, Vec<u8>>(0))))
        })
    }

    fn latest_init(&self, stream: StreamId) -> Result<Option<(u32, Bytes)>, StoreError> {
        let s = n(stream);
        with(&self.db, "reading the latest init segment", move |c| async move {
            let row = c
                .query_opt("SELECT init, bytes FROM video_inits WHERE stream = $1 ORDER BY init DESC LIMIT 1", &[&s])
                .await?;
            Ok(row.map(|r| (r.get::<_, i32>(0) as u32, Bytes::from(r.get::<_, Vec<u8>>(1)))))
        })
    }

    fn next_numbers(&self, stream: StreamId) -> Result<NextNumbers, StoreError> {
        let s = n(stream);
        let (last_fragment, last_segment, hw_fragment, hw_segment) =
            with(&self.db, "reading the numbering", move |c| async move {
                let row = c
                    .query_one(
                        "SELECT (SELECT COALESCE(MAX(number), 0) FROM video_fragments WHERE stream = $1),
                            (SELECT COALESCE(MAX(segment), 0) FROM video_segments WHERE stream = $1),
                            COALESCE((SELECT fragment FROM video_high_water WHERE stream = $1), 0),
                            COALESCE((SELECT segment FROM video_high_water WHERE stream = $1), 0)",
                        &[&s],
                    )
                    .await?;
                Ok((u(row.get(0)), u(row.get(1)), u(row.get(2)), u(row.get(3))))
            })?;
        Ok(NextNumbers {
            last_fragment,
            fragment: last_fragment.max(hw_fragment) + 1,
            segment: last_segment.max(hw_segment) + 1,
        })
    }

    fn segments(&self, stream: StreamId) -> Result<(Vec<SegmentMeta>, Vec<UnreadableRecord>), StoreError> {
        let s = n(stream);
        let rows = with(&self.db, "scanning segments", move |c| async move {
            let rows =
                c.query("SELECT segment, meta FROM video_segments WHERE stream = $1 ORDER BY segment", &[&s]).await?;
            Ok(rows.into_iter().map(|r| (u(r.get(0)), r.get::<_, Vec<u8>>(1))).collect::<Vec<_>>())
        })?;
        let (mut readable, mut unreadable) = (Vec::new(), Vec::new());
        for (id, v) in rows {
            match SegmentMeta::decode(&v) {
                Some(seg) => readable.push(seg),
                None => unreadable.push(UnreadableRecord {
                    key: format!("video_segments/{stream}/{id}").into_bytes(),
                    value: v,
                    number: Some(id),
                }),
            }
        }
        Ok((readable, unreadable))
    }

    fn segment_count(&self, stream: StreamId) -> Result<usize, StoreError> {
        let s = n(stream);
        with(&self.db, "counting segments", move |c| async move {
            let count: i64 = c.query_one("SELECT COUNT(*) FROM video_segments WHERE stream = $1", &[&s]).await?.get(0);
            Ok(u(count) as usize)
        })
    }

    fn segment_fragments(
        &self,
        stream: StreamId,
        segment: &SegmentMeta,
    ) -> Result<(Vec<FragmentMeta>, Vec<UnreadableRecord>), StoreError> {
        let (s, first, last) = (n(stream), n(segment.first_fragment), n(segment.last_fragment));
        let rows = with(&self.db, "scanning a segment's fragments", move |c| async move {
            let rows = c
                .query(
                    "SELECT number, meta FROM video_fragments WHERE stream = $1 AND number BETWEEN $2 AND $3 ORDER BY number",
                    &[&s, &first, &last],
                )
                .await?;
            Ok(rows.into_iter().map(|r| (u(r.get(0)), r.get::<_, Vec<u8>>(1))).collect::<Vec<_>>())
        })?;
        let (mut held, mut unreadable) = (Vec::new(), Vec::new());
        for (number, v) in rows {
            match FragmentMeta::decode(&v) {
                Some(m) if m.segment_id == segment.segment_id => held.push(m),
                Some(_) => {}
                None => unreadable.push(UnreadableRecord {
                    key: format!("video_fragments/{stream}/{number}").into_bytes(),
                    value: v,
                    number: Some(number),
                }),
            }
        }
        Ok((held, unreadable))
    }

    fn remove_segments(&self, stream: StreamId, segments: &[SegmentMeta]) -> Result<u64, StoreError> {
        if segments.is_empty() {
            return Ok(0);
        }
        let s = n(stream);
        let ranges: Vec<(i64, i64, i64)> =
            segments.iter().map(|g| (n(g.segment_id), n(g.first_fragment), n(g.last_fragment))).collect();
        let top_fragment = segments.iter().map(|g| g.last_fragment).max().unwrap_or(0);
        let top_segment = segments.iter().map(|g| g.segment_id).max().unwrap_or(0);
        with(&self.db, "removing segments", move |mut c| async move {
            let tx = c.transaction().await?;
            let mut removed = 0;
            for (id, first, last) in &ranges {
                removed += tx
                    .execute(
                        "DELETE FROM video_fragments WHERE stream = $1 AND number BETWEEN $2 AND $3",
                        &[&s, first, last],
                    )
                    .await?;
                tx.execute("DELETE FROM video_segments WHERE stream = $1 AND segment = $2", &[&s, id]).await?;
            }
            raise_high_water(&tx, s, top_fragment, top_segment).await?;
            tx.commit().await?;
            Ok(removed)
        })
    }

    fn drop_fragments(
        &self,
        stream: StreamId,
        segment_id: u64,
        dropped: &[FragmentMeta],
        change: SegmentChange,
    ) -> Result<(), StoreError> {
        let s = n(stream);
        let numbers: Vec<i64> = dropped.iter().map(|m| n(m.fragment_number)).collect();
        let top = dropped.iter().map(|m| m.fragment_number).max().unwrap_or(0);
        let keep = match change {
            SegmentChange::Keep(seg) => Some(seg.encode().to_vec()),
            SegmentChange::Remove => None,
        };
        let id = n(segment_id);
        with(&self.db, "dropping fragments", move |mut c| async move {
            let tx = c.transaction().await?;
            tx.execute("DELETE FROM video_fragments WHERE stream = $1 AND number = ANY($2)", &[&s, &numbers]).await?;
            match &keep {
                Some(meta) => {
                    tx.execute(
                        "INSERT INTO video_segments (stream, segment, meta) VALUES ($1, $2, $3)
                         ON CONFLICT (stream, segment) DO UPDATE SET meta = EXCLUDED.meta",
                        &[&s, &id, meta],
                    )
                    .await?
                }
                None => tx.execute("DELETE FROM video_segments WHERE stream = $1 AND segment = $2", &[&s, &id]).await?,
            };
            raise_high_water(&tx, s, top, segment_id).await?;
            tx.commit().await
        })
    }

    fn remove_stream(&self, stream: StreamId) -> Result<(), StoreError> {
        let s = n(stream);
        with(&self.db, "removing a stream", move |mut c| async move {
            let tx = c.transaction().await?;
            for table in ["video_fragments", "video_segments", "video_inits", "video_high_water"] {
                tx.execute(&format!("DELETE FROM {table} WHERE stream = $1"), &[&s]).await?;
            }
            tx.commit().await
        })
    }

    fn streams(&self) -> Result<BTreeSet<StreamId>, StoreError> {
        with(&self.db, "listing streams", |c| async move {
            let rows = c
                .query(
                    "SELECT stream FROM video_fragments UNION SELECT stream FROM video_segments
                     UNION SELECT stream FROM video_inits UNION SELECT stream FROM video_high_water",
                    &[],
                )
                .await?;
            Ok(rows.into_iter().map(|r| u(r.get(0))).collect())
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
