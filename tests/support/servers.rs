//! Real servers the cluster backend's tests and benchmarks start on loopback ports
//! chosen at run time, stopped when their guards drop: a throwaway PostgreSQL
//! (Debian's, from `initdb`, run as the `postgres` user when the caller is root, since
//! PostgreSQL refuses root) and an S3-compatible server (moto's server mode, from the
//! venv `scripts/setup test` makes). Included with `#[path]` (tests and benchmarks are
//! separate crates).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A throwaway PostgreSQL server on a loopback port chosen now; trust authentication
/// (loopback only).
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

impl Postgres {
    /// With fsync off: the tests restart clients, not machines.
    pub fn start() -> Postgres {
        Postgres::start_with(false)
    }

    /// With PostgreSQL's own durability (fsync on): what benchmarks measure.
    pub fn start_durable() -> Postgres {
        Postgres::start_with(true)
    }

    fn start_with(fsync: bool) -> Postgres {
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
        let fsync = if fsync { "on" } else { "off" };
        let options = format!("-p {port} -k {} -h 127.0.0.1 -c fsync={fsync}", pg.dir.path().display());
        let log = pg.dir.path().join("log");
        pg.run("pg_ctl", &["-D", data.to_str().unwrap(), "-o", &options, "-l", log.to_str().unwrap(), "-w", "start"]);
        pg
    }

    pub fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(out.status.success(), "{tool} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs one SQL command as the test superuser in database `db`.
    pub fn psql(&self, db: &str, sql: &str) {
        let port = self.port.to_string();
        self.run("psql", &["-h", "127.0.0.1", "-p", &port, "-U", "kinescope", "-d", db, "-c", sql]);
    }

    /// A new, empty database; its URL.
    pub fn database(&self, name: &str) -> String {
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
pub struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    pub fn start() -> S3Server {
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

    pub fn bucket(&self, name: &str) -> Arc<dyn object_store::ObjectStore> {
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
