//! Glue between the GitHub client and the server: validators kept in the store, and rate-limit
//! waits shown on the run.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ghbs_github::{CachedResponse, ValidatorCache};
use ghbs_store::{HttpCacheRow, Store};

use crate::scheduler::RunProgress;

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

/// Shows GitHub waits (rate limits) on the run, e.g. "waiting for GitHub rate limit until 14:05:09 UTC".
pub(super) struct ProgressBridge {
    pub progress: RunProgress,
}

impl ghbs_github::Progress for ProgressBridge {
    fn waiting(&self, reason: &str, until: DateTime<Utc>) {
        let p = self.progress.clone();
        // To the second, in UTC: "waiting for GitHub rate limit until 20:11:30 UTC".
        let text = format!("{reason} until {}", until.format("%H:%M:%S UTC"));
        tokio::spawn(async move { p.set(Some(&text)).await });
    }

    fn resumed(&self) {
        let p = self.progress.clone();
        tokio::spawn(async move { p.set(Some("running")).await });
    }
}
