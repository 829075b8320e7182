//! The real server binary, killed with SIGKILL and started again on the same data.
//!
//! Time is injected with `GHBS_TEST_CLOCK_START` (the server's clock starts at that instant), so
//! "the server was down for three days" needs no sleeping.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ghbs_testkit::{Fault, FaultKind, GitHubStandIn, RepoOptions};
use serde_json::{json, Value};

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(data: &Path, api_url: &str, now: &str) -> Server {
        Server::start_env(data, api_url, now, &[])
    }

    /// `start` with extra environment variables for the server.
    fn start_env(data: &Path, api_url: &str, now: &str, env: &[(&str, &Path)]) -> Server {
        let log = data.with_extension(format!("log-{}", now.replace(':', "")));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_github-backup-scheduler"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(["--github-api-url", api_url])
            // These stories count runs across clock jumps of days: no weekly verification.
            .args(["--verify-interval-days", "0"])
            .env("GHBS_TEST_CLOCK_START", now)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut child = child;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {line:?}"))
            .to_string();
        Server { child, url }
    }

    fn kill9(mut self) {
        // Child::kill sends SIGKILL on Unix.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A failing test does not leave its server running (and a small filesystem busy).
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    /// The same user (same API key) talking to a restarted server.
    fn to(self, server: &Server) -> Client {
        Client {
            base: server.url.clone(),
            ..self
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

async fn login(server: &Server, token: &str) -> Client {
    let http = reqwest::Client::new();
    let resp: Value = http
        .post(format!("{}/api/v1/login", server.url))
        .json(&json!({"github_token": token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Client {
        http,
        base: server.url.clone(),
        key: resp["api_key"].as_str().expect("api key").to_string(),
    }
}

/// Poll until `done` holds (runs complete asynchronously in the server); fails after 60 s.
async fn wait_for(client: &Client, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = client.get(path).await;
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on {path}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn runs_done(v: &Value) -> usize {
    v["runs"].as_array().map_or(0, |r| {
        r.iter()
            .filter(|r| r["status"] == "succeeded" || r["status"] == "failed")
            .count()
    })
}

#[tokio::test]
async fn jobs_survive_sigkill_and_missed_slots_run_once() {
    let gh = GitHubStandIn::start().await;
    let (_, alice_token) = gh.add_user("alice");
    let (_, bob_token) = gh.add_user("bob");
    gh.create_repo(
        "alice",
        "notes",
        RepoOptions {
            private: true,
            ..Default::default()
        },
    );
    gh.commit("alice/notes", "main", &[("a.md", "a")], "a");
    gh.create_repo("bob", "tools", RepoOptions::default());
    gh.commit("bob/tools", "main", &[("b.md", "b")], "b");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let server = Server::start(&data, &gh.api_url(), "2026-03-02T08:00:00Z");
    let alice = login(&server, &alice_token).await;
    let bob = login(&server, &bob_token).await;
    let (s, a_job) = alice
        .post(
            "/api/v1/jobs",
            json!({"target": "alice/notes", "schedule": "daily at 09:00", "timezone": "UTC"}),
        )
        .await;
    assert_eq!(s, 201, "{a_job}");
    let (s, b_job) = bob.post("/api/v1/jobs", json!({"target": "https://github.com/bob/tools", "schedule": "daily at 10:00", "timezone": "UTC"})).await;
    assert_eq!(s, 201, "{b_job}");
    let (a_id, b_id) = (a_job["id"].as_i64().unwrap(), b_job["id"].as_i64().unwrap());

    // Neither sees, runs, changes nor deletes the other's job.
    for (me, other) in [(&alice, b_id), (&bob, a_id)] {
        assert_eq!(me.get(&format!("/api/v1/jobs/{other}")).await.0, 404);
        assert_eq!(
            me.post(&format!("/api/v1/jobs/{other}/runs"), json!(null))
                .await
                .0,
            404
        );
        assert_eq!(
            me.call(
                reqwest::Method::PATCH,
                &format!("/api/v1/jobs/{other}"),
                Some(json!({"schedule": "weekly on mon"}))
            )
            .await
            .0,
            404
        );
        assert_eq!(
            me.call(
                reqwest::Method::DELETE,
                &format!("/api/v1/jobs/{other}"),
                None
            )
            .await
            .0,
            404
        );
        assert_eq!(
            me.get("/api/v1/jobs").await.1["jobs"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
    let (_, before_a) = alice.get("/api/v1/jobs").await;
    let (_, before_b) = bob.get("/api/v1/jobs").await;
    server.kill9();

    // Back 30 minutes later: nothing was due; every job is there with the same next run time.
    let server = Server::start(&data, &gh.api_url(), "2026-03-02T08:30:00Z");
    let alice = alice.to(&server);
    let bob = bob.to(&server);
    assert_eq!(
        alice.get("/api/v1/jobs").await.1,
        before_a,
        "the API key and the job survived"
    );
    assert_eq!(bob.get("/api/v1/jobs").await.1, before_b);
    server.kill9();

    // Back three days later: each job missed three slots and runs exactly once.
    let server = Server::start(&data, &gh.api_url(), "2026-03-05T12:00:00Z");
    let alice = alice.to(&server);
    let bob = bob.to(&server);
    let a_runs = wait_for(&alice, &format!("/api/v1/jobs/{a_id}/runs"), |v| {
        runs_done(v) >= 1
    })
    .await;
    let b_runs = wait_for(&bob, &format!("/api/v1/jobs/{b_id}/runs"), |v| {
        runs_done(v) >= 1
    })
    .await;
    for runs in [&a_runs, &b_runs] {
        assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
        assert_eq!(runs["runs"][0]["status"], "succeeded", "{runs}");
        assert_eq!(runs["runs"][0]["trigger"], "schedule");
    }
    let (_, job) = alice.get(&format!("/api/v1/jobs/{a_id}")).await;
    assert_eq!(job["next_run_at"], "2026-03-06T09:00:00Z");
    assert_eq!(
        alice.get(&format!("/api/v1/jobs/{a_id}/snapshots")).await.1["snapshots"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let pid = server.child.id();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    server.kill9();

    // The GitHub tokens appear in no file under the data dir, no log line, no argv.
    let logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert!(!logs.is_empty());
    for token in [&alice_token, &bob_token] {
        assert_absent(&data, token);
        for log in &logs {
            let text = std::fs::read_to_string(log).unwrap();
            assert!(!text.contains(token.as_str()), "token in {}", log.display());
        }
        assert!(!String::from_utf8_lossy(&cmdline).contains(token.as_str()));
    }
}

/// Processes working inside `dir` (working directory in it, or an argument naming it): the
/// server's git children and their helpers.
fn processes_in(dir: &Path) -> Vec<String> {
    let needle = dir.to_str().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        let cwd_in = std::fs::read_link(entry.path().join("cwd")).is_ok_and(|c| c.starts_with(dir));
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        if cwd_in || cmdline.contains(needle) {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

/// Poll until `cond` holds, at most `limit`.
async fn eventually(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `kill -9` during a slow fetch: the server's git processes die with it (within a couple of
/// seconds), no partial snapshot shows, and the restarted server settles the dead run at once
/// (its node identity owns the lease; no waiting for the 5-minute lease): the same run is
/// queued again and succeeds.
#[tokio::test]
async fn sigkill_during_a_fetch_leaves_no_partial_snapshot() {
    let gh = GitHubStandIn::start().await;
    let (_, token) = gh.add_user("carol");
    gh.create_repo("carol", "big", RepoOptions::default());
    gh.commit("carol/big", "main", &[("README", "v1")], "v1");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &gh.api_url(), "2026-03-02T08:00:00Z");
    let carol = login(&server, &token).await;
    let (_, job) = carol
        .post(
            "/api/v1/jobs",
            json!({"target": "carol/big", "schedule": "daily at 23:00"}),
        )
        .await;
    let id = job["id"].as_i64().unwrap();
    carol
        .post(&format!("/api/v1/jobs/{id}/runs"), json!(null))
        .await;
    wait_for(&carol, &format!("/api/v1/jobs/{id}/runs"), |v| {
        runs_done(v) == 1
    })
    .await;
    let first = carol.get(&format!("/api/v1/jobs/{id}/snapshots")).await.1["snapshots"][0].clone();

    // Upstream grows a large history; the pack is served slowly, and the server dies mid-fetch.
    gh.generate_history("carol/big", "main", 3000, 8 << 20);
    gh.inject(Fault::new(
        "git-upload-pack",
        FaultKind::Delay(Duration::from_secs(30)),
        1,
    ));
    let (_, killed) = carol
        .post(&format!("/api/v1/jobs/{id}/runs"), json!(null))
        .await;
    let mirrors = data.join("backups").join("mirrors");
    let mirrors = std::fs::canonicalize(&mirrors).unwrap();
    eventually(Duration::from_secs(30), "a git fetch in progress", || {
        !processes_in(&mirrors).is_empty()
    })
    .await;
    server.kill9();
    eventually(
        Duration::from_secs(4),
        "the killed server's git processes to exit",
        || processes_in(&mirrors).is_empty(),
    )
    .await;
    gh.clear_faults();

    // One minute later: the dead run's lease (5 minutes) has not expired, yet the restarted
    // node knows the run is dead and runs it again at once.
    let server = Server::start(&data, &gh.api_url(), "2026-03-02T08:01:00Z");
    let carol = carol.to(&server);
    let snaps = carol.get(&format!("/api/v1/jobs/{id}/snapshots")).await.1;
    assert_eq!(
        snaps["snapshots"].as_array().unwrap().len(),
        1,
        "no partial snapshot: {snaps}"
    );
    // The previous snapshot downloads and verifies.
    let bundle = dir.path().join("first.bundle");
    let bytes = carol
        .http
        .get(format!(
            "{}/api/v1/snapshots/{}/download",
            server.url, first["id"]
        ))
        .bearer_auth(&carol.key)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    std::fs::write(&bundle, &bytes).unwrap();
    let verify_in = dir.path().join("verify");
    ghbs_testkit::git(
        dir.path(),
        &["init", "-q", "--bare", verify_in.to_str().unwrap()],
    );
    ghbs_testkit::git(&verify_in, &["bundle", "verify", bundle.to_str().unwrap()]);
    let runs = wait_for(&carol, &format!("/api/v1/jobs/{id}/runs"), |v| {
        runs_done(v) == 2
    })
    .await;
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(
        runs.len(),
        2,
        "the killed run is run again, not replaced: {runs:?}"
    );
    assert_eq!(runs[0]["id"], killed["id"], "{runs:?}");
    assert_eq!(
        runs[0]["status"], "succeeded",
        "the requeued run succeeds: {runs:?}"
    );
    let snaps = carol.get(&format!("/api/v1/jobs/{id}/snapshots")).await.1;
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 2, "{snaps}");
    assert_eq!(snaps["snapshots"][0]["repos"][0]["refs"], 1);
    server.kill9();
}

/// SIGTERM while a backup runs: the API keeps answering reads during the drain (and refuses
/// writes with 503, `/readyz` 503), so `run --wait` started before the signal sees the run's
/// final status and exits 0 instead of 5 (server unreachable); the server then exits.
#[tokio::test]
async fn sigterm_drains_while_run_wait_follows_the_run() {
    let gh = GitHubStandIn::start().await;
    let (_, token) = gh.add_user("erin");
    gh.create_repo("erin", "proj", RepoOptions::default());
    gh.commit("erin/proj", "main", &[("README", "v1")], "v1");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &gh.api_url(), "2026-03-02T08:00:00Z");
    let erin = login(&server, &token).await;
    let (_, job) = erin
        .post(
            "/api/v1/jobs",
            json!({"target": "erin/proj", "schedule": "daily at 23:00"}),
        )
        .await;
    let id = job["id"].as_i64().unwrap();
    let config = dir.path().join("cli");
    let cli = |args: &[&str]| {
        // tokio's: the stand-in answers on this test's runtime, which must not block.
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_github-backup-scheduler"));
        cmd.env("GHBS_CONFIG_DIR", &config)
            .kill_on_drop(true)
            .env("GHBS_SERVER", &server.url)
            .env_remove("GITHUB_TOKEN")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    let mut login_cmd = cli(&["login", "--token-stdin"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = login_cmd.stdin.take().unwrap();
        stdin
            .write_all(format!("{token}\n").as_bytes())
            .await
            .unwrap();
    }
    let login_out = login_cmd.wait_with_output().await.unwrap();
    assert!(
        login_out.status.success(),
        "login: {}",
        String::from_utf8_lossy(&login_out.stderr)
    );

    // The fetch is held back for a few seconds: the run is in flight when SIGTERM arrives.
    gh.inject(Fault::new(
        "git-upload-pack",
        FaultKind::Delay(Duration::from_secs(4)),
        1,
    ));
    let waiting = cli(&["run", &id.to_string(), "--wait", "--json"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&erin, &format!("/api/v1/jobs/{id}/runs"), |v| {
        v["runs"][0]["status"] == "running"
    })
    .await;
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // During the drain: reads answer, writes and readiness say 503 with a reason.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, reason) = readyz(&server).await;
        if code == 503 {
            assert!(reason.contains("shutting down"), "{reason}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never failed during the drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _) = erin.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(code, 200, "reads work during the drain");
    let (code, body) = erin
        .post(&format!("/api/v1/jobs/{id}/pause"), json!(null))
        .await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("shutting down"),
        "{body}"
    );

    let out = waiting.wait_with_output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "run --wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    // The server exits by itself once the drain is over.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the server did not exit after the drain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `/readyz` of a server: status code and the body's `status` (the reason when not ready).
async fn readyz(server: &Server) -> (u16, String) {
    let resp = reqwest::get(format!("{}/readyz", server.url))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    (code, body["status"].as_str().unwrap_or_default().to_owned())
}

/// Poll `/readyz` until it answers `code` (the write probe is cached for a few seconds).
async fn wait_ready(server: &Server, code: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (got, reason) = readyz(server).await;
        if got == code {
            return reason;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {got} ({reason})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How the disk gets full: a real small filesystem, or the engine's injected failure.
enum Fill {
    /// A 30 MiB tmpfs mounted at this folder, which is the data folder (database included).
    Tmpfs(std::path::PathBuf),
    /// `GHBS_TEST_DISK_FULL_FLAG`: the server behaves as on a full disk while this file exists.
    Flag(std::path::PathBuf),
}

impl Fill {
    /// Fill the disk: a filler file written until ENOSPC, or the flag file.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        match self {
            Fill::Tmpfs(mount) => {
                let path = mount.join("filler");
                let mut f = std::fs::File::create(&path).unwrap();
                let block = vec![0x5au8; 64 << 10];
                loop {
                    match f.write(&block) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.raw_os_error() == Some(28) => break,
                        Err(e) => panic!("filling the disk: {e}"),
                    }
                }
                // Whatever is left below one block goes too.
                while f.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
                path
            }
            Fill::Flag(path) => {
                std::fs::write(path, b"").unwrap();
                path.clone()
            }
        }
    }
}

/// Mount a 30 MiB tmpfs at `dir` when running as root and `mount` works; otherwise say why not.
fn mount_small_fs(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).unwrap();
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Err(format!("not running as root (uid {uid})"));
    }
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=30m,mode=0700", "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mount -t tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn unmount(dir: &Path) {
    let _ = Command::new("umount").arg(dir).status();
}

/// The story of issue 8 part 5 on the real binary: a backup on a full disk fails with an error
/// that names the full disk and the free space (no path), `/readyz` answers 503 with the reason
/// while reads keep working, and once space is back the next run succeeds without a restart.
async fn disk_full_story(fill: Fill, data: &Path, flag: Option<&Path>) {
    let gh = GitHubStandIn::start().await;
    let (_, token) = gh.add_user("dana");
    gh.create_repo("dana", "proj", RepoOptions::default());
    gh.commit("dana/proj", "main", &[("README", "v1")], "v1");
    let env: Vec<(&str, &Path)> = flag
        .map(|f| vec![("GHBS_TEST_DISK_FULL_FLAG", f)])
        .unwrap_or_default();
    let now = "2026-03-02T08:00:00Z";
    let server = Server::start_env(data, &gh.api_url(), now, &env);
    let log = data.with_extension(format!("log-{}", now.replace(':', "")));
    let dana = login(&server, &token).await;
    let (_, job) = dana
        .post(
            "/api/v1/jobs",
            json!({"target": "dana/proj", "schedule": "daily at 23:00"}),
        )
        .await;
    let id = job["id"].as_i64().unwrap();
    let runs = format!("/api/v1/jobs/{id}/runs");
    assert_eq!(wait_ready(&server, 200).await, "ready");

    // Upstream grows (incompressible content). On the small filesystem the disk fills while
    // the fetch is held back by the stand-in (a full disk also refuses to queue a run: that is
    // a write); the injected failure fills it before the run.
    gh.generate_history("dana/proj", "main", 20, 4 << 20);
    let filler = match fill {
        Fill::Flag(_) => {
            let filler = fill.fill();
            dana.post(&runs, json!(null)).await;
            filler
        }
        Fill::Tmpfs(_) => {
            gh.inject(Fault::new(
                "git-upload-pack",
                FaultKind::Delay(Duration::from_secs(3)),
                1,
            ));
            let (code, body) = dana.post(&runs, json!(null)).await;
            assert_eq!(code, 202, "{body}");
            wait_for(&dana, &runs, |v| v["runs"][0]["status"] == "running").await;
            fill.fill()
        }
    };
    let reason = wait_ready(&server, 503).await;
    assert!(reason.contains("disk full"), "{reason}");
    // The fetch fails on the full disk (the server logs the run's error at once; recording it
    // may have to wait for space when the database shares the disk).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("disk full on the server")
    {
        assert!(Instant::now() < deadline, "no disk-full failure in the log");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Reads work while the disk is full.
    assert_eq!(dana.get(&runs).await.0, 200);
    assert_eq!(dana.get(&format!("/api/v1/jobs/{id}")).await.0, 200);

    // Space comes back: the same server process recovers by itself.
    std::fs::remove_file(&filler).unwrap();
    let done = wait_for(&dana, &runs, |v| runs_done(v) == 1).await;
    let run = &done["runs"][0];
    assert_eq!(run["status"], "failed", "{done}");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains("disk full on the server: ") && error.contains(" MiB free in DATA_DIR"),
        "{error}"
    );
    assert!(!error.contains(data.to_str().unwrap()), "no path: {error}");
    assert_eq!(wait_ready(&server, 200).await, "ready");
    let (code, queued) = dana.post(&runs, json!(null)).await;
    assert_eq!(code, 202, "{queued}");
    let done = wait_for(&dana, &runs, |v| runs_done(v) == 2).await;
    assert_eq!(done["runs"][0]["status"], "succeeded", "{done}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("non-zero transaction depth"),
        "a connection stayed inside a transaction"
    );
    server.kill9();
}

/// Real small filesystem: a 30 MiB tmpfs holding the whole data folder (SQLite included),
/// filled by a filler file. Needs root (CI runs as root); otherwise it says why it skips, and
/// `disk_full_injected` below still runs the same story through the injected failure.
#[tokio::test]
async fn disk_full_on_a_small_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    if let Err(why) = mount_small_fs(&mount) {
        eprintln!(
            "skipping the real small-filesystem test: {why}; disk_full_injected covers the story"
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            unmount(&self.0);
        }
    }
    let _unmount = Unmount(mount.clone());
    // The mount point is the data folder (the server's log goes beside it, off the small disk).
    disk_full_story(Fill::Tmpfs(mount.clone()), &mount, None).await;
}

/// Injected full disk (`GHBS_TEST_DISK_FULL_FLAG`): runs everywhere, no root needed.
#[tokio::test]
async fn disk_full_injected() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("disk-full");
    let data = dir.path().join("data");
    disk_full_story(Fill::Flag(flag.clone()), &data, Some(&flag)).await;
}

fn assert_absent(dir: &Path, needle: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_absent(&path, needle);
        } else if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "token in clear text in {}",
                path.display()
            );
        }
    }
}

/// The crash loop: the server is SIGKILLed at 20 moments spread over backups of an account job
/// (fetches, metadata, commits, retention), restarted on the same data each time, while upstream
/// keeps changing. Afterwards the job has a successful run, and `verify --all` with the built CLI
/// finds every snapshot that ever became visible complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_at_twenty_moments_loses_nothing() {
    let gh = GitHubStandIn::start().await;
    let (_, token) = gh.add_user("kit");
    for name in ["a", "b", "c", "d"] {
        let full = format!("kit/{name}");
        gh.create_repo("kit", name, RepoOptions::default());
        gh.commit(&full, "main", &[("README.md", name)], "first");
        gh.generate_history(&full, "main", 30, 200_000);
        gh.create_issue(&full, "an issue", "a body");
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-02T08:00:00Z").unwrap();
    // Each incarnation starts an hour later, so that "run now" is never rate-limited.
    let at = |i: i64| (start + chrono::Duration::hours(i)).to_rfc3339();

    let server = Server::start(&data, &gh.api_url(), &at(0));
    let mut kit = login(&server, &token).await;
    let (s, job) = kit
        .post(
            "/api/v1/jobs",
            json!({"target": "kit", "schedule": "daily at 23:30", "timezone": "UTC",
                   "options": {"metadata": true}, "retention": {"keep_last": 3}}),
        )
        .await;
    assert_eq!(s, 201, "{job}");
    let id = job["id"].as_i64().unwrap();
    let runs = format!("/api/v1/jobs/{id}/runs");
    let mut server = server;
    for i in 0..20u64 {
        // Upstream changes, a run is asked for (or the requeued one resumes), and the server
        // dies 0–1.9 s into it.
        let repo = ["a", "b", "c", "d"][(i % 4) as usize];
        gh.commit(
            &format!("kit/{repo}"),
            "main",
            &[("change.txt", &format!("change {i}\n"))],
            "change",
        );
        let (s, body) = kit.post(&runs, json!(null)).await;
        assert!(s == 202 || s == 200, "run now at moment {i}: {s} {body}");
        tokio::time::sleep(Duration::from_millis(100 * i)).await;
        server.kill9();
        server = Server::start(&data, &gh.api_url(), &at(i as i64 + 1));
        kit = kit.to(&server);
    }

    // The last incarnation lives: the run the last kill interrupted, or a new one, succeeds.
    let (s, _) = kit.post(&runs, json!(null)).await;
    assert!(s == 202 || s == 200, "{s}");
    let done = wait_for(&kit, &runs, |v| {
        v["runs"].as_array().is_some_and(|r| {
            !r.iter()
                .any(|r| r["status"] == "queued" || r["status"] == "running")
                && r.iter().any(|r| r["status"] == "succeeded")
        })
    })
    .await;
    assert!(
        done["runs"][0]["status"] == "succeeded",
        "the newest run: {}",
        done["runs"][0]
    );
    let (_, snaps) = kit.get(&format!("/api/v1/jobs/{id}/snapshots")).await;
    let snaps = snaps["snapshots"].as_array().unwrap().clone();
    assert!(!snaps.is_empty() && snaps.len() <= 3, "{snaps:?}");

    // `verify --all` from the built CLI: every snapshot's objects, refs, manifest and metadata.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let cli = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_github-backup-scheduler"));
        cmd.args(["--server", &server.url])
            .args(args)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("cfg"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    };
    let login = cli(&["login", "--token-stdin"], Some(&format!("{token}\n")));
    assert!(login.status.success(), "{login:?}");
    let verified = cli(&["verify", "--all"], None);
    assert!(
        verified.status.success(),
        "verify --all after the crash loop: {}\n{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
}
