//! A thin GitHub REST client built on reqwest, owning everything about talking to GitHub politely:
//! pagination by `Link` headers, conditional requests whose validators persist in the caller's
//! store, per-token rate-limit and concurrency bounds, retries with backoff, same-origin redirects
//! (renamed repositories), and errors classified by whether retrying can help.
//!
//! Use: one [`GitHub`] per process, then one [`Session`] per token and run, which counts the
//! requests that run spent.

mod cache;
mod client;
mod config;
mod download;
mod error;
mod link;
mod progress;
mod ratelimit;
mod request;
mod session;
mod types;

pub use async_trait::async_trait;
pub use cache::{CachedResponse, MemoryCache, ValidatorCache};
pub use client::GitHub;
pub use config::{ClientConfig, DEFAULT_API_URL, DEFAULT_REQUEST_TIMEOUT};
pub use error::GitHubError;
pub use progress::{NoProgress, Progress};
pub use session::Session;
pub use types::{Counters, Fetched, GhRepo, GhUser};
