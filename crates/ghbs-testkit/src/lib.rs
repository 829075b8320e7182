//! A GitHub stand-in for tests: a real HTTP server on loopback that speaks the subset of GitHub's
//! REST v3 API the product uses (under `/api/v3`, like GitHub Enterprise) and git's smart HTTP
//! protocol (under `/git/`, through `git http-backend`).
//!
//! Tests drive it through plain Rust control methods (create users, repositories, commits, faults,
//! rate limits) and inspect what the product did through [`GitHubStandIn::requests`].
//!
//! The server runs as a task on the tokio runtime that calls [`GitHubStandIn::start`]. Control
//! methods are synchronous (they shell out to git with `std::process`), which is fine from async
//! tests because they never wait on the server. Running a *blocking* git client against the
//! stand-in from a `current_thread` runtime would deadlock; use `tokio::process` or a
//! `multi_thread` runtime for that.

mod control;
mod git_http;
mod gitcli;
mod http_util;
mod metadata;
mod pg;
mod rest;
mod s3;
mod s3_faults;
mod server;
mod smtp;
pub mod tls;
mod world;
mod writes;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use gitcli::{clone_bundle, git, git_with_env, refs_of};
pub use pg::pg_schema_url;
pub use s3::S3Bucket;
pub use s3_faults::{S3Fault, S3FaultProxy};
pub use smtp::{SmtpMessage, SmtpSink};

/// Options of [`GitHubStandIn::create_repo`]; `Default` is a public, non-fork, unarchived repo
/// with a wiki and `main` as default branch.
#[derive(Clone, Debug)]
pub struct RepoOptions {
    pub private: bool,
    pub fork: bool,
    pub archived: bool,
    pub has_wiki: bool,
    /// Issues enabled (`has_issues`); when off, the issue endpoints answer 410 as on GitHub.
    pub has_issues: bool,
    pub default_branch: String,
}

impl Default for RepoOptions {
    fn default() -> Self {
        RepoOptions {
            private: false,
            fork: false,
            archived: false,
            has_wiki: true,
            has_issues: true,
            default_branch: "main".to_owned(),
        }
    }
}

/// A fault to inject: the next `times` requests whose path (with query) contains `path_contains`
/// get `kind`. Faults are consumed in injection order; the first matching one wins.
#[derive(Clone, Debug)]
pub struct Fault {
    pub path_contains: String,
    pub kind: FaultKind,
    pub times: u32,
}

impl Fault {
    pub fn new(path_contains: &str, kind: FaultKind, times: u32) -> Fault {
        Fault {
            path_contains: path_contains.to_owned(),
            kind,
            times,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this status and a small JSON body (`{"message": "..."}`).
    Status(u16),
    /// 403 with `Retry-After` and GitHub's secondary-rate-limit message.
    SecondaryRateLimit { retry_after_secs: u64 },
    /// Wait this long, then serve the request normally.
    Delay(Duration),
    /// Announce the full length, send about half of the body, then close the connection.
    /// For git this cuts a pack (or ref advertisement) in the middle.
    DropMidBody,
}

/// One request as the stand-in saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// Path with query, e.g. `/api/v3/user/repos?per_page=100`.
    pub path: String,
    pub status: u16,
    /// The user the request authenticated as (lower-cased login), if any.
    pub token_login: Option<String>,
    /// Answered `304 Not Modified` because `If-None-Match` matched.
    pub conditional_hit: bool,
    /// Decremented the caller's REST rate limit.
    pub counted: bool,
    /// A git smart-HTTP request (under `/git/`).
    pub git: bool,
}

/// State shared by the control methods and the request handlers.
pub(crate) struct Shared {
    world: Mutex<world::World>,
    /// Scratch space for git processes (HOME, temporary files).
    home: PathBuf,
}

impl Shared {
    /// Locks the world; a panic in another holder must not wedge every later test step.
    pub(crate) fn world(&self) -> MutexGuard<'_, world::World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running stand-in. Dropping it stops the server and deletes its repositories.
pub struct GitHubStandIn {
    shared: Arc<Shared>,
    base_url: String,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl GitHubStandIn {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start() -> GitHubStandIn {
        let dir = tempfile::Builder::new()
            .prefix("ghbs-github-")
            .tempdir()
            .expect("create stand-in temp dir");
        let repos_root = dir.path().join("repos");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&repos_root).expect("create repos dir");
        std::fs::create_dir_all(&home).expect("create home dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind stand-in listener");
        let addr = listener.local_addr().expect("stand-in local addr");
        let base_url = format!("http://{addr}");
        let shared = Arc::new(Shared {
            world: Mutex::new(world::World::new(base_url.clone(), repos_root)),
            home,
        });
        let server = tokio::spawn(server::serve(listener, shared.clone()));
        GitHubStandIn {
            shared,
            base_url,
            server,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// `{base}/api/v3`, what the product's `--github-api-url` takes.
    pub fn api_url(&self) -> String {
        format!("{}/api/v3", self.base_url)
    }

    /// `{base}/git/{owner}/{name}.git`, the repository's `clone_url`.
    pub fn clone_url(&self, full_name: &str) -> String {
        format!("{}/git/{full_name}.git", self.base_url)
    }

    /// Every request served so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.world().log.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.world().log.clear();
    }

    /// Queues a fault; see [`Fault`].
    pub fn inject(&self, fault: Fault) {
        if fault.times > 0 {
            self.shared.world().faults.push(fault);
        }
    }

    /// After `writes` more successful REST writes (POST, PATCH), every write answers 500 and
    /// changes nothing, until called again; `None` lifts the limit.
    pub fn fail_writes_after(&self, writes: Option<u32>) {
        self.shared.world().write_budget = writes;
    }

    /// Offers GitHub's issue import endpoint (`POST /repos/{o}/{r}/import/issues`, which keeps
    /// creation and closing times); off by default, as on a server without it (404).
    pub fn offer_issue_import(&self, on: bool) {
        self.shared.world().issue_import = on;
    }

    /// Removes every fault not yet consumed.
    pub fn clear_faults(&self) {
        self.shared.world().faults.clear();
    }
}

impl Drop for GitHubStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}
