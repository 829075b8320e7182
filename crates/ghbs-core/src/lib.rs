//! Pure domain logic of github-backup-scheduler: backup targets, schedules, retention, the clock
//! seam, secrets and failure classes. No I/O happens here, so every rule is testable in isolation
//! and shared by the server, the CLI and the engine.

pub mod clock;
pub mod failure;
pub mod retention;
pub mod schedule;
pub mod secret;
pub mod stale;
pub mod target;

pub use clock::*;
pub use failure::*;
pub use retention::*;
pub use schedule::*;
pub use secret::*;
pub use stale::*;
pub use target::*;
