//! The one implementation of the store over sqlx, generic in the database: [`Backend`] names
//! what differs between SQLite and PostgreSQL (how a time and a list of ids are bound, which
//! error codes mean what, the statements whose text differs), everything else is written once
//! in `accounts`, `jobs`, `repos` and `scheduler`.
//!
//! sqlx states what a generic caller needs as bounds on other types (`i64: Encode<'q, D>`,
//! `&mut D::Connection: Executor`), and Rust does not carry such bounds along with `D: Backend`:
//! they would have to be repeated on every function. So they are stated once here, as
//! supertraits ([`Bind`]) and associated types, which Rust does carry, and statements are
//! built through [`Sql`] instead of sqlx's `Query` directly.

use std::{borrow::Cow, future::Future};

use chrono::{DateTime, Utc};
use sqlx::{
    migrate::{Migrate, MigrationType, Migrator},
    query::Query,
    Database, Encode, Executor, IntoArguments, Pool, Transaction, Type,
};

use crate::codec::{Cols, TimeCodec};
use crate::{StoreError, StoreResult};

/// A [`Store`](crate::Store) on a pool of backend `D` ([`crate::sqlite::SqliteStore`],
/// [`crate::postgres::PgStore`]).
#[derive(Debug, Clone)]
pub struct SqlStore<D: Backend> {
    pub(crate) pool: Pool<D>,
}

/// One database dialect. Implemented for `sqlx::Sqlite` (`sqlite.rs`) and `sqlx::Postgres`
/// (`postgres.rs`); sealed, since the statements are written for exactly these two.
pub trait Backend:
    TimeCodec
    + Database<Row: Cols, Connection: Migrate>
    + for<'q> Database<Arguments<'q>: IntoArguments<'q, Self>>
    + for<'q> Bind<'q, i64>
    + for<'q> Bind<'q, Option<i64>>
    + for<'q> Bind<'q, Option<bool>>
    + for<'q> Bind<'q, &'q str>
    + for<'q> Bind<'q, Option<&'q str>>
    + for<'q> Bind<'q, String>
    + for<'q> Bind<'q, Option<String>>
    + for<'q> Bind<'q, &'q [u8]>
    + for<'q> Bind<'q, Option<&'q [u8]>>
    + for<'q> Bind<'q, Option<<Self as TimeCodec>::Time>>
{
    /// How a list of ids is bound for [`Dialect`]'s id-list statements: a JSON array for
    /// SQLite's `json_each`, an array for PostgreSQL's `= ANY`.
    type Ids: for<'q> Encode<'q, Self> + Type<Self> + Send + 'static;
    /// `&mut Self::Connection` as an executor (see the module comment for why not a bound).
    type ConnEx<'c>: Executor<'c, Database = Self>;
    /// `&Pool<Self>` as an executor.
    type PoolEx<'p>: Executor<'p, Database = Self>;

    /// The statements whose text differs between the dialects.
    const SQL: Dialect;

    /// Whether writers lock rows (PostgreSQL) rather than the whole database (SQLite); see
    /// `scheduler::finish_run`.
    const ROW_LOCKS: bool;

    fn ids(ids: &[i64]) -> Self::Ids;
    /// This backend's file of a [`Migration`].
    fn migration(m: &Migration) -> &'static str;
    fn conn(c: &mut Self::Connection) -> Self::ConnEx<'_>;
    fn pool(p: &Pool<Self>) -> Self::PoolEx<'_>;
    fn rows_affected(r: &Self::QueryResult) -> u64;
    /// The driver's error codes that mean "try again later".
    fn transient(code: &str) -> bool;
    /// The driver's error codes that mean the database's disk is full.
    fn disk_full(code: &str) -> bool;

    /// Map a driver error to the store's.
    fn err(e: sqlx::Error) -> StoreError {
        crate::codec::db_error(e, Self::transient, Self::disk_full)
    }
}

/// The statements written once per dialect, because their text truly differs: claims
/// (`FOR UPDATE SKIP LOCKED` against SQLite's single writer), id lists (`json_each` against
/// `= ANY`), JSON paths, row locks. Numbered placeholders mean the same in both.
pub struct Dialect {
    /// Starts a write transaction: `BEGIN IMMEDIATE` takes SQLite's write lock up front.
    pub begin_write: &'static str,
    /// `$1` now, `$2` limit, `$3` node, `$4` lease until, `$5` the time before which a job must
    /// have been due for a node other than its warm one (the last to run it) to take it;
    /// returns the claimed jobs.
    pub claim_by_schedule: &'static str,
    /// `$1` now, `$2` limit, `$3` node, `$4` lease until.
    pub claim_by_run: &'static str,
    /// `$1` now, `$2` error, `$3` job ids; returns `job_id, trigger_kind`.
    pub fail_stale_runs: &'static str,
    /// `$1` now, `$2` job ids; returns the started runs.
    pub start_queued_runs: &'static str,
    /// `$1` a JSON array of `[job_id, trigger]` pairs, `$2` now; returns the new runs.
    pub insert_running_runs: &'static str,
    /// `$1` job ids: their running runs go back to `queued`.
    pub requeue_runs: &'static str,
    /// `$1` job ids: the newest run of each, ordered by job id.
    pub last_runs: &'static str,
    /// `$1` snapshot ids.
    pub delete_snapshots: &'static str,
    /// `$1` key; returns `found`.
    pub snapshot_key_exists: &'static str,
    /// `$1` job id, `$2` user id, inside `request_run`'s transaction: a row when the job is
    /// the user's, locked on PostgreSQL (SQLite's write transaction already serialises).
    pub lock_own_job: &'static str,
    /// `$1` lease until, `$2` now, `$3` limit: due, unleased pending deliveries get the lease
    /// and `attempts + 1`; returns them (`notify::claim`).
    pub claim_deliveries: &'static str,
    /// `$1` user id, inside `create_scoped_api_key`'s transaction: the user's row, locked on
    /// PostgreSQL so two logins of one user cannot both pass the live-key cap.
    pub lock_user: &'static str,
    /// `$1` now, `$2` limit, `$3` node, `$4` lease until: jobs whose retry is due before their next slot.
    pub claim_by_retry: &'static str,
    /// `$1` job ids; returns `job_id`, `last_success_at` (newest `succeeded` or `partial` run's
    /// `finished_at`) and `last_finished` (newest finished run's status).
    pub job_freshness: &'static str,
}

/// `T` can be bound to a statement of `Self`; holds for every `T` sqlx can encode. As a
/// supertrait of [`Backend`] it says once which types the statements bind.
pub trait Bind<'q, T>: Database {
    fn bind_to(
        q: Query<'q, Self, Self::Arguments<'q>>,
        v: T,
    ) -> Query<'q, Self, Self::Arguments<'q>>;
}

impl<'q, D: Database, T: 'q + Send + Encode<'q, D> + Type<D>> Bind<'q, T> for D {
    fn bind_to(
        q: Query<'q, Self, Self::Arguments<'q>>,
        v: T,
    ) -> Query<'q, Self, Self::Arguments<'q>> {
        q.bind(v)
    }
}

/// Where a statement runs: the pool or an open transaction.
pub(crate) trait Db<'c, D: Backend>: Send + 'c {
    type Ex: Executor<'c, Database = D>;
    fn ex(self) -> Self::Ex;
}

impl<'c, D: Backend> Db<'c, D> for &'c Pool<D> {
    type Ex = D::PoolEx<'c>;
    fn ex(self) -> Self::Ex {
        D::pool(self)
    }
}

impl<'c, D: Backend> Db<'c, D> for &'c mut Transaction<'_, D> {
    type Ex = D::ConnEx<'c>;
    fn ex(self) -> Self::Ex {
        D::conn(self)
    }
}

/// One statement and its arguments, bound in placeholder order; driver errors come back
/// mapped by [`Backend::err`].
pub(crate) struct Sql<'q, D: Backend>(Query<'q, D, D::Arguments<'q>>);

pub(crate) fn sql<D: Backend>(text: &str) -> Sql<'_, D> {
    Sql(sqlx::query(text))
}

impl<'q, D: Backend> Sql<'q, D> {
    pub(crate) fn arg<T>(self, v: T) -> Self
    where
        D: Bind<'q, T>,
    {
        Sql(D::bind_to(self.0, v))
    }
    pub(crate) fn time(self, t: DateTime<Utc>) -> Self {
        Sql(self.0.bind(D::encode_time(t)))
    }
    pub(crate) fn opt_time(self, t: Option<DateTime<Utc>>) -> Self {
        Sql(D::bind_to(self.0, t.map(D::encode_time)))
    }
    pub(crate) fn ids(self, ids: &[i64]) -> Self {
        Sql(self.0.bind(D::ids(ids)))
    }
    // The fetches hand sqlx's boxed (and `Send`) future on instead of being `async fn`s: a
    // future holding `impl Db` and the bound arguments trips Rust's higher-ranked `Send` check
    // inside `#[async_trait]` methods ("implementation of `Send` is not general enough").
    pub(crate) fn one<'c, E: Db<'c, D>>(
        self,
        db: E,
    ) -> impl Future<Output = StoreResult<D::Row>> + Send + use<'q, 'c, D, E>
    where
        'q: 'c,
    {
        let fetch = self.0.fetch_one(db.ex());
        async move { fetch.await.map_err(D::err) }
    }
    pub(crate) fn opt<'c, E: Db<'c, D>>(
        self,
        db: E,
    ) -> impl Future<Output = StoreResult<Option<D::Row>>> + Send + use<'q, 'c, D, E>
    where
        'q: 'c,
    {
        let fetch = self.0.fetch_optional(db.ex());
        async move { fetch.await.map_err(D::err) }
    }
    pub(crate) fn all<'c, E: Db<'c, D>>(
        self,
        db: E,
    ) -> impl Future<Output = StoreResult<Vec<D::Row>>> + Send + use<'q, 'c, D, E>
    where
        'q: 'c,
    {
        let fetch = self.0.fetch_all(db.ex());
        async move { fetch.await.map_err(D::err) }
    }
    /// Runs the statement; how many rows it changed.
    pub(crate) fn run<'c, E: Db<'c, D>>(
        self,
        db: E,
    ) -> impl Future<Output = StoreResult<u64>> + Send + use<'q, 'c, D, E>
    where
        'q: 'c,
    {
        let exec = self.0.execute(db.ex());
        async move { Ok(D::rows_affected(&exec.await.map_err(D::err)?)) }
    }
}

/// A write transaction ([`Dialect::begin_write`]).
pub(crate) async fn begin<D: Backend>(pool: &Pool<D>) -> StoreResult<Transaction<'static, D>> {
    pool.begin_with(D::SQL.begin_write).await.map_err(D::err)
}

pub(crate) async fn commit<D: Backend>(tx: Transaction<'_, D>) -> StoreResult<()> {
    tx.commit().await.map_err(D::err)
}

/// One version of the schema, written once per backend in `migrations/<backend>/`. Listed
/// here together so that a version cannot land on one backend only.
pub struct Migration {
    pub(crate) version: i64,
    pub(crate) description: &'static str,
    pub(crate) sqlite: &'static str,
    pub(crate) postgres: &'static str,
}

/// Every migration; a landed file is never edited, a change is the next number.
#[rustfmt::skip] // a table
const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, description: "init",
        sqlite: include_str!("../migrations/sqlite/0001_init.sql"),
        postgres: include_str!("../migrations/postgres/0001_init.sql") },
    Migration { version: 2, description: "partial runs",
        sqlite: include_str!("../migrations/sqlite/0002_partial_runs.sql"),
        postgres: include_str!("../migrations/postgres/0002_partial_runs.sql") },
    Migration { version: 3, description: "write probe",
        sqlite: include_str!("../migrations/sqlite/0003_write_probe.sql"),
        postgres: include_str!("../migrations/postgres/0003_write_probe.sql") },
    Migration { version: 4, description: "key scopes and audit",
        sqlite: include_str!("../migrations/sqlite/0004_key_scopes_audit.sql"),
        postgres: include_str!("../migrations/postgres/0004_key_scopes_audit.sql") },
    Migration { version: 5, description: "retries",
        sqlite: include_str!("../migrations/sqlite/0005_retries.sql"),
        postgres: include_str!("../migrations/postgres/0005_retries.sql") },
    Migration { version: 6, description: "notifications",
        sqlite: include_str!("../migrations/sqlite/0006_notifications.sql"),
        postgres: include_str!("../migrations/postgres/0006_notifications.sql") },
    Migration { version: 7, description: "verify runs",
        sqlite: include_str!("../migrations/sqlite/0007_verify.sql"),
        postgres: include_str!("../migrations/postgres/0007_verify.sql") },
    Migration { version: 8, description: "jobs by user",
        sqlite: include_str!("../migrations/sqlite/0008_jobs_by_user.sql"),
        postgres: include_str!("../migrations/postgres/0008_jobs_by_user.sql") },
    Migration { version: 9, description: "placement and maintenance",
        sqlite: include_str!("../migrations/sqlite/0009_placement_maintenance.sql"),
        postgres: include_str!("../migrations/postgres/0009_placement_maintenance.sql") },
];

/// The store on `pool` once the pending migrations have run; `name` is the backend's, for the
/// error message.
pub(crate) async fn migrated<D: Backend>(pool: Pool<D>, name: &str) -> StoreResult<SqlStore<D>> {
    let migrator = Migrator {
        migrations: Cow::Owned(
            MIGRATIONS
                .iter()
                .map(|m| {
                    sqlx::migrate::Migration::new(
                        m.version,
                        Cow::Borrowed(m.description),
                        MigrationType::Simple,
                        Cow::Borrowed(D::migration(m)),
                        false,
                    )
                })
                .collect(),
        ),
        ignore_missing: false,
        // PostgreSQL: an advisory lock keeps nodes starting together from migrating twice.
        locking: true,
        no_tx: false,
    };
    migrator
        .run(&pool)
        .await
        .map_err(|e| StoreError::Other(format!("{name} migration failed: {e}")))?;
    Ok(SqlStore { pool })
}
