//! Release asset downloads: the one GitHub answer that is not JSON. The API answers
//! `GET /repos/{owner}/{repo}/releases/assets/{id}` with `Accept: application/octet-stream` by
//! redirecting to a signed URL on another host (objects.githubusercontent.com); the token goes
//! only to the API's own origin, never to that host (the signature in the URL is its access).
//! The body is streamed to a file, so a 2 GiB asset never sits in memory.

use std::path::Path;
use std::time::Duration;

use ghbs_core::FailureKind;
use http::StatusCode;
use tokio::io::AsyncWriteExt;

use crate::error::GitHubError;
use crate::link::{display_path, same_origin};
use crate::ratelimit::header_str;
use crate::request::{describe, Answer, Tries};
use crate::session::Session;

/// A download may take this long in all (the client's per-request timeout is meant for JSON):
/// 2 GiB, GitHub's largest asset, at about 1 MB/s.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// Why streaming a body into the file stopped.
enum Cut {
    /// The connection failed or the body ended early: worth another try.
    Network(String),
    /// Writing the file failed (a full disk, a permission): not GitHub's fault.
    Disk(std::io::Error),
}

impl Session {
    /// Downloads release asset `asset_id` of `full_name` into `dest` (created or truncated) and
    /// returns its size; a download of another size than `expected` (the size GitHub lists) is
    /// a cut transfer, tried again. Counts as one API request per try (the redirect target is
    /// not the API). A failure leaves `dest` in an undefined state; the caller removes it.
    pub async fn download_release_asset(
        &self,
        full_name: &str,
        asset_id: i64,
        dest: &Path,
        expected: Option<u64>,
    ) -> Result<u64, GitHubError> {
        let gh = &self.inner.gh.inner;
        let auth = self.auth()?;
        let start = self.url(&format!("/repos/{full_name}/releases/assets/{asset_id}"))?;
        let path = display_path(&gh.base, &start);
        let mut url = start;
        let mut tries = Tries::default();
        loop {
            let to_api = same_origin(&gh.base, &url);
            let mut req = gh
                .http
                .get(url.clone())
                .timeout(DOWNLOAD_TIMEOUT)
                .header(http::header::ACCEPT, "application/octet-stream");
            let resp = if to_api {
                self.wait_for_primary_budget().await?;
                let _permit =
                    self.inner.state.permits.acquire().await.map_err(|_| {
                        GitHubError::permanent(None, "the GitHub client was shut down")
                    })?;
                req = req
                    .header(http::header::AUTHORIZATION, auth.clone())
                    .header("X-GitHub-Api-Version", "2022-11-28");
                let resp = req.send().await;
                self.inner.count_request();
                if let Ok(r) = &resp {
                    self.inner.state.observe(r.headers());
                }
                resp
            } else {
                req.send().await
            };
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    self.retry_transient(&mut tries.transient, &path, None, describe(&e))
                        .await?;
                    continue;
                }
            };
            let status = resp.status();
            if status.is_success() {
                match stream_to(resp, dest).await {
                    Ok(size) if expected.is_none_or(|e| e == size) => return Ok(size),
                    Ok(size) => {
                        let why = format!(
                            "the download has {size} bytes, GitHub lists {}",
                            expected.unwrap_or(0)
                        );
                        self.retry_transient(&mut tries.transient, &path, Some(200), why)
                            .await?;
                        url =
                            self.url(&format!("/repos/{full_name}/releases/assets/{asset_id}"))?;
                        continue;
                    }
                    Err(Cut::Network(why)) => {
                        self.retry_transient(&mut tries.transient, &path, Some(200), why)
                            .await?;
                        url =
                            self.url(&format!("/repos/{full_name}/releases/assets/{asset_id}"))?;
                        continue;
                    }
                    Err(Cut::Disk(e)) => return Err(disk_error(&path, e)),
                }
            }
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                // Unlike API redirects, this one leaves the API's origin by design; the token
                // stays behind (see the module docs).
                let Some(to) =
                    header_str(resp.headers(), "location").and_then(|l| url.join(l).ok())
                else {
                    return Err(GitHubError::permanent(
                        Some(status.as_u16()),
                        format!("GitHub redirected {path} without saying where"),
                    ));
                };
                tries.redirected(&path, status.as_u16())?;
                url = to;
                continue;
            }
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            let answer = Answer {
                status,
                headers,
                body,
            };
            if !to_api {
                // The signed URL expired or its host failed: ask the API for a fresh one.
                let why = format!("the asset host answered {}", status.as_u16());
                if status.is_server_error() || status == StatusCode::FORBIDDEN {
                    self.retry_transient(&mut tries.transient, &path, Some(status.as_u16()), why)
                        .await?;
                    url = self.url(&format!("/repos/{full_name}/releases/assets/{asset_id}"))?;
                    continue;
                }
                return Err(GitHubError::permanent(Some(status.as_u16()), why));
            }
            let next = self.classify(&url, &path, &answer);
            self.wait_before_retry(next, &path, status.as_u16(), &mut tries)
                .await?;
        }
    }
}

/// Streams the body into `dest`, fsynced; checks the length GitHub announced.
async fn stream_to(mut resp: reqwest::Response, dest: &Path) -> Result<u64, Cut> {
    let announced = resp.content_length();
    let mut file = tokio::fs::File::create(dest).await.map_err(Cut::Disk)?;
    let mut size = 0u64;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                file.write_all(&chunk).await.map_err(Cut::Disk)?;
                size += chunk.len() as u64;
            }
            Ok(None) => break,
            Err(e) => return Err(Cut::Network(describe(&e))),
        }
    }
    if let Some(n) = announced.filter(|n| *n != size) {
        return Err(Cut::Network(format!(
            "the download ended after {size} of {n} bytes"
        )));
    }
    file.flush().await.map_err(Cut::Disk)?;
    file.sync_all().await.map_err(Cut::Disk)?;
    Ok(size)
}

fn disk_error(path: &str, e: std::io::Error) -> GitHubError {
    let kind = if e.raw_os_error() == Some(28) {
        FailureKind::StorageFull
    } else {
        FailureKind::Transient
    };
    GitHubError::new(
        kind,
        None,
        format!("could not write the download of {path} to disk: {e}"),
    )
}
