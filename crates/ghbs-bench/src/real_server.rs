//! The real `github-backup-scheduler server` process: start-to-ready time, `GET /api/v1/jobs`
//! latency under concurrent clients, resident memory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ghbs_core::Secret;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where `cargo build --release -p github-backup-scheduler` puts the binary: next to this one.
pub fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("github-backup-scheduler")))
        .unwrap_or_else(|| PathBuf::from("target/release/github-backup-scheduler"))
}

pub struct RunningServer {
    child: Child,
    pub addr: SocketAddr,
    /// Spawn until the `listening on` line (database opened and migrated, socket bound).
    pub listening_after: Duration,
    /// Spawn until `/readyz` first answered 200.
    pub ready_after: Duration,
    stderr_path: PathBuf,
}

impl RunningServer {
    /// Spawn the binary and wait until `/readyz` answers 200. `/readyz` is polled every
    /// millisecond once the address is known, so the figure is at most ~1 ms late.
    pub async fn start(
        bin: &Path,
        data_dir: &Path,
        database_url: &str,
    ) -> anyhow::Result<RunningServer> {
        // Nothing listens there: the jobs are not due, so the server never calls GitHub.
        RunningServer::start_with(bin, data_dir, database_url, "http://127.0.0.1:9", &[]).await
    }

    /// Like [`RunningServer::start`], against the GitHub API at `api_url`, with `extra` flags.
    pub async fn start_with(
        bin: &Path,
        data_dir: &Path,
        database_url: &str,
        api_url: &str,
        extra: &[&str],
    ) -> anyhow::Result<RunningServer> {
        if !bin.exists() {
            anyhow::bail!(
                "{} does not exist: build it first with \
                 `cargo build --release -p github-backup-scheduler` (or pass --server-bin)",
                bin.display()
            );
        }
        let stderr_path = data_dir.with_extension("stderr.log");
        let stderr = std::fs::File::create(&stderr_path)?;
        let started = Instant::now();
        let mut child = Command::new(bin)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(["--database", database_url])
            .args(["--github-api-url", api_url])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        let line = match first {
            Ok(Ok(Some(line))) => line,
            _ => {
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                anyhow::bail!("the server did not print its address; its stderr:\n{log}");
            }
        };
        let listening_after = started.elapsed();
        let addr: SocketAddr = line
            .strip_prefix("listening on http://")
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("unexpected first line from the server: {line:?}"))?;
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/readyz");
        let ready_after = loop {
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == reqwest::StatusCode::OK {
                    break started.elapsed();
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("/readyz did not answer 200 within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        Ok(RunningServer {
            child,
            addr,
            listening_after,
            ready_after,
            stderr_path,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM (through `kill`, as `unsafe` is off limits), wait for the drain, SIGKILL after 30 s.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                self.child.kill().await?;
                anyhow::bail!(
                    "the server did not stop within 30 s of SIGTERM; see {}",
                    self.stderr_path.display()
                )
            }
        }
    }
}

/// What the latency test saw.
pub struct Latencies {
    /// Sorted, warm-up excluded.
    pub samples: Vec<Duration>,
    pub errors: usize,
    pub wall: Duration,
    /// Jobs in one response (sanity check that each client lists its user's jobs).
    pub jobs_per_response: usize,
}

/// `clients` concurrent clients, each with its own connection and its own user's API key, send
/// `GET /api/v1/jobs` back to back until `total` requests are done or `limit` has passed. Each
/// client's first request (connection set-up) is a warm-up and not counted.
pub async fn list_jobs_latency(
    addr: SocketAddr,
    keys: &[Secret],
    clients: usize,
    total: usize,
    limit: Duration,
) -> anyhow::Result<Latencies> {
    let url = format!("http://{addr}/api/v1/jobs");
    let first = reqwest::Client::new()
        .get(&url)
        .bearer_auth(keys[0].expose())
        .send()
        .await?;
    if !first.status().is_success() {
        anyhow::bail!(
            "GET /api/v1/jobs answered {}: {}",
            first.status(),
            first.text().await.unwrap_or_default()
        );
    }
    let body: serde_json::Value = first.json().await?;
    let jobs_per_response = body["jobs"].as_array().map(|a| a.len()).unwrap_or(0);

    let budget = Arc::new(AtomicUsize::new(total));
    let started = Instant::now();
    let deadline = started + limit;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..clients {
        let key = keys[i % keys.len()].clone();
        let url = url.clone();
        let budget = budget.clone();
        tasks.spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("build HTTP client");
            let mut samples = Vec::new();
            let mut errors = 0usize;
            let mut warm = false;
            loop {
                if warm {
                    let taken = budget
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1));
                    if taken.is_err() || Instant::now() >= deadline {
                        break;
                    }
                }
                let t = Instant::now();
                let ok = match client.get(&url).bearer_auth(key.expose()).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let took = t.elapsed();
                if warm {
                    samples.push(took);
                    if !ok {
                        errors += 1;
                    }
                }
                warm = true;
            }
            (samples, errors)
        });
    }
    let mut samples = Vec::with_capacity(total);
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        let (s, e) = r?;
        samples.extend(s);
        errors += e;
    }
    let wall = started.elapsed();
    samples.sort();
    Ok(Latencies {
        samples,
        errors,
        wall,
        jobs_per_response,
    })
}
