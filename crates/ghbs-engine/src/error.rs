//! The engine's one error type: a human message plus a [`FailureKind`] so that the caller decides
//! whether to retry from data, never from message text.

use ghbs_core::FailureKind;

/// What a run's owner reads when the server's disk is full. The engine's public operations add
/// the free space (see `Engine::explain`); no path or driver text goes with it.
pub const DISK_FULL: &str = "disk full on the server";

/// An engine failure. `message` is safe to show to the job's owner: it never holds a token
/// (git's stderr is scrubbed before it gets here).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    pub kind: FailureKind,
    pub message: String,
}

impl EngineError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> EngineError {
        EngineError {
            kind,
            message: message.into(),
        }
    }

    /// Retrying cannot help (bad input, corrupt state, a local git failure).
    pub fn permanent(message: impl Into<String>) -> EngineError {
        EngineError::new(FailureKind::Permanent, message)
    }

    /// Retrying later may help (network, timeout, upstream 5xx).
    pub fn transient(message: impl Into<String>) -> EngineError {
        EngineError::new(FailureKind::Transient, message)
    }

    pub fn not_found(message: impl Into<String>) -> EngineError {
        EngineError::new(FailureKind::NotFound, message)
    }

    /// The server's disk is full ([`FailureKind::StorageFull`]).
    pub fn storage_full() -> EngineError {
        EngineError::new(FailureKind::StorageFull, DISK_FULL)
    }

    /// A local file-system failure, with what we were doing when it happened. A full disk
    /// becomes [`EngineError::storage_full`] (without the path); other failures are permanent:
    /// an operator has to act.
    pub(crate) fn io(context: impl std::fmt::Display, err: std::io::Error) -> EngineError {
        if is_storage_full(&err) {
            return EngineError::storage_full();
        }
        EngineError::permanent(format!("{context}: {err}"))
    }
}

/// ENOSPC (and EDQUOT, a full quota), however the standard library spells them.
pub fn is_storage_full(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(err.raw_os_error(), Some(28 | 122))
}

/// Shorthand used throughout the crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
