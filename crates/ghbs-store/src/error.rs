//! The store's error type: precise enough for the server to choose an HTTP status.

/// Errors at the store boundary. Driver messages stay inside `Other`; the server logs them
/// and never puts them in a response.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; `existing_id` names the row that holds the key
    /// when the store can tell (for example the job that already targets the same repository).
    #[error("conflict: {what}")]
    Conflict {
        what: String,
        existing_id: Option<i64>,
    },
    /// The database could not be reached or timed out: retrying later may help.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database's disk is full: writes fail until space is freed; reads still work.
    #[error("database disk full: {0}")]
    StorageFull(String),
    #[error("database error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;
