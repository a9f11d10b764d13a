//! PostgreSQL as every cluster store opens it: a pool of connections
//! (`deadpool-postgres` over `tokio-postgres`) running on the database's own small
//! runtime, and the schema brought to this build's version at open: migrations applied
//! in order, each in its own transaction and recorded in `kinescope_schema`, under an
//! advisory lock so that nodes starting together do not race. A database whose schema is
//! newer than this build knows is refused with a clear message (as the embedded stores
//! refuse newer formats).
//!
//! Why these crates: `tokio-postgres` is the maintained async driver (pipelining, binary
//! parameters, LISTEN/NOTIFY on a connection) and `deadpool-postgres` a small pool over
//! it; `sqlx` would bring compile-time query checking that needs a database (or a
//! checked-in offline cache) at build time, and a larger dependency tree, for queries
//! this code keeps few and simple. PostgreSQL's wire protocol is also CockroachDB's and
//! YugabyteDB's; the SQL here is plain (no extensions), but those two are not tested.
//!
//! Store traits with synchronous methods call [`Database::wait`]: the work runs on the
//! database's runtime and the calling thread waits on a channel, so a caller on another
//! runtime's thread never deadlocks with the connections it waits for.

mod schema;

use std::future::Future;
use std::sync::Arc;

pub use deadpool_postgres::tokio_postgres;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::storage_failure::StorageFailure;

pub use schema::SCHEMA_VERSION;

/// Connections in the pool.
pub const POOL_SIZE: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the cluster database URL is not usable: {0}")]
    Url(String),
    #[error("cannot reach the cluster database: {0}")]
    Connect(String),
    #[error("the cluster database's schema is version {found}, newer than this Kinescope knows ({known}); run a Kinescope at least as new as the one that wrote it")]
    Newer { found: i32, known: i32 },
    #[error("a schema migration to version {version} failed: {why}")]
    Migration { version: i32, why: String },
    #[error("cannot start the database's runtime: {0}")]
    Runtime(std::io::Error),
}

/// One node's handle on the cluster database (cheap to clone).
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    runtime: Arc<OwnRuntime>,
}

/// The database's runtime, shut down without waiting when the last handle goes (a
/// runtime dropped the ordinary way inside another runtime's task would panic).
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for OwnRuntime {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("pool", &self.pool.status()).finish()
    }
}

impl Database {
    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`), brings the
    /// schema to [`SCHEMA_VERSION`]. Blocking.
    pub fn open(url: &str) -> Result<Database, OpenError> {
        Self::open_as(url, None)
    }

    /// [`Database::open`] for a node holding the cluster lease at `epoch`: every
    /// connection carries the epoch, and the schema's fence refuses its changes once
    /// another node has taken the lease (see `cluster_lease` in the schema).
    pub fn open_fenced(url: &str, epoch: u64) -> Result<Database, OpenError> {
        Self::open_as(url, Some(epoch))
    }

    fn open_as(url: &str, epoch: Option<u64>) -> Result<Database, OpenError> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| OpenError::Url(e.to_string()))?;
        if config.get_application_name().is_none() {
            config.application_name("kinescope");
        }
        if let Some(epoch) = epoch {
            if config.get_options().is_some() {
                return Err(OpenError::Url("the URL may not set `options` (the node sets its own)".into()));
            }
            config.options(format!("-c kinescope.epoch={epoch}"));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kinescope-db")
            .enable_all()
            .build()
            .map_err(OpenError::Runtime)?;
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = {
            let _entered = runtime.enter();
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .create_timeout(Some(std::time::Duration::from_secs(10)))
                .wait_timeout(Some(std::time::Duration::from_secs(30)))
                .build()
                .map_err(|e| OpenError::Connect(e.to_string()))?
        };
        let db = Database { pool, runtime: Arc::new(OwnRuntime(Some(runtime))) };
        let p = db.pool.clone();
        db.runtime.block_on(async move { schema::migrate(&p).await })?;
        Ok(db)
    }

    /// A connection from the pool (on the database's runtime).
    pub async fn client(&self) -> Result<deadpool_postgres::Object, StorageFailure> {
        let pool = self.pool.clone();
        self.run(async move { pool.get().await }).await?.map_err(|e| failed("get a database connection", e))
    }

    /// Runs `fut` on the database's runtime and awaits it from any runtime.
    pub async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, StorageFailure> {
        self.runtime.spawn(fut).await.map_err(|e| StorageFailure::caused("a database task stopped", e))
    }

    /// Runs `fut` on the database's runtime and waits for it on this thread (for the
    /// store traits' synchronous methods; see the module docs).
    pub fn wait<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Result<T, StorageFailure> {
        crate::blocking::wait_on(self.runtime.handle(), fut)
            .ok_or_else(|| StorageFailure::new("a database task stopped"))
    }

    /// The database's runtime (for other requests of the cluster stores: the bucket's).
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
    }

    /// The pool (for work that runs on the database's runtime already).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// One query's rows, waited for on this thread. `context` names the store and
    /// what it was doing, for the error.
    pub fn query(
        &self,
        context: &'static str,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<Vec<Row>, StorageFailure> {
        self.wait(query_rows(self.pool.clone(), context, sql, params))?
    }

    /// [`Database::query`], awaited.
    pub async fn query_async(
        &self,
        context: &'static str,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<Vec<Row>, StorageFailure> {
        self.run(query_rows(self.pool.clone(), context, sql, params)).await?
    }

    /// One change statement, committed, waited for on this thread; the rows it changed.
    pub fn execute(&self, context: &'static str, sql: &'static str, params: Vec<Param>) -> Result<u64, StorageFailure> {
        Ok(self.transaction(context, vec![(sql, params)])?.first().copied().unwrap_or(0))
    }

    /// [`Database::execute`], awaited.
    pub async fn execute_async(
        &self,
        context: &'static str,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<u64, StorageFailure> {
        Ok(self.transaction_async(context, vec![(sql, params)]).await?.first().copied().unwrap_or(0))
    }

    /// Statements run in one transaction, waited for on this thread; the rows each
    /// changed.
    pub fn transaction(
        &self,
        context: &'static str,
        statements: Vec<(&'static str, Vec<Param>)>,
    ) -> Result<Vec<u64>, StorageFailure> {
        let pool = self.pool.clone();
        self.wait(async move { in_transaction(pool, context, statements).await })?
    }

    /// [`Database::transaction`], awaited.
    pub async fn transaction_async(
        &self,
        context: &'static str,
        statements: Vec<(&'static str, Vec<Param>)>,
    ) -> Result<Vec<u64>, StorageFailure> {
        let pool = self.pool.clone();
        self.run(async move { in_transaction(pool, context, statements).await }).await?
    }
}

async fn query_rows(
    pool: Pool,
    context: &'static str,
    sql: &'static str,
    params: Vec<Param>,
) -> Result<Vec<Row>, StorageFailure> {
    let client = pool.get().await.map_err(|e| failed(context, e))?;
    client.query(sql, &Param::refs(&params)).await.map_err(|e| failed(context, e))
}

async fn in_transaction(
    pool: Pool,
    context: &'static str,
    statements: Vec<(&'static str, Vec<Param>)>,
) -> Result<Vec<u64>, StorageFailure> {
    let mut client = pool.get().await.map_err(|e| failed(context, e))?;
    let tx = client.transaction().await.map_err(|e| failed(context, e))?;
    let mut changed = Vec::with_capacity(statements.len());
    for (sql, params) in &statements {
        changed.push(tx.execute(*sql, &Param::refs(params)).await.map_err(|e| failed(context, e))?);
    }
    tx.commit().await.map_err(|e| failed(context, e))?;
    Ok(changed)
}

pub use tokio_postgres::Row;

/// A statement parameter, owned (statements run on the database's runtime).
#[derive(Debug, Clone)]
pub enum Param {
    Text(String),
    Bytes(Vec<u8>),
    Int(i64),
    /// A DOUBLE PRECISION.
    Float(f64),
    /// A BIGINT array (`= ANY($n)`).
    Ints(Vec<i64>),
}

impl Param {
    fn as_sql(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Param::Text(s) => s,
            Param::Bytes(b) => b,
            Param::Int(i) => i,
            Param::Float(f) => f,
            Param::Ints(v) => v,
        }
    }

    fn refs(params: &[Param]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        params.iter().map(Param::as_sql).collect()
    }

    /// A u64 (ids, numbers, serials) as PostgreSQL's BIGINT ([`to_bigint`]).
    pub fn uint(v: u64) -> Param {
        Param::Int(to_bigint(v))
    }
}

/// A u64 as a BIGINT, bit for bit, so that every value comes back ([`from_bigint`]).
/// The ids, numbers and serials this server makes stay below 2^63, where SQL's order
/// of the BIGINTs is their numeric order.
pub fn to_bigint(v: u64) -> i64 {
    v as i64
}

/// The u64 a BIGINT written by [`to_bigint`] holds.
pub fn from_bigint(v: i64) -> u64 {
    v as u64
}

/// A database error as the stores report it: marked unavailable when the database
/// could not be reached or refused for a reason a retry can outlive (see
/// [`unreachable`]).
pub fn failed(context: &str, e: impl std::error::Error + Send + Sync + 'static) -> StorageFailure {
    if unreachable(&e) {
        StorageFailure::unreachable(context.to_string(), e)
    } else {
        StorageFailure::caused(context.to_string(), e)
    }
}

/// Whether `e` (a driver or pool error) says the database was out of reach rather
/// than that the statement failed: no connection from the pool, a connection closed
/// or broken, SQLSTATE class 08 (connection exception), 57P01–57P03 (shut down,
/// starting up), 53300 (too many connections), or the fence's KS001 (this node lost
/// its lease: another node serves).
pub fn unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.downcast_ref::<deadpool_postgres::PoolError>().is_some() {
        return true;
    }
    let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() else {
        return false;
    };
    match pg.code() {
        None => true,
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "KS001")
        }
    }
}

/// A `LIKE` pattern of the texts starting with `prefix` (its wildcards escaped).
pub fn like_prefix(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_prefixes_escape_the_wildcards() {
        assert_eq!(super::like_prefix(""), "%");
        assert_eq!(super::like_prefix("cam_1%"), "cam\\_1\\%%");
        assert_eq!(super::like_prefix("a\\b"), "a\\\\b%");
    }

    #[test]
    fn every_u64_survives_a_bigint() {
        for v in [0, 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
            assert_eq!(super::from_bigint(super::to_bigint(v)), v);
        }
    }
}
