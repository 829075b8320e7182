//! The contract between the scheduler and what a claimed run executes: the [`Executor`] trait,
//! the [`ExecOutcome`] it reports, the [`RunProgress`] handle it writes progress through, and the
//! [`RetryScope`] of a partial account run. The scheduler and the executors (backup,
//! verification) both import this module; neither imports the other for these types.

use std::sync::Arc;

use async_trait::async_trait;
use ghbs_core::FailureKind;
use ghbs_store::{Claim, Store};

use crate::state::RunContext;

/// How a run ended, as the executor reports it.
#[derive(Debug, Clone, Default)]
pub struct ExecOutcome {
    pub error: Option<String>,
    pub bytes_fetched: i64,
    pub api_requests: i64,
    pub api_requests_conditional: i64,
    pub snapshot_id: Option<i64>,
    pub needs_login: bool,
    /// What ended a failed run. It alone decides whether the run is attempted again before its
    /// next slot ([`FailureKind::retried_at_slot`]); `None` (unclassified) is not retried.
    pub failure: Option<FailureKind>,
    /// A partial run of an account job: the mirror keys of the repositories that failed for a
    /// passing reason. A retry fetches only these (the others come from this run's snapshot).
    pub retry_repos: Vec<String>,
}

impl ExecOutcome {
    /// A failure nobody classified: not retried.
    pub fn failed(message: impl Into<String>) -> ExecOutcome {
        ExecOutcome {
            error: Some(message.into()),
            ..Default::default()
        }
    }

    /// A failure of a known kind (retried at the slot when the kind says so).
    pub fn failed_as(kind: FailureKind, message: impl Into<String>) -> ExecOutcome {
        ExecOutcome {
            error: Some(message.into()),
            failure: Some(kind),
            ..Default::default()
        }
    }
}

/// The scope of a retry of a partial account run, stored on the job (opaque to the store):
/// fetch `repos` again, take every other repository as `snapshot_id` holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetryScope {
    pub snapshot_id: i64,
    pub repos: Vec<String>,
}

impl RetryScope {
    /// The scope of the attempt a claim runs: only a retry has one.
    pub fn of(claim: &Claim) -> Option<RetryScope> {
        if claim.run.attempt <= 1 {
            return None;
        }
        serde_json::from_value(claim.job.retry_scope.clone()?).ok()
    }
}

/// Lets an executor show what a run is doing ("waiting for rate limit until 14:05").
#[derive(Clone)]
pub struct RunProgress {
    store: Arc<dyn Store>,
    job_id: i64,
    lease_token: i64,
    run_id: i64,
}

impl RunProgress {
    /// The handle for the run `run_id` of `job_id` under the lease `lease_token`: progress is
    /// written only while that lease holds.
    pub(crate) fn new(store: Arc<dyn Store>, job_id: i64, lease_token: i64, run_id: i64) -> Self {
        RunProgress {
            store,
            job_id,
            lease_token,
            run_id,
        }
    }

    pub async fn set(&self, text: Option<&str>) {
        if let Err(e) = self
            .store
            .set_run_progress(self.job_id, self.lease_token, self.run_id, text)
            .await
        {
            tracing::warn!(error = %e, "could not record run progress");
        }
    }
}

/// What a claimed run executes. The product's executor is [`crate::backup::BackupExecutor`];
/// tests of the scheduler alone may use their own.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    async fn execute(
        &self,
        ctx: &Arc<RunContext>,
        claim: &Claim,
        progress: RunProgress,
    ) -> ExecOutcome;
}
