//! Client configuration: where GitHub is and how patient to be with it.

use std::path::PathBuf;
use std::time::Duration;

/// The public GitHub API; GitHub Enterprise Server uses `https://HOST/api/v3`.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// How long one HTTP exchange (connect, send, read the whole body) may take before it counts as a
/// transient failure. A page of 100 items is small; a minute means the connection is stuck.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of a [`crate::GitHub`] client. One per server; shared by every token's session.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Base URL of the REST API, without a trailing slash needed (`https://api.github.com`).
    pub api_url: String,
    /// An extra PEM certificate to trust, for GitHub Enterprise behind a private CA.
    pub ca_cert: Option<PathBuf>,
    /// Sent as `User-Agent`; GitHub refuses requests without one.
    pub user_agent: String,
    /// How many requests one token may have in flight at once, across all its sessions. GitHub's
    /// secondary limits punish bursts; a small bound keeps us polite.
    pub max_concurrent_per_token: usize,
    /// How many times a transient failure (5xx, network error, secondary limit) is retried after
    /// the first attempt before the call fails.
    pub max_retries: u32,
    /// The unit of every backoff. Transient failures back off exponentially from it (with full
    /// jitter); secondary limits without `Retry-After` back off from 60 × `retry_base`, so tests
    /// that set it to a few milliseconds never wait for real.
    pub retry_base: Duration,
    /// The longest a call waits for a primary rate-limit reset; a longer wait fails the call with
    /// `FailureKind::RateLimited` so the run can be rescheduled instead of holding a worker.
    pub max_rate_limit_wait: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            api_url: DEFAULT_API_URL.to_owned(),
            ca_cert: None,
            user_agent: concat!("github-backup-scheduler/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_concurrent_per_token: 4,
            max_retries: 5,
            retry_base: Duration::from_secs(1),
            max_rate_limit_wait: Duration::from_secs(3600),
        }
    }
}
