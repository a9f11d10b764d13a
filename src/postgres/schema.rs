//! The cluster database's schema: numbered migrations, applied in order at open, each
//! in its own transaction with its version recorded in `kinescope_schema`; an advisory
//! lock serialises nodes that start together. A migration, once released, is never
//! edited: a change is a new one.

use deadpool_postgres::{tokio_postgres, Pool};

use super::OpenError;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The advisory lock key migrations hold ("kinescop" in ASCII).
const MIGRATION_LOCK: i64 = 0x6b69_6e65_7363_6f70;

/// Migration `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[
    // 1: signalling channels, one row per channel (the whole record, compared and
    // swapped as the engine's ChannelStore does).
    "CREATE TABLE signaling_channels (
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        name TEXT NOT NULL,
        record BYTEA NOT NULL,
        PRIMARY KEY (account, region, name)
    )",
    // 2: the video store's catalog and fragment index (numbers and times as BIGINT;
    // records in the fixed encodings the embedded index uses).
    "CREATE SEQUENCE video_stream_ids;
    CREATE TABLE video_streams (
        id BIGINT NOT NULL,
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        name TEXT NOT NULL,
        record BYTEA NOT NULL,
        PRIMARY KEY (account, region, name)
    );
    CREATE TABLE video_fragments (
        stream BIGINT NOT NULL,
        number BIGINT NOT NULL,
        producer_us BIGINT NOT NULL,
        server_us BIGINT NOT NULL,
        meta BYTEA NOT NULL,
        PRIMARY KEY (stream, number)
    );
    CREATE INDEX video_fragments_by_producer_time ON video_fragments (stream, producer_us, number);
    CREATE INDEX video_fragments_by_server_time ON video_fragments (stream, server_us, number);
    CREATE TABLE video_segments (
        stream BIGINT NOT NULL,
        segment BIGINT NOT NULL,
        meta BYTEA NOT NULL,
        PRIMARY KEY (stream, segment)
    );
    CREATE TABLE video_inits (
        stream BIGINT NOT NULL,
        init INTEGER NOT NULL,
        bytes BYTEA NOT NULL,
        PRIMARY KEY (stream, init)
    );
    CREATE TABLE video_high_water (
        stream BIGINT PRIMARY KEY,
        fragment BIGINT NOT NULL,
        segment BIGINT NOT NULL
    )",
    // 3: stream-event cursors, delivery-stream metadata and progress, data-stream
    // metadata, policies and commitments (records as JSON, as the embedded stores
    // keep them).
    "CREATE TABLE stream_event_cursors (
        stream BIGINT PRIMARY KEY,
        cursor BYTEA NOT NULL
    );
    CREATE SEQUENCE delivery_stream_uids;
    CREATE TABLE delivery_streams (
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        name TEXT NOT NULL,
        record BYTEA NOT NULL,
        PRIMARY KEY (account, region, name)
    );
    CREATE TABLE delivery_progress (
        uid BIGINT PRIMARY KEY,
        serial BIGINT NOT NULL
    );
    CREATE TABLE delivery_source_checkpoints (
        uid BIGINT NOT NULL,
        shard TEXT NOT NULL,
        checkpoint TEXT NOT NULL,
        PRIMARY KEY (uid, shard)
    );
    CREATE TABLE data_streams (
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        name TEXT NOT NULL,
        record BYTEA NOT NULL,
        PRIMARY KEY (account, region, name)
    );
    CREATE TABLE data_stream_policies (
        arn TEXT PRIMARY KEY,
        policy TEXT NOT NULL
    );
    CREATE TABLE data_stream_commitments (
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        commitment BYTEA NOT NULL,
        PRIMARY KEY (account, region)
    )",
    // 4: queues (records as JSON), their messages, payloads and deduplication entries.
    "CREATE SEQUENCE queue_ids;
    CREATE SEQUENCE queue_payload_ids;
    CREATE TABLE queues (
        account TEXT NOT NULL,
        region TEXT NOT NULL,
        name TEXT NOT NULL,
        id BIGINT NOT NULL,
        record BYTEA NOT NULL,
        PRIMARY KEY (account, region, name)
    );
    CREATE TABLE queue_payloads (
        id BIGINT PRIMARY KEY,
        bytes BYTEA NOT NULL
    );
    CREATE TABLE queue_messages (
        queue BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        payload BIGINT NOT NULL,
        record BYTEA NOT NULL,
        PRIMARY KEY (queue, seq)
    );
    CREATE INDEX queue_messages_by_payload ON queue_messages (payload);
    CREATE TABLE queue_dedup (
        queue BIGINT NOT NULL,
        key TEXT NOT NULL,
        entry BYTEA NOT NULL,
        PRIMARY KEY (queue, key)
    )",
    // 5: stream queues (records as JSON), their per-shard cursors and tracked records.
    "CREATE TABLE stream_queues (
        uid BIGINT PRIMARY KEY,
        record BYTEA NOT NULL
    );
    CREATE TABLE stream_queue_cursors (
        uid BIGINT NOT NULL,
        shard BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (uid, shard)
    );
    CREATE TABLE stream_queue_records (
        uid BIGINT NOT NULL,
        shard BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        record BYTEA NOT NULL,
        PRIMARY KEY (uid, shard, seq)
    )",
    // 6: record logs (data streams' records, delivery streams' backlogs): one row per
    // synced append.
    "CREATE TABLE record_log_chunks (
        log TEXT NOT NULL,
        segment BIGINT NOT NULL,
        chunk_offset BIGINT NOT NULL,
        arrival_ms BIGINT NOT NULL,
        bytes BYTEA NOT NULL,
        PRIMARY KEY (log, segment, chunk_offset)
    )",
    // 7: the cluster's writer lease and shared keys, and the fence: every change to
    // any other table checks, in its own transaction, that the session's epoch
    // (`kinescope.epoch`, set by a serving node's connections) is the lease's. The
    // check reads `cluster_lease`, so the transaction holds ACCESS SHARE on it until it
    // ends; a takeover locks the table ACCESS EXCLUSIVE, so it waits for the changes
    // already checked to commit and every later one sees the new epoch. Sessions
    // without an epoch (tools, tests) may change tables only while no lease exists.
    // Tables added by later migrations must get the trigger too (a test checks).
    "CREATE TABLE cluster_lease (
        name TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        address TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE cluster_keys (
        name TEXT PRIMARY KEY,
        key BYTEA NOT NULL
    );
    CREATE FUNCTION kinescope_fence() RETURNS trigger LANGUAGE plpgsql AS $fence$
    DECLARE
        held TEXT := current_setting('kinescope.epoch', true);
    BEGIN
        IF held IS NULL OR held = '' THEN
            IF EXISTS (SELECT 1 FROM cluster_lease) THEN
                RAISE EXCEPTION 'this session holds no cluster lease epoch, and a node serves this database'
                    USING ERRCODE = 'KS001';
            END IF;
        ELSIF NOT EXISTS (SELECT 1 FROM cluster_lease WHERE name = 'writer' AND epoch = held::BIGINT) THEN
            RAISE EXCEPTION 'this node no longer holds the cluster lease (its epoch was %)', held
                USING ERRCODE = 'KS001';
        END IF;
        RETURN NULL;
    END
    $fence$;
    DO $attach$
    DECLARE t TEXT;
    BEGIN
        FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema()
                 AND tablename NOT IN ('kinescope_schema', 'cluster_lease', 'cluster_keys') LOOP
            EXECUTE format('CREATE TRIGGER kinescope_fence BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I
                            FOR EACH STATEMENT EXECUTE FUNCTION kinescope_fence()', t);
        END LOOP;
    END
    $attach$",
];

/// Brings the schema to [`SCHEMA_VERSION`]; refuses a newer one.
pub(super) async fn migrate(pool: &Pool) -> Result<(), OpenError> {
    let mut client = pool.get().await.map_err(|e| OpenError::Connect(e.to_string()))?;
    let connect = |e: tokio_postgres::Error| OpenError::Connect(e.to_string());
    client.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).await.map_err(connect)?;
    let result = async {
        client
            .batch_execute(
                "SET client_min_messages = warning;
                CREATE TABLE IF NOT EXISTS kinescope_schema (
                    version INTEGER PRIMARY KEY,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                )",
            )
            .await
            .map_err(connect)?;
        let found: i32 = client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM kinescope_schema", &[])
            .await
            .map_err(connect)?
            .get(0);
        if found > SCHEMA_VERSION {
            return Err(OpenError::Newer { found, known: SCHEMA_VERSION });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let version = i as i32 + 1;
            let failed = |e: tokio_postgres::Error| OpenError::Migration { version, why: e.to_string() };
            let tx = client.transaction().await.map_err(failed)?;
            tx.batch_execute(sql).await.map_err(failed)?;
            tx.execute("INSERT INTO kinescope_schema (version) VALUES ($1)", &[&version]).await.map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            tracing::info!(version, "cluster database schema migrated");
        }
        Ok(())
    }
    .await;
    let _ = client.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).await;
    result
}
