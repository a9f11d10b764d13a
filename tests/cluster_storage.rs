//! The storage seam's conformance suites on the cluster backend's implementations,
//! against real servers started here on loopback ports: PostgreSQL (Debian's, a
//! throwaway cluster from `initdb`, run as the `postgres` user when the tests run as
//! root, since PostgreSQL refuses root) and an S3-compatible server (moto's server mode,
//! from the venv `scripts/setup test` makes). Each server is stopped when its guard
//! drops.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kinescope::postgres::Database;
use kinescope::video_store::object_media::ObjectMedia;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A throwaway PostgreSQL server on a loopback port chosen now; trust authentication
/// (loopback only), fsync off (these tests restart clients, not machines).
struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Postgres {
    fn start() -> Postgres {
        let bin = ["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"]
            .iter()
            .map(PathBuf::from)
            .find(|d| d.join("initdb").exists())
            .expect("PostgreSQL's initdb is missing: run scripts/setup test");
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false);
        if as_postgres {
            let id = |flag: &str| -> u32 {
                let out = Command::new("id").args([flag, "postgres"]).output().expect("the postgres user");
                String::from_utf8_lossy(&out.stdout).trim().parse().expect("a numeric id")
            };
            std::os::unix::fs::chown(dir.path(), Some(id("-u")), Some(id("-g"))).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = Postgres { dir, bin, port, as_postgres };
        let data = pg.dir.path().join("data");
        pg.run("initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "kinescope", "-E", "UTF8", "--no-sync"]);
        let options = format!("-p {port} -k {} -h 127.0.0.1 -c fsync=off", pg.dir.path().display());
        let log = pg.dir.path().join("log");
        pg.run("pg_ctl", &["-D", data.to_str().unwrap(), "-o", &options, "-l", log.to_str().unwrap(), "-w", "start"]);
        pg
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(out.status.success(), "{tool} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs one SQL command as the test superuser in database `db`.
    fn psql(&self, db: &str, sql: &str) {
        let port = self.port.to_string();
        self.run("psql", &["-h", "127.0.0.1", "-p", &port, "-U", "kinescope", "-d", db, "-c", sql]);
    }

    /// A new, empty database; its URL.
    fn database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        format!("postgres://kinescope@127.0.0.1:{}/{name}", self.port)
    }

    /// `tool` of the PostgreSQL install, as the user that may run it.
    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ =
            self.command("pg_ctl").args(["-D", data.to_str().unwrap_or_default(), "-m", "immediate", "stop"]).output();
    }
}

/// A throwaway S3-compatible server (moto) on a loopback port chosen now.
struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    fn start() -> S3Server {
        let bin = PathBuf::from(ROOT).join(".venv/bin/moto_server");
        assert!(bin.exists(), "{} is missing: run scripts/setup test", bin.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = S3Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.request("GET", "/").is_err() {
            assert!(Instant::now() < deadline, "moto_server did not answer within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// One plain HTTP/1.1 request; the status code.
    fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {answer:.80}")))
    }

    fn bucket(&self, name: &str) -> Arc<dyn object_store::ObjectStore> {
        assert_eq!(self.request("PUT", &format!("/{name}")).expect("create the bucket"), 200);
        Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_endpoint(format!("http://127.0.0.1:{}", self.port))
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_bucket_name(name)
                .with_access_key_id("testing")
                .with_secret_access_key("testing")
                .build()
                .expect("an S3 client"),
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

    // Another node: the same database and bucket.
    let (store, report) = {
        let db = db.clone();
        let open = &open;
        tokio::task::block_in_place(|| open(db))
    };
    assert_eq!(report.dropped_fragments, 0, "{report:?}");
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
