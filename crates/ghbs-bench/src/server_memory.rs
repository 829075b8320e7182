//! Resident memory of the real server process during a first full-metadata run: the metadata
//! benchmark's in-process run shares its process with the stand-in (and the world it holds), so
//! its memory says nothing about the server's. Here the built `github-backup-scheduler server`
//! backs up the same world through its HTTP API, and its peak resident set (`VmHWM`) and
//! samples of `VmRSS` are read from `/proc`.

use std::path::Path;
use std::time::{Duration, Instant};

use ghbs_testkit::GitHubStandIn;
use serde_json::{json, Value};

use crate::real_server::RunningServer;
use crate::report::{self, figure, secs};

/// What the run cost the server's memory.
pub struct Memory {
    pub peak_kb: u64,
    pub max_sampled_kb: u64,
    pub wall: Duration,
    pub status: String,
}

/// Logs in with `token`, creates an account job on `owner` with `options`, runs it once and
/// reports the server's memory. `workers` is passed as `--workers`.
pub async fn first_run(
    gh: &GitHubStandIn,
    token: &str,
    owner: &str,
    options: Value,
    bin: &Path,
    dir: &Path,
    workers: usize,
) -> anyhow::Result<Memory> {
    let data = dir.join("server-memory");
    std::fs::create_dir_all(&data)?;
    let db = format!("sqlite://{}", data.join("state.db").display());
    let workers = workers.to_string();
    let server = RunningServer::start_with(
        bin,
        &data,
        &db,
        &gh.api_url(),
        &["--workers", workers.as_str()],
    )
    .await?;
    let pid = server
        .pid()
        .ok_or_else(|| anyhow::anyhow!("the server exited"))?;
    let base = format!("http://{}/api/v1", server.addr);
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{base}/login"))
        .json(&json!({"github_token": token, "label": "bench"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let key = login["api_key"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("login answered without api_key: {login}"))?
        .to_owned();
    let job: Value = http
        .post(format!("{base}/jobs"))
        .bearer_auth(&key)
        .json(&json!({"target": owner, "schedule": "daily", "timezone": "UTC", "options": options}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = job["id"].as_i64().unwrap_or_default();
    let started = Instant::now();
    http.post(format!("{base}/jobs/{id}/runs"))
        .bearer_auth(&key)
        .send()
        .await?
        .error_for_status()?;
    let mut max_sampled_kb = 0;
    let status = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        max_sampled_kb = max_sampled_kb.max(report::vm_rss_kb(pid).unwrap_or(0));
        let runs: Value = http
            .get(format!("{base}/jobs/{id}/runs"))
            .bearer_auth(&key)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let status = runs["runs"][0]["status"].as_str().unwrap_or("").to_owned();
        if !matches!(status.as_str(), "" | "queued" | "running") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            anyhow::bail!("the server's first run did not finish within 30 minutes");
        }
    };
    let wall = started.elapsed();
    let peak_kb = report::vm_hwm_kb(pid).unwrap_or(0);
    server.stop().await?;
    Ok(Memory {
        peak_kb,
        max_sampled_kb,
        wall,
        status,
    })
}

/// Prints the figures next to issue 12's target (< 64 MiB).
pub fn print(m: &Memory) {
    figure(
        "3. real server, first run",
        format!("{} in {}", m.status, secs(m.wall)),
    );
    let mib = |kb: u64| kb as f64 / 1024.0;
    report::against(
        "3. server peak resident memory (VmHWM)",
        format!("{:.1} MiB", mib(m.peak_kb)),
        "< 64 MiB",
        mib(m.peak_kb) < 64.0,
    );
    figure(
        "   largest VmRSS sample (every 200 ms)",
        format!("{:.1} MiB", mib(m.max_sampled_kb)),
    );
}
