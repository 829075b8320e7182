//! Retryability as data: each failure says how it may be retried, so retry policy never matches on
//! message text (the approach of rustic_core's error status).

use chrono::{DateTime, Utc};

/// How a failure should be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Retrying cannot help (bad configuration, invalid data).
    Permanent,
    /// Network errors, timeouts, 5xx: retry with backoff.
    Transient,
    /// A rate limit: retry no earlier than `until`.
    RateLimited { until: DateTime<Utc> },
    /// The GitHub token was rejected: the job needs a new `login`, not a retry.
    Unauthorized,
    /// The repository or account is gone (or invisible to the token).
    NotFound,
    /// The server's own disk is full (ENOSPC): an operator has to free space; nothing about the
    /// source is wrong, and the server recovers by itself once space is back.
    StorageFull,
}

impl FailureKind {
    /// Whether the same operation may succeed later without anyone changing anything.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureKind::Transient | FailureKind::RateLimited { .. }
        )
    }

    /// Whether a run that ended on this failure is attempted again before its next scheduled
    /// slot (see [`crate::RetryPolicy`]): what may pass by itself within hours. Besides
    /// [`Self::is_retryable`] that is a full disk (retention or an operator frees space; the
    /// server recovers without a restart). A gone repository, a rejected token or a refusal is
    /// not: someone has to change something first.
    pub fn retried_at_slot(self) -> bool {
        self.is_retryable() || self == FailureKind::StorageFull
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_and_rate_limited_are_retryable() {
        assert!(FailureKind::Transient.is_retryable());
        assert!(FailureKind::RateLimited { until: Utc::now() }.is_retryable());
        assert!(!FailureKind::Permanent.is_retryable());
        assert!(!FailureKind::Unauthorized.is_retryable());
        assert!(!FailureKind::NotFound.is_retryable());
        assert!(!FailureKind::StorageFull.is_retryable());
    }

    #[test]
    fn a_full_disk_is_retried_at_the_slot_but_refusals_are_not() {
        assert!(FailureKind::StorageFull.retried_at_slot());
        assert!(FailureKind::Transient.retried_at_slot());
        assert!(FailureKind::RateLimited { until: Utc::now() }.retried_at_slot());
        assert!(!FailureKind::Permanent.retried_at_slot());
        assert!(!FailureKind::Unauthorized.retried_at_slot());
        assert!(!FailureKind::NotFound.retried_at_slot());
    }
}
