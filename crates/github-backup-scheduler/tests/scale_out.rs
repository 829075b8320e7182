//! Scale-out stories with separate OS processes of the real binary (issue 9): three server
//! nodes on one PostgreSQL schema and one bucket on a real S3 endpoint (moto), the GitHub
//! stand-in, and an injected clock (`GHBS_TEST_CLOCK_START`) so that three days pass in
//! seconds.
//!
//! 1. 30 daily jobs over three days: every slot runs exactly once, and every node does some of
//!    the work.
//! 2. `kill -9` of the node in the middle of a backup (its git transfer held by the stand-in):
//!    after the lease (the survivors restarted five minutes later on the injected clock) the run
//!    is taken over, no snapshot of the killed attempt is visible, and every snapshot verifies.
//! 3. A fourth node with an empty cache folder serves bundle, tar.gz and zip byte-identical to
//!    a node that ran the backups.
//!
//! Needs `TEST_DATABASE_URL` and `TEST_S3_ENDPOINT` (CI sets both); says why it skips otherwise.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ghbs_testkit::{Fault, FaultKind, GitHubStandIn, RepoOptions, S3Bucket};
use sqlx::Connection;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use support::BIN;

const JOBS: usize = 30;
/// Base64 of 32 bytes: the token-sealing key every node shares.
const MASTER_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One node: a data folder of its own and a fixed port (so the CLI's login for it survives a
/// restart).
struct Node {
    name: &'static str,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

struct Cluster {
    github: GitHubStandIn,
    token: String,
    db: String,
    bucket: S3Bucket,
    nodes: Vec<Node>,
    config: TempDir,
    work: TempDir,
    _root: TempDir,
}

impl Cluster {
    fn url(&self, node: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[node].port)
    }

    async fn start(&mut self, node: usize, clock: &str) {
        let n = &self.nodes[node];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.dir.with_extension("log"))
            .unwrap();
        let mut child = Command::new(BIN)
            .args(["server", "--listen", &format!("127.0.0.1:{}", n.port)])
            .arg("--data-dir")
            .arg(&n.dir)
            .args(["--github-api-url", &self.github.api_url()])
            .args(["--storage", &self.bucket.url()])
            .args(["--workers", "2", "--verify-interval-days", "0"])
            .env("GHBS_DATABASE_URL", &self.db)
            .env("GHBS_MASTER_KEY", MASTER_KEY)
            .env("GHBS_TEST_CLOCK_START", clock)
            .envs(self.bucket.vars.iter().map(|(k, v)| (k, v)))
            .env_remove("GHBS_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let first = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .next_line()
            .await
            .unwrap();
        assert!(
            first
                .as_deref()
                .is_some_and(|l| l.starts_with("listening on ")),
            "node {} did not start: {first:?}\n{}",
            n.name,
            self.log(node)
        );
        self.nodes[node].child = Some(child);
    }

    async fn start_all(&mut self, nodes: &[usize], clock: &str) {
        for &n in nodes {
            self.start(n, clock).await;
        }
    }

    /// SIGKILL.
    async fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].child.take() {
            child.kill().await.unwrap();
        }
    }

    fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.nodes[node].dir.with_extension("log")).unwrap_or_default()
    }

    async fn cli(&self, node: usize, args: &[&str]) -> support::Outcome {
        let out = Command::new(BIN)
            .env("GHBS_CONFIG_DIR", self.config.path())
            .env("GHBS_SERVER", self.url(node))
            .env_remove("GITHUB_TOKEN")
            .current_dir(self.work.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        support::Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn ok(&self, node: usize, args: &[&str]) -> support::Outcome {
        let o = self.cli(node, args).await;
        assert_eq!(
            o.code, 0,
            "{args:?} on node {node}: {}{}",
            o.stdout, o.stderr
        );
        o
    }

    async fn login(&self, node: usize) {
        let mut child = Command::new(BIN)
            .env("GHBS_CONFIG_DIR", self.config.path())
            .env("GHBS_SERVER", self.url(node))
            .args(["login", "--token-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{}\n", self.token).as_bytes())
            .await
            .unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        assert!(out.status.success(), "login on node {node}: {out:?}");
    }

    /// `(status → count)` of every run, from the database.
    async fn runs(&self) -> BTreeMap<String, i64> {
        let mut conn = sqlx::PgConnection::connect(&self.db).await.unwrap();
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM runs GROUP BY status")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        rows.into_iter().collect()
    }

    /// Runs per job id with that status.
    async fn runs_of(&self, status: &str) -> BTreeMap<i64, i64> {
        let mut conn = sqlx::PgConnection::connect(&self.db).await.unwrap();
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT job_id, COUNT(*) FROM runs WHERE status = $1 GROUP BY job_id")
                .bind(status)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        rows.into_iter().collect()
    }

    async fn wait_for(&self, what: &str, mut done: impl AsyncFnMut(&Cluster) -> bool) {
        let start = Instant::now();
        while !done(self).await {
            if start.elapsed() > Duration::from_secs(180) {
                let logs: Vec<String> = (0..self.nodes.len()).map(|n| self.log(n)).collect();
                panic!(
                    "timed out waiting for {what}; runs {:?}\n{}",
                    self.runs().await,
                    logs.join("\n----\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A counter or gauge from a node's `/metrics`.
    async fn metric(&self, node: usize, series: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.url(node)))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }
}

fn day(n: u32, time: &str) -> String {
    format!("2031-03-{:02}T{time}Z", n)
}

/// Day `n`'s backups finished: `JOBS * n` succeeded runs, none queued or running.
async fn day_done(c: &Cluster, n: i64) {
    c.wait_for(&format!("day {n}'s runs"), async |c| {
        let runs = c.runs().await;
        runs.get("succeeded").copied().unwrap_or(0) >= JOBS as i64 * n
            && !runs.contains_key("queued")
            && !runs.contains_key("running")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_database_and_one_bucket() {
    let Some(db) = ghbs_testkit::pg_schema_url("the scale-out stories", "scale").await else {
        return;
    };
    let Some(bucket) = S3Bucket::create("the scale-out stories").await else {
        return;
    };
    let github = GitHubStandIn::start().await;
    let (_, token) = github.add_user("octo");
    for i in 0..JOBS {
        let name = format!("octo/r{i}");
        github.create_repo("octo", &format!("r{i}"), RepoOptions::default());
        github.commit(&name, "main", &[("README.md", &format!("r{i}\n"))], "first");
    }
    let root = TempDir::new().unwrap();
    let nodes = ["a", "b", "c", "d"]
        .into_iter()
        .map(|name| Node {
            name,
            dir: root.path().join(name),
            port: free_port(),
            child: None,
        })
        .collect();
    let mut c = Cluster {
        github,
        token,
        db,
        bucket,
        nodes,
        config: TempDir::new().unwrap(),
        work: TempDir::new().unwrap(),
        _root: root,
    };

    // Day 0: one node, to log in and schedule every job at 08:01 UTC.
    c.start(0, &day(1, "07:00:00")).await;
    c.login(0).await;
    for i in 0..JOBS {
        c.ok(0, &["schedule", &format!("octo/r{i}"), "--daily", "08:01"])
            .await;
    }
    c.kill(0).await;
    assert!(c.runs().await.is_empty());

    // Days 1 and 2: three nodes, started shortly before the slot.
    let mut ran_by = [0f64; 3];
    for d in 1..=2u32 {
        for i in 0..5 {
            let name = format!("octo/r{i}");
            c.github
                .commit(&name, "main", &[("day.txt", &format!("{d}\n"))], "daily");
        }
        c.start_all(&[0, 1, 2], &day(d, "08:00:57")).await;
        day_done(&c, d as i64).await;
        let mut today = 0.0;
        for (n, total) in ran_by.iter_mut().enumerate() {
            let ran = c.metric(n, "ghbs_runs_total{outcome=\"succeeded\"}").await;
            *total += ran;
            today += ran;
        }
        assert_eq!(today, JOBS as f64, "day {d}: runs per node do not add up");
        if d == 2 {
            // Placement: each job goes first to the node that ran it yesterday, whose cache
            // holds its mirror; without it about two thirds of the runs would hydrate.
            let mut misses = 0.0;
            let mut hits = 0.0;
            for n in 0..3 {
                misses += c
                    .metric(n, "ghbs_storage_cache_total{result=\"miss\"}")
                    .await;
                hits += c
                    .metric(n, "ghbs_storage_cache_total{result=\"hit\"}")
                    .await;
            }
            eprintln!("day 2 cache: {hits} hits, {misses} misses");
            assert!(
                misses <= 5.0,
                "day 2: {misses} runs hydrated a mirror another node held (hits: {hits})"
            );
        }
        for n in 0..3 {
            c.kill(n).await;
        }
    }
    // Each slot exactly once: every job has exactly two runs, both succeeded.
    let succeeded = c.runs_of("succeeded").await;
    assert_eq!(succeeded.len(), JOBS);
    assert!(succeeded.values().all(|&n| n == 2), "{succeeded:?}");
    assert_eq!(c.runs().await.len(), 1, "{:?}", c.runs().await);
    assert!(
        ran_by.iter().all(|&n| n > 0.0),
        "the work was not spread: {ran_by:?}"
    );
    eprintln!("runs per node over two days: {ran_by:?}");

    // Day 3: the transfer of r0 is held; the node running it is killed with SIGKILL.
    for i in 0..5 {
        let name = format!("octo/r{i}");
        c.github
            .commit(&name, "main", &[("day.txt", "3\n")], "daily");
    }
    c.github.inject(Fault::new(
        "/octo/r0.git/git-upload-pack",
        FaultKind::Delay(Duration::from_secs(600)),
        1,
    ));
    c.start_all(&[0, 1, 2], &day(3, "08:00:57")).await;
    c.login(1).await;
    c.login(2).await;
    c.wait_for("day 3 but r0", async |c| {
        let runs = c.runs().await;
        runs.get("succeeded").copied().unwrap_or(0) >= JOBS as i64 * 3 - 1
            && runs.get("running").copied() == Some(1)
    })
    .await;
    let mut holder = None;
    for n in 0..3 {
        if c.metric(n, "ghbs_runs_in_progress").await >= 1.0 {
            holder = Some(n);
        }
    }
    let holder = holder.expect("some node runs r0's backup");
    c.kill(holder).await;
    c.github.clear_faults();
    let survivors: Vec<usize> = (0..3).filter(|&n| n != holder).collect();
    // Nothing of the killed attempt is visible: job 1 (octo/r0) still has two snapshots.
    let snaps = c.ok(survivors[0], &["snapshots", "1", "--json"]).await;
    assert_eq!(snaps.json()["snapshots"].as_array().unwrap().len(), 2);
    for &n in &survivors {
        c.kill(n).await;
    }
    // Five minutes later on the clock the lease has expired: a survivor takes the run over.
    c.start_all(&survivors, &day(3, "08:07:30")).await;
    c.wait_for("r0's backup taken over", async |c| {
        c.runs_of("succeeded").await.get(&1).copied() == Some(3)
    })
    .await;
    let failed = c.runs_of("failed").await;
    assert_eq!(
        failed.get(&1).copied(),
        Some(1),
        "the killed attempt: {failed:?}"
    );
    assert_eq!(failed.len(), 1, "{failed:?}");
    let snaps = c.ok(survivors[0], &["snapshots", "1", "--json"]).await;
    assert_eq!(snaps.json()["snapshots"].as_array().unwrap().len(), 3);
    let verified = c.ok(survivors[0], &["verify", "--all"]).await;
    assert!(!verified.stdout.contains("problem:"), "{}", verified.stdout);

    // A fourth node with an empty cache serves what the others made, byte for byte.
    c.start(3, &day(3, "08:09:00")).await;
    c.login(3).await;
    for job in ["1", "2", "17"] {
        for format in ["bundle", "tar.gz", "zip"] {
            let a = fetch(&c, survivors[0], job, format).await;
            let d = fetch(&c, 3, job, format).await;
            assert!(a == d, "job {job} as {format}: node d's download differs");
        }
    }
    assert!(
        c.metric(3, "ghbs_storage_cache_total{result=\"miss\"}")
            .await
            >= 3.0,
        "node d should have hydrated the three mirrors it served"
    );
    // `restore` through the cold node of a job it never served: the repository comes back.
    let target = c.work.path().join("r19-restored.git");
    support::bare_repo(&target);
    c.ok(3, &["restore", "20", "--to", path_str(&target)]).await;
    assert_eq!(
        support::refs(&target),
        c.github.refs("octo/r19"),
        "restore from the cold node"
    );
    // The storage's garbage collection ran once per day across the cluster (day 1 at the
    // first start, then once on day 2 and once on day 3), not once per node.
    let collections: usize = (0..4)
        .map(|n| c.log(n).matches("collected the shared storage").count())
        .sum();
    assert_eq!(collections, 3, "daily collections across all nodes");
    for n in 0..4 {
        assert!(
            !c.log(n).contains("testing-secret"),
            "node {n} logged the S3 secret"
        );
    }
}

/// The latest snapshot of `job` from `node` in `format`, as bytes.
async fn fetch(c: &Cluster, node: usize, job: &str, format: &str) -> Vec<u8> {
    let file: PathBuf = c.work.path().join(format!("n{node}-{job}.{format}"));
    c.ok(
        node,
        &["fetch", job, "--format", format, "-o", path_str(&file)],
    )
    .await;
    std::fs::read(&file).unwrap()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
