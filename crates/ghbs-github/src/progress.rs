//! Reporting long waits to whoever drives a session (a run record, a progress bar).

use chrono::{DateTime, Utc};

/// Told when a session stops to wait for GitHub (rate limits), so a run can show why it is idle.
pub trait Progress: Send + Sync {
    /// The session is waiting for `reason` until about `until`.
    fn waiting(&self, reason: &str, until: DateTime<Utc>);
    /// The wait announced by the last [`Progress::waiting`] is over.
    fn resumed(&self);
}

/// A [`Progress`] that reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn waiting(&self, _reason: &str, _until: DateTime<Utc>) {}
    fn resumed(&self) {}
}
