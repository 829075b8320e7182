//! The HTTP client of the server's `/api/v1/` API.
//!
//! Every failure becomes a [`CliError`] here, chosen from the stable `code` of the server's
//! [`ErrorBody`], so that commands never look at status codes or message text.

use std::time::Duration;

use ghbs_wire::{
    codes, ApiKeyList, AuditList, DownloadFormat, ErrorBody, ForgetRepo, Job, JobCreate, JobList,
    JobUpdate, KeyCreate, KeyCreated, LoginRequest, LoginResponse, RepoForgotten, Run, RunList,
    Snapshot, SnapshotList, User,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::exit::{CliError, CliResult};

/// Jobs asked for per page when listing (the server's largest page).
const JOBS_PAGE: u32 = 500;

/// A client bound to one server and, once logged in, one API key.
pub struct Api {
    http: reqwest::Client,
    server: String,
    key: Option<String>,
    /// Downloads are for `restore` (the server's audit trail records them as restores).
    restore: bool,
}

impl Api {
    /// `server` must already be normalized (see [`crate::config::normalize_server`]).
    pub fn new(
        server: &str,
        key: Option<String>,
        ca_cert: Option<&std::path::Path>,
    ) -> CliResult<Self> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                CliError::usage(format!(
                    "cannot read the CA certificate {} (--ca-cert): {e}",
                    path.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    CliError::usage(format!(
                        "{} (--ca-cert) holds no PEM certificate",
                        path.display()
                    ))
                })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!(
                "github-backup-scheduler/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| CliError::failed(format!("cannot start the HTTP client: {e}")))?;
        Ok(Api {
            http,
            server: server.to_string(),
            key,
            restore: false,
        })
    }

    /// Marks this client's downloads as restores.
    pub fn for_restore(mut self) -> Self {
        self.restore = true;
        self
    }

    fn request(&self, method: Method, path: &str) -> CliResult<RequestBuilder> {
        tracing::debug!(%method, server = %self.server, path, "request");
        let mut req = self.http.request(method, format!("{}{path}", self.server));
        if path.starts_with("/api/v1/") && path != "/api/v1/login" {
            let key = self.key.as_deref().ok_or_else(|| CliError::NotLoggedIn {
                server: self.server.clone(),
            })?;
            req = req.bearer_auth(key);
        }
        Ok(req)
    }

    /// Sends and returns the response when its status is a success; maps failures otherwise.
    async fn send_raw(&self, req: RequestBuilder) -> CliResult<Response> {
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        Err(self.api_error(status, &body))
    }

    async fn send<T: DeserializeOwned>(&self, req: RequestBuilder) -> CliResult<T> {
        let resp = self.send_raw(req.timeout(Duration::from_secs(120))).await?;
        let body = resp.bytes().await.map_err(|e| self.transport_error(&e))?;
        serde_json::from_slice(&body).map_err(|e| {
            CliError::failed(format!(
                "the server at {} sent an answer this client does not understand ({e}); are client and server the same version?",
                self.server
            ))
        })
    }

    async fn send_empty(&self, req: RequestBuilder) -> CliResult {
        self.send_raw(req.timeout(Duration::from_secs(120))).await?;
        Ok(())
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        self.send(self.request(Method::GET, path)?).await
    }

    async fn post<T: DeserializeOwned, B: Serialize>(&self, path: &str, body: &B) -> CliResult<T> {
        self.send(self.request(Method::POST, path)?.json(body))
            .await
    }

    async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        self.send(self.request(Method::POST, path)?).await
    }

    fn transport_error(&self, e: &reqwest::Error) -> CliError {
        let cause = root_cause(e);
        if ["certificate", "UnknownIssuer", "CertNotValid"]
            .iter()
            .any(|w| cause.contains(w))
        {
            return CliError::Unreachable {
                server: self.server.clone(),
                reason: format!(
                    "its TLS certificate is not trusted ({cause}); for a private CA pass \
                     --ca-cert FILE (or set ca_cert in the config file)"
                ),
            };
        }
        if e.is_connect() || e.is_timeout() || e.is_request() {
            CliError::Unreachable {
                server: self.server.clone(),
                reason: root_cause(e),
            }
        } else {
            CliError::failed(format!(
                "the connection to {} broke: {}",
                self.server,
                root_cause(e)
            ))
        }
    }

    fn api_error(&self, status: StatusCode, body: &[u8]) -> CliError {
        let Ok(err) = serde_json::from_slice::<ErrorBody>(body) else {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().take(200).collect();
            if status == StatusCode::UNAUTHORIZED {
                return CliError::KeyRejected {
                    server: self.server.clone(),
                };
            }
            if status == StatusCode::NOT_FOUND {
                return CliError::failed(format!(
                    "{} answered 404 without an API error: is it a github-backup-scheduler server?",
                    self.server
                ));
            }
            return CliError::failed(format!(
                "the server at {} answered {status}{}",
                self.server,
                if text.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", text.trim())
                }
            ));
        };
        match err.code.as_str() {
            codes::UNAUTHORIZED => CliError::KeyRejected { server: self.server.clone() },
            codes::GITHUB_TOKEN_REJECTED => CliError::TokenRejected(format!(
                "GitHub rejected the token: {} — create a new one at https://github.com/settings/tokens and run `github-backup-scheduler login` again",
                err.message
            )),
            codes::NOT_FOUND => CliError::NotFound(err.message),
            // An expired key is a rejected key (exit 3), with the server's words.
            codes::KEY_EXPIRED => CliError::TokenRejected(err.message),
            codes::BAD_REQUEST
            | codes::INVALID_JSON
            | codes::INVALID_TARGET
            | codes::INVALID_SCHEDULE
            | codes::SCHEDULE_TOO_FREQUENT
            | codes::INVALID_TIMEZONE => CliError::Usage(err.message),
            codes::UNAVAILABLE => CliError::failed(format!(
                "the server at {} is not ready: {} — try again shortly",
                self.server, err.message
            )),
            _ => CliError::Failed(err.message),
        }
    }

    // --- account ---------------------------------------------------------------------------

    pub async fn login(&self, req: &LoginRequest) -> CliResult<LoginResponse> {
        self.post("/api/v1/login", req).await
    }

    pub async fn logout(&self) -> CliResult {
        self.send_empty(self.request(Method::POST, "/api/v1/logout")?)
            .await
    }

    pub async fn me(&self) -> CliResult<User> {
        self.get("/api/v1/me").await
    }

    pub async fn keys(&self) -> CliResult<ApiKeyList> {
        self.get("/api/v1/keys").await
    }

    pub async fn create_key(&self, req: &KeyCreate) -> CliResult<KeyCreated> {
        self.post("/api/v1/keys", req).await
    }

    pub async fn audit(&self, limit: u32, before: Option<i64>) -> CliResult<AuditList> {
        let mut req = self
            .request(Method::GET, "/api/v1/audit")?
            .query(&[("limit", limit.to_string())]);
        if let Some(b) = before {
            req = req.query(&[("before", b.to_string())]);
        }
        self.send(req).await
    }

    pub async fn revoke_key(&self, id: i64) -> CliResult {
        self.send_empty(self.request(Method::DELETE, &format!("/api/v1/keys/{id}"))?)
            .await
    }

    // --- jobs ------------------------------------------------------------------------------

    /// Every job of the caller: the listing is paginated (`limit`, `cursor`), and this follows
    /// `next_cursor` until the last page, so callers see one list.
    pub async fn jobs(&self) -> CliResult<JobList> {
        let mut all = JobList {
            jobs: Vec::new(),
            next_cursor: None,
        };
        let mut cursor: Option<String> = None;
        loop {
            let mut req = self
                .request(Method::GET, "/api/v1/jobs")?
                .query(&[("limit", JOBS_PAGE.to_string())]);
            if let Some(c) = &cursor {
                req = req.query(&[("cursor", c.as_str())]);
            }
            let page: JobList = self.send(req).await?;
            all.jobs.extend(page.jobs);
            match page.next_cursor {
                // A server that hands back the cursor it was given would loop forever.
                Some(next) if cursor.as_deref() != Some(next.as_str()) => cursor = Some(next),
                Some(_) => {
                    return Err(CliError::failed(format!(
                        "the server at {} returned the same job-list cursor twice",
                        self.server
                    )))
                }
                None => return Ok(all),
            }
        }
    }

    pub async fn create_job(&self, job: &JobCreate) -> CliResult<Job> {
        self.post("/api/v1/jobs", job).await
    }

    pub async fn job(&self, id: i64) -> CliResult<Job> {
        self.get(&format!("/api/v1/jobs/{id}")).await
    }

    pub async fn update_job(&self, id: i64, update: &JobUpdate) -> CliResult<Job> {
        let req = self.request(Method::PATCH, &format!("/api/v1/jobs/{id}"))?;
        self.send(req.json(update)).await
    }

    pub async fn delete_job(&self, id: i64, purge: bool) -> CliResult {
        let mut req = self.request(Method::DELETE, &format!("/api/v1/jobs/{id}"))?;
        if purge {
            req = req.query(&[("purge", "true")]);
        }
        self.send_empty(req).await
    }

    pub async fn pause(&self, id: i64) -> CliResult<Job> {
        self.post_empty(&format!("/api/v1/jobs/{id}/pause")).await
    }

    pub async fn forget_repo(&self, id: i64, repo: &str) -> CliResult<RepoForgotten> {
        self.post(
            &format!("/api/v1/jobs/{id}/forget-repo"),
            &ForgetRepo {
                repo: repo.to_owned(),
            },
        )
        .await
    }

    pub async fn resume(&self, id: i64) -> CliResult<Job> {
        self.post_empty(&format!("/api/v1/jobs/{id}/resume")).await
    }

    // --- runs ------------------------------------------------------------------------------

    pub async fn start_run(&self, job: i64) -> CliResult<Run> {
        self.post_empty(&format!("/api/v1/jobs/{job}/runs")).await
    }

    /// Queues a verification of the job (one snapshot, or all of them).
    pub async fn start_verify(&self, job: i64, snapshot: Option<i64>) -> CliResult<Run> {
        let query = snapshot.map_or(String::new(), |s| format!("?snapshot={s}"));
        self.post_empty(&format!("/api/v1/jobs/{job}/verify{query}"))
            .await
    }

    pub async fn runs(&self, job: i64) -> CliResult<RunList> {
        self.get(&format!("/api/v1/jobs/{job}/runs")).await
    }

    pub async fn run(&self, id: i64) -> CliResult<Run> {
        self.get(&format!("/api/v1/runs/{id}")).await
    }

    // --- snapshots -------------------------------------------------------------------------

    pub async fn snapshots(&self, job: i64) -> CliResult<SnapshotList> {
        self.get(&format!("/api/v1/jobs/{job}/snapshots")).await
    }

    pub async fn snapshot(&self, id: i64) -> CliResult<Snapshot> {
        self.get(&format!("/api/v1/snapshots/{id}")).await
    }

    /// Starts a download. `resume` = (offset, ETag of the partial file held) asks for the bytes
    /// from that offset only if the server's file still has that tag (`Range` + `If-Range`); a
    /// range is never asked for without its tag. The caller checks whether the answer is 206
    /// (resumed), 200 (the whole file: a different one, or no resume asked) or 416.
    pub async fn download(
        &self,
        snapshot: i64,
        format: DownloadFormat,
        repo: Option<&str>,
        resume: Option<(u64, &str)>,
    ) -> CliResult<Response> {
        let mut req = self
            .request(
                Method::GET,
                &format!("/api/v1/snapshots/{snapshot}/download"),
            )?
            .query(&[("format", format.as_str())]);
        if let Some(repo) = repo {
            req = req.query(&[("repo", repo)]);
        }
        if self.restore {
            req = req.query(&[("purpose", "restore")]);
        }
        if let Some((from, etag)) = resume {
            req = req
                .header(reqwest::header::RANGE, format!("bytes={from}-"))
                .header(reqwest::header::IF_RANGE, etag);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(self.api_error(status, &body))
    }

    /// Maps an error met while reading a download's body.
    pub fn body_error(&self, e: &reqwest::Error) -> CliError {
        self.transport_error(e)
    }
}

/// The innermost cause of a transport error, e.g. "Connection refused (os error 111)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

// --- notifications (issue 11) ----------------------------------------------------------------

impl Api {
    pub async fn notify_targets(&self) -> CliResult<ghbs_wire::NotifyTargetList> {
        self.get("/api/v1/notifications").await
    }

    pub async fn add_notify_target(
        &self,
        req: &ghbs_wire::NotifyTargetCreate,
    ) -> CliResult<ghbs_wire::NotifyTargetCreated> {
        self.post("/api/v1/notifications", req).await
    }

    pub async fn test_notify_target(&self, id: i64) -> CliResult<ghbs_wire::NotifyTestResult> {
        self.post_empty(&format!("/api/v1/notifications/{id}/test"))
            .await
    }

    pub async fn remove_notify_target(&self, id: i64) -> CliResult {
        self.send_empty(self.request(Method::DELETE, &format!("/api/v1/notifications/{id}"))?)
            .await
    }
}
