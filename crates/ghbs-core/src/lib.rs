//! Pure domain logic of github-backup-scheduler: backup targets, schedules, retention, the clock
//! seam, secrets and failure classes. No I/O happens here, so every rule is testable in isolation
//! and shared by the server, the CLI and the engine.

pub mod clock;
pub mod failure;
pub mod freshness;
pub mod retention;
pub mod retry;
pub mod schedule;
pub mod secret;
pub mod target;

pub use clock::*;
pub use failure::*;
pub use freshness::*;
pub use retention::*;
pub use retry::*;
pub use schedule::*;
pub use secret::*;
pub use target::*;
