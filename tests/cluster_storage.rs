//! The storage seam's conformance suites on the cluster backend's implementations,
//! against real servers started here on loopback ports: PostgreSQL (Debian's, a
//! throwaway cluster from `initdb`, run as the `postgres` user when the tests run as
//! root, since PostgreSQL refuses root) and an S3-compatible server (moto's server mode,
//! from the venv `scripts/setup test` makes). Each server is stopped when its guard
//! drops.

use std::sync::Arc;

use kinescope::postgres::Database;
use kinescope::video_store::object_media::ObjectMedia;

#[path = "support/servers.rs"]
mod servers;
use servers::{Postgres, S3Server};

#[test]
fn fragment_bytes_in_an_s3_compatible_store_pass_the_media_conformance_suite() {
    kinescope::tls_provider::install();
    let s3 = S3Server::start();
    let store = s3.bucket("kinescope-media");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let handle = runtime.handle().clone();
    // `open` reopens the same store (same bucket and prefix): what is durable is there.
    kinescope::video_store::media::conformance::run(|| ObjectMedia::new(store.clone(), "media", handle.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalling_channels_in_postgresql_pass_the_channel_store_conformance_suite() {
    let pg = Postgres::start();
    let url = pg.database("channels");
    let db = tokio::task::spawn_blocking(move || Database::open(&url)).await.unwrap().expect("open the database");
    kinescope::signaling::channel_store::conformance::run(|| {
        kinescope::signaling::postgres::PgChannels::new(db.clone())
    })
    .await;
}

#[test]
fn the_cluster_schema_is_migrated_once_and_a_newer_one_is_refused() {
    let pg = Postgres::start();
    let url = pg.database("schema");
    let db = Database::open(&url).expect("a fresh database is migrated");
    drop(db);
    Database::open(&url).expect("an up-to-date one opens as it is");
    // A later Kinescope wrote version N + 1.
    let newer = kinescope::postgres::SCHEMA_VERSION + 1;
    pg.psql("schema", &format!("INSERT INTO kinescope_schema (version) VALUES ({newer})"));
    let err = Database::open(&url).expect_err("a newer schema is refused");
    assert!(err.to_string().contains(&format!("version {newer}, newer than this Kinescope knows")), "{err}");
    // Nothing listens there: a clear refusal, not a hang.
    let err = Database::open("postgres://kinescope@127.0.0.1:1/none").expect_err("no server");
    assert!(err.to_string().contains("cannot reach the cluster database"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_video_catalog_in_postgresql_passes_the_catalog_conformance_suite() {
    let pg = Postgres::start();
    let url = pg.database("catalog");
    let db = tokio::task::spawn_blocking(move || Database::open(&url)).await.unwrap().expect("open the database");
    kinescope::video_store::index::conformance::run_catalog(|| {
        kinescope::video_store::postgres_index::PgStreamCatalog::new(db.clone())
    })
    .await;
}

#[test]
fn the_fragment_index_in_postgresql_passes_the_index_conformance_suite() {
    let pg = Postgres::start();
    let db = Database::open(&pg.database("fragments")).expect("open the database");
    kinescope::video_store::index::conformance::run_index(|| {
        kinescope::video_store::postgres_index::PgFragmentIndex::new(db.clone())
    });
}

/// The video store engine itself on the cluster backend (catalog and index in
/// PostgreSQL, bytes in the bucket): fragments round trip, survive a restart (a new
/// node opening the same database and bucket), and a deleted stream leaves no rows
/// and no objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_video_store_runs_on_postgresql_and_an_s3_bucket_across_a_restart() {
    use bytes::Bytes;
    use kinescope::clock::ManualClock;
    use kinescope::video_store::postgres_index::{PgFragmentIndex, PgStreamCatalog};
    use kinescope::video_store::{NewFragment, NewStream, StoreBackend, StoreConfig, TimeKind, VideoStore};

    kinescope::tls_provider::install();
    let pg = Postgres::start();
    let url = pg.database("video");
    let db = tokio::task::spawn_blocking(move || Database::open(&url)).await.unwrap().expect("open the database");
    let s3 = S3Server::start();
    let bucket = s3.bucket("kinescope-video");
    let dir = tempfile::tempdir().unwrap();
    const T0: i64 = 1_700_000_000_000_000;
    let clock = Arc::new(ManualClock::new(T0));
    let open = |db: Database| {
        let backend = StoreBackend {
            catalog: Arc::new(PgStreamCatalog::new(db.clone())),
            index: Arc::new(PgFragmentIndex::new(db)),
            media: Arc::new(ObjectMedia::new(bucket.clone(), "media", tokio::runtime::Handle::current())),
        };
        VideoStore::open_with(StoreConfig::new(dir.path()), clock.clone(), backend).expect("open the store")
    };
    let fragment = |i: i64| NewFragment {
        producer_ts_us: T0 + i * 1_000_000,
        server_ts_us: T0 + i * 1_000_000,
        duration_us: 1_000_000,
        init_id: 1,
        keyframe: true,
        chunks: vec![Bytes::from(vec![i as u8; 20_000])],
    };

    let (store, _) = {
        let db = db.clone();
        let open = &open;
        tokio::task::block_in_place(|| open(db))
    };
    let scope = store.config().default_scope.clone();
    let s = store
        .create_stream(&scope, NewStream { name: "cam".into(), data_retention_hours: Some(24), ..Default::default() })
        .await
        .unwrap();
    store.put_init(s.id, Bytes::from_static(b"init-bytes")).await.unwrap();
    let mut numbers = Vec::new();
    for i in 0..6 {
        let pending = store.submit_fragment(&s, fragment(i)).await.expect("submit");
        numbers.push(pending.persisted.await.expect("writer answered").expect("persisted").fragment_number);
    }
    drop(store);

    // A writer that died between an object PUT and its index row left an orphan.
    let orphan = object_store::path::Path::from(format!("media/{:016x}/{:016x}/{:016x}", s.id, 999, 999));
    object_store::ObjectStoreExt::put(bucket.as_ref(), &orphan, vec![1u8; 10].into()).await.unwrap();

    // Another node: the same database and bucket.
    let (store, report) = {
        let db = db.clone();
        let open = &open;
        tokio::task::block_in_place(|| open(db))
    };
    assert_eq!(report.dropped_fragments, 0, "{report:?}");
    assert_eq!((report.fragments, report.removed_files), (6, 0), "the index is trusted, nothing swept: {report:?}");
    assert!(
        object_store::ObjectStoreExt::head(bucket.as_ref(), &orphan).await.is_ok(),
        "what recovery cannot account for stays"
    );
    let s = store.resolve(&scope, Some("cam"), None).expect("the stream is there");
    for (i, n) in numbers.iter().enumerate() {
        let meta = store.fragment(s.id, *n).unwrap().expect("indexed");
        let bytes = store.read_fragment(s.id, &meta).await.unwrap();
        assert_eq!((bytes.len(), bytes[0]), (20_000, i as u8));
    }
    assert_eq!(store.init_segment(s.id, 1).unwrap().unwrap(), Bytes::from_static(b"init-bytes"));
    let range = store.fragments_in_range(s.id, TimeKind::Producer, T0 + 2_000_000, T0 + 4_000_000, None, 100).unwrap();
    assert_eq!(range.iter().map(|m| m.fragment_number).collect::<Vec<_>>(), numbers[2..=4]);

    store.delete_stream(&scope, &s.arn, Some(&s.version)).await.unwrap();
    let listed = {
        use futures_util::TryStreamExt;
        bucket.list(None).try_collect::<Vec<_>>().await.unwrap()
    };
    assert!(listed.is_empty(), "objects left: {listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_cursors_in_postgresql_pass_the_cursor_store_conformance_suite() {
    let pg = Postgres::start();
    let url = pg.database("cursors");
    let db = tokio::task::spawn_blocking(move || Database::open(&url)).await.unwrap().expect("open the database");
    kinescope::stream_events::cursors::conformance::run(|| {
        kinescope::stream_events::postgres::PgCursors::new(db.clone())
    })
    .await;
}

#[test]
fn delivery_and_data_stream_metadata_in_postgresql_pass_their_conformance_suites() {
    let pg = Postgres::start();
    let db = Database::open(&pg.database("streams")).expect("open the database");
    kinescope::delivery_streams::meta_store::conformance::run(|| {
        kinescope::delivery_streams::postgres::PgDeliveryMeta::new(db.clone())
    });
    kinescope::data_streams::meta_store::conformance::run(|| {
        kinescope::data_streams::postgres::PgDataStreamMeta::new(db.clone())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_in_postgresql_pass_the_queue_storage_conformance_suite() {
    let pg = Postgres::start();
    let url = pg.database("queues");
    let db = tokio::task::spawn_blocking(move || Database::open(&url)).await.unwrap().expect("open the database");
    kinescope::queues::store::conformance::run(|| kinescope::queues::postgres::PgQueues::new(db.clone())).await;
}

#[test]
fn stream_queues_in_postgresql_pass_their_conformance_suite() {
    let pg = Postgres::start();
    let db = Database::open(&pg.database("stream_queues")).expect("open the database");
    kinescope::stream_queues::store::conformance::run(|| {
        kinescope::stream_queues::postgres::PgStreamQueues::new(db.clone())
    });
}

#[test]
fn record_logs_in_postgresql_pass_their_conformance_suite() {
    let pg = Postgres::start();
    let db = Database::open(&pg.database("record_logs")).expect("open the database");
    kinescope::data_streams::record_log::conformance::run(|| {
        kinescope::data_streams::postgres_log::PgRecordLogs::new(db.clone())
    });
}

/// The writer lease and the fence: one holder at a time, a new epoch per takeover, and
/// every change from a node whose epoch has passed refused by the database itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_lease_fences_every_change_of_a_node_that_lost_it() {
    use kinescope::cluster::lease::WriterLease;
    use std::time::Duration;
    let pg = Postgres::start();
    let url = pg.database("fence");
    let open = |epoch: Option<u64>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || match epoch {
            Some(e) => Database::open_fenced(&url, e),
            None => Database::open(&url),
        })
    };
    let db = open(None).await.unwrap().expect("open the database");
    // A change any table of the engines sees (a statement trigger fires on no rows too).
    let change = |db: Database| async move {
        db.execute_async("the fence test", "DELETE FROM video_streams WHERE name = 'none'", vec![]).await
    };
    change(db.clone()).await.expect("no lease yet: tools and tests change tables freely");

    let ttl = Duration::from_secs(30);
    let a = WriterLease::new(db.clone(), "node-a", "http://127.0.0.1:1", ttl);
    let b = WriterLease::new(db.clone(), "node-b", "http://127.0.0.1:2", ttl);
    assert_eq!(a.try_take().await.unwrap(), Some(1));
    assert_eq!(b.try_take().await.unwrap(), None, "a live lease is not taken");
    assert!(a.renew(1).await.unwrap());
    let holder = b.holder().await.unwrap().expect("a holder");
    assert_eq!(
        (holder.node.as_str(), holder.address.as_str(), holder.epoch, holder.live),
        ("node-a", "http://127.0.0.1:1", 1, true)
    );

    let a_db = open(Some(1)).await.unwrap().expect("a's fenced connections");
    change(a_db.clone()).await.expect("the holder's epoch may change tables");
    let err = change(db.clone()).await.expect_err("a session without an epoch may not, while a node serves");
    assert!(format!("{err:?}").contains("holds no cluster lease epoch"), "{err:?}");

    // a stops renewing; its lease ends (released here, as a clean stop does) and b takes it.
    a.release(1).await.unwrap();
    assert_eq!(b.try_take().await.unwrap(), Some(2));
    assert!(!a.renew(1).await.unwrap(), "a learns it lost the lease");
    let err = change(a_db.clone()).await.expect_err("a's epoch has passed");
    assert!(format!("{err:?}").contains("no longer holds the cluster lease"), "{err:?}");
    assert!(err.unavailable, "a fenced change is answered as unavailable (retry where the writer is)");
    let b_db = open(Some(2)).await.unwrap().expect("b's fenced connections");
    change(b_db).await.expect("the new holder changes tables");

    // Every table of the engines carries the fence.
    let rows = db
        .query(
            "the fence test",
            "SELECT tablename FROM pg_tables t WHERE schemaname = current_schema()
               AND tablename NOT IN ('kinescope_schema', 'cluster_lease', 'cluster_keys')
               AND NOT EXISTS (SELECT 1 FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
                               WHERE c.relname = t.tablename AND g.tgname = 'kinescope_fence')",
            vec![],
        )
        .unwrap();
    let unfenced: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert!(unfenced.is_empty(), "tables without the fence trigger: {unfenced:?}");
}

/// A new writer's segments take ids of its own epoch, never lowered, and fragment
/// numbering is left as it was.
#[test]
fn a_takeover_reserves_segment_ids_of_its_epoch() {
    use kinescope::video_store::index::FragmentIndex;
    use kinescope::video_store::postgres_index::PgFragmentIndex;
    let pg = Postgres::start();
    let url = pg.database("segments");
    let db = Database::open(&url).expect("open the database");
    pg.psql(
        "segments",
        "INSERT INTO video_streams (id, account, region, name, record) VALUES (7, 'a', 'r', 'cam', '')",
    );
    let index = PgFragmentIndex::new(db);
    let first = (2u64 << 32) + 1;
    index.start_segments_at(first).unwrap();
    let next = index.next_numbers(7).unwrap();
    assert_eq!((next.segment, next.fragment), (first, 1));
    index.start_segments_at(5).unwrap();
    assert_eq!(index.next_numbers(7).unwrap().segment, first, "never lowered");
}
