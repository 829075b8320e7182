//! The scheduler: the database is the schedule. A loop claims due jobs under a lease, runs them
//! in a bounded pool, heartbeats the lease, records the outcome and the next run time.
//! No per-job timers and no in-memory job list: a restart loses nothing by construction.

use std::sync::Arc;

use ghbs_core::FailureKind;
use ghbs_store::{Claim, RetryPlan, RunOutcome};
use ghbs_wire::{RunStatus, RunTrigger};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::executor::{ExecOutcome, Executor, RetryScope, RunProgress};
use crate::metrics::Metrics;
use crate::planning::{spread_key, Plan};
use crate::state::AppState;

/// Pause between two attempts at recording a run's outcome.
const FINISH_RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Scheduler {
    state: Arc<AppState>,
    executor: Arc<dyn Executor>,
    node: String,
    permits: Arc<Semaphore>,
    cancel: CancellationToken,
    verify: crate::verify::VerifyPacer,
}

impl Scheduler {
    pub fn new(state: Arc<AppState>, executor: Arc<dyn Executor>) -> Scheduler {
        let node = state.node_id.clone();
        let permits = Arc::new(Semaphore::new(state.cfg.workers));
        Scheduler {
            state,
            executor,
            node,
            permits,
            cancel: CancellationToken::new(),
            verify: Default::default(),
        }
    }

    /// Claim loop until `stop` turns true, then drain (see [`crate::app::launch`]).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(node = %self.node, workers = self.state.cfg.workers, "scheduler started");
        let mut tasks = JoinSet::new();
        while !*stop.borrow() {
            self.claim_into(&mut tasks).await;
            tokio::select! {
                _ = stop.changed() => {}
                _ = self.state.wake.notified() => {}
                _ = tokio::time::sleep(self.state.cfg.poll_interval) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => reap_finished(&mut tasks),
            }
        }
        self.drain(tasks).await;
    }

    /// Claim what is due and run it to completion. For tests and benchmarks that drive the
    /// scheduler by hand with an injected clock. Returns the number of runs executed.
    pub async fn run_due_once(&self) -> usize {
        let mut tasks = JoinSet::new();
        let mut n = 0;
        loop {
            n += self.claim_into(&mut tasks).await;
            if tasks.join_next().await.is_none() {
                return n;
            }
            reap_finished(&mut tasks);
        }
    }

    async fn claim_into(&self, tasks: &mut JoinSet<()>) -> usize {
        self.verify.queue_due(&self.state).await;
        let free = self.permits.available_permits();
        if free == 0 {
            return 0;
        }
        let now = self.state.clock.now();
        let lease_until = now
            + chrono::Duration::from_std(self.state.cfg.lease)
                .unwrap_or(chrono::Duration::minutes(5));
        let others_after = now
            - chrono::Duration::from_std(self.state.cfg.warm_cache_delay)
                .unwrap_or(chrono::Duration::zero());
        let claims = match self
            .state
            .store
            .claim_due_placed(&self.node, now, lease_until, free as i64, others_after)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "claiming due jobs failed; retrying at the next tick");
                return 0;
            }
        };
        let n = claims.len();
        for claim in claims {
            let permit = match self.permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    // Cannot happen (we asked for at most `free`), but never run unbounded.
                    let _ = self
                        .state
                        .store
                        .release(claim.job.id, claim.lease_token, claim.run.id)
                        .await;
                    continue;
                }
            };
            Metrics::add(&self.state.metrics.runs_claimed, 1);
            let state = self.state.clone();
            let executor = self.executor.clone();
            let cancel = self.cancel.child_token();
            // The span is attached to the task, not entered inside it: an entered guard held
            // across `.await` would label other runs' log lines with this run's ids.
            let span = tracing::info_span!(
                "run",
                job.id = claim.job.id,
                run.id = claim.run.id,
                user.id = claim.job.user_id
            );
            tasks.spawn(
                async move {
                    work(state, executor, claim, cancel).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        n
    }

    async fn drain(self, mut tasks: JoinSet<()>) {
        if tasks.is_empty() {
            return;
        }
        tracing::info!(running = tasks.len(), grace = ?self.state.cfg.shutdown_grace, "waiting for running backups");
        let deadline = tokio::time::sleep(self.state.cfg.shutdown_grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = tasks.join_next() => if next.is_none() { return },
                _ = &mut deadline => break,
            }
        }
        tracing::warn!(
            running = tasks.len(),
            "grace period over: releasing the remaining runs"
        );
        self.cancel.cancel();
        while tasks.join_next().await.is_some() {}
    }
}

/// Collect every task that already finished, so the next claim asks for all the free workers
/// at once instead of one claim per finished run.
fn reap_finished(tasks: &mut JoinSet<()>) {
    while tasks.try_join_next().is_some() {}
}

/// Which attempt at its slot a claimed run is: the job's pending retry when that is what the
/// claim took (a scheduled run before the slot, with the retry due), else the run's own.
fn attempt_of(claim: &Claim, now: chrono::DateTime<chrono::Utc>) -> u32 {
    let job = &claim.job;
    let by_retry = claim.run.trigger == RunTrigger::Schedule
        && job.next_run_at > now
        && job.retry_attempt > 1
        && job.retry_at.is_some_and(|at| at <= now);
    if by_retry {
        job.retry_attempt
    } else {
        claim.run.attempt.max(1)
    }
}

/// The next attempt at this slot, when the run failed for a passing reason (a partial run: some
/// repositories did) and there is room before the next slot within `--run-retries`.
fn plan_retry(
    state: &AppState,
    claim: &Claim,
    outcome: &ExecOutcome,
    status: RunStatus,
    next_run_at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<RetryPlan> {
    let scope = match status {
        RunStatus::Failed if !outcome.needs_login => {
            if !outcome.failure.is_some_and(FailureKind::retried_at_slot) {
                return None;
            }
            // An attempt that made no snapshot leaves the scope of an earlier partial one.
            RetryScope::of(claim).and_then(|s| serde_json::to_value(s).ok())
        }
        RunStatus::Partial if !outcome.retry_repos.is_empty() => {
            let scope = RetryScope {
                snapshot_id: outcome.snapshot_id?,
                repos: outcome.retry_repos.clone(),
            };
            serde_json::to_value(scope).ok()
        }
        _ => return None,
    };
    let not_before = match outcome.failure {
        Some(FailureKind::RateLimited { until }) => Some(until),
        _ => None,
    };
    let at = state.cfg.retry.next_attempt_at(
        claim.run.attempt,
        now,
        next_run_at,
        not_before,
        rand::random::<f64>(),
    )?;
    Some(RetryPlan {
        at,
        attempt: claim.run.attempt + 1,
        scope,
    })
}

async fn work(
    state: Arc<AppState>,
    executor: Arc<dyn Executor>,
    mut claim: Claim,
    cancel: CancellationToken,
) {
    let job_id = claim.job.id;
    let token = claim.lease_token;
    let run_id = claim.run.id;
    let attempt = attempt_of(&claim, state.clock.now());
    if attempt != claim.run.attempt {
        claim.run.attempt = attempt;
        if let Err(e) = state
            .store
            .set_run_attempt(job_id, token, run_id, attempt)
            .await
        {
            tracing::warn!(error = %e, "could not record the attempt number");
        }
    }
    Metrics::add(&state.metrics.runs_in_progress, 1);
    let started = std::time::Instant::now();
    let lost = CancellationToken::new();
    let heartbeat =
        tokio::spawn(heartbeat(state.clone(), job_id, token, lost.clone()).in_current_span());
    let progress = RunProgress::new(state.store.clone(), job_id, token, run_id);
    let outcome = tokio::select! {
        o = async {
            if claim.run.trigger == RunTrigger::Verify {
                crate::verify::execute(&state.run, &claim, progress).await
            } else {
                executor.execute(&state.run, &claim, progress).await
            }
        } => Some(o),
        _ = cancel.cancelled() => None,
        _ = lost.cancelled() => None,
    };
    heartbeat.abort();
    state
        .metrics
        .runs_in_progress
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    let Some(outcome) = outcome else {
        if !lost.is_cancelled() {
            match state.store.release(job_id, token, run_id).await {
                Ok(_) => Metrics::add(&state.metrics.runs_released, 1),
                Err(e) => {
                    tracing::error!(error = %e, "could not release the run; its lease will expire")
                }
            }
        } else {
            tracing::warn!("lease lost to another node; abandoning this run");
        }
        return;
    };
    let now = state.clock.now();
    let next_run_at = next_run_after(&claim, now);
    // A recorded snapshot with something to report is partial: some repositories in it hold
    // their last good copy (or miss some metadata); without a snapshot an error is a failure.
    let status = match (&outcome.error, outcome.snapshot_id) {
        (None, _) => RunStatus::Succeeded,
        // A verification's snapshot is the one it checked, not one it made.
        (Some(_), _) if claim.run.trigger == RunTrigger::Verify => RunStatus::Failed,
        (Some(_), Some(_)) => RunStatus::Partial,
        (Some(_), None) => RunStatus::Failed,
    };
    let verification = claim.run.trigger == RunTrigger::Verify;
    if !verification {
        state.metrics.observe_run(status, started.elapsed());
    }
    match status {
        // Verifications are counted by outcome on their own (`crate::verify`).
        _ if verification => {}
        RunStatus::Succeeded => Metrics::add(&state.metrics.runs_succeeded, 1),
        RunStatus::Partial => {
            tracing::warn!(error = ?outcome.error, "run partial");
            Metrics::add(&state.metrics.runs_partial, 1);
        }
        _ => {
            tracing::warn!(error = ?outcome.error, "run failed");
            Metrics::add(&state.metrics.runs_failed, 1);
        }
    }
    let retry = plan_retry(&state, &claim, &outcome, status, next_run_at, now);
    if let Some(r) = &retry {
        tracing::info!(attempt = r.attempt, at = %r.at, "run will be retried before its next slot");
    }
    let result = RunOutcome {
        retry,
        status,
        error: outcome.error,
        bytes_fetched: outcome.bytes_fetched,
        api_requests: outcome.api_requests,
        api_requests_conditional: outcome.api_requests_conditional,
        snapshot_id: outcome.snapshot_id,
        needs_login: outcome.needs_login,
        next_run_at,
    };
    // A database that cannot write for a while (a full disk) gets the outcome once it can:
    // retried for half a lease, after which the lease expires and the job is taken over.
    let retry_until = tokio::time::Instant::now() + state.cfg.lease / 2;
    let written = loop {
        let written = state
            .store
            .finish_run(job_id, token, run_id, result.clone(), now)
            .await;
        match written {
            Err(e) if tokio::time::Instant::now() < retry_until => {
                tracing::warn!(error = %e, "could not record the run's outcome; retrying");
                tokio::time::sleep(FINISH_RETRY_EVERY).await;
            }
            other => break other,
        }
    };
    match written {
        Ok(true) => crate::notify::run_finished(&state, &claim, &result).await,
        Ok(false) => {
            tracing::warn!("run finished after its lease was taken over; result discarded")
        }
        Err(e) => {
            tracing::error!(error = %e, "could not record the run's outcome; its lease will expire")
        }
    }
}

/// A scheduled run moves the job to its next slot after now (missed slots are not replayed);
/// a manual run leaves a future slot alone, and a verification every slot.
fn next_run_after(
    claim: &Claim,
    now: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    let job = &claim.job;
    // A retry is another attempt at the same slot: it never moves the next one either; nor
    // does a verification.
    if claim.run.trigger == RunTrigger::Verify
        || ((claim.run.trigger == RunTrigger::Manual || claim.run.attempt > 1)
            && job.next_run_at > now)
    {
        return job.next_run_at;
    }
    Plan::of(job).next_after(now, job.created_at, spread_key(job.user_id, &job.target))
}

async fn heartbeat(state: Arc<AppState>, job_id: i64, token: i64, lost: CancellationToken) {
    let every = state.cfg.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let until = state.clock.now()
            + chrono::Duration::from_std(state.cfg.lease).unwrap_or(chrono::Duration::minutes(5));
        match state.store.heartbeat(job_id, token, until).await {
            Ok(true) => {}
            Ok(false) => {
                lost.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed; will retry"),
        }
    }
}
