//! Engine tests against real git and the GitHub stand-in (smart HTTP through `git http-backend`).

mod common;
mod exports;
mod fetching;
mod pending;
mod shared;
mod snapshots;
mod storage;
mod verification;
