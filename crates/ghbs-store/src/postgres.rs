//! The PostgreSQL backend: shared state for several server nodes.
//!
//! Claims use `FOR UPDATE SKIP LOCKED` so that nodes never wait on each other's rows and never
//! claim the same job; leases (not held transactions) cover the minutes a backup takes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{
    postgres::{PgPoolOptions, PgQueryResult},
    Connection, PgConnection, Pool, Postgres,
};

use crate::backend::{migrated, Backend, Dialect, Migration, SqlStore};
use crate::codec::{self, TimeCodec};
use crate::StoreResult;

/// A [`Store`](crate::Store) on a PostgreSQL database shared by any number of server nodes.
pub type PgStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// Connect to `url` (`postgres://user:pass@host/db`, libpq-style query options such as
    /// `?options=-csearch_path%3Dschema` allowed) and run pending migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .after_release(|conn, _meta| {
                // A dropped transaction queues its ROLLBACK and lowers the depth at once, so a
                // depth still above zero means a transaction nobody can end any more.
                Box::pin(async move { Ok(codec::reusable_after_release(conn.is_in_transaction())) })
            })
            .connect(url)
            .await
            .map_err(Postgres::err)?;
        migrated(pool, "PostgreSQL").await
    }
}

impl TimeCodec for Postgres {
    type Time = DateTime<Utc>;
    fn encode_time(t: DateTime<Utc>) -> DateTime<Utc> {
        t
    }
    fn decode_time(_col: &str, v: DateTime<Utc>) -> StoreResult<DateTime<Utc>> {
        Ok(v)
    }
}

impl Backend for Postgres {
    type Ids = Vec<i64>;
    type ConnEx<'c> = &'c mut PgConnection;
    type PoolEx<'p> = &'p Pool<Postgres>;

    const ROW_LOCKS: bool = true;
    const SQL: Dialect = Dialect {
        begin_write: "BEGIN",
        // `FOR UPDATE SKIP LOCKED`: a job another node is claiming right now is passed over,
        // never waited for, and never claimed twice. A range scan on `next_run_at` that stops
        // at `now`, so an idle poll costs nothing however many jobs exist.
        claim_by_schedule: "
            WITH due AS (
                SELECT id FROM jobs
                WHERE next_run_at <= $1 AND NOT paused AND NOT needs_login
                  AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
                  AND (warm_node IS NULL OR warm_node = $3 OR next_run_at <= $5)
                ORDER BY next_run_at, id
                LIMIT $2
                FOR UPDATE SKIP LOCKED)
            UPDATE jobs SET lease_owner = $3, lease_expires_at = $4, lease_token = jobs.lease_token + 1
            FROM due WHERE jobs.id = due.id
            RETURNING jobs.*",
        claim_by_run: "
            WITH due AS (
                SELECT id FROM jobs
                WHERE id IN (SELECT job_id FROM runs WHERE status IN ('queued', 'running'))
                  AND next_run_at > $1 AND NOT paused AND NOT needs_login
                  AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
                LIMIT $2
                FOR UPDATE SKIP LOCKED)
            UPDATE jobs SET lease_owner = $3, lease_expires_at = $4, lease_token = jobs.lease_token + 1
            FROM due WHERE jobs.id = due.id
            RETURNING jobs.*",
        fail_stale_runs: "UPDATE runs SET status = 'failed', finished_at = $1, error = $2
            WHERE status = 'running' AND job_id = ANY($3)
            RETURNING job_id, trigger_kind",
        start_queued_runs: "UPDATE runs SET status = 'running', started_at = $1
            WHERE status = 'queued' AND job_id = ANY($2)
            RETURNING *",
        insert_running_runs: "
            INSERT INTO runs (job_id, trigger_kind, status, queued_at, started_at)
            SELECT (e->>0)::BIGINT, e->>1, 'running', $2, $2 FROM json_array_elements($1::json) AS e
            RETURNING *",
        requeue_runs: "UPDATE runs SET status = 'queued', started_at = NULL, progress = NULL
            WHERE status = 'running' AND job_id = ANY($1)",
        last_runs: "SELECT DISTINCT ON (job_id) * FROM runs WHERE job_id = ANY($1)
            ORDER BY job_id, id DESC",
        delete_snapshots: "DELETE FROM snapshots WHERE id = ANY($1)",
        snapshot_key_exists: "SELECT EXISTS (SELECT 1 FROM snapshots
            WHERE manifest::jsonb->>'snapshot_key' = $1) AS found",
        // Locking the job row serialises `request_run` with claims (which skip a locked job
        // for this round) and with a concurrent "run now", so check-then-insert cannot race.
        lock_own_job: "SELECT 1 FROM jobs WHERE id = $1 AND user_id = $2 FOR UPDATE",
        // SKIP LOCKED: nodes claim side by side, never waiting on or double-claiming a row.
        claim_deliveries: "UPDATE notify_deliveries SET attempts = attempts + 1, lease_until = $1
         WHERE id IN (SELECT id FROM notify_deliveries
                      WHERE status = 'pending' AND next_attempt_at <= $2
                        AND (lease_until IS NULL OR lease_until <= $2)
                      ORDER BY next_attempt_at, id LIMIT $3
                      FOR UPDATE SKIP LOCKED)
         RETURNING *",
        lock_user: "SELECT id FROM users WHERE id = $1 FOR UPDATE",
        // Driven by the partial index on `retry_at`, which holds only jobs with a retry pending.
        // A slot that came is claimed by schedule instead (that run starts over at attempt 1).
        claim_by_retry: "
            WITH due AS (
                SELECT id FROM jobs
                WHERE retry_at IS NOT NULL AND retry_at <= $1 AND next_run_at > $1
                  AND NOT paused AND NOT needs_login
                  AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
                ORDER BY retry_at, id
                LIMIT $2
                FOR UPDATE SKIP LOCKED)
            UPDATE jobs SET lease_owner = $3, lease_expires_at = $4, lease_token = jobs.lease_token + 1
            FROM due WHERE jobs.id = due.id
            RETURNING jobs.*",
        // Both subqueries are answered from the `runs_job (job_id, id)` index.
        job_freshness: "SELECT j AS job_id,
              (SELECT finished_at FROM runs
                WHERE job_id = j AND status IN ('succeeded', 'partial')
                ORDER BY id DESC LIMIT 1) AS last_success_at,
              (SELECT status FROM runs
                WHERE job_id = j AND status IN ('succeeded', 'partial', 'failed')
                ORDER BY id DESC LIMIT 1) AS last_finished
            FROM UNNEST($1::BIGINT[]) AS j",
    };

    fn migration(m: &Migration) -> &'static str {
        m.postgres
    }
    fn ids(ids: &[i64]) -> Vec<i64> {
        ids.to_vec()
    }
    fn conn(c: &mut PgConnection) -> &mut PgConnection {
        c
    }
    fn pool(p: &Pool<Postgres>) -> &Pool<Postgres> {
        p
    }
    fn rows_affected(r: &PgQueryResult) -> u64 {
        r.rows_affected()
    }
    /// Connection exceptions (class 08), shutdowns (57P), too many connections, serialization
    /// failures and deadlocks.
    fn transient(code: &str) -> bool {
        code.starts_with("08")
            || code.starts_with("57P")
            || matches!(code, "53300" | "40001" | "40P01")
    }
    /// `disk_full` (53100) on the database server.
    fn disk_full(code: &str) -> bool {
        code == "53100"
    }
}
