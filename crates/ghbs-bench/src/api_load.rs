//! `ghbs-bench api-load`: `GET /api/v1/jobs` of one user with 100 jobs against the real server
//! binary, driven by `wrk` (a real HTTP load generator in its own process, not this one's
//! clients), with 64 connections. Prints wrk's own figures and the targets of issue 14.
//!
//! The API key reaches wrk through its environment (a Lua script reads `GHBS_BENCH_KEY`), never
//! its argv.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use ghbs_core::{Clock, ManualClock};
use ghbs_server::crypto::{hash_api_key, new_api_key};
use ghbs_server::executor::{ExecOutcome, Executor, RunProgress};
use ghbs_server::scheduler::Scheduler;
use ghbs_server::{AppState, RunContext, ServerConfig};
use ghbs_store::{Claim, NewJob};
use ghbs_wire::{JobOptions, Retention, TargetKind};

use crate::db::BenchDb;
use crate::real_server::{self, RunningServer};
use crate::report::{self, against, figure};

/// Options of the `api-load` subcommand (see `main.rs` for the flags).
pub struct ApiLoad {
    pub database: Option<String>,
    pub jobs: usize,
    pub connections: usize,
    pub threads: usize,
    pub seconds: u64,
    pub limit: usize,
    pub server_bin: Option<PathBuf>,
    pub wrk: PathBuf,
}

pub async fn run(opts: ApiLoad) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("ghbs-bench-").tempdir()?;
    let db = BenchDb::prepare(opts.database.as_deref(), dir.path()).await?;
    report::header(
        &format!("API load benchmark with wrk ({})", db.kind()),
        &format!(
            "1 user, {} jobs with 2 runs each, GET /api/v1/jobs?limit={}, {} connections, {} wrk threads, {} s",
            opts.jobs, opts.limit, opts.connections, opts.threads, opts.seconds
        ),
    );
    let result = run_on(&opts, &db, dir.path()).await;
    db.cleanup().await;
    result
}

async fn run_on(opts: &ApiLoad, db: &BenchDb, dir: &std::path::Path) -> anyhow::Result<()> {
    let key = seed(opts, db, dir).await?;
    let bin = opts
        .server_bin
        .clone()
        .unwrap_or_else(real_server::default_binary);
    let server = RunningServer::start(&bin, &dir.join("server-data"), &db.url).await?;
    let url = format!("http://{}/api/v1/jobs?limit={}", server.addr, opts.limit);

    // What one response holds (and that the key works).
    let first = reqwest::Client::new()
        .get(&url)
        .bearer_auth(key.expose())
        .send()
        .await?;
    anyhow::ensure!(
        first.status().is_success(),
        "GET /api/v1/jobs answered {}",
        first.status()
    );
    let body = first.bytes().await?;
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    let listed = json["jobs"].as_array().map_or(0, Vec::len);
    figure(
        "response",
        format!("{listed} jobs with their last run, {} bytes", body.len()),
    );

    let script = dir.join("auth.lua");
    std::fs::write(
        &script,
        "wrk.headers[\"Authorization\"] = \"Bearer \" .. os.getenv(\"GHBS_BENCH_KEY\")\n",
    )?;
    let wrk = |threads: usize, connections: usize, seconds: u64| {
        let mut cmd = tokio::process::Command::new(&opts.wrk);
        cmd.arg(format!("-t{threads}"))
            .arg(format!("-c{connections}"))
            .arg(format!("-d{seconds}s"))
            .arg("--latency")
            .arg("-s")
            .arg(&script)
            .arg(&url)
            .env("GHBS_BENCH_KEY", key.expose())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    };

    let alone = wrk(1, 1, 3.min(opts.seconds)).output().await;
    let loaded = wrk(opts.threads, opts.connections, opts.seconds)
        .output()
        .await;
    let rss = server.pid().and_then(report::vm_rss_kb);
    server.stop().await?;
    let (alone, loaded) = match (alone, loaded) {
        (Ok(a), Ok(l)) => (a, l),
        (Err(e), _) | (_, Err(e)) => anyhow::bail!(
            "cannot run {} ({e}): install it (`apt-get install -y wrk`) or pass --wrk",
            opts.wrk.display()
        ),
    };
    let alone = WrkOutput::parse(&String::from_utf8_lossy(&alone.stdout))?;
    let out = String::from_utf8_lossy(&loaded.stdout).into_owned();
    println!("--- wrk, {} connections ---\n{}---", opts.connections, out);
    let loaded = WrkOutput::parse(&out)?;

    figure(
        "1 connection: p50 / p99",
        format!("{} / {}", ms(alone.p50), ms(alone.p99)),
    );
    figure(
        &format!("{} connections: requests", opts.connections),
        format!("{} ({} not 2xx)", loaded.requests, loaded.non_2xx),
    );
    against(
        &format!("{} connections: throughput", opts.connections),
        format!("{:.0} req/s", loaded.rps),
        ">= 3,000 req/s",
        loaded.rps >= 3000.0,
    );
    figure(
        &format!("{} connections: p50 / p90", opts.connections),
        format!("{} / {}", ms(loaded.p50), ms(loaded.p90)),
    );
    against(
        &format!("{} connections: p99", opts.connections),
        ms(loaded.p99),
        "< 20 ms",
        loaded.p99 < 20.0,
    );
    if let Some(kb) = rss {
        figure(
            "server RSS after the load",
            format!("{:.1} MB", kb as f64 / 1024.0),
        );
    }
    Ok(())
}

fn ms(v: f64) -> String {
    format!("{v:.2} ms")
}

/// One user with `opts.jobs` jobs, each with two finished runs (so a listing carries a last
/// run and freshness for every job), and an API key made the way `login` makes one.
async fn seed(
    opts: &ApiLoad,
    db: &BenchDb,
    dir: &std::path::Path,
) -> anyhow::Result<ghbs_core::Secret> {
    let now = Utc::now();
    let store = ghbs_store::connect(&db.url).await?;
    let user = store
        .upsert_user(2_000_000, "loaduser", b"not-a-sealed-token", now)
        .await?;
    let mut ids = Vec::with_capacity(opts.jobs);
    for j in 0..opts.jobs {
        let job = store
            .create_job(NewJob {
                user_id: user.id,
                target: format!("loaduser/repo{j}"),
                target_kind: TargetKind::Repository,
                schedule: ghbs_core::Schedule::Daily { at: None },
                timezone: chrono_tz::UTC,
                retention: Retention::default(),
                options: JobOptions::default(),
                next_run_at: now + chrono::Duration::hours(2),
                created_at: now,
            })
            .await?;
        ids.push(job.id);
    }
    let key = new_api_key();
    store
        .create_api_key(user.id, &hash_api_key(key.expose()), Some("bench"), now)
        .await?;
    drop(store);

    // Two runs per job through the real scheduler with an executor that does nothing.
    let mut cfg = ServerConfig::with_data_dir(dir.join("seed-data"));
    cfg.database_url = db.url.clone();
    cfg.workers = 16;
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
    let state = AppState::new(cfg, clock).await?;
    let scheduler = Scheduler::new(state.clone(), Arc::new(Noop));
    for _ in 0..2 {
        for &id in &ids {
            state.store.request_run(user.id, id, now).await?;
        }
        while scheduler.run_due_once().await > 0 {}
    }
    Ok(key)
}

/// Succeeds at once: the runs exist only to be listed.
struct Noop;

#[async_trait]
impl Executor for Noop {
    async fn execute(&self, _: &Arc<RunContext>, _: &Claim, _: RunProgress) -> ExecOutcome {
        ExecOutcome::default()
    }
}

/// The figures of one `wrk --latency` report (latencies in ms).
#[derive(Debug, PartialEq)]
struct WrkOutput {
    requests: u64,
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    non_2xx: u64,
}

impl WrkOutput {
    fn parse(text: &str) -> anyhow::Result<WrkOutput> {
        let pct = |p: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(p))
                .and_then(|v| duration_ms(v.trim()))
                .ok_or_else(|| anyhow::anyhow!("no {p} line in wrk's output:\n{text}"))
        };
        let rps = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk's output:\n{text}"))?;
        let requests = text
            .lines()
            .find_map(|l| l.trim().split_once(" requests in "))
            .and_then(|(n, _)| n.trim().parse().ok())
            .unwrap_or(0);
        let non_2xx = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Ok(WrkOutput {
            requests,
            rps,
            p50: pct("50%")?,
            p90: pct("90%")?,
            p99: pct("99%")?,
            non_2xx,
        })
    }
}

/// wrk's `12.34ms`, `567.00us`, `1.02s`, in milliseconds.
fn duration_ms(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_latency_report() {
        let text = "Running 10s test @ http://127.0.0.1:1/api/v1/jobs
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    38.12ms    5.00ms  90.00ms   80.00%
    Req/Sec   800.00    100.00     1.00k    70.00%
  Latency Distribution
     50%   37.00ms
     75%   40.00ms
     90%  850.00us
     99%    1.20s
  15632 requests in 10.01s, 123.45MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   1562.34
Transfer/sec:     12.33MB
";
        let w = WrkOutput::parse(text).unwrap();
        assert_eq!(w.requests, 15632);
        assert_eq!(w.non_2xx, 3);
        assert!((w.rps - 1562.34).abs() < 1e-9);
        assert!((w.p50 - 37.0).abs() < 1e-9);
        assert!((w.p90 - 0.85).abs() < 1e-9);
        assert!((w.p99 - 1200.0).abs() < 1e-9);
        assert!(WrkOutput::parse("garbage").is_err());
    }
}
