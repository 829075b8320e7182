//! Validators (ETag / Last-Modified) and the bodies they vouch for.
//!
//! GitHub does not count a request answered `304 Not Modified` against the rate limit, so keeping
//! the last body of every URL together with its validators makes an unchanged repository almost
//! free. The server keeps them in its database (so they survive restarts); tests and the CLI use
//! [`MemoryCache`].

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

/// What we remember of the last `200 OK` answer for one exact URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedResponse {
    /// The `ETag` header, sent back as `If-None-Match`.
    pub etag: Option<String>,
    /// The `Last-Modified` header, sent back as `If-Modified-Since`.
    pub last_modified: Option<String>,
    /// The response body, served again when GitHub answers 304.
    pub body: Vec<u8>,
}

/// Storage for validators, keyed by the full request URL (page number included).
#[async_trait]
pub trait ValidatorCache: Send + Sync {
    /// The entry stored for `url`, if any.
    async fn get(&self, url: &str) -> Option<CachedResponse>;
    /// Replaces the entry for `url`. Failing to store is not an error for the caller: the next
    /// run merely spends a counted request.
    async fn put(&self, url: &str, entry: CachedResponse);
}

/// An in-memory [`ValidatorCache`], for tests and one-shot CLI use.
#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: Mutex<HashMap<String, CachedResponse>>,
}

impl MemoryCache {
    /// An empty cache.
    pub fn new() -> Self {
        MemoryCache::default()
    }

    /// How many URLs have an entry.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedResponse>> {
        // A panic while holding this lock cannot leave the map half-updated (insert is atomic
        // from our point of view), so a poisoned lock is still safe to use.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl ValidatorCache for MemoryCache {
    async fn get(&self, url: &str) -> Option<CachedResponse> {
        self.lock().get(url).cloned()
    }

    async fn put(&self, url: &str, entry: CachedResponse) {
        self.lock().insert(url.to_owned(), entry);
    }
}
