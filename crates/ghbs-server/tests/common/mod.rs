//! `TestApp`: the real router and scheduler on a fresh SQLite store (or PostgreSQL), a manual
//! clock and the GitHub stand-in. Due jobs run on demand; nothing sleeps.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::{TimeZone, Utc};
use ghbs_core::{Clock, ManualClock};
use ghbs_server::executor::Executor;
use ghbs_server::scheduler::Scheduler;
use ghbs_server::{AppState, ServerConfig};
use ghbs_testkit::GitHubStandIn;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub struct TestApp {
    pub state: Arc<AppState>,
    pub clock: Arc<ManualClock>,
    pub gh: GitHubStandIn,
    pub dir: tempfile::TempDir,
}

pub fn start_time() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut ServerConfig)) -> TestApp {
        let gh = GitHubStandIn::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ServerConfig::with_data_dir(dir.path().to_path_buf());
        cfg.github_api_url = gh.api_url();
        cfg.github_retry_base = std::time::Duration::from_millis(5);
        // Tests count runs: the weekly verification only where a test asks for it.
        cfg.verify_interval = None;
        tweak(&mut cfg);
        let clock = Arc::new(ManualClock::new(start_time()));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let state = AppState::new(cfg, dyn_clock).await.unwrap();
        TestApp {
            state,
            clock,
            gh,
            dir,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = ghbs_server::router(self.state.clone())
            .oneshot(req)
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(key), Some(&body.to_string()))
            .await
    }

    /// A GitHub user in the stand-in, logged in: returns (api key, github token).
    pub async fn login(&self, login: &str) -> (String, String) {
        let (_, token) = self.gh.add_user(login);
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/login",
                None,
                Some(&serde_json::json!({"github_token": token}).to_string()),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (body["api_key"].as_str().unwrap().to_string(), token)
    }

    pub async fn create_job(&self, key: &str, target: &str, schedule: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/jobs",
                key,
                serde_json::json!({"target": target, "schedule": schedule, "timezone": "UTC"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// The regular files of a snapshot's `.tar.gz` download, by path.
    pub async fn tar_files(
        &self,
        key: &str,
        snapshot: i64,
    ) -> std::collections::BTreeMap<String, Vec<u8>> {
        use std::io::Read;
        let bytes = self.download(key, snapshot, "tar.gz").await;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        let mut out = std::collections::BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.header().entry_type().is_file() {
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                out.insert(path, data);
            }
        }
        out
    }

    /// Download a snapshot through the router; checks the status and that the body is as long as
    /// `Content-Length` says.
    pub async fn download(&self, key: &str, snapshot: i64, format: &str) -> Vec<u8> {
        let req = Request::builder()
            .uri(format!(
                "/api/v1/snapshots/{snapshot}/download?format={format}"
            ))
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        let resp = ghbs_server::router(self.state.clone())
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let len: usize = resp.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        assert_eq!(body.len(), len);
        body
    }

    /// `GET path` with extra request headers (raw bytes, so malformed values can be sent);
    /// returns status, response headers and body.
    pub async fn get_raw(
        &self,
        path: &str,
        key: &str,
        headers: &[(&str, &[u8])],
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut req = Request::builder()
            .uri(path)
            .header("authorization", format!("Bearer {key}"));
        for (name, value) in headers {
            req = req.header(
                *name,
                axum::http::HeaderValue::from_bytes(value).expect("a sendable header value"),
            );
        }
        let resp = ghbs_server::router(self.state.clone())
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, headers, body)
    }

    pub fn scheduler(&self, executor: Arc<dyn Executor>) -> Scheduler {
        Scheduler::new(self.state.clone(), executor)
    }

    pub fn backup_scheduler(&self) -> Scheduler {
        self.scheduler(Arc::new(ghbs_server::backup::BackupExecutor))
    }
}
