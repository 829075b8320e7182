//! The engine's one error type: a human message plus a [`FailureKind`] so that the caller decides
//! whether to retry from data, never from message text.

use ghbs_core::FailureKind;

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

    /// A local file-system failure, with what we were doing when it happened. Disk-full and
    /// similar conditions are reported as permanent: an operator has to act.
    pub(crate) fn io(context: impl std::fmt::Display, err: std::io::Error) -> EngineError {
        EngineError::permanent(format!("{context}: {err}"))
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
