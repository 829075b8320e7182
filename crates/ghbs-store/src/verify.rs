//! Rules of verification runs shared by both backends.

use crate::{RunRow, StoreError, StoreResult};

/// What a conflict with a backup in progress says.
const BUSY: &str = "the job has a run queued or in progress";

/// The active run answers a verify request when it is the same verification (idempotent);
/// otherwise the request conflicts with it.
pub(crate) fn same_verify(run: RunRow, snapshot_id: Option<i64>) -> StoreResult<RunRow> {
    if run.trigger == ghbs_wire::RunTrigger::Verify && run.snapshot_id == snapshot_id {
        Ok(run)
    } else {
        Err(StoreError::Conflict {
            what: BUSY.to_owned(),
            existing_id: Some(run.id),
        })
    }
}
