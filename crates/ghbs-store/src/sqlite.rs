//! The SQLite backend: the zero-setup default for a single machine.
//!
//! Concurrency model: WAL mode lets any number of readers run beside one writer. Every
//! multi-statement write runs in a `BEGIN IMMEDIATE` transaction, which takes the write lock up
//! front: a deferred transaction that reads and then writes can fail with `SQLITE_BUSY` at the
//! upgrade without the busy handler ever waiting, whereas an immediate one simply queues behind
//! the current writer for up to `busy_timeout` (5 s). Holding that single lock for a whole
//! read-modify-write is also what makes a claim exclusive across processes. We keep a normal
//! pool (readers stay parallel) rather than a single-writer pool, so several processes on the
//! same file (tests, a CLI beside the server) are serialised by SQLite itself, not by us.

use std::{str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::{
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
        SqliteSynchronous,
    },
    Connection, Pool, Sqlite, SqliteConnection,
};

use crate::backend::{migrated, Backend, Dialect, Migration, SqlStore};
use crate::codec::{self, decode_err, TimeCodec};
use crate::{StoreError, StoreResult};

/// A [`Store`](crate::Store) on one SQLite file.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Open (creating the file if missing) the database named by `url`, e.g.
    /// `sqlite:///var/lib/ghbs/state.db` or `sqlite://state.db`, and run pending migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a commit survives a killed process (it is in the WAL, handed
            // to the OS); only a power loss can drop the last commits, never corrupt the file.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool_options = if in_memory {
            // Each connection to an in-memory database would see its own empty database:
            // keep exactly one, forever.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(8)
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(10))
            .after_release(|conn, _meta| {
                Box::pin(async move {
                    // A transaction dropped on an error queued its ROLLBACK on the connection's
                    // worker; the ping runs after it, so the depth below is the settled one.
                    conn.ping().await?;
                    Ok(codec::reusable_after_release(conn.is_in_transaction()))
                })
            })
            .connect_with(options)
            .await
            .map_err(Sqlite::err)?;
        migrated(pool, "SQLite").await
    }
}

/// Microseconds since the epoch: integer order is time order.
impl TimeCodec for Sqlite {
    type Time = i64;
    fn encode_time(t: DateTime<Utc>) -> i64 {
        t.timestamp_micros()
    }
    fn decode_time(col: &str, v: i64) -> StoreResult<DateTime<Utc>> {
        DateTime::from_timestamp_micros(v).ok_or_else(|| decode_err(col, format!("bad time {v}")))
    }
}

impl Backend for Sqlite {
    /// A JSON array, for `IN (SELECT value FROM json_each($1))`: one statement for a batch.
    type Ids = String;
    type ConnEx<'c> = &'c mut SqliteConnection;
    type PoolEx<'p> = &'p Pool<Sqlite>;

    const ROW_LOCKS: bool = false;
    const SQL: Dialect = Dialect {
        begin_write: "BEGIN IMMEDIATE",
        // A range scan on `next_run_at` that stops at `now`, so an idle poll costs nothing
        // however many jobs exist.
        claim_by_schedule: "
            UPDATE jobs SET lease_owner = $3, lease_expires_at = $4, lease_token = lease_token + 1
            WHERE id IN (
                SELECT id FROM jobs
                WHERE next_run_at <= $1 AND paused = 0 AND needs_login = 0
                  AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
                  AND (warm_node IS NULL OR warm_node = $3 OR next_run_at <= $5)
                ORDER BY next_run_at, id
                LIMIT $2)
            RETURNING *",
        // `CROSS JOIN` pins SQLite's join order to runs-then-jobs whatever its statistics say.
        claim_by_run: "
            UPDATE jobs SET lease_owner = $3, lease_expires_at = $4, lease_token = lease_token + 1
            WHERE id IN (
                SELECT j.id FROM runs r CROSS JOIN jobs j ON j.id = r.job_id
                WHERE r.status IN ('queued', 'running')
                  AND j.next_run_at > $1 AND j.paused = 0 AND j.needs_login = 0
                  AND (j.lease_expires_at IS NULL OR j.lease_expires_at <= $1)
                LIMIT $2)
            RETURNING *",
        fail_stale_runs: "UPDATE runs SET status = 'failed', finished_at = $1, error = $2
            WHERE status = 'running' AND job_id IN (SELECT value FROM json_each($3))
            RETURNING job_id, trigger_kind",
        start_queued_runs: "UPDATE runs SET status = 'running', started_at = $1
            WHERE status = 'queued' AND job_id IN (SELECT value FROM json_each($2))
            RETURNING *",
        insert_running_runs: "
            INSERT INTO runs (job_id, trigger_kind, status, queued_at, started_at)
            SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), 'running', $2, $2
            FROM json_each($1)
            RETURNING *",
        requeue_runs: "UPDATE runs SET status = 'queued', started_at = NULL, progress = NULL
            WHERE status = 'running' AND job_id IN (SELECT value FROM json_each($1))",
        last_runs: "SELECT * FROM runs WHERE id IN (
                SELECT MAX(id) FROM runs WHERE job_id IN (SELECT value FROM json_each($1))
                GROUP BY job_id)
            ORDER BY job_id",
        delete_snapshots: "DELETE FROM snapshots WHERE id IN (SELECT value FROM json_each($1))",
        snapshot_key_exists: "SELECT EXISTS (SELECT 1 FROM snapshots
            WHERE json_extract(manifest, '$.snapshot_key') = $1) AS found",
        lock_own_job: "SELECT 1 FROM jobs WHERE id = $1 AND user_id = $2",
        // One statement under SQLite's single writer: two claimers never take one row.
        claim_deliveries: "UPDATE notify_deliveries SET attempts = attempts + 1, lease_until = $1
         WHERE id IN (SELECT id FROM notify_deliveries
                      WHERE status = 'pending' AND next_attempt_at <= $2
                        AND (lease_until IS NULL OR lease_until <= $2)
                      ORDER BY next_attempt_at, id LIMIT $3)
         RETURNING *",
        lock_user: "SELECT id FROM users WHERE id = $1",
        // Driven by the partial index on `retry_at`, which holds only jobs with a retry pending.
        // A slot that came is claimed by schedule instead (that run starts over at attempt 1).
        claim_by_retry: "
            UPDATE jobs SET lease_owner = $3, lease_expires_at = $4, lease_token = lease_token + 1
            WHERE id IN (
                SELECT id FROM jobs
                WHERE retry_at IS NOT NULL AND retry_at <= $1 AND next_run_at > $1
                  AND paused = 0 AND needs_login = 0
                  AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
                ORDER BY retry_at, id
                LIMIT $2)
            RETURNING *",
        // Both subqueries are answered from the `runs_job (job_id, id)` index.
        job_freshness: "SELECT j.value AS job_id,
              (SELECT finished_at FROM runs
                WHERE job_id = j.value AND status IN ('succeeded', 'partial')
                ORDER BY id DESC LIMIT 1) AS last_success_at,
              (SELECT status FROM runs
                WHERE job_id = j.value AND status IN ('succeeded', 'partial', 'failed')
                ORDER BY id DESC LIMIT 1) AS last_finished
            FROM json_each($1) j",
    };

    fn migration(m: &Migration) -> &'static str {
        m.sqlite
    }
    fn ids(ids: &[i64]) -> String {
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        format!("[{}]", list.join(","))
    }
    fn conn(c: &mut SqliteConnection) -> &mut SqliteConnection {
        c
    }
    fn pool(p: &Pool<Sqlite>) -> &Pool<Sqlite> {
        p
    }
    fn rows_affected(r: &SqliteQueryResult) -> u64 {
        r.rows_affected()
    }
    /// Busy and locked, in any extended variant.
    fn transient(code: &str) -> bool {
        code.parse::<i64>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
    }
    /// `SQLITE_FULL` (13).
    fn disk_full(code: &str) -> bool {
        code.parse::<i64>().is_ok_and(|n| n & 0xff == 13)
    }
}
