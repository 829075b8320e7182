//! `ghbs-bench server`: load jobs through the store, start the real server, measure readiness,
//! listing latency and memory, then claim throughput of the scheduler in-process.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ghbs_core::{Clock, ManualClock, Secret};
use ghbs_server::crypto::{hash_api_key, new_api_key};
use ghbs_server::executor::{ExecOutcome, Executor, RunProgress};
use ghbs_server::scheduler::Scheduler;
use ghbs_server::{AppState, RunContext, ServerConfig};
use ghbs_store::{Claim, NewJob, Store};
use ghbs_wire::{JobOptions, Retention, TargetKind};

use crate::db::BenchDb;
use crate::real_server::{self, RunningServer};
use crate::report::{self, against, figure, ms, rate, secs};

/// Options of the `server` subcommand (see `main.rs` for the flags).
pub struct ServerBench {
    pub database: Option<String>,
    pub jobs: usize,
    pub users: usize,
    pub claims: usize,
    pub clients: usize,
    pub requests: usize,
    pub duration: Duration,
    pub server_bin: Option<PathBuf>,
}

/// Concurrent loaders: a few per core keeps PostgreSQL's pool (10 connections) busy; SQLite
/// serialises writers anyway.
const LOADERS: usize = 8;

pub async fn run(opts: ServerBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        opts.users > 0 && opts.jobs >= opts.users,
        "need --jobs >= --users >= 1"
    );
    let dir = tempfile::Builder::new().prefix("ghbs-bench-").tempdir()?;
    let db = BenchDb::prepare(opts.database.as_deref(), dir.path()).await?;
    report::header(
        &format!("server benchmark ({})", db.kind()),
        &format!(
            "{} jobs, {} users, {} claims, {} clients",
            opts.jobs, opts.users, opts.claims, opts.clients
        ),
    );
    let result = run_on(&opts, &db, dir.path()).await;
    db.cleanup().await;
    result
}

async fn run_on(opts: &ServerBench, db: &BenchDb, dir: &std::path::Path) -> anyhow::Result<()> {
    // Every job's first run is at least an hour away, one second apart: the real server (system
    // clock) finds nothing due, and the in-process scheduler (manual clock) can make exactly
    // `claims` of them due.
    let now = Utc::now();
    let first_due = now + chrono::Duration::hours(2);

    // 1. Load.
    let store = ghbs_store::connect(&db.url).await?;
    let started = Instant::now();
    load(&store, opts, now, first_due).await?;
    let load_time = started.elapsed();
    figure(
        "1. load (store, 8 concurrent loaders)",
        format!(
            "{} jobs + {} users in {} ({:.0} jobs/s)",
            opts.jobs,
            opts.users,
            secs(load_time),
            rate(opts.jobs, load_time)
        ),
    );
    let keys = api_keys(&store, opts.clients.min(opts.users), now).await?;
    drop(store);

    // 2. Start to ready, 3. latency, RSS: the real binary.
    let bin = opts
        .server_bin
        .clone()
        .unwrap_or_else(real_server::default_binary);
    let server = RunningServer::start(&bin, &dir.join("server-data"), &db.url).await?;
    figure(
        "2. start: spawn to 'listening on'",
        ms(server.listening_after),
    );
    against(
        "2. start: spawn to /readyz 200",
        ms(server.ready_after),
        "< 1 s",
        server.ready_after < Duration::from_secs(1),
    );
    // One client first: the latency of a request that does not queue behind others.
    let alone =
        real_server::list_jobs_latency(server.addr, &keys, 1, 1000, Duration::from_secs(5)).await;
    let lat = real_server::list_jobs_latency(
        server.addr,
        &keys,
        opts.clients,
        opts.requests,
        opts.duration,
    )
    .await;
    let rss = server.pid().and_then(report::vm_rss_kb);
    server.stop().await?;
    let alone = alone?;
    figure(
        "3. GET /api/v1/jobs, 1 client: p50 / p99",
        format!(
            "{} / {} ({} requests)",
            ms(report::percentile(&alone.samples, 50.0)),
            ms(report::percentile(&alone.samples, 99.0)),
            alone.samples.len()
        ),
    );
    let lat = lat?;
    let p50 = report::percentile(&lat.samples, 50.0);
    let p99 = report::percentile(&lat.samples, 99.0);
    figure(
        "3. GET /api/v1/jobs",
        format!(
            "{} requests by {} clients in {} ({:.0} req/s), {} jobs per response, {} errors",
            lat.samples.len(),
            opts.clients,
            secs(lat.wall),
            rate(lat.samples.len(), lat.wall),
            lat.jobs_per_response,
            lat.errors
        ),
    );
    figure("3. GET /api/v1/jobs p50", ms(p50));
    against(
        "3. GET /api/v1/jobs p99",
        ms(p99),
        "< 20 ms",
        p99 < Duration::from_millis(20),
    );
    figure(
        "3. GET /api/v1/jobs max",
        ms(lat.samples.last().copied().unwrap_or_default()),
    );
    match rss {
        Some(kb) => against(
            "2. server RSS after the latency test",
            format!("{:.1} MB", kb as f64 / 1024.0),
            "< 100 MB",
            kb < 100 * 1024,
        ),
        None => figure("2. server RSS after the latency test", "unknown (no /proc)"),
    }

    // 4. Claim throughput, in-process.
    claims(opts, db, dir, first_due).await
}

/// Users `bench00000…` and their jobs (`ownerU/repoJ`, daily), `LOADERS` users at a time.
async fn load(
    store: &Arc<dyn Store>,
    opts: &ServerBench,
    now: DateTime<Utc>,
    first_due: DateTime<Utc>,
) -> anyhow::Result<()> {
    let per_user = opts.jobs / opts.users;
    let extra = opts.jobs % opts.users;
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..LOADERS {
        let store = store.clone();
        let users = opts.users;
        tasks.spawn(async move {
            let mut u = lane;
            while u < users {
                // Jobs of user u are numbered from `first`, so job g is due at first_due + g s.
                let first = u * per_user + u.min(extra);
                let count = per_user + usize::from(u < extra);
                let user = store
                    .upsert_user(
                        1_000_000 + u as i64,
                        &format!("bench{u:05}"),
                        // Never opened: these jobs never run against GitHub.
                        b"not-a-sealed-token",
                        now,
                    )
                    .await?;
                for j in 0..count {
                    let g = (first + j) as i64;
                    store
                        .create_job(NewJob {
                            user_id: user.id,
                            target: format!("owner{u}/repo{j}"),
                            target_kind: TargetKind::Repository,
                            schedule: ghbs_core::Schedule::Daily { at: None },
                            timezone: chrono_tz::UTC,
                            retention: Retention::default(),
                            options: JobOptions::default(),
                            next_run_at: first_due + chrono::Duration::seconds(g),
                            created_at: now,
                        })
                        .await?;
                }
                u += LOADERS;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// One API key for each of the first `n` users, created through the store as `login` would.
async fn api_keys(
    store: &Arc<dyn Store>,
    n: usize,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Secret>> {
    let mut keys = Vec::with_capacity(n);
    for u in 0..n {
        // Upserting an existing GitHub id returns its row (rewriting the same values).
        let user = store
            .upsert_user(
                1_000_000 + u as i64,
                &format!("bench{u:05}"),
                b"not-a-sealed-token",
                now,
            )
            .await?;
        let key = new_api_key();
        store
            .create_api_key(user.id, &hash_api_key(key.expose()), Some("bench"), now)
            .await?;
        keys.push(key);
    }
    Ok(keys)
}

/// Does nothing, so the figure is the scheduler's own cost: claim, lease, record, next time.
struct NoopExecutor {
    started: Instant,
    /// Nanoseconds from `started` to the latest `execute` call (≈ the latest claim).
    last_start_ns: AtomicU64,
}

#[async_trait]
impl Executor for NoopExecutor {
    async fn execute(&self, _: &Arc<RunContext>, _: &Claim, _: RunProgress) -> ExecOutcome {
        let ns = self.started.elapsed().as_nanos() as u64;
        self.last_start_ns.fetch_max(ns, Ordering::Relaxed);
        ExecOutcome::default()
    }
}

async fn claims(
    opts: &ServerBench,
    db: &BenchDb,
    dir: &std::path::Path,
    first_due: DateTime<Utc>,
) -> anyhow::Result<()> {
    let c = opts.claims.min(opts.jobs);
    if c < opts.claims {
        println!("(--claims {} > --jobs: claiming {c})", opts.claims);
    }
    if c == 0 {
        return Ok(());
    }
    let mut cfg = ServerConfig::with_data_dir(dir.join("inproc-data"));
    cfg.database_url = db.url.clone();
    cfg.workers = 64;
    // Jobs 0..c are due at first_due + 0..c-1 s.
    let clock = Arc::new(ManualClock::new(
        first_due + chrono::Duration::seconds(c as i64 - 1),
    ));
    let dyn_clock: Arc<dyn Clock> = clock;
    let state = AppState::new(cfg, dyn_clock).await?;
    let exec = Arc::new(NoopExecutor {
        started: Instant::now(),
        last_start_ns: AtomicU64::new(0),
    });
    let scheduler = Scheduler::new(state.clone(), exec.clone());
    let started = Instant::now();
    let offset = started.duration_since(exec.started);
    let n = scheduler.run_due_once().await;
    let total = started.elapsed();
    let claimed_by =
        Duration::from_nanos(exec.last_start_ns.load(Ordering::Relaxed)).saturating_sub(offset);
    let succeeded = state.metrics.runs_succeeded.load(Ordering::Relaxed) as usize;
    let claimed_rate = rate(n, claimed_by);
    figure(
        "4. run_due_once (no-op executor, 64 workers)",
        format!(
            "{n} of {c} due runs claimed, {succeeded} completed, in {}",
            secs(total)
        ),
    );
    against(
        "4. claimed runs/s",
        format!("{claimed_rate:.0}/s"),
        ">= 2,000/s",
        claimed_rate >= 2000.0,
    );
    figure(
        "4. completed runs/s (claim + finish_run)",
        format!("{:.0}/s", rate(succeeded, total)),
    );
    Ok(())
}
