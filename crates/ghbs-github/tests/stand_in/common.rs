//! Shared set-up: a stand-in with one user, a client configured for fast retries, and a progress
//! recorder whose events tests can await.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ghbs_core::{Clock, Secret, SystemClock};
use ghbs_github::{ClientConfig, GitHub, MemoryCache, NoProgress, Progress, Session};
use ghbs_testkit::{GitHubStandIn, RequestRecord};
use tokio::sync::Notify;

pub struct Env {
    pub stand_in: GitHubStandIn,
    pub client: GitHub,
    pub token: String,
}

/// Milliseconds instead of seconds, so that backoffs cost nothing in tests.
pub fn fast_config(api_url: String) -> ClientConfig {
    ClientConfig {
        api_url,
        max_retries: 3,
        retry_base: Duration::from_millis(5),
        max_rate_limit_wait: Duration::from_secs(30),
        ..ClientConfig::default()
    }
}

impl Env {
    /// A stand-in with the user `alice` and a client on the real clock.
    pub async fn start() -> Env {
        Env::start_with(|c| c, Arc::new(SystemClock)).await
    }

    pub async fn start_with(
        tweak: impl FnOnce(ClientConfig) -> ClientConfig,
        clock: Arc<dyn Clock>,
    ) -> Env {
        let stand_in = GitHubStandIn::start().await;
        let (_, token) = stand_in.add_user("alice");
        let client = GitHub::new(tweak(fast_config(stand_in.api_url())), clock).unwrap();
        Env {
            stand_in,
            client,
            token,
        }
    }

    pub fn session(&self, cache: Arc<MemoryCache>) -> Session {
        self.client
            .session(Secret::new(self.token.clone()), cache, Arc::new(NoProgress))
    }

    pub fn session_with(&self, progress: Arc<dyn Progress>) -> Session {
        self.client.session(
            Secret::new(self.token.clone()),
            Arc::new(MemoryCache::new()),
            progress,
        )
    }

    /// REST requests (git traffic excluded) whose path contains `part`.
    pub fn requests_to(&self, part: &str) -> Vec<RequestRecord> {
        self.stand_in
            .requests()
            .into_iter()
            .filter(|r| !r.git && r.path.contains(part))
            .collect()
    }
}

/// Records waits and lets a test await the first one.
#[derive(Default)]
pub struct Recorder {
    pub waits: Mutex<Vec<(String, DateTime<Utc>)>>,
    pub resumed: Mutex<usize>,
    pub waiting_started: Notify,
}

impl Recorder {
    pub fn waits(&self) -> Vec<(String, DateTime<Utc>)> {
        self.waits.lock().unwrap().clone()
    }
}

impl Progress for Recorder {
    fn waiting(&self, reason: &str, until: DateTime<Utc>) {
        self.waits.lock().unwrap().push((reason.to_owned(), until));
        self.waiting_started.notify_one();
    }

    fn resumed(&self) {
        *self.resumed.lock().unwrap() += 1;
    }
}
