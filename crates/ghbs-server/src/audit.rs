//! The per-user audit trail: who did what, when, from which address, with which key. Entries
//! hold ids only, never a token or a key. Kept for `--audit-retention-days`, pruned hourly.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ghbs_store::NewAuditEntry;

use crate::auth::Caller;
use crate::state::AppState;

/// What was done. The names are stable: they are in the API and scripts filter on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Login,
    KeyCreate,
    KeyRevoke,
    JobCreate,
    JobUpdate,
    JobPause,
    JobResume,
    JobDelete,
    JobPurge,
    RepoForget,
    RunRequest,
    SnapshotDownload,
    Restore,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::KeyCreate => "key.create",
            Action::KeyRevoke => "key.revoke",
            Action::JobCreate => "job.create",
            Action::JobUpdate => "job.update",
            Action::JobPause => "job.pause",
            Action::JobResume => "job.resume",
            Action::JobDelete => "job.delete",
            Action::JobPurge => "job.purge",
            Action::RepoForget => "repo.forget",
            Action::RunRequest => "run.request",
            Action::SnapshotDownload => "snapshot.download",
            Action::Restore => "restore",
        }
    }
}

/// Append an entry, after the action succeeded. A failure to write it is logged and does not
/// undo or fail the action (which has happened); the log line names the action and ids.
pub async fn record(
    state: &AppState,
    user_id: i64,
    key_id: Option<i64>,
    addr: Option<IpAddr>,
    action: Action,
    job_id: Option<i64>,
    detail: &[(&str, String)],
) {
    let detail: BTreeMap<&str, &str> = detail.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let entry = NewAuditEntry {
        user_id,
        at: state.clock.now(),
        action: action.as_str().to_owned(),
        key_id,
        client_addr: addr.map(|a| a.to_string()),
        job_id,
        detail: serde_json::to_value(detail).unwrap_or_default(),
    };
    if let Err(e) = state.store.record_audit(&entry).await {
        tracing::error!(error = %e, user.id = user_id, action = action.as_str(), job.id = ?job_id,
            "could not write the audit entry");
    }
}

impl Caller {
    /// [`record`] for the caller's own action.
    pub async fn audit(
        &self,
        state: &AppState,
        action: Action,
        job_id: Option<i64>,
        detail: &[(&str, String)],
    ) {
        record(
            state,
            self.user.id,
            Some(self.key_id),
            self.client_addr,
            action,
            job_id,
            detail,
        )
        .await;
    }
}

/// How often old entries are deleted.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Delete entries older than the retention now and then every hour until `stop`. Every node
/// does it; the DELETE is idempotent.
pub async fn prune_loop(state: Arc<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        prune_once(&state).await;
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

pub async fn prune_once(state: &AppState) {
    let keep = chrono::Duration::from_std(state.cfg.audit_retention)
        .unwrap_or(chrono::Duration::days(180));
    match state.store.prune_audit(state.clock.now() - keep).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(entries = n, "pruned old audit entries"),
        Err(e) => tracing::warn!(error = %e, "cannot prune the audit trail; trying again later"),
    }
}
