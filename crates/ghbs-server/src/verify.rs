//! Verification runs (trigger `verify`): what a claimed one executes, and the scheduled
//! verification of every job, one slot per job per `verify_interval`, spread over the interval
//! by the same stable per-job key that spreads backups over the day.
//!
//! A verification is an ordinary run in the job's queue, so it never overlaps a backup of the
//! same job (one active run per job), survives restarts, and is claimed once across nodes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ghbs_engine::Manifest;
use ghbs_store::{Claim, SnapshotRow};

use crate::executor::{ExecOutcome, RunProgress};
use crate::metrics::Metrics;
use crate::planning::spread_key;
use crate::state::{AppState, RunContext};

/// Jobs given their first slot per look; the rest get theirs at the next look.
const SEED_BATCH: i64 = 500;
/// Due verifications queued per look.
const DUE_BATCH: i64 = 100;
/// Looking for jobs without a slot scans the job table: at most this often per node.
const SEED_EVERY: Duration = Duration::from_secs(600);

/// Executes a claimed `verify` run: every snapshot of the job, or the run's one snapshot.
pub async fn execute(state: &RunContext, claim: &Claim, progress: RunProgress) -> ExecOutcome {
    let outcome = verify_job(state, claim, progress).await;
    let counter = if outcome.error.is_some() {
        &state.metrics.verify_failed
    } else {
        &state.metrics.verify_succeeded
    };
    Metrics::add(counter, 1);
    outcome
}

async fn verify_job(state: &RunContext, claim: &Claim, progress: RunProgress) -> ExecOutcome {
    let only = claim.run.snapshot_id;
    let mut rows = match state.store.job_snapshots(claim.job.id).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "listing snapshots to verify failed");
            return ExecOutcome::failed("the server could not list the job's snapshots; the verification will have to be asked again");
        }
    };
    if let Some(id) = only {
        rows.retain(|s| s.id == id);
        if rows.is_empty() {
            let mut out = ExecOutcome::failed(format!("snapshot {id} no longer exists"));
            out.snapshot_id = only;
            return out;
        }
    }
    let mut lines = Vec::new();
    let mut manifests = Vec::with_capacity(rows.len());
    let mut verified: Vec<&SnapshotRow> = Vec::with_capacity(rows.len());
    for row in &rows {
        match serde_json::from_value::<Manifest>(row.manifest.clone()) {
            Ok(m) => {
                manifests.push(m);
                verified.push(row);
            }
            Err(_) => lines.push(format!(
                "snapshot {}: its recorded manifest cannot be read",
                row.id
            )),
        }
    }
    progress
        .set(Some(&format!("verifying {} snapshot(s)", manifests.len())))
        .await;
    match state.engine.verify_snapshots(&manifests).await {
        Ok(verdicts) => {
            for (row, verdict) in verified.iter().zip(&verdicts) {
                for (repo, problem) in verdict.problems() {
                    let what = repo.map_or("manifest".to_owned(), |r| r.full_name.clone());
                    lines.push(format!("snapshot {}: {what}: {}", row.id, problem.detail));
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "verification could not run");
            lines.push(format!("the verification could not run: {}", e.message));
        }
    }
    if !lines.is_empty() {
        tracing::warn!(problems = lines.len(), "verification failed");
    }
    ExecOutcome {
        error: (!lines.is_empty()).then(|| lines.join("\n")),
        snapshot_id: only,
        ..Default::default()
    }
}

/// The first slot strictly after `after` of a job whose slots are `offset + k × interval`
/// since the Unix epoch, where the offset comes from the job's spread key: thousands of jobs
/// are verified at different moments of the interval, each always at the same one.
pub fn next_slot(after: DateTime<Utc>, interval: Duration, key: i64) -> DateTime<Utc> {
    let every = interval.as_secs().max(1) as i64;
    let offset = key.rem_euclid(every);
    let since = after.timestamp() - offset;
    let k = since.div_euclid(every) + 1;
    DateTime::from_timestamp(offset + k * every, 0).unwrap_or(after)
}

/// Paces the scheduled verification on one node.
#[derive(Default)]
pub struct VerifyPacer {
    seeded_at: Mutex<Option<Instant>>,
}

impl VerifyPacer {
    /// Gives jobs without a slot their first one (every [`SEED_EVERY`]), then queues a `verify`
    /// run for each job whose slot is due and moves the slot on. Does nothing when scheduled
    /// verification is off. Errors are logged: the next look tries again.
    pub async fn queue_due(&self, state: &Arc<AppState>) {
        let Some(interval) = state.cfg.verify_interval else {
            return;
        };
        let now = state.clock.now();
        let seed = {
            let mut at = self.seeded_at.lock().unwrap_or_else(|e| e.into_inner());
            let due = at.is_none_or(|t| t.elapsed() >= SEED_EVERY);
            if due {
                *at = Some(Instant::now());
            }
            due
        };
        if seed {
            match state.store.unscheduled_verify_jobs(SEED_BATCH).await {
                Ok(jobs) => {
                    let full = jobs.len() as i64 == SEED_BATCH;
                    for job in jobs {
                        let first = next_slot(now, interval, spread_key(job.user_id, &job.target));
                        if let Err(e) = state.store.schedule_verify(job.id, first).await {
                            tracing::warn!(error = %e, "could not schedule a verification");
                        }
                    }
                    if full {
                        // More to seed: look again at the next tick.
                        *self.seeded_at.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not list jobs to schedule verifications")
                }
            }
        }
        let due = match state.store.due_verifies(now, DUE_BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "could not list due verifications");
                return;
            }
        };
        let mut queued = false;
        for (job, slot) in due {
            let next = next_slot(now, interval, spread_key(job.user_id, &job.target));
            match state
                .store
                .queue_scheduled_verify(job.id, slot, next, now)
                .await
            {
                Ok(q) => queued |= q,
                Err(e) => {
                    tracing::warn!(error = %e, job.id = job.id, "could not queue a verification")
                }
            }
        }
        if queued {
            state.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spread_stable_and_strictly_later() {
        let week = Duration::from_secs(7 * 86_400);
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let a = next_slot(now, week, 12_345);
        assert!(a > now && a <= now + chrono::Duration::days(7));
        assert_eq!(next_slot(a - chrono::Duration::seconds(1), week, 12_345), a);
        assert_eq!(next_slot(a, week, 12_345), a + chrono::Duration::days(7));
        assert_eq!(
            next_slot(now, week, -7),
            next_slot(now, week, 7 * 86_400 - 7)
        );
        let b = next_slot(now, week, spread_key(1, "octo/other"));
        let c = next_slot(now, week, spread_key(1, "octo/hello"));
        assert_ne!(b, c, "two jobs get different moments of the week");
    }
}
