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
use crate::s3_backup;

const OWNER: &str = "bench";

/// Options of the `backup` subcommand (see `main.rs` for the flags).
pub struct BackupBench {
    pub repos: usize,
    pub large: usize,
    pub large_commits: usize,
    pub large_mb: usize,
    pub parallel: usize,
    pub storage: StorageChoice,
}

/// `--storage`: which backup storage the benchmark measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageChoice {
    /// The data folder (`storage_url` unset), as a default installation.
    File,
    /// A fresh bucket on `TEST_S3_ENDPOINT`.
    S3,
    /// Both, one after the other on the same world.
    Both,
}

impl StorageChoice {
    fn file(self) -> bool {
        self != StorageChoice::S3
    }
    fn s3(self) -> bool {
        self != StorageChoice::File
    }
    fn describe(self) -> &'static str {
        match self {
            StorageChoice::File => "file (the data folder)",
            StorageChoice::S3 => "s3 (TEST_S3_ENDPOINT)",
            StorageChoice::Both => "file (the data folder) and s3 (TEST_S3_ENDPOINT)",
        }
    }
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
            "{} repositories ({} large: {} commits, {} MB each; the rest 2-5 commits), {} workers / {} plain git at a time, storage: {}",
            opts.repos,
            large,
            opts.large_commits,
            opts.large_mb,
            opts.parallel,
            opts.parallel,
            opts.storage.describe()
        ),
    );
    let bucket = if opts.storage.s3() {
        s3_backup::bucket().await
    } else {
        None
    };
    if bucket.is_none() && !opts.storage.file() {
        return Ok(());
    }
    let dir = tempfile::Builder::new().prefix("ghbs-bench-").tempdir()?;
    let gh = GitHubStandIn::start().await;
    let (gh_id, token) = gh.add_user(OWNER);

    let started = Instant::now();
    build_world(&gh, &opts, large);
    figure(
        "world built in the stand-in",
        format!("{} repositories in {}", opts.repos, secs(started.elapsed())),
    );

    let login = (gh_id, OWNER, token.as_str());
    let file = if opts.storage.file() {
        Some(Node::new(&gh, opts.parallel, dir.path(), login, |_| {}).await?)
    } else {
        None
    };
    let s3 = match &bucket {
        Some(b) => Some(
            Node::new(&gh, opts.parallel, &dir.path().join("s3"), login, |cfg| {
                b.configure(cfg)
            })
            .await?,
        ),
        None => None,
    };
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
    // sides of the wire (not the S3 endpoint, another process).
    let mut file_first = None;
    if let Some(node) = &file {
        let (r1, cpu) = node.run_timed(&gh).await?;
        figure(
            "1. first backup",
            format!("{} ({cpu:.1} CPU-s) — {}", secs(r1.wall), r1.summary()),
        );
        file_first = Some((r1, cpu));
    }
    let mut s3_first = None;
    if let (Some(node), Some(b)) = (&s3, &bucket) {
        let (r1, cpu) = node.run_timed(&gh).await?;
        figure(
            "1. first backup, s3://",
            format!("{} ({cpu:.1} CPU-s) — {}", secs(r1.wall), r1.summary()),
        );
        figure("   bucket after it", b.usage().await?);
        s3_first = Some((r1, cpu));
    }
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
    if let Some((r1, cpu)) = &file_first {
        ratio("1. first backup / plain clone", r1.wall, clone, 1.0);
        figure(
            "1. CPU-seconds, first backup / plain clone",
            format!("{:.2}x", cpu / clone_cpu.max(0.01)),
        );
    }
    if let Some((r1, cpu)) = &s3_first {
        figure(
            "1. s3:// first backup / plain clone",
            format!(
                "{:.2}× wall, {:.2}× CPU-s",
                r1.wall.as_secs_f64() / clone.as_secs_f64().max(1e-9),
                cpu / clone_cpu.max(0.01)
            ),
        );
    }
    if let (Some((f, f_cpu)), Some((s, s_cpu))) = (&file_first, &s3_first) {
        ratio(
            "1. s3:// first backup / file first backup",
            s.wall,
            f.wall,
            1.3,
        );
        figure(
            "1. CPU-seconds, s3:// / file first backup",
            format!("{:.2}x", s_cpu / f_cpu.max(0.01)),
        );
    }

    // (2) Nothing changed.
    let mut file_unchanged = None;
    if let Some(node) = &file {
        let r2 = node.run(&gh).await?;
        unchanged_figures("2.", &r2, opts.repos);
        file_unchanged = Some(r2);
    }
    if let Some(node) = &s3 {
        let r2 = node.run(&gh).await?;
        unchanged_figures("2. s3://", &r2, opts.repos);
        if let Some(f) = &file_unchanged {
            let extra = (
                r2.rest().count() as i64 - f.rest().count() as i64,
                r2.counted() as i64 - f.counted() as i64,
                r2.git() as i64 - f.git() as i64,
            );
            against(
                "2. s3:// GitHub requests beyond file's",
                format!(
                    "{:+} REST ({:+} counted), {:+} git",
                    extra.0, extra.1, extra.2
                ),
                "none",
                extra == (0, 0, 0),
            );
        }
    }

    // (2c) A cold node: an empty data folder on the same database and bucket runs the job once
    // more (nothing changed upstream), so it hydrates every mirror from the bucket first.
    if let (Some(node), Some(b), Some((r1, _))) = (&s3, &bucket, &s3_first) {
        let fresh: Vec<(String, PathBuf)> = (0..opts.repos)
            .map(|i| {
                let dest = dir.path().join(format!("plain-fresh/repo-{i:04}.git"));
                (gh.clone_url(&name(i)), dest)
            })
            .collect();
        let cold_dir = dir.path().join("s3-cold");
        s3_backup::cold_node(&gh, node, b, r1, &cold_dir, (&plain, &fresh, opts.parallel)).await?;
    }

    let Some(file) = file else {
        println!("(steps 3 and the unchanged-run breakdown run with --storage file or both)");
        return Ok(());
    };
    // (3) Pushes to 10 % of the repositories (every tenth one, one commit each).
    let changed: Vec<usize> = (0..opts.repos).step_by(10).collect();
    for &i in &changed {
        gh.commits(&name(i), "main", 1);
    }
    let r3 = file.run(&gh).await?;
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
    if let Some((r1, _)) = &file_first {
        figure(
            "   per repository: first backup / serial clone",
            format!(
                "{:.1} ms / {:.1} ms",
                r1.wall.as_secs_f64() * 1000.0 / opts.repos as f64,
                clone_serial.as_secs_f64() * 1000.0 / opts.repos as f64
            ),
        );
    }
    crate::breakdown::unchanged_run(&file.state, &file.job).await
}

/// The figures of an unchanged run and its targets (under 2 s, under one counted request per
/// repository).
fn unchanged_figures(prefix: &str, r: &RunFigures, repos: usize) {
    figure(&format!("{prefix} unchanged run"), r.summary());
    against(
        &format!("{prefix} unchanged run, wall time"),
        secs(r.wall),
        "< 2 s",
        r.wall < Duration::from_secs(2),
    );
    let per_repo = r.counted() as f64 / repos as f64;
    against(
        &format!("{prefix} counted API requests per repository"),
        format!("{per_repo:.3} ({} / {repos})", r.counted()),
        "< 1",
        per_repo < 1.0,
    );
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

/// One server node of the benchmark: its state, the logged-in user, the account job, and a
/// scheduler with the real backup executor.
pub(crate) struct Node {
    pub state: Arc<AppState>,
    pub user: UserRow,
    pub job: JobRow,
    scheduler: Scheduler,
}

impl Node {
    /// A node on a fresh SQLite store under `dir` (see [`app_with`]).
    async fn new(
        gh: &GitHubStandIn,
        workers: usize,
        dir: &Path,
        login: (i64, &str, &str),
        configure: impl FnOnce(&mut ServerConfig),
    ) -> anyhow::Result<Node> {
        let (state, user, job) =
            app_with(gh, workers, dir, login, JobOptions::default(), configure).await?;
        Ok(Node::with(state, user, job))
    }

    fn with(state: Arc<AppState>, user: UserRow, job: JobRow) -> Node {
        let scheduler = Scheduler::new(state.clone(), Arc::new(BackupExecutor));
        Node {
            state,
            user,
            job,
            scheduler,
        }
    }

    /// Another node on the same database and storage, with an empty data folder `dir`.
    pub async fn cold(&self, dir: &Path) -> anyhow::Result<Node> {
        let mut cfg: ServerConfig = (*self.state.cfg).clone();
        cfg.data_dir = dir.join("server");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let state = AppState::new(cfg, clock).await?;
        Ok(Node::with(state, self.user.clone(), self.job.clone()))
    }

    pub async fn run(&self, gh: &GitHubStandIn) -> anyhow::Result<RunFigures> {
        run_job(gh, &self.state, &self.scheduler, &self.user, &self.job).await
    }

    /// [`Node::run`] and the CPU-seconds of this process and the git it waited for meanwhile.
    pub async fn run_timed(&self, gh: &GitHubStandIn) -> anyhow::Result<(RunFigures, f64)> {
        let cpu = report::cpu_seconds();
        let r = self.run(gh).await?;
        Ok((r, report::cpu_seconds() - cpu))
    }
}

/// [`app_with`] with the default configuration.
pub(crate) async fn app(
    gh: &GitHubStandIn,
    workers: usize,
    dir: &Path,
    login: (i64, &str, &str),
    options: JobOptions,
) -> anyhow::Result<(Arc<AppState>, UserRow, JobRow)> {
    app_with(gh, workers, dir, login, options, |_| {}).await
}

/// An in-process server state on a fresh SQLite store, the stand-in's user `(GitHub id, login,
/// token)` logged in (token sealed as `login` would), and one account job on the user's own
/// account with `options`, whose scheduled time is a day away. `configure` adjusts the
/// configuration last (storage, master key).
pub(crate) async fn app_with(
    gh: &GitHubStandIn,
    workers: usize,
    dir: &Path,
    (gh_id, login, token): (i64, &str, &str),
    options: JobOptions,
    configure: impl FnOnce(&mut ServerConfig),
) -> anyhow::Result<(Arc<AppState>, UserRow, JobRow)> {
    let mut cfg = ServerConfig::with_data_dir(dir.join("server"));
    cfg.github_api_url = gh.api_url();
    cfg.workers = workers.max(1);
    configure(&mut cfg);
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
