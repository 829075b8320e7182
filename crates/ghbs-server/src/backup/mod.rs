//! The product's executor: one run of a job = resolve its repositories on GitHub, fetch each
//! mirror incrementally (or skip git when GitHub says nothing was pushed), capture metadata and
//! the wiki when the job asks for them ([`metadata`]), commit a snapshot, make it visible, then
//! apply retention.

mod carry;
mod conversations;
mod github;
mod lifecycle;
mod metadata;
mod retention;
mod retry;

pub use lifecycle::{purge_backups, settle_pending_snapshots};
pub use metadata::{wiki_key, FULL_SYNC_EVERY as FULL_METADATA_SYNC_EVERY};
pub use retention::{apply_retention, forget_repo, storage_gc_loop};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use ghbs_core::{FailureKind, Secret, Target};
use ghbs_engine::{Manifest, RepoCapture, RepoSource};
use ghbs_github::{GhRepo, GitHubError, Session};
use ghbs_store::{Claim, JobPatch, JobRepoRow, JobRow, NewSnapshot};
use ghbs_wire::{SnapshotRepo, TargetKind};
use serde::{Deserialize, Serialize};

use self::carry::{History, Missing};
use self::github::{ProgressBridge, StoreCache};
use self::metadata::MetaState;
use crate::executor::{ExecOutcome, Executor, RetryScope, RunProgress};
use crate::metrics::Metrics;
use crate::state::RunContext;

/// A real fetch happens at least every this many runs even when GitHub reports no push, so
/// nothing `pushed_at` misses (for example a deleted tag) goes unnoticed for long.
pub const FULL_FETCH_EVERY: u32 = 7;

/// Mirrors are stored under the job-repository row id: never a path built from user input.
pub fn mirror_key(job_repo_id: i64) -> String {
    format!("r{job_repo_id}")
}

/// The mirror of a repository's wiki (what a purge removes besides [`mirror_key`]).
pub fn wiki_mirror_key(job_repo_id: i64) -> String {
    wiki_key(&mirror_key(job_repo_id))
}

/// What the engine remembers per repository between runs (stored as JSON in `job_repos.state`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
struct RepoState {
    pushed_at: Option<String>,
    runs_since_fetch: u32,
    pull_refs: bool,
    meta: MetaState,
    /// Set while the repository is gone upstream (as this job sees it): since when. It is
    /// carried forward, and its last capture kept, until `forget-repo` removes it.
    gone_since: Option<DateTime<Utc>>,
}

pub struct BackupExecutor;

#[async_trait]
impl Executor for BackupExecutor {
    async fn execute(
        &self,
        state: &Arc<RunContext>,
        claim: &Claim,
        progress: RunProgress,
    ) -> ExecOutcome {
        let mut spent = Spent::default();
        let scope = RetryScope::of(claim);
        let result = run(
            state,
            &claim.job,
            claim.run.id,
            scope,
            &progress,
            &mut spent,
        )
        .await;
        let mut outcome = match result {
            Ok(recorded) => ExecOutcome {
                error: recorded.problems,
                bytes_fetched: recorded.bytes as i64,
                snapshot_id: Some(recorded.snapshot_id),
                retry_repos: recorded.retry_repos,
                ..Default::default()
            },
            Err(ended) => ended,
        };
        outcome.api_requests = spent.counted as i64;
        outcome.api_requests_conditional = spent.conditional as i64;
        Metrics::add(&state.metrics.github_requests, spent.counted);
        Metrics::add(&state.metrics.github_conditional_hits, spent.conditional);
        Metrics::add(
            &state.metrics.bytes_fetched,
            outcome.bytes_fetched.max(0) as u64,
        );
        outcome
    }
}

#[derive(Default)]
struct Spent {
    counted: u64,
    conditional: u64,
}

fn github_failure(e: GitHubError, what: &str) -> ExecOutcome {
    match e.kind {
        FailureKind::Unauthorized => ExecOutcome {
            error: Some(format!(
                "GitHub rejected the stored token while {what}: run `github-backup-scheduler login` with a new token"
            )),
            needs_login: true,
            failure: Some(FailureKind::Unauthorized),
            ..Default::default()
        },
        FailureKind::NotFound => ExecOutcome::failed_as(
            FailureKind::NotFound,
            format!(
                "{what}: GitHub answers 404 (deleted, renamed away, or your token cannot see it); \
                 earlier backups are kept. Not retried: check the name and the token's access, \
                 or delete the job"
            ),
        ),
        FailureKind::Permanent => ExecOutcome::failed_as(
            FailureKind::Permanent,
            format!(
                "{what}: {}. Not retried: check the token's access, then `run` the job again",
                e.message
            ),
        ),
        kind => ExecOutcome::failed_as(kind, format!("{what}: {}", e.message)),
    }
}

async fn run(
    state: &Arc<RunContext>,
    job: &JobRow,
    run_id: i64,
    scope: Option<RetryScope>,
    progress: &RunProgress,
    spent: &mut Spent,
) -> Result<Recorded, ExecOutcome> {
    let store = &state.store;
    // Our own side failing (database, disk) is ours to retry, never the caller's fault.
    let internal = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "backup failed on the server side");
        ExecOutcome::failed_as(
            FailureKind::Transient,
            "the server could not record this backup (database or disk error); it will be retried",
        )
    };
    let user = store
        .get_user(job.user_id)
        .await
        .map_err(|e| store_failure(state, &e))?;
    let token = state
        .sealer
        .open(&user.token_sealed)
        .map_err(|e| ExecOutcome {
            error: Some(e.to_string()),
            needs_login: true,
            failure: Some(FailureKind::Unauthorized),
            ..Default::default()
        })?;
    let session = state.github.session(
        token.clone(),
        Arc::new(StoreCache {
            store: store.clone(),
            user_id: user.id,
        }),
        Arc::new(ProgressBridge {
            progress: progress.clone(),
            state: state.clone(),
            waiting_since: Default::default(),
        }),
    );
    let snapshot_key = uuid::Uuid::new_v4().to_string();
    let result = resolve_and_fetch(state, job, &session, &token, &snapshot_key, scope).await;
    let c = session.counters();
    spent.counted = c.counted;
    spent.conditional = c.conditional_hits;
    let fetched = match result {
        Ok(f) => f,
        Err(e) => {
            discard_metadata(state, &snapshot_key).await;
            return Err(e);
        }
    };
    progress.set(Some("recording snapshot")).await;

    let manifest = Manifest {
        snapshot_key,
        repos: fetched.captures,
    };
    if let Err(e) = state.engine.commit_snapshot(&manifest).await {
        // No row exists: the refs some mirrors may already hold go with the metadata.
        if let Err(err) = state.engine.forget_pending(&manifest.snapshot_key).await {
            tracing::warn!(error = %err, "could not forget a failed snapshot; retried at the next start");
            discard_metadata(state, &manifest.snapshot_key).await;
        }
        if e.kind == FailureKind::StorageFull {
            tracing::error!(error = %e, "snapshot not recorded: disk full");
            return Err(ExecOutcome::failed_as(
                FailureKind::StorageFull,
                format!(
                    "{}; this snapshot was not recorded, earlier snapshots are kept",
                    state.engine.disk_full_message()
                ),
            ));
        }
        // The storage (a bucket, or the local backups folder) refused or failed: say so, with
        // its message (secrets are scrubbed from it at the storage boundary). Its `NotFound`
        // is ours, not a repository gone upstream.
        tracing::error!(error = %e, "snapshot not recorded: the storage failed");
        let kind = match e.kind {
            FailureKind::Permanent => FailureKind::Permanent,
            _ => FailureKind::Transient,
        };
        return Err(ExecOutcome::failed_as(
            kind,
            format!(
                "the backup storage failed ({}); this snapshot was not recorded, earlier \
                 snapshots are kept{}",
                e.message,
                if kind == FailureKind::Transient {
                    "; it will be retried"
                } else {
                    ""
                }
            ),
        ));
    }
    let keys: Vec<String> = manifest.repos.iter().map(|r| r.key.clone()).collect();
    let repo_count = fetched.summary.len();
    let size = state.engine.disk_usage(&keys).await.unwrap_or(0);
    let snapshot = store
        .insert_snapshot(NewSnapshot {
            job_id: job.id,
            run_id,
            created_at: state.clock.now(),
            refs: manifest.repos.iter().map(|r| r.refs.len() as u64).sum(),
            size_bytes: size as i64,
            repos: fetched.summary,
            manifest: serde_json::to_value(&manifest).map_err(|e| internal(&e))?,
        })
        .await
        // The snapshot stays pending: a failed insert may still have been committed (the
        // connection lost after COMMIT), so forgetting it now could delete a snapshot the
        // database lists. The next start asks the database and settles it either way.
        .map_err(|e| store_failure(state, &e))?;
    if let Err(e) = state.engine.confirm_snapshot(&manifest.snapshot_key).await {
        tracing::warn!(error = %e, "could not confirm a recorded snapshot; the next start does");
    }
    // Only now that the snapshot is visible may the per-repository checkpoints advance.
    for (id, st) in fetched.states {
        if let Err(e) = store
            .set_job_repo_state(id, &serde_json::to_value(&st).unwrap_or_default())
            .await
        {
            tracing::warn!(error = %e, "could not save repository state; the next run fetches again");
        }
    }
    if let Err(e) = apply_retention(state, job).await {
        tracing::warn!(error = %e, "retention failed; it will be applied after the next run");
    }
    progress.set(None).await;
    // One line per repository not captured whole: `run --wait` prints them as they are.
    let error = (!fetched.problems.is_empty()).then(|| {
        format!(
            "{} of {} repositories were not captured whole by this run:\n{}",
            fetched.problems.len(),
            repo_count,
            fetched
                .problems
                .iter()
                .map(|line| format!("- {line}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    Ok(Recorded {
        snapshot_id: snapshot.id,
        problems: error,
        bytes: fetched.bytes,
        retry_repos: fetched.retry_repos,
    })
}

/// A run that recorded a snapshot. (The other way a run ends, without one, is the
/// `ExecOutcome` the scheduler records as it is: failed, or needs-login.)
struct Recorded {
    snapshot_id: i64,
    /// One line per repository not captured whole; `Some` makes the run `partial`.
    problems: Option<String>,
    bytes: u64,
    /// Repositories that failed for a passing reason (a retry fetches these).
    retry_repos: Vec<String>,
}

/// A database failure as the run reports it: a full disk says so with the free space (the
/// user can act on it); anything else is logged here and named without driver text.
fn store_failure(state: &RunContext, e: &ghbs_store::StoreError) -> ExecOutcome {
    tracing::error!(error = %e, "backup failed on the server side (database)");
    match e {
        ghbs_store::StoreError::StorageFull(_) => ExecOutcome::failed_as(
            FailureKind::StorageFull,
            format!(
                "{}; earlier snapshots are kept",
                state.engine.disk_full_message()
            ),
        ),
        _ => ExecOutcome::failed_as(
            FailureKind::Transient,
            "the server could not record this backup (database error); it will be retried",
        ),
    }
}

/// Removes the metadata folders a run wrote for a snapshot that will not be recorded.
async fn discard_metadata(state: &RunContext, snapshot_key: &str) {
    let manifest = Manifest {
        snapshot_key: snapshot_key.to_owned(),
        repos: Vec::new(),
    };
    if let Err(e) = state.engine.drop_snapshots(&[manifest]).await {
        tracing::warn!(error = %e, "could not discard the metadata of a failed run");
    }
}

struct FetchResult {
    /// Every repository the snapshot holds: captured now or carried forward.
    captures: Vec<RepoCapture>,
    summary: Vec<SnapshotRepo>,
    states: Vec<(i64, RepoState)>,
    /// One line per repository not captured whole (failed, gone upstream, metadata incomplete).
    problems: Vec<String>,
    bytes: u64,
    /// Mirror keys of the repositories whose fetch failed for a passing reason.
    retry_repos: Vec<String>,
}

/// Whether a job's repository row is this GitHub repository (by id, which survives renames;
/// by name for rows recorded before GitHub's id was known).
fn same_repo(row: &JobRepoRow, gh: &GhRepo) -> bool {
    match row.github_id {
        Some(id) => id == gh.id,
        None => row.full_name.eq_ignore_ascii_case(&gh.full_name),
    }
}

async fn resolve_and_fetch(
    state: &Arc<RunContext>,
    job: &JobRow,
    session: &Session,
    token: &Secret,
    snapshot_key: &str,
    scope: Option<RetryScope>,
) -> Result<FetchResult, ExecOutcome> {
    let target = Target::parse(&job.target)
        .map_err(|e| ExecOutcome::failed_as(FailureKind::Permanent, e.to_string()))?;
    let known = state
        .store
        .list_job_repos(job.id)
        .await
        .map_err(|e| store_failure(state, &e))?;
    let known_rows = known.clone();
    let now = state.clock.now();
    // Repositories this job backed up before that GitHub no longer shows it: kept, carried
    // forward (see `carry`), never silently left out.
    let mut gone: Vec<JobRepoRow> = Vec::new();
    let repos: Vec<GhRepo> = match &target {
        Target::Repository { owner, name } => {
            let what = format!("looking up {owner}/{name}");
            match session.repo(owner, name).await {
                Ok(fetched) => {
                    if let Some(new_name) = &fetched.moved_to {
                        follow_rename(state, job, new_name).await;
                    }
                    vec![fetched.value]
                }
                Err(e) if e.kind == FailureKind::NotFound && !known.is_empty() => {
                    gone = known;
                    Vec::new()
                }
                Err(e) => return Err(github_failure(e, &what)),
            }
        }
        Target::Account { owner } => {
            let what = format!("listing the repositories of {owner}");
            let all = session
                .account_repos(owner)
                .await
                .map_err(|e| github_failure(e, &what))?;
            let o = &job.options;
            let picked: Vec<GhRepo> = all
                .into_iter()
                .filter(|r| {
                    (o.include_forks || !r.fork)
                        && (o.include_archived || !r.archived)
                        && (o.include_private || !r.private)
                })
                .collect();
            gone = known
                .into_iter()
                .filter(|row| !picked.iter().any(|gh| same_repo(row, gh)))
                .collect();
            if picked.is_empty() && gone.is_empty() {
                return Err(ExecOutcome::failed_as(
                    FailureKind::Permanent,
                    format!(
                        "account {owner} has no repositories your token can see that match this \
                         job's filters. Not retried: change the filters or the token's access"
                    ),
                ));
            }
            picked
        }
    };
    // A retry of a partial run fetches only what failed for a passing reason; every other
    // repository is taken as the earlier attempt's snapshot holds it (see `retry`).
    let (repos, reused) = match &scope {
        Some(scope) => retry::split(state, job.id, scope, &known_rows, repos, snapshot_key).await,
        None => (repos, Vec::new()),
    };
    // Repositories of one run are fetched a few at a time: git and GitHub latency overlap, and
    // the engine serialises work per mirror anyway. `--repo-parallelism` (default: `--workers`)
    // bounds it; at most workers × repo_parallelism git processes then run at once.
    let parallel = state.cfg.repo_parallelism.max(1);
    // A fatal error (database, a single-repository job's fetch) ends the run: repositories not
    // started yet are skipped, those in flight finish (cancelling them would leave git and
    // metadata writes half-done for the clean-up to handle).
    let abort = AtomicBool::new(false);
    let abort = &abort;
    let results: Vec<Result<RepoOutcome, ExecOutcome>> = stream::iter(repos)
        .map(|gh| async move {
            if abort.load(Ordering::Relaxed) {
                return Ok(RepoOutcome::Skipped);
            }
            let result = back_up_repo(state, job, session, token, snapshot_key, gh).await;
            if result.is_err() {
                abort.store(true, Ordering::Relaxed);
            }
            result
        })
        .buffer_unordered(parallel)
        .collect()
        .await;

    let mut out = FetchResult {
        captures: vec![],
        summary: vec![],
        states: vec![],
        problems: vec![],
        bytes: 0,
        retry_repos: vec![],
    };
    let retrying = scope.is_some();
    let reused_count = reused.len();
    for r in reused {
        if r.summary.is_partial() {
            out.problems.push(format!(
                "{}: not fetched again by this retry, as the earlier attempt left it: {}",
                r.summary.full_name, r.summary.status
            ));
        }
        out.captures.push(r.capture);
        out.summary.push(r.summary);
    }
    let mut fatal = None;
    let mut failed = Vec::new();
    let mut captured_now = 0;
    for result in results {
        match result {
            Err(e) => {
                fatal.get_or_insert(e);
            }
            Ok(RepoOutcome::Skipped) => {}
            Ok(RepoOutcome::Failed(f)) => {
                out.bytes += f.bytes;
                if f.kind.retried_at_slot() {
                    out.retry_repos.push(f.key.clone());
                }
                failed.push(f);
            }
            Ok(RepoOutcome::Done(done)) => {
                captured_now += 1;
                out.bytes += done.bytes;
                out.problems.extend(done.incomplete);
                out.summary.push(done.summary);
                out.captures.push(done.capture);
                out.states.push(done.state);
            }
        }
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    if captured_now == 0 && !failed.is_empty() {
        // Nothing new to record (GitHub or the network is down for this job): no snapshot, so
        // retention does not run and every earlier snapshot stays. A retry whose repositories
        // all failed again leaves the earlier attempt's snapshot the newest, as good as before.
        let lines: Vec<String> = failed.iter().map(|f| f.failure.clone()).collect();
        let what = if retrying {
            format!(
                "this retry could fetch none of the {} repositories that failed (the other {} \
                 are in the earlier attempt's snapshot)",
                failed.len(),
                reused_count
            )
        } else {
            "no repository could be backed up".to_owned()
        };
        return Err(ExecOutcome {
            failure: Some(worst(&failed)),
            error: Some(format!(
                "{what}; earlier snapshots are kept:\n{}",
                lines
                    .iter()
                    .map(|line| format!("- {line}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )),
            bytes_fetched: out.bytes as i64,
            ..Default::default()
        });
    }
    let failed_kinds: Vec<FailureKind> = failed.iter().map(|f| f.kind).collect();
    carry_forward(state, job.id, snapshot_key, now, failed, gone, &mut out).await?;
    // Completion order is arbitrary: the manifest and the summary list repositories by name.
    out.captures.sort_by(|a, b| a.full_name.cmp(&b.full_name));
    out.summary.sort_by(|a, b| a.full_name.cmp(&b.full_name));
    out.problems.sort();
    if out.captures.is_empty() {
        return Err(ExecOutcome {
            failure: Some(worst(&failed_kinds)),
            error: Some(format!(
                "nothing could be backed up and no earlier copy exists:\n{}",
                out.problems
                    .iter()
                    .map(|line| format!("- {line}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )),
            bytes_fetched: out.bytes as i64,
            ..Default::default()
        });
    }
    Ok(out)
}

/// A last copy whose mirror still holds its objects. One whose mirror is gone or damaged
/// (removed by hand, a lost disk) cannot be carried: recording its refs would fail the whole snapshot, and with it the
/// backup of every other repository.
async fn usable<'a>(
    state: &RunContext,
    copy: Option<carry::LastCopy<'a>>,
) -> Option<carry::LastCopy<'a>> {
    let copy = copy?;
    match state.engine.has_objects(copy.key(), copy.shas()).await {
        Ok(true) => Some(copy),
        _ => {
            tracing::error!(repo = %copy.capture_name(), "the mirror holding this repository's last copy is missing");
            None
        }
    }
}

/// Puts the last good copy of each repository this run could not capture into its snapshot
/// (see `carry`): those whose fetch failed, and those gone upstream (whose state records since
/// when). A gone repository that was never captured has nothing to keep and is left out.
async fn carry_forward(
    state: &RunContext,
    job_id: i64,
    snapshot_key: &str,
    now: DateTime<Utc>,
    failed: Vec<RepoFailed>,
    gone: Vec<JobRepoRow>,
    out: &mut FetchResult,
) -> Result<(), ExecOutcome> {
    if failed.is_empty() && gone.is_empty() {
        return Ok(());
    }
    let internal = |e: &ghbs_engine::EngineError| {
        tracing::error!(error = %e, "carrying repositories forward failed");
        let kind = if e.kind == FailureKind::StorageFull {
            FailureKind::StorageFull
        } else {
            FailureKind::Transient
        };
        ExecOutcome::failed_as(
            kind,
            if kind == FailureKind::StorageFull {
                format!(
                    "{}; earlier snapshots are kept",
                    state.engine.disk_full_message()
                )
            } else {
                "the server could not record this backup (disk error); it will be retried"
                    .to_owned()
            },
        )
    };
    let history = History::load(state.store.as_ref(), job_id)
        .await
        .map_err(|e| store_failure(state, &e))?;
    for f in failed {
        let why = Missing::Failed(f.error);
        let copy = usable(state, history.last_copy(&f.key)).await;
        out.problems.push(carry::problem_line(
            &f.full_name,
            &why,
            copy.as_ref().map(|c| &c.carried),
        ));
        match copy {
            Some(copy) => {
                let (capture, summary) =
                    carry::carry(&state.engine, snapshot_key, &f.full_name, &copy, &why)
                        .await
                        .map_err(|e| internal(&e))?;
                out.captures.push(capture);
                out.summary.push(summary);
            }
            None => out
                .summary
                .push(carry::failed_summary(&f.full_name, f.default_branch, &why)),
        }
    }
    for row in gone {
        let key = mirror_key(row.id);
        let Some(copy) = usable(state, history.last_copy(&key)).await else {
            tracing::info!(repo = %row.full_name, "gone upstream and never captured: nothing to keep");
            continue;
        };
        let mut st: RepoState = serde_json::from_value(row.state.clone()).unwrap_or_default();
        let since = *st.gone_since.get_or_insert(now);
        let why = Missing::Gone(since);
        // The name it had when it was captured (a displaced row's name carries a marker).
        let full_name = copy.capture_name().to_owned();
        out.problems
            .push(carry::problem_line(&full_name, &why, Some(&copy.carried)));
        let (capture, summary) = carry::carry(&state.engine, snapshot_key, &full_name, &copy, &why)
            .await
            .map_err(|e| internal(&e))?;
        out.captures.push(capture);
        out.summary.push(summary);
        out.states.push((row.id, st));
    }
    Ok(())
}

/// What one repository contributed to a run.
enum RepoOutcome {
    Done(Box<RepoDone>),
    /// Its fetch failed (account jobs: the other repositories still make a snapshot, which
    /// carries this one's last good copy).
    Failed(RepoFailed),
    /// Not attempted: another repository's fatal error ended the run.
    Skipped,
}

struct RepoFailed {
    key: String,
    /// Whether a retry may help (a passing failure) or not.
    kind: FailureKind,
    full_name: String,
    default_branch: Option<String>,
    /// What went wrong, for a person.
    error: String,
    /// `full_name: error`.
    failure: String,
    bytes: u64,
}

struct RepoDone {
    capture: RepoCapture,
    summary: SnapshotRepo,
    /// Checkpoint saved once the snapshot is visible.
    state: (i64, RepoState),
    incomplete: Option<String>,
    bytes: u64,
}

/// Fetches one repository (or reuses its mirror when GitHub reports no push) and captures its
/// metadata. `Err` ends the whole run.
async fn back_up_repo(
    state: &Arc<RunContext>,
    job: &JobRow,
    session: &Session,
    token: &Secret,
    snapshot_key: &str,
    gh: GhRepo,
) -> Result<RepoOutcome, ExecOutcome> {
    let row = state
        .store
        .job_repo(job.id, &gh.full_name, Some(gh.id))
        .await
        .map_err(|e| store_failure(state, &e))?;
    let key = mirror_key(row.id);
    let mut st: RepoState = serde_json::from_value(row.state.clone()).unwrap_or_default();
    let unchanged = st.pushed_at.is_some()
        && st.pushed_at == gh.pushed_at
        && st.pull_refs == job.options.pull_refs
        && st.runs_since_fetch + 1 < FULL_FETCH_EVERY;
    let mut bytes = 0;
    let mut refs = None;
    if unchanged {
        if let Ok(r) = state.engine.mirror_refs(&key).await {
            if !r.is_empty() {
                st.runs_since_fetch += 1;
                refs = Some(r);
            }
        }
    }
    let refs = match refs {
        Some(r) => r,
        None => {
            let src = RepoSource {
                key: key.clone(),
                full_name: gh.full_name.clone(),
                clone_url: gh.clone_url.clone(),
                pull_refs: job.options.pull_refs,
            };
            match state.engine.fetch(&src, Some(token)).await {
                Ok(f) => {
                    bytes += f.bytes_fetched;
                    st = RepoState {
                        pushed_at: gh.pushed_at.clone(),
                        runs_since_fetch: 0,
                        pull_refs: job.options.pull_refs,
                        meta: st.meta,
                        gone_since: None,
                    };
                    f.refs
                }
                Err(e) if job.target_kind == TargetKind::Repository => {
                    state.metrics.repo_failed(e.kind);
                    // Git refusing one repository is that repository's failure; only GitHub
                    // rejecting the token itself (`GET /user`) makes the user log in again.
                    let token_rejected =
                        e.kind == FailureKind::Unauthorized && token_rejected(session).await;
                    let refused = e.kind == FailureKind::Unauthorized && !token_rejected;
                    let error = if refused {
                        format!(
                            "fetching {}: GitHub refused git access to this repository although \
                             the token is valid. Not retried: check the token's access to it ({})",
                            gh.full_name, e.message
                        )
                    } else {
                        format!("fetching {}: {}", gh.full_name, e.message)
                    };
                    return Err(ExecOutcome {
                        error: Some(error),
                        needs_login: token_rejected,
                        failure: Some(if refused {
                            FailureKind::Permanent
                        } else {
                            e.kind
                        }),
                        ..Default::default()
                    });
                }
                Err(e) => {
                    // Git refusing one repository of an account is that repository's failure:
                    // carried forward, not retried (only `GET /user` decides about the token).
                    let kind = match e.kind {
                        FailureKind::Unauthorized => FailureKind::Permanent,
                        other => other,
                    };
                    state.metrics.repo_failed(e.kind);
                    return Ok(RepoOutcome::Failed(RepoFailed {
                        kind,
                        key,
                        full_name: gh.full_name.clone(),
                        default_branch: gh.default_branch.clone(),
                        failure: format!("{}: {}", gh.full_name, e.message),
                        error: e.message,
                        bytes,
                    }));
                }
            }
        }
    };
    // Back on GitHub (or never gone): captured now.
    st.gone_since = None;
    let mut repo_summary = summary(&gh, refs.len() as u64, "ok".into(), state.clock.now());
    let mut metadata_dir = None;
    let mut incomplete = None;
    if job.options.metadata || job.options.wiki {
        let want = metadata::Job {
            engine: &state.engine,
            session,
            token,
            gh: &gh,
            key: &key,
            snapshot_key,
            metadata: job.options.metadata,
            release_assets: job.options.release_assets,
            wiki: job.options.wiki,
            pull_refs: job.options.pull_refs,
            now: state.clock.now(),
        };
        // Also when git was skipped: issues change without pushes.
        let captured = metadata::capture(&want, &st.meta).await?;
        bytes += captured.bytes;
        if !captured.problems.is_empty() {
            incomplete = Some(format!(
                "{}: metadata incomplete (kept from the previous snapshot; the next run fetches \
                 what was missed): {}",
                gh.full_name,
                captured.problems.join(", ")
            ));
            repo_summary.status = format!("metadata incomplete: {}", captured.problems.join(", "));
        }
        repo_summary.metadata = captured.counts;
        metadata_dir = Some(captured.dir);
        st.meta = captured.state;
    }
    Ok(RepoOutcome::Done(Box::new(RepoDone {
        capture: RepoCapture {
            key,
            full_name: gh.full_name.clone(),
            default_branch: gh.default_branch.clone(),
            refs,
            metadata_dir,
            carried: None,
        },
        summary: repo_summary,
        state: (row.id, st),
        incomplete,
        bytes,
    })))
}

/// The failure that decides about retrying a run none of whose repositories could be fetched:
/// a passing one if any (a retry may get that one), else a permanent one.
fn worst<'a>(kinds: impl IntoIterator<Item = &'a (impl HasKind + 'a)>) -> FailureKind {
    let kinds: Vec<FailureKind> = kinds.into_iter().map(HasKind::kind).collect();
    kinds
        .iter()
        .copied()
        .find(|k| k.retried_at_slot())
        .or_else(|| kinds.first().copied())
        .unwrap_or(FailureKind::Permanent)
}

trait HasKind {
    fn kind(&self) -> FailureKind;
}

impl HasKind for RepoFailed {
    fn kind(&self) -> FailureKind {
        self.kind
    }
}

impl HasKind for FailureKind {
    fn kind(&self) -> FailureKind {
        *self
    }
}

/// Whether GitHub rejects the token as a whole (`GET /user` answers 401), as opposed to one
/// repository being refused to it.
async fn token_rejected(session: &Session) -> bool {
    matches!(session.user().await, Err(e) if e.kind == FailureKind::Unauthorized)
}

fn summary(gh: &GhRepo, refs: u64, status: String, now: DateTime<Utc>) -> SnapshotRepo {
    SnapshotRepo {
        full_name: gh.full_name.clone(),
        default_branch: gh.default_branch.clone(),
        refs,
        status,
        captured_at: Some(now),
        ..SnapshotRepo::default()
    }
}

/// GitHub answered 301: the repository was renamed or transferred. Point the job at the new name
/// so listings show it; the mirror is keyed by GitHub's repository id and stays.
async fn follow_rename(state: &RunContext, job: &JobRow, new_name: &str) {
    let patch = JobPatch {
        target: Some(new_name.to_string()),
        ..Default::default()
    };
    match state.store.update_job(job.user_id, job.id, patch).await {
        Ok(_) => {
            tracing::info!(from = %job.target, to = %new_name, "repository moved; job updated")
        }
        Err(e) => {
            tracing::warn!(error = %e, to = %new_name, "repository moved but the job could not be renamed")
        }
    }
}
