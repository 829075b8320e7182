//! Glue between the GitHub client and the server: validators kept in the store, and rate-limit
//! waits shown on the run.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ghbs_github::{CachedResponse, ValidatorCache};
use ghbs_store::{HttpCacheRow, Store};

use crate::executor::RunProgress;

/// Conditional-request validators persisted in the store, so ETags survive restarts.
pub(super) struct StoreCache {
    pub store: Arc<dyn Store>,
    pub user_id: i64,
}

#[async_trait]
impl ValidatorCache for StoreCache {
    async fn get(&self, url: &str) -> Option<CachedResponse> {
        match self.store.get_http_cache(self.user_id, url).await {
            Ok(Some(row)) => Some(CachedResponse {
                etag: row.etag,
                last_modified: row.last_modified,
                body: row.body.unwrap_or_default(),
            }),
            _ => None,
        }
    }

    async fn put(&self, url: &str, entry: CachedResponse) {
        let row = HttpCacheRow {
            user_id: self.user_id,
            url: url.to_string(),
            etag: entry.etag,
            last_modified: entry.last_modified,
            body: Some(entry.body),
        };
        if let Err(e) = self.store.put_http_cache(&row).await {
            tracing::warn!(error = %e, "could not remember a GitHub validator");
        }
    }
}

/// Shows GitHub waits (rate limits) on the run, e.g. "waiting for GitHub rate limit until 14:05:09 UTC",
/// and adds their length to `ghbs_github_rate_limit_wait_seconds_total`.
pub(super) struct ProgressBridge {
    pub progress: RunProgress,
    pub state: Arc<crate::state::RunContext>,
    /// When the wait announced last began (`None`: not waiting).
    pub waiting_since: std::sync::Mutex<Option<std::time::Instant>>,
}

impl ghbs_github::Progress for ProgressBridge {
    fn waiting(&self, reason: &str, until: DateTime<Utc>) {
        if let Ok(mut since) = self.waiting_since.lock() {
            since.get_or_insert_with(std::time::Instant::now);
        }
        let p = self.progress.clone();
        // To the second, in UTC: "waiting for GitHub rate limit until 20:11:30 UTC".
        let text = format!("{reason} until {}", until.format("%H:%M:%S UTC"));
        tokio::spawn(async move { p.set(Some(&text)).await });
    }

    fn resumed(&self) {
        if let Some(began) = self.waiting_since.lock().ok().and_then(|mut s| s.take()) {
            let ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
            crate::metrics::Metrics::add(&self.state.metrics.rate_limit_wait_ms, ms);
        }
        let p = self.progress.clone();
        tokio::spawn(async move { p.set(Some("running")).await });
    }
}
