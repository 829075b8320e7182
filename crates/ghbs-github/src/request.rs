//! One GET, done politely: conditional headers from the validator cache, the per-token concurrency
//! bound, rate-limit waits, retries with backoff, same-origin redirects, and a classified error.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ghbs_core::FailureKind;
use http::{HeaderMap, HeaderValue, StatusCode};
use reqwest::Url;

use crate::cache::CachedResponse;
use crate::error::GitHubError;
use crate::link::{display_path, next_link, same_origin};
use crate::ratelimit::{
    header_str, header_u64, honour_retry_after, reset_time, retry_after, secondary_backoff,
    transient_backoff,
};
use crate::session::Session;

/// How many redirects one request follows (a rename plus a transfer is two).
const MAX_REDIRECTS: u32 = 5;

/// One page (or single resource) as obtained.
pub(crate) struct Page {
    /// The URL that finally answered (after redirects).
    pub(crate) url: Url,
    pub(crate) body: Vec<u8>,
    pub(crate) not_modified: bool,
    /// The `rel="next"` link, already checked to be on the API's origin.
    pub(crate) next: Option<Url>,
    /// Whether the answer carried a `Link` header at all (a 304 may omit it).
    pub(crate) link_present: bool,
}

/// An HTTP answer with its body fully read.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// What one request has spent of its budgets so far.
#[derive(Default)]
pub(crate) struct Tries {
    redirects: u32,
    pub(crate) transient: u32,
    secondary: u32,
    primary: u32,
}

impl Tries {
    /// Counts a redirect; fails past [`MAX_REDIRECTS`].
    pub(crate) fn redirected(&mut self, path: &str, status: u16) -> Result<(), GitHubError> {
        self.redirects += 1;
        if self.redirects > MAX_REDIRECTS {
            return Err(GitHubError::permanent(
                Some(status),
                format!("GitHub redirected {path} more than {MAX_REDIRECTS} times"),
            ));
        }
        Ok(())
    }
}

/// What to do after an answer that is not a success.
pub(crate) enum Next {
    Fail(GitHubError),
    /// Transient: retry after backoff while the budget lasts.
    Retry(String),
    /// A secondary limit: wait this long, then retry.
    Secondary(Option<Duration>),
    /// The primary budget is spent until this time.
    Primary(DateTime<Utc>),
    Redirect(Url),
}

impl Session {
    /// GETs `url`, following same-origin redirects, until a success or a final failure.
    pub(crate) async fn fetch(&self, start: Url) -> Result<Page, GitHubError> {
        let gh = &self.inner.gh.inner;
        let auth = self.auth()?;
        let mut url = start;
        let mut tries = Tries::default();
        loop {
            self.wait_for_primary_budget().await?;
            let cached = self.inner.cache.get(url.as_str()).await;
            let path = display_path(&gh.base, &url);
            let answer = {
                let _permit =
                    self.inner.state.permits.acquire().await.map_err(|_| {
                        GitHubError::permanent(None, "the GitHub client was shut down")
                    })?;
                self.send(&auth, &url, cached.as_ref()).await
            };
            let answer = match answer {
                Ok(a) => a,
                Err(why) => {
                    self.retry_transient(&mut tries.transient, &path, None, why)
                        .await?;
                    continue;
                }
            };
            if answer.status == StatusCode::NOT_MODIFIED {
                self.inner.count_hit();
            } else {
                self.inner.count_request();
            }
            self.inner.state.observe(&answer.headers);

            if answer.status.is_success() || answer.status == StatusCode::NOT_MODIFIED {
                // Every endpoint we call answers JSON; a body that does not parse was cut or
                // mangled on the way and must neither be cached nor returned.
                if answer.status.is_success() && !is_json(&answer.body) {
                    let why = "GitHub sent an unreadable answer".to_owned();
                    let status = Some(answer.status.as_u16());
                    self.retry_transient(&mut tries.transient, &path, status, why)
                        .await?;
                    continue;
                }
                return self.finish(url, answer, cached).await;
            }
            match self.classify(&url, &path, &answer) {
                Next::Fail(e) => return Err(e),
                Next::Redirect(to) => {
                    tries.redirected(&path, answer.status.as_u16())?;
                    tracing::debug!(from = %path, to = %display_path(&gh.base, &to), "following redirect");
                    url = to;
                }
                next => {
                    self.wait_before_retry(next, &path, answer.status.as_u16(), &mut tries)
                        .await?
                }
            }
        }
    }

    /// Waits as a refusal asks (backoff, a secondary limit's pause, the primary budget's
    /// reset) before the same request goes out again, or fails once its budget is spent.
    pub(crate) async fn wait_before_retry(
        &self,
        next: Next,
        path: &str,
        status: u16,
        tries: &mut Tries,
    ) -> Result<(), GitHubError> {
        let gh = &self.inner.gh.inner;
        let cfg = &gh.cfg;
        match next {
            Next::Fail(e) => Err(e),
            Next::Redirect(_) => Err(GitHubError::permanent(
                Some(status),
                format!("GitHub redirected {path} unexpectedly"),
            )),
            Next::Retry(why) => {
                self.retry_transient(&mut tries.transient, path, Some(status), why)
                    .await
            }
            Next::Primary(until) => {
                tries.primary += 1;
                if tries.primary > cfg.max_retries.saturating_add(1) {
                    return Err(rate_limited(until, path, Some(status)));
                }
                self.inner.state.exhaust(until);
                Ok(())
            }
            Next::Secondary(asked) => {
                if tries.secondary >= cfg.max_retries {
                    let until = gh.clock.now()
                        + chrono::Duration::from_std(asked.unwrap_or(cfg.retry_base * 60))
                            .unwrap_or_else(|_| chrono::Duration::hours(1));
                    return Err(GitHubError::new(
                        FailureKind::RateLimited { until },
                        Some(status),
                        format!(
                            "GitHub kept refusing {path} with its secondary rate limit; \
                             will retry at the next run"
                        ),
                    ));
                }
                let wait = match asked {
                    Some(d) => honour_retry_after(d, cfg.retry_base),
                    None => secondary_backoff(cfg.retry_base, tries.secondary),
                };
                tries.secondary += 1;
                let until = gh.clock.now()
                    + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero());
                tracing::info!(path = %path, wait_ms = wait.as_millis() as u64, "secondary rate limit");
                self.inner
                    .progress
                    .waiting("waiting for GitHub secondary rate limit", until);
                tokio::time::sleep(wait).await;
                self.inner.progress.resumed();
                Ok(())
            }
        }
    }

    /// The `Authorization` header this session sends to the API.
    pub(crate) fn auth(&self) -> Result<HeaderValue, GitHubError> {
        self.inner.auth.clone().ok_or_else(|| {
            GitHubError::new(
                FailureKind::Unauthorized,
                None,
                "the stored GitHub token cannot be sent in an HTTP header: run \
                 `github-backup-scheduler login` again",
            )
        })
    }

    /// Sends one GET and reads the whole body; an error string describes a network failure.
    async fn send(
        &self,
        auth: &HeaderValue,
        url: &Url,
        cached: Option<&CachedResponse>,
    ) -> Result<Answer, String> {
        let gh = &self.inner.gh.inner;
        let mut req = gh
            .http
            .get(url.clone())
            .header(http::header::AUTHORIZATION, auth.clone())
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(c) = cached {
            if let Some(etag) = &c.etag {
                req = req.header(http::header::IF_NONE_MATCH, etag.as_str());
            }
            if let Some(lm) = &c.last_modified {
                req = req.header(http::header::IF_MODIFIED_SINCE, lm.as_str());
            }
        }
        let resp = req.send().await.map_err(|e| describe(&e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| describe(&e))?.to_vec();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Turns a 2xx or 304 answer into a page, storing fresh validators.
    async fn finish(
        &self,
        url: Url,
        answer: Answer,
        cached: Option<CachedResponse>,
    ) -> Result<Page, GitHubError> {
        let base = &self.inner.gh.inner.base;
        let link = header_str(&answer.headers, "link").map(str::to_owned);
        let next = match &link {
            Some(l) => next_link(l, &url),
            None => None,
        };
        if let Some(n) = &next {
            if !same_origin(base, n) {
                return Err(GitHubError::permanent(
                    Some(answer.status.as_u16()),
                    format!(
                        "GitHub's next-page link for {} points to another host; refusing to \
                         send the token there",
                        display_path(base, &url)
                    ),
                ));
            }
        }
        let link_present = link.is_some();
        if answer.status == StatusCode::NOT_MODIFIED {
            let Some(cached) = cached else {
                // We only send validators we hold, so a 304 without an entry means the entry
                // vanished mid-flight; asking again without validators settles it.
                return Err(GitHubError::new(
                    FailureKind::Transient,
                    Some(304),
                    format!(
                        "GitHub answered 304 for {} but no cached copy was found; will retry",
                        display_path(base, &url)
                    ),
                ));
            };
            return Ok(Page {
                url,
                body: cached.body,
                not_modified: true,
                next,
                link_present,
            });
        }
        let etag = header_str(&answer.headers, "etag").map(str::to_owned);
        let last_modified = header_str(&answer.headers, "last-modified").map(str::to_owned);
        if etag.is_some() || last_modified.is_some() {
            let entry = CachedResponse {
                etag,
                last_modified,
                body: answer.body.clone(),
            };
            self.inner.cache.put(url.as_str(), entry).await;
        }
        Ok(Page {
            url,
            body: answer.body,
            not_modified: false,
            next,
            link_present,
        })
    }

    pub(crate) fn classify(&self, url: &Url, path: &str, a: &Answer) -> Next {
        let gh = &self.inner.gh.inner;
        let code = a.status.as_u16();
        let said = github_message(&a.body);
        match code {
            301 | 302 | 303 | 307 | 308 => {
                let Some(to) = header_str(&a.headers, "location").and_then(|l| url.join(l).ok())
                else {
                    return Next::Fail(GitHubError::permanent(
                        Some(code),
                        format!("GitHub redirected {path} without saying where"),
                    ));
                };
                if !same_origin(&gh.base, &to) {
                    return Next::Fail(GitHubError::permanent(
                        Some(code),
                        format!(
                            "GitHub redirected {path} to another host; refusing to send the \
                             token there"
                        ),
                    ));
                }
                Next::Redirect(to)
            }
            401 => Next::Fail(GitHubError::unauthorized()),
            403 | 429 => {
                let now = gh.clock.now();
                if header_u64(&a.headers, "x-ratelimit-remaining") == Some(0) {
                    // The reset header has whole seconds; one already past means the refill is
                    // due any moment (or the clocks differ a little): wait a second.
                    let soon = now + chrono::Duration::seconds(1);
                    let until = reset_time(&a.headers).filter(|r| *r > now).unwrap_or(soon);
                    return Next::Primary(until);
                }
                if let Some(asked) = retry_after(&a.headers, now) {
                    return Next::Secondary(Some(asked));
                }
                let lower = said.to_ascii_lowercase();
                if code == 429
                    || lower.contains("secondary rate limit")
                    || lower.contains("abuse")
                    || lower.contains("rate limit")
                {
                    return Next::Secondary(None);
                }
                Next::Fail(GitHubError::permanent(
                    Some(code),
                    format!(
                        "GitHub refused access to {path} (403): {}",
                        or_default(&said)
                    ),
                ))
            }
            404 | 410 => Next::Fail(GitHubError::new(
                FailureKind::NotFound,
                Some(code),
                format!(
                    "{path} was not found on GitHub ({code}): it was deleted, or the token \
                     cannot see it"
                ),
            )),
            451 => Next::Fail(GitHubError::permanent(
                Some(code),
                format!("GitHub blocks {path} for legal reasons (451)"),
            )),
            408 | 500..=599 => Next::Retry(format!("GitHub answered {code}")),
            _ => Next::Fail(GitHubError::permanent(
                Some(code),
                format!("GitHub answered {code} for {path}: {}", or_default(&said)),
            )),
        }
    }

    /// Counts a transient failure; sleeps the backoff, or fails once the budget is spent.
    pub(crate) async fn retry_transient(
        &self,
        attempts: &mut u32,
        path: &str,
        status: Option<u16>,
        why: String,
    ) -> Result<(), GitHubError> {
        let cfg = &self.inner.gh.inner.cfg;
        *attempts += 1;
        if *attempts > cfg.max_retries {
            return Err(GitHubError::new(
                FailureKind::Transient,
                status,
                format!("{why} on {attempts} attempts for {path}; will retry at the next run"),
            ));
        }
        let wait = transient_backoff(cfg.retry_base, *attempts - 1);
        tracing::debug!(path = %path, attempt = *attempts, wait_ms = wait.as_millis() as u64, reason = %why, "transient failure; retrying");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Waits while the token's primary budget is spent, or fails when the reset is too far away.
    pub(crate) async fn wait_for_primary_budget(&self) -> Result<(), GitHubError> {
        let gh = &self.inner.gh.inner;
        let Some(until) = self.inner.state.exhausted_until(gh.clock.now()) else {
            return Ok(());
        };
        let now = gh.clock.now();
        let wait = (until - now).to_std().unwrap_or(Duration::ZERO);
        if wait > gh.cfg.max_rate_limit_wait {
            return Err(rate_limited(until, "this token", None));
        }
        tracing::info!(until = %until, "waiting for GitHub rate limit");
        self.inner
            .progress
            .waiting("waiting for GitHub rate limit", until);
        // The injected clock decides when the reset has come: re-checked at least every second,
        // so a test that advances a manual clock is not held for the real duration.
        loop {
            let now = gh.clock.now();
            if now >= until {
                break;
            }
            let left = (until - now).to_std().unwrap_or(Duration::ZERO);
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        }
        self.inner.progress.resumed();
        Ok(())
    }
}

fn rate_limited(until: DateTime<Utc>, what: &str, status: Option<u16>) -> GitHubError {
    GitHubError::new(
        FailureKind::RateLimited { until },
        status,
        format!(
            "GitHub's rate limit for {what} is spent until {}; will retry after that",
            until.format("%Y-%m-%d %H:%M:%S UTC")
        ),
    )
}

fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

fn or_default(said: &str) -> &str {
    if said.is_empty() {
        "no reason given"
    } else {
        said
    }
}

/// GitHub's `message` field from an error body, if the body is JSON with one.
pub(crate) fn github_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

/// A network failure in words, without the URL (reqwest puts it in its own message) and so
/// without anything but the host and path we chose.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "GitHub did not answer in time"
    } else if e.is_connect() {
        "could not connect to GitHub"
    } else if e.is_body() || e.is_decode() {
        "the connection to GitHub broke while reading the answer"
    } else {
        "the request to GitHub failed"
    };
    let mut root: &dyn std::error::Error = e;
    let mut deeper = false;
    while let Some(src) = root.source() {
        root = src;
        deeper = true;
    }
    if deeper {
        format!("{what} ({root})")
    } else {
        what.to_owned()
    }
}
