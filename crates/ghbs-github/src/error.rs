//! The one error type of this crate.
//!
//! Callers decide what to do from [`GitHubError::kind`] (retry now, retry at the next run, wait for a
//! reset, ask the user to log in again, give up), never from the message text. The message is for
//! people and is built only from paths, statuses and GitHub's own `message` field: the token is never
//! part of it, and no URL we build ever carries the token either.

use ghbs_core::FailureKind;

/// A failed call to the GitHub API, classified so that retry policy is data.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct GitHubError {
    /// What kind of failure this is, which decides whether and when retrying can help.
    pub kind: FailureKind,
    /// A sentence a person can act on. Never contains the token.
    pub message: String,
    /// The HTTP status GitHub answered with, when there was an answer at all.
    pub status: Option<u16>,
}

impl GitHubError {
    pub(crate) fn new(kind: FailureKind, status: Option<u16>, message: impl Into<String>) -> Self {
        GitHubError {
            kind,
            message: message.into(),
            status,
        }
    }

    /// A mistake on our side or a configuration the user must fix; retrying does not help.
    pub(crate) fn permanent(status: Option<u16>, message: impl Into<String>) -> Self {
        GitHubError::new(FailureKind::Permanent, status, message)
    }

    /// The token GitHub refused; the user must log in again.
    pub(crate) fn unauthorized() -> Self {
        GitHubError::new(
            FailureKind::Unauthorized,
            Some(401),
            "GitHub rejected the stored token (revoked or expired): run \
             `github-backup-scheduler login` again",
        )
    }
}
