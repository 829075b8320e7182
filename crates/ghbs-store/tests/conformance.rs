//! One conformance suite for both store backends.
//!
//! Every scenario is written once against `Arc<dyn Store>` and runs on a fresh SQLite file in a
//! temporary folder, and on PostgreSQL when `TEST_DATABASE_URL` is set (each test then gets its
//! own schema, selected through the connection's `search_path`, and drops it when it passes).

#[path = "conformance/accounts.rs"]
mod accounts;
#[path = "conformance/failures.rs"]
mod failures;
#[path = "conformance/jobs.rs"]
mod jobs;
#[path = "conformance/repos.rs"]
mod repos;
#[path = "conformance/retries.rs"]
mod retries;
#[path = "conformance/scheduler.rs"]
mod scheduler;
#[path = "conformance/security.rs"]
mod security;
#[path = "conformance/verify.rs"]
mod verify;

use std::{future::Future, sync::Arc, sync::Once};

use chrono::{DateTime, Duration, TimeZone, Utc};
use ghbs_store::{NewJob, RunOutcome, Store, UserRow};
use ghbs_wire::{JobOptions, Retention, RunStatus, TargetKind};
use sqlx::Connection;

/// One database a scenario runs on; `open` may be called more than once (several nodes).
struct Db {
    url: String,
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: the server URL and the schema to drop afterwards.
    pg_schema: Option<(String, String)>,
}

impl Db {
    async fn open(&self) -> Arc<dyn Store> {
        ghbs_store::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url.split('?').next().unwrap_or("")))
    }

    /// Runs `sql` on the database behind the store, past the store's API: for rows the store
    /// itself would never write (an older version's, or one edited by hand).
    async fn raw_execute(&self, sql: &str) {
        if self.pg_schema.is_some() {
            let mut conn = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("connect");
            sqlx::query(sql).execute(&mut conn).await.expect(sql);
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url)
                .await
                .expect("connect");
            sqlx::query(sql).execute(&mut conn).await.expect(sql);
        }
    }

    async fn cleanup(self) {
        if let Some((server, schema)) = &self.pg_schema {
            let mut conn = sqlx::PgConnection::connect(server).await.expect("connect");
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut conn)
                .await
                .expect("drop schema");
        }
    }
}

fn sqlite_db() -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    // A file that does not exist yet: open must create it.
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    Db {
        url,
        _dir: Some(dir),
        pg_schema: None,
    }
}

async fn pg_db() -> Option<Db> {
    static NOTICE: Once = Once::new();
    let Ok(server) = std::env::var("TEST_DATABASE_URL") else {
        NOTICE.call_once(|| {
            eprintln!("skipping PostgreSQL store tests: TEST_DATABASE_URL is not set (CI sets it)")
        });
        return None;
    };
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&server)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let sep = if server.contains('?') { '&' } else { '?' };
    Some(Db {
        url: format!("{server}{sep}options=-csearch_path%3D{schema}"),
        _dir: None,
        pg_schema: Some((server, schema)),
    })
}

async fn databases() -> Vec<Db> {
    let mut dbs = vec![sqlite_db()];
    dbs.extend(pg_db().await);
    dbs
}

/// Run a scenario on one fresh store per backend.
async fn on_each_backend<F, Fut>(scenario: F)
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    for db in databases().await {
        scenario(db.open().await).await;
        db.cleanup().await;
    }
}

/// Run a scenario on two stores opened on the same fresh database (two server nodes).
async fn on_each_backend_twice<F, Fut>(scenario: F)
where
    F: Fn(Arc<dyn Store>, Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    for db in databases().await {
        let a = db.open().await;
        let b = db.open().await;
        scenario(a, b).await;
        db.cleanup().await;
    }
}

/// A fixed instant plus `secs`: whole seconds survive both backends' precision exactly.
fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(secs)
}

async fn user(store: &Arc<dyn Store>, github_id: i64) -> UserRow {
    store
        .upsert_user(github_id, &format!("user{github_id}"), b"sealed", t(0))
        .await
        .expect("upsert_user")
}

fn new_job(user_id: i64, target: &str, next_run_at: DateTime<Utc>) -> NewJob {
    NewJob {
        user_id,
        target: target.to_string(),
        target_kind: if target.contains('/') {
            TargetKind::Repository
        } else {
            TargetKind::Account
        },
        schedule: ghbs_core::Schedule::Daily { at: None },
        timezone: chrono_tz::UTC,
        retention: Retention::default(),
        options: JobOptions::default(),
        next_run_at,
        created_at: t(0),
    }
}

fn outcome(status: RunStatus, next_run_at: DateTime<Utc>) -> RunOutcome {
    RunOutcome {
        status,
        error: None,
        bytes_fetched: 0,
        api_requests: 0,
        api_requests_conditional: 0,
        snapshot_id: None,
        needs_login: false,
        next_run_at,
        retry: None,
    }
}

#[tokio::test]
async fn users_upsert() {
    on_each_backend(accounts::users_upsert).await;
}

#[tokio::test]
async fn api_keys() {
    on_each_backend(accounts::api_keys).await;
}

#[tokio::test]
async fn jobs_crud() {
    on_each_backend(jobs::crud).await;
}

#[tokio::test]
async fn jobs_with_unparsable_schedule_or_timezone_are_errors_naming_the_job() {
    for db in databases().await {
        jobs::unparsable_stored_values(db.open().await, &db).await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn jobs_isolation() {
    on_each_backend(jobs::isolation).await;
}

#[tokio::test]
async fn jobs_duplicate_target() {
    on_each_backend(jobs::duplicate_target).await;
}

#[tokio::test]
async fn jobs_pages() {
    on_each_backend(jobs::pages).await;
}

#[tokio::test]
async fn run_now() {
    on_each_backend(jobs::run_now).await;
}

#[tokio::test]
async fn claim_picks_only_claimable() {
    on_each_backend(scheduler::claimable).await;
}

#[tokio::test]
async fn claim_takes_over_expired_lease_with_fencing() {
    on_each_backend(scheduler::takeover_and_fencing).await;
}

#[tokio::test]
async fn claim_prefers_the_warm_node() {
    on_each_backend(scheduler::warm_node_first).await;
}

#[tokio::test]
async fn maintenance_task_once_per_period() {
    on_each_backend(scheduler::maintenance_once_per_period).await;
}

#[tokio::test]
async fn claim_takes_over_expired_manual_run() {
    on_each_backend(scheduler::manual_takeover).await;
}

#[tokio::test]
async fn finish_and_needs_login() {
    on_each_backend(scheduler::finish_and_needs_login).await;
}

#[tokio::test]
async fn release_requeues() {
    on_each_backend(scheduler::release_requeues).await;
}

#[tokio::test]
async fn release_node_settles_only_own_leases() {
    on_each_backend(scheduler::release_node_settles_only_own_leases).await;
}

#[tokio::test]
async fn probe_write() {
    on_each_backend(scheduler::probe_write).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_share_a_job() {
    on_each_backend_twice(scheduler::concurrent_claimers).await;
}

#[tokio::test]
async fn retries_are_claimed_when_due_and_before_the_slot() {
    on_each_backend(retries::claimed_when_due).await;
}

#[tokio::test]
async fn a_slot_that_came_wins_over_a_pending_retry() {
    on_each_backend(retries::slot_wins).await;
}

#[tokio::test]
async fn job_freshness() {
    on_each_backend(retries::freshness).await;
}

#[tokio::test]
async fn snapshots() {
    on_each_backend(repos::snapshots).await;
}

#[tokio::test]
async fn snapshot_key_lookup() {
    on_each_backend(repos::snapshot_key_lookup).await;
}

#[tokio::test]
async fn snapshots_purge() {
    on_each_backend(repos::purge).await;
}

#[tokio::test]
async fn job_repos() {
    on_each_backend(repos::job_repos).await;
}

#[tokio::test]
async fn http_cache() {
    on_each_backend(repos::http_cache).await;
}

/// Errors say whether retrying can help: an unreachable server is `Unavailable`, an unknown
/// scheme is not.
#[tokio::test]
async fn connect_errors_are_classified() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    match ghbs_store::connect("postgres://u:p@127.0.0.1:1/db").await {
        Err(ghbs_store::StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
    }
    match ghbs_store::connect("mysql://localhost/db").await {
        Err(ghbs_store::StoreError::Other(msg)) => assert!(msg.contains("unsupported")),
        other => panic!("expected Other, got {:?}", other.map(|_| ())),
    }
}

/// A write failing inside a claim's transaction (as a full disk makes it fail) must not leave
/// the pooled connection in that transaction: the next claims work without a restart.
#[tokio::test]
async fn failed_write_in_transaction_then_claims_work() {
    for db in databases().await {
        failures::failed_claim_leaves_no_open_transaction(&db).await;
        db.cleanup().await;
    }
}

/// Authenticating is a read: a refused `last_used_at` write is logged, not an error.
#[tokio::test]
async fn authentication_survives_a_refused_write() {
    for db in databases().await {
        failures::authentication_survives_a_failed_refresh(&db).await;
        db.cleanup().await;
    }
}

/// Reopening a store runs no migration twice and keeps the data.
#[tokio::test]
async fn reopen_keeps_data() {
    for db in databases().await {
        let first = db.open().await;
        let alice = user(&first, 1).await;
        drop(first);
        let again = db.open().await;
        assert_eq!(again.get_user(alice.id).await.unwrap(), alice);
        again.ping().await.unwrap();
        db.cleanup().await;
    }
}

#[path = "conformance/notify.rs"]
mod notify;

#[tokio::test]
async fn notify_targets_are_scoped() {
    on_each_backend(notify::targets_are_scoped).await;
}

#[tokio::test]
async fn notify_queue_claim_retry_finish() {
    on_each_backend(notify::queue_claim_retry_finish).await;
}

#[tokio::test]
async fn notify_freshness_and_stale_marks() {
    on_each_backend(notify::freshness_and_stale_marks).await;
}

#[tokio::test]
async fn scoped_keys_and_cap() {
    on_each_backend(security::scoped_keys_and_cap).await;
}

#[tokio::test]
async fn audit_trail() {
    on_each_backend(security::audit_trail).await;
}

#[tokio::test]
async fn verify_request_and_claim() {
    on_each_backend(verify::request_and_claim).await;
}

#[tokio::test]
async fn verify_scheduled_once_per_slot() {
    on_each_backend_twice(verify::scheduled_once_per_slot).await;
}

#[tokio::test]
async fn queue_stats_for_metrics() {
    on_each_backend(verify::queue_stats).await;
}
