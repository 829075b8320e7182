//! `ghbs-bench backup`: one account job over a world of repositories in the GitHub stand-in,
//! run by the real `BackupExecutor` in-process; compared with plain git on the same URLs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ghbs_core::{Clock, Secret, SystemClock};
use ghbs_server::backup::BackupExecutor;
use ghbs_server::scheduler::Scheduler;
use ghbs_server::{AppState, ServerConfig};
use ghbs_store::{JobRow, NewJob, RunRow, UserRow};
use ghbs_testkit::{GitHubStandIn, RepoOptions, RequestRecord};
use ghbs_wire::{JobOptions, Retention, RunStatus, TargetKind};

use crate::plain_git::PlainGit;
use crate::report::{self, against, figure, secs};

const OWNER: &str = "bench";

/// Options of the `backup` subcommand (see `main.rs` for the flags).
pub struct BackupBench {
    pub repos: usize,
    pub large: usize,
    pub large_commits: usize,
    pub large_mb: usize,
    pub parallel: usize,
}

/// One run of the job as measured from outside.
pub(crate) struct RunFigures {
    pub wall: Duration,
    pub row: RunRow,
    pub log: Vec<RequestRecord>,
}

impl RunFigures {
    pub fn rest(&self) -> impl Iterator<Item = &RequestRecord> {
        self.log.iter().filter(|r| !r.git)
    }
    pub fn counted(&self) -> usize {
        self.rest().filter(|r| r.counted).count()
    }
    pub fn conditional(&self) -> usize {
        self.rest().filter(|r| r.conditional_hit).count()
    }
    pub fn git(&self) -> usize {
        self.log.iter().filter(|r| r.git).count()
    }
    pub fn summary(&self) -> String {
        format!(
            "{}, {:.1} MB fetched; API (run row) {} counted + {} conditional; stand-in log: {} REST ({} counted, {} 304), {} git requests",
            self.row.status.as_str(),
            self.row.bytes_fetched as f64 / 1_048_576.0,
            self.row.api_requests,
            self.row.api_requests_conditional,
            self.rest().count(),
            self.counted(),
            self.conditional(),
            self.git()
        )
    }
}

fn name(i: usize) -> String {
    format!("{OWNER}/repo-{i:04}")
}

pub async fn run(opts: BackupBench) -> anyhow::Result<()> {
    anyhow::ensure!(opts.repos > 0, "--repos must be at least 1");
    let large = opts.large.min(opts.repos);
    report::header(
        "backup engine benchmark",
        &format!(
            "{} repositories ({} large: {} commits, {} MB each; the rest 2-5 commits), {} workers / {} plain git at a time",
            opts.repos, large, opts.large_commits, opts.large_mb, opts.parallel, opts.parallel
        ),
    );
    let dir = tempfile::Builder::new().prefix("ghbs-bench-").tempdir()?;
    let gh = GitHubStandIn::start().await;
    let (gh_id, token) = gh.add_user(OWNER);

    let started = Instant::now();
    build_world(&gh, &opts, large);
    figure(
        "world built in the stand-in",
        format!("{} repositories in {}", opts.repos, secs(started.elapsed())),
    );

    let (state, user, job) = app(
        &gh,
        opts.parallel,
        dir.path(),
        (gh_id, OWNER, &token),
        JobOptions::default(),
    )
    .await?;
    let scheduler = Scheduler::new(state.clone(), Arc::new(BackupExecutor));
    let plain = Arc::new(PlainGit::new(
        &dir.path().join("plain"),
        Secret::new(&token),
    )?);
    let mirrors: Vec<PathBuf> = (0..opts.repos)
        .map(|i| dir.path().join(format!("plain/repo-{i:04}.git")))
        .collect();
    let pairs: Vec<(String, PathBuf)> = (0..opts.repos)
        .map(|i| (gh.clone_url(&name(i)), mirrors[i].clone()))
        .collect();

    // (1) First backup against a plain mirror clone of everything. CPU: this process (the
    // stand-in, and the server parts in the first case) and every git it waited for, on both
    // sides of the wire.
    let cpu = report::cpu_seconds();
    let r1 = run_job(&gh, &state, &scheduler, &user, &job).await?;
    let r1_cpu = report::cpu_seconds() - cpu;
    figure(
        "1. first backup",
        format!("{} ({r1_cpu:.1} CPU-s) — {}", secs(r1.wall), r1.summary()),
    );
    gh.clear_requests();
    let cpu = report::cpu_seconds();
    let clone = plain.clone_all(&pairs, opts.parallel).await?;
    let clone_cpu = report::cpu_seconds() - cpu;
    let clone_git = gh.requests().iter().filter(|r| r.git).count();
    figure(
        &format!("1. plain git clone --mirror, {} at a time", opts.parallel),
        format!(
            "{} ({clone_cpu:.1} CPU-s) — {clone_git} git requests",
            secs(clone)
        ),
    );
    ratio("1. first backup / plain clone", r1.wall, clone, 1.0);
    figure(
        "1. CPU-seconds, first backup / plain clone",
        format!("{:.2}x", r1_cpu / clone_cpu.max(0.01)),
    );

    // (2) Nothing changed.
    let r2 = run_job(&gh, &state, &scheduler, &user, &job).await?;
    figure("2. unchanged run", r2.summary());
    against(
        "2. unchanged run, wall time",
        secs(r2.wall),
        "< 2 s",
        r2.wall < Duration::from_secs(2),
    );
    let per_repo = r2.counted() as f64 / opts.repos as f64;
    against(
        "2. counted API requests per repository",
        format!("{per_repo:.3} ({} / {})", r2.counted(), opts.repos),
        "< 1",
        per_repo < 1.0,
    );

    // (3) Pushes to 10 % of the repositories (every tenth one, one commit each).
    let changed: Vec<usize> = (0..opts.repos).step_by(10).collect();
    for &i in &changed {
        gh.commits(&name(i), "main", 1);
    }
    let r3 = run_job(&gh, &state, &scheduler, &user, &job).await?;
    figure(
        &format!("3. run after pushes to {} repositories", changed.len()),
        format!("{} — {}", secs(r3.wall), r3.summary()),
    );
    let changed_mirrors: Vec<PathBuf> = changed.iter().map(|&i| mirrors[i].clone()).collect();
    let fetch = plain.fetch_all(&changed_mirrors, opts.parallel).await?;
    figure(
        &format!(
            "3. plain git fetch of the {} changed, {} at a time",
            changed.len(),
            opts.parallel
        ),
        secs(fetch),
    );
    ratio("3. run after pushes / plain fetch", r3.wall, fetch, 1.2);

    // Context for "where the time goes".
    let fetch_every = plain.fetch_all(&mirrors, opts.parallel).await?;
    figure(
        &format!(
            "   plain git fetch of all {} (nothing new), {} at a time",
            opts.repos, opts.parallel
        ),
        secs(fetch_every),
    );
    let serial_dir = dir.path().join("plain-serial");
    let serial_pairs: Vec<(String, PathBuf)> = (0..opts.repos)
        .map(|i| (gh.clone_url(&name(i)), serial_dir.join(format!("{i}.git"))))
        .collect();
    let clone_serial = plain.clone_all(&serial_pairs, 1).await?;
    figure(
        "   plain git clone --mirror, 1 at a time",
        secs(clone_serial),
    );
    figure(
        "   per repository: first backup / serial clone",
        format!(
            "{:.1} ms / {:.1} ms",
            r1.wall.as_secs_f64() * 1000.0 / opts.repos as f64,
            clone_serial.as_secs_f64() * 1000.0 / opts.repos as f64
        ),
    );
    crate::breakdown::unchanged_run(&state, &job).await
}

fn ratio(label: &str, ours: Duration, plain: Duration, target: f64) {
    let r = ours.as_secs_f64() / plain.as_secs_f64().max(1e-9);
    against(
        label,
        format!("{r:.2}×"),
        &format!("<= {target}×"),
        r <= target,
    );
}

/// Private repositories (so git really asks for the token), `parallel` builders at a time: the
/// stand-in's control methods run git outside its lock.
fn build_world(gh: &GitHubStandIn, opts: &BackupBench, large: usize) {
    let lanes = opts.parallel.max(1);
    let first_large = opts.repos - large;
    std::thread::scope(|s| {
        for lane in 0..lanes {
            s.spawn(move || {
                for i in (lane..opts.repos).step_by(lanes) {
                    let full = name(i);
                    let (_, short) = full.split_once('/').expect("owner/name");
                    gh.create_repo(
                        OWNER,
                        short,
                        RepoOptions {
                            private: true,
                            ..RepoOptions::default()
                        },
                    );
                    if i >= first_large {
                        gh.generate_history(&full, "main", opts.large_commits, opts.large_mb << 20);
                    } else {
                        gh.commits(&full, "main", 2 + i % 4);
                    }
                }
            });
        }
    });
}

/// An in-process server state on a fresh SQLite store, the stand-in's user `(GitHub id, login,
/// token)` logged in (token sealed as `login` would), and one account job on the user's own
/// account with `options`, whose scheduled time is a day away.
pub(crate) async fn app(
    gh: &GitHubStandIn,
    workers: usize,
    dir: &Path,
    (gh_id, login, token): (i64, &str, &str),
    options: JobOptions,
) -> anyhow::Result<(Arc<AppState>, UserRow, JobRow)> {
    let mut cfg = ServerConfig::with_data_dir(dir.join("server"));
    cfg.github_api_url = gh.api_url();
    cfg.workers = workers.max(1);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = AppState::new(cfg, clock).await?;
    let now = Utc::now();
    let sealed = state.sealer.seal(&Secret::new(token));
    let user = state.store.upsert_user(gh_id, login, &sealed, now).await?;
    let job = state
        .store
        .create_job(NewJob {
            user_id: user.id,
            target: login.into(),
            target_kind: TargetKind::Account,
            schedule: ghbs_core::Schedule::Daily { at: None },
            timezone: chrono_tz::UTC,
            retention: Retention::default(),
            options,
            next_run_at: now + chrono::Duration::days(1),
            created_at: now,
        })
        .await?;
    Ok((state, user, job))
}

/// "Run now" (as `POST /api/v1/jobs/{id}/runs` queues it) and let the scheduler run it.
pub(crate) async fn run_job(
    gh: &GitHubStandIn,
    state: &Arc<AppState>,
    scheduler: &Scheduler,
    user: &UserRow,
    job: &JobRow,
) -> anyhow::Result<RunFigures> {
    gh.clear_requests();
    let queued = state.store.request_run(user.id, job.id, Utc::now()).await?;
    let started = Instant::now();
    let n = scheduler.run_due_once().await;
    let wall = started.elapsed();
    let row = state.store.get_run(user.id, queued.id).await?;
    if n != 1 || row.status != RunStatus::Succeeded {
        eprintln!(
            "warning: {n} runs executed; run {} is {}: {}",
            row.id,
            row.status.as_str(),
            row.error.as_deref().unwrap_or("")
        );
    }
    Ok(RunFigures {
        wall,
        row,
        log: gh.requests(),
    })
}
