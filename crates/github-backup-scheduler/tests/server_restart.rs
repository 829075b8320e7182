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
        let log = data.with_extension(format!("log-{}", now.replace(':', "")));
        let child = Command::new(env!("CARGO_BIN_EXE_github-backup-scheduler"))
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(["--github-api-url", api_url])
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
    carol
        .post(&format!("/api/v1/jobs/{id}/runs"), json!(null))
        .await;
    wait_for(&carol, &format!("/api/v1/jobs/{id}/runs"), |v| {
        v["runs"][0]["status"] == "running"
    })
    .await;
    server.kill9();
    gh.clear_faults();

    // Ten minutes later the dead node's lease has expired: the job is taken over and succeeds.
    let server = Server::start(&data, &gh.api_url(), "2026-03-02T08:10:00Z");
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
        runs_done(v) == 3
    })
    .await;
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(
        runs[0]["status"], "succeeded",
        "the run taking over succeeds: {runs:?}"
    );
    assert_eq!(runs[1]["status"], "failed");
    assert!(
        runs[1]["error"].as_str().unwrap().contains("taken over"),
        "{runs:?}"
    );
    let snaps = carol.get(&format!("/api/v1/jobs/{id}/snapshots")).await.1;
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 2, "{snaps}");
    assert_eq!(snaps["snapshots"][0]["repos"][0]["refs"], 1);
    server.kill9();
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
