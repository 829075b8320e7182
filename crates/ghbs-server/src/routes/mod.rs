//! HTTP routes: one module per resource.

pub mod audit;
pub mod health;
pub mod jobs;
pub mod login;
pub mod notify;
pub mod runs;
pub mod snapshots;
pub mod verify;
