//! HTTP routes: one module per resource.

pub mod health;
pub mod jobs;
pub mod login;
pub mod runs;
pub mod snapshots;
pub mod verify;
