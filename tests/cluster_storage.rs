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
