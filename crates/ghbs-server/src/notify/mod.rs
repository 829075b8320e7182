//! Notifications (issue 11): tell a user when a backup failed, came out partial, recovered,
//! needs a new login or went stale.
//!
//! Events are queued durably in the store (one delivery row per subscribed target) where runs
//! finish ([`run_finished`], called by the scheduler) and by the periodic [`check_stale`];
//! [`deliver::Deliverer`] sends them in the background with a timeout per attempt and bounded
//! retries, so a slow or dead sink never holds up the scheduler. Webhook URLs and signing
//! secrets are sealed with the token key and never logged; payloads carry no token and no URL.

pub mod deliver;
pub mod smtp;
pub mod target;

use chrono::{DateTime, Utc};
use ghbs_store::{Claim, JobRow, RunOutcome};
use ghbs_wire::{RunStatus, RunTrigger};
use serde_json::{json, Value};

pub use crate::config::smtp::{SmtpConfig, SmtpTls};
pub use deliver::Deliverer;

use crate::state::AppState;

/// What happened. The wire names are [`ghbs_wire::NOTIFY_EVENTS`] plus `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Failed,
    Partial,
    Recovered,
    NeedsLogin,
    Stale,
    /// Sent by `notify test`, to that target only, whatever it subscribes to.
    Test,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Failed => "failed",
            Event::Partial => "partial",
            Event::Recovered => "recovered",
            Event::NeedsLogin => "needs-login",
            Event::Stale => "stale",
            Event::Test => "test",
        }
    }
}

/// Longest run error copied into a notification; the run itself keeps the whole text.
const MAX_ERROR_CHARS: usize = 1000;

fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_ERROR_CHARS {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(MAX_ERROR_CHARS).collect();
    s.push('…');
    s
}

/// Which event a finished run raises, if any. `previous` is the status of the job's run
/// before this one: a success after a failed or partial run is a recovery.
pub fn event_for_run(outcome: &RunOutcome, previous: Option<RunStatus>) -> Option<Event> {
    if outcome.needs_login {
        return Some(Event::NeedsLogin);
    }
    match outcome.status {
        RunStatus::Failed => Some(Event::Failed),
        RunStatus::Partial => Some(Event::Partial),
        RunStatus::Succeeded => {
            matches!(previous, Some(RunStatus::Failed) | Some(RunStatus::Partial))
                .then_some(Event::Recovered)
        }
        RunStatus::Queued | RunStatus::Running => None,
    }
}

fn job_json(job: &JobRow) -> Value {
    json!({ "id": job.id, "target": job.target, "schedule": job.schedule })
}

/// The event document every format is made from. It holds ids, names and the run's error
/// text (which the product already keeps free of secrets), never a token or a target's URL.
fn run_payload(event: Event, claim: &Claim, outcome: &RunOutcome, now: DateTime<Utc>) -> Value {
    let job = &claim.job;
    let message = match event {
        Event::Failed if claim.run.trigger == RunTrigger::Verify => format!(
            "Verification of {} found damaged or missing backup data: {}",
            job.target,
            clip(outcome.error.as_deref().unwrap_or("unknown error"))
        ),
        // A failure that will be retried says when, so that nobody acts on a passing fault.
        Event::Failed => format!(
            "Backup of {} failed: {}{}",
            job.target,
            clip(outcome.error.as_deref().unwrap_or("unknown error")),
            outcome.retry.as_ref().map_or(String::new(), |r| format!(
                " (attempt {} starts at {} UTC)",
                r.attempt,
                r.at.format("%Y-%m-%d %H:%M:%S")
            ))
        ),
        Event::Partial => format!(
            "Backup of {} is partial (some repositories hold their last good copy): {}",
            job.target,
            clip(outcome.error.as_deref().unwrap_or(""))
        ),
        Event::Recovered => format!("Backup of {} succeeded again after a failure.", job.target),
        Event::NeedsLogin => format!(
            "Backups of {} are stopped: GitHub rejected the stored token. Log in again \
             (`github-backup-scheduler login`) to resume them.",
            job.target
        ),
        Event::Stale | Event::Test => String::new(),
    };
    json!({
        "event": event.as_str(),
        "occurred_at": now,
        "user_id": job.user_id,
        "job": job_json(job),
        "run": {
            "id": claim.run.id,
            "trigger": claim.run.trigger,
            "status": outcome.status,
            "error": outcome.error.as_deref().map(clip),
            "snapshot_id": outcome.snapshot_id,
        },
        "message": message,
    })
}

/// Called once a run's outcome is recorded: queue the event it raises, if any. One indexed
/// read (for recoveries) and one insert; a failure is logged and never fails the run.
pub async fn run_finished(state: &AppState, claim: &Claim, outcome: &RunOutcome) {
    if claim.run.trigger == RunTrigger::Verify && outcome.status != RunStatus::Failed {
        // A clean verification is no news, and it recovers nothing a backup lost.
        return;
    }
    let previous = if outcome.status == RunStatus::Succeeded && !outcome.needs_login {
        match state
            .store
            .list_runs(claim.job.user_id, claim.job.id, 10)
            .await
        {
            Ok(runs) => runs
                .iter()
                .find(|r| {
                    r.id < claim.run.id && r.status.is_finished() && r.trigger != RunTrigger::Verify
                })
                .map(|r| r.status),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the previous run; no recovery notification");
                None
            }
        }
    } else {
        None
    };
    let Some(event) = event_for_run(outcome, previous) else {
        return;
    };
    let now = state.clock.now();
    let payload = run_payload(event, claim, outcome, now);
    enqueue(state, claim.job.user_id, event, &payload, now).await;
}

async fn enqueue(
    state: &AppState,
    user_id: i64,
    event: Event,
    payload: &Value,
    now: DateTime<Utc>,
) {
    match state
        .store
        .enqueue_notification(user_id, event.as_str(), &payload.to_string(), now)
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            event = event.as_str(),
            deliveries = n,
            "notification queued"
        ),
        Err(e) => {
            tracing::warn!(error = %e, event = event.as_str(), "could not queue a notification")
        }
    }
}

/// Queue a `stale` notification for every unpaused job without a success for twice its
/// schedule's interval, once per stale episode (the store remembers the last success it was
/// sent for, so several nodes checking send it once). Returns how many jobs went stale now.
pub async fn check_stale(state: &AppState) -> usize {
    let now = state.clock.now();
    let jobs = match state.store.stale_candidates().await {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(error = %e, "stale check skipped: cannot read jobs");
            return 0;
        }
    };
    let mut n = 0;
    for f in jobs {
        let job = &f.job;
        let basis = f.last_success_at.unwrap_or(job.created_at);
        if !crate::planning::is_stale(job, f.last_success_at, now) {
            continue;
        }
        match state.store.mark_stale_notified(job.id, basis).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, job.id = job.id, "cannot record a stale notification");
                continue;
            }
        }
        n += 1;
        let message = match f.last_success_at {
            Some(t) => format!(
                "Backup of {} is stale: no successful run since {} (its schedule: {}).",
                job.target,
                t.format("%Y-%m-%d %H:%M UTC"),
                job.schedule
            ),
            None => format!(
                "Backup of {} is stale: no successful run since the job was created on {} \
                 (its schedule: {}).",
                job.target,
                job.created_at.format("%Y-%m-%d %H:%M UTC"),
                job.schedule
            ),
        };
        let payload = json!({
            "event": Event::Stale.as_str(),
            "occurred_at": now,
            "user_id": job.user_id,
            "job": job_json(job),
            "last_success_at": f.last_success_at,
            "message": message,
        });
        enqueue(state, job.user_id, Event::Stale, &payload, now).await;
    }
    n
}

/// The document a `notify test` sends.
pub fn test_payload(user_id: i64, now: DateTime<Utc>) -> Value {
    json!({
        "event": Event::Test.as_str(),
        "occurred_at": now,
        "user_id": user_id,
        "message": "Test notification from github-backup-scheduler: this target works.",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: RunStatus, needs_login: bool) -> RunOutcome {
        RunOutcome {
            status,
            error: Some("x".into()),
            bytes_fetched: 0,
            api_requests: 0,
            api_requests_conditional: 0,
            snapshot_id: None,
            needs_login,
            next_run_at: Utc::now(),
            retry: None,
        }
    }

    #[test]
    fn which_event_a_run_raises() {
        use RunStatus::*;
        assert_eq!(
            event_for_run(&outcome(Failed, false), None),
            Some(Event::Failed)
        );
        assert_eq!(
            event_for_run(&outcome(Failed, true), None),
            Some(Event::NeedsLogin)
        );
        assert_eq!(
            event_for_run(&outcome(Partial, false), Some(Succeeded)),
            Some(Event::Partial)
        );
        assert_eq!(event_for_run(&outcome(Succeeded, false), None), None);
        assert_eq!(
            event_for_run(&outcome(Succeeded, false), Some(Succeeded)),
            None
        );
        assert_eq!(
            event_for_run(&outcome(Succeeded, false), Some(Failed)),
            Some(Event::Recovered)
        );
        assert_eq!(
            event_for_run(&outcome(Succeeded, false), Some(Partial)),
            Some(Event::Recovered)
        );
    }

    #[test]
    fn long_errors_are_clipped() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(MAX_ERROR_CHARS + 5);
        assert_eq!(clip(&long).chars().count(), MAX_ERROR_CHARS + 1);
    }
}
