//! The scheduler driven by an injected clock: due jobs run once, missed slots run once,
//! manual runs, needs-login, and the real backup executor end to end against the stand-in.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::StatusCode;
use chrono::Duration;
use common::TestApp;
use ghbs_core::Clock;
use ghbs_engine::Manifest;
use ghbs_server::executor::{ExecOutcome, Executor, RunProgress};
use ghbs_server::{AppState, RunContext};
use ghbs_store::Claim;
use serde_json::json;

/// Counts executions; tests only (the product always runs the backup executor).
#[derive(Default)]
struct Counting {
    runs: AtomicUsize,
}

#[async_trait]
impl Executor for Counting {
    async fn execute(&self, _: &Arc<RunContext>, _: &Claim, _: RunProgress) -> ExecOutcome {
        self.runs.fetch_add(1, Ordering::SeqCst);
        ExecOutcome::default()
    }
}

#[tokio::test]
async fn due_jobs_run_once_and_missed_slots_do_not_pile_up() {
    let app = TestApp::new().await;
    let (key, _) = app.login("alice").await;
    let job = app.create_job(&key, "alice/a", "daily at 09:00").await;
    let id = job["id"].as_i64().unwrap();
    let counting = Arc::new(Counting::default());
    let sched = app.scheduler(counting.clone());
    // 08:00: not due yet.
    assert_eq!(sched.run_due_once().await, 0);
    // Five days later (server "down" meanwhile): one run, not five.
    app.clock.advance(Duration::days(5));
    assert_eq!(sched.run_due_once().await, 1);
    assert_eq!(sched.run_due_once().await, 0);
    assert_eq!(counting.runs.load(Ordering::SeqCst), 1);
    let (_, job) = app.get(&format!("/api/v1/jobs/{id}"), &key).await;
    // Now is 03-07 08:00: the next slot is today at 09:00.
    assert_eq!(job["next_run_at"], "2026-03-07T09:00:00Z");
    assert_eq!(job["last_run"]["status"], "succeeded");
    assert_eq!(job["last_run"]["trigger"], "schedule");
}

#[tokio::test]
async fn manual_run_does_not_move_the_schedule() {
    let app = TestApp::new().await;
    let (key, _) = app.login("bob").await;
    let job = app
        .create_job(&key, "bob/b", "weekly on sunday at 02:00")
        .await;
    let id = job["id"].as_i64().unwrap();
    let counting = Arc::new(Counting::default());
    let sched = app.scheduler(counting.clone());
    let (status, run) = app
        .post(&format!("/api/v1/jobs/{id}/runs"), &key, json!(null))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(sched.run_due_once().await, 1);
    let (_, run) = app.get(&format!("/api/v1/runs/{}", run["id"]), &key).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["trigger"], "manual");
    let (_, after) = app.get(&format!("/api/v1/jobs/{id}"), &key).await;
    assert_eq!(after["next_run_at"], job["next_run_at"]);
}

#[tokio::test]
async fn paused_jobs_do_not_run() {
    let app = TestApp::new().await;
    let (key, _) = app.login("carol").await;
    let id = app.create_job(&key, "carol/c", "daily at 09:00").await["id"]
        .as_i64()
        .unwrap();
    app.post(&format!("/api/v1/jobs/{id}/pause"), &key, json!(null))
        .await;
    let counting = Arc::new(Counting::default());
    let sched = app.scheduler(counting.clone());
    app.clock.advance(Duration::days(2));
    assert_eq!(sched.run_due_once().await, 0);
    // Now is 03-04 08:00. Resuming does not replay the missed days: the job waits for its next slot.
    let (_, job) = app
        .post(&format!("/api/v1/jobs/{id}/resume"), &key, json!(null))
        .await;
    assert_eq!(job["next_run_at"], "2026-03-04T09:00:00Z");
    assert_eq!(sched.run_due_once().await, 0);
}

#[tokio::test]
async fn real_backup_survives_force_push_and_downloads() {
    let app = TestApp::new().await;
    let (key, token) = app.login("dora").await;
    app.gh.create_repo(
        "dora",
        "proj",
        ghbs_testkit::RepoOptions {
            private: true,
            ..Default::default()
        },
    );
    let first_main = app
        .gh
        .commit("dora/proj", "main", &[("README.md", "hello\n")], "first");
    app.gh.commit(
        "dora/proj",
        "feature",
        &[("f.txt", "feature\n")],
        "feature work",
    );
    app.gh.create_tag("dora/proj", "v1", "main");
    let id = app.create_job(&key, "dora/proj", "daily at 09:00").await["id"]
        .as_i64()
        .unwrap();
    let sched = app.backup_scheduler();
    app.post(&format!("/api/v1/jobs/{id}/runs"), &key, json!(null))
        .await;
    assert_eq!(sched.run_due_once().await, 1);
    let (_, runs) = app.get(&format!("/api/v1/jobs/{id}/runs"), &key).await;
    assert_eq!(runs["runs"][0]["status"], "succeeded", "{runs}");
    let before = app.gh.refs("dora/proj");

    // Upstream rewrites history: force-push main, delete a branch and a tag, add commits.
    app.gh.force_push_rewrite("dora/proj", "main");
    app.gh.delete_ref("dora/proj", "refs/heads/feature");
    app.gh.delete_ref("dora/proj", "refs/tags/v1");
    app.gh.commit(
        "dora/proj",
        "main",
        &[("new.txt", "new\n")],
        "after rewrite",
    );
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    let (_, snaps) = app.get(&format!("/api/v1/jobs/{id}/snapshots"), &key).await;
    let snaps = snaps["snapshots"].as_array().unwrap().clone();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    let (old, new) = (&snaps[1], &snaps[0]);

    // The first snapshot still restores the original refs, commits included.
    let work = tempfile::tempdir().unwrap();
    for (snap, want) in [(old, before.clone()), (new, app.gh.refs("dora/proj"))] {
        let resp = app
            .download(&key, snap["id"].as_i64().unwrap(), "bundle")
            .await;
        let clone = ghbs_testkit::clone_bundle(work.path(), &format!("snap-{}", snap["id"]), &resp);
        let got = ghbs_testkit::git(
            &clone,
            &["for-each-ref", "--format=%(refname) %(objectname)"],
        );
        let got: std::collections::BTreeMap<String, String> = got
            .lines()
            .map(|l| {
                let (r, s) = l.split_once(' ').unwrap();
                (r.to_string(), s.to_string())
            })
            .collect();
        assert_eq!(got, want);
    }
    assert_eq!(before["refs/heads/main"], first_main);
    // The token never reached a file in clear text.
    assert_no_file_contains(app.dir.path(), &token);
}

fn assert_no_file_contains(dir: &std::path::Path, needle: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_no_file_contains(&path, needle);
        } else if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "token found in clear text in {}",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn rejected_token_marks_jobs_needs_login_until_login() {
    let app = TestApp::new().await;
    let (key, token) = app.login("erin").await;
    app.gh.create_repo("erin", "r", Default::default());
    app.gh.commit("erin/r", "main", &[("a", "b")], "c");
    let id = app.create_job(&key, "erin/r", "daily").await["id"]
        .as_i64()
        .unwrap();
    app.gh.revoke_token(&token);
    app.post(&format!("/api/v1/jobs/{id}/runs"), &key, json!(null))
        .await;
    let sched = app.backup_scheduler();
    assert_eq!(sched.run_due_once().await, 1);
    let (_, job) = app.get(&format!("/api/v1/jobs/{id}"), &key).await;
    assert_eq!(job["state"], "needs-login", "{job}");
    assert!(
        job["last_run"]["error"].as_str().unwrap().contains("login"),
        "{job}"
    );
    // Nothing retries it in a loop.
    app.clock.advance(Duration::days(3));
    assert_eq!(sched.run_due_once().await, 0);
    // A new login clears it.
    let new_token = app.gh.add_token("erin");
    let (status, _) = app
        .call(
            axum::http::Method::POST,
            "/api/v1/login",
            None,
            Some(&json!({"github_token": new_token}).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, job) = app.get(&format!("/api/v1/jobs/{id}"), &key).await;
    assert_eq!(job["state"], "active");
    assert_eq!(sched.run_due_once().await, 1);
}

/// Never finishes on its own; tests only.
struct Stuck;

#[async_trait]
impl Executor for Stuck {
    async fn execute(&self, _: &Arc<RunContext>, _: &Claim, _: RunProgress) -> ExecOutcome {
        std::future::pending().await
    }
}

#[tokio::test]
async fn shutdown_releases_a_run_that_does_not_finish_within_the_grace() {
    let app = TestApp::with(|c| c.shutdown_grace = std::time::Duration::from_millis(200)).await;
    let (key, _) = app.login("ivan").await;
    let id = app.create_job(&key, "ivan/r", "daily").await["id"]
        .as_i64()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ghbs_server::launch(
        app.state.clone(),
        Arc::new(Stuck),
        listener,
        async {
            let _ = stop_rx.await;
        },
    ));
    let (_, run) = app
        .post(&format!("/api/v1/jobs/{id}/runs"), &key, json!(null))
        .await;
    let run_path = format!("/api/v1/runs/{}", run["id"]);
    // The scheduler is woken by the request and claims the run.
    loop {
        if app.get(&run_path, &key).await.1["status"] == "running" {
            break;
        }
        tokio::task::yield_now().await;
    }
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    // Handed back, not lost: queued again, and the job's lease is free for any node.
    let (_, run) = app.get(&run_path, &key).await;
    assert_eq!(run["status"], "queued", "{run}");
    let counting = Arc::new(Counting::default());
    assert_eq!(app.scheduler(counting.clone()).run_due_once().await, 1);
    let (_, run) = app.get(&run_path, &key).await;
    assert_eq!(run["status"], "succeeded", "the same run resumed: {run}");
}

#[tokio::test]
async fn retention_keeps_what_the_policy_says_and_storage_shrinks() {
    let app = TestApp::new().await;
    let (key, _) = app.login("judy").await;
    app.gh.create_repo("judy", "r", Default::default());
    app.gh.commit("judy/r", "main", &[("a", "1")], "one");
    let (status, job) = app
        .post("/api/v1/jobs", &key, json!({"target": "judy/r", "schedule": "daily at 09:00", "retention": {"keep_last": 2}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_i64().unwrap();
    let sched = app.backup_scheduler();
    let mut ids = Vec::new();
    let mut seed: u64 = 42;
    for day in 0..4 {
        // Each day upstream replaces yesterday's branch with a new one whose commit holds a
        // 200 kB file of random hex (about 100 kB packed): only that day's snapshot keeps it.
        let big: String = (0..200_000)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                char::from(b"0123456789abcdef"[(seed >> 60) as usize])
            })
            .collect();
        if day > 0 {
            app.gh
                .delete_ref("judy/r", &format!("refs/heads/day{}", day - 1));
        }
        app.gh.commit(
            "judy/r",
            &format!("day{day}"),
            &[("big.txt", &big)],
            "daily data",
        );
        app.clock.advance(Duration::days(1));
        assert_eq!(sched.run_due_once().await, 1);
        let (_, snaps) = app.get(&format!("/api/v1/jobs/{id}/snapshots"), &key).await;
        let snaps = snaps["snapshots"].as_array().unwrap().clone();
        ids.push(snaps[0]["id"].as_i64().unwrap());
        assert!(snaps.len() <= 2, "day {day}: {} snapshots", snaps.len());
    }
    let (_, snaps) = app.get(&format!("/api/v1/jobs/{id}/snapshots"), &key).await;
    let kept: Vec<i64> = snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(kept, vec![ids[3], ids[2]], "the two newest are kept");
    assert_eq!(
        app.get(&format!("/api/v1/snapshots/{}", ids[0]), &key)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Four distinct ~100 kB blobs were fetched; after pruning only the two kept ones remain.
    let repo = app.state.store.list_job_repos(id).await.unwrap()[0].id;
    let on_disk = app
        .state
        .engine
        .disk_usage(&[ghbs_server::backup::mirror_key(repo)])
        .await
        .unwrap();
    assert!(
        on_disk > 180_000,
        "the kept snapshots' data is there: {on_disk}"
    );
    assert!(
        on_disk < 300_000,
        "pruned objects were released: {on_disk} bytes for two ~100 kB blobs"
    );
}

#[tokio::test]
async fn renamed_repository_is_followed_and_the_job_updated() {
    let app = TestApp::new().await;
    let (key, _) = app.login("kim").await;
    app.gh.create_repo("kim", "old-name", Default::default());
    app.gh.commit("kim/old-name", "main", &[("a", "1")], "one");
    let id = app.create_job(&key, "kim/old-name", "daily at 09:00").await["id"]
        .as_i64()
        .unwrap();
    let sched = app.backup_scheduler();
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    app.gh.rename_repo("kim/old-name", "new-name");
    app.gh.commit("kim/new-name", "main", &[("b", "2")], "two");
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    let (_, job) = app.get(&format!("/api/v1/jobs/{id}"), &key).await;
    assert_eq!(job["target"], "kim/new-name", "{job}");
    assert_eq!(job["last_run"]["status"], "succeeded", "{job}");
    let (_, snaps) = app.get(&format!("/api/v1/jobs/{id}/snapshots"), &key).await;
    assert_eq!(
        snaps["snapshots"][0]["repos"][0]["full_name"],
        "kim/new-name"
    );
    // Deleted upstream: the run is partial, its snapshot carries the last copy marked gone,
    // and every backup is kept.
    let last = snaps["snapshots"][0].clone();
    app.gh.delete_repo("kim/new-name");
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    let (_, job) = app.get(&format!("/api/v1/jobs/{id}"), &key).await;
    assert_eq!(job["last_run"]["status"], "partial", "{job}");
    assert!(
        job["last_run"]["error"]
            .as_str()
            .unwrap()
            .contains("kim/new-name: gone upstream since"),
        "{job}"
    );
    let (_, snaps) = app.get(&format!("/api/v1/jobs/{id}/snapshots"), &key).await;
    let list = snaps["snapshots"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let repo = &list[0]["repos"][0];
    assert_eq!(repo["capture"], "carried-forward", "{repo}");
    assert_eq!(repo["captured_at"], last["created_at"], "{repo}");
    assert!(repo["gone_since"].is_string(), "{repo}");
    assert_eq!(repo["refs"], last["repos"][0]["refs"]);
}

/// A crash between committing a snapshot and inserting its row leaves refs, a manifest and a
/// pending marker; the next start forgets that snapshot and keeps (and confirms) every recorded
/// one.
#[tokio::test]
async fn a_snapshot_interrupted_before_its_row_is_forgotten_at_the_next_start() {
    let app = TestApp::new().await;
    let (key, _) = app.login("olga").await;
    app.gh
        .create_repo("olga", "proj", ghbs_testkit::RepoOptions::default());
    app.gh
        .commit("olga/proj", "main", &[("README.md", "hello\n")], "first");
    app.gh.create_tag("olga/proj", "v1", "main");
    let id = app.create_job(&key, "olga/proj", "daily at 09:00").await["id"]
        .as_i64()
        .unwrap();
    app.post(&format!("/api/v1/jobs/{id}/runs"), &key, json!(null))
        .await;
    assert_eq!(app.backup_scheduler().run_due_once().await, 1);
    let engine = &app.state.engine;
    assert!(
        engine.pending_snapshots().await.unwrap().is_empty(),
        "a recorded snapshot is confirmed"
    );
    let rows = app.state.store.job_snapshots(id).await.unwrap();
    assert_eq!(rows.len(), 1);
    let kept: Manifest = serde_json::from_value(rows[0].manifest.clone()).unwrap();

    // The crash: the engine committed a snapshot, the database never got its row.
    let mut orphan = kept.clone();
    orphan.snapshot_key = uuid::Uuid::new_v4().to_string();
    for repo in &mut orphan.repos {
        repo.metadata_dir = None;
    }
    engine.commit_snapshot(&orphan).await.unwrap();
    // And a crash after the insert but before the confirmation: committing again (idempotent)
    // puts the recorded snapshot's marker back.
    engine.commit_snapshot(&kept).await.unwrap();
    let mut both = vec![orphan.snapshot_key.clone(), kept.snapshot_key.clone()];
    both.sort();
    assert_eq!(engine.pending_snapshots().await.unwrap(), both);
    let mirror = engine
        .data_dir()
        .join("mirrors")
        .join(format!("{}.git", kept.repos[0].key));
    let snap_refs = |snapshot_key: &str| {
        ghbs_testkit::git(
            &mirror,
            &[
                "for-each-ref",
                "--format=%(refname)",
                &format!("refs/ghbs/snap/{snapshot_key}/"),
            ],
        )
    };
    assert_ne!(snap_refs(&orphan.snapshot_key), "");

    let clock: Arc<dyn Clock> = app.clock.clone();
    let restarted = AppState::new((*app.state.cfg).clone(), clock)
        .await
        .unwrap();
    assert!(restarted
        .engine
        .pending_snapshots()
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        snap_refs(&orphan.snapshot_key),
        "",
        "the orphan's refs are gone"
    );
    assert!(!engine
        .data_dir()
        .join("manifests")
        .join(format!("{}.json", orphan.snapshot_key))
        .exists());
    assert_eq!(
        snap_refs(&kept.snapshot_key).lines().count(),
        kept.repos[0].refs.len(),
        "the recorded snapshot keeps its refs"
    );
    ghbs_testkit::git(&mirror, &["fsck", "--full", "--no-dangling"]);

    // The recorded snapshot still downloads and clones with the refs it captured.
    let bundle = app.download(&key, rows[0].id, "bundle").await;
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("kept.bundle");
    std::fs::write(&path, &bundle).unwrap();
    let clone = work.path().join("kept.git");
    ghbs_testkit::git(
        work.path(),
        &[
            "clone",
            "--mirror",
            path.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    let got = ghbs_testkit::git(
        &clone,
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    );
    let want: Vec<String> = kept.repos[0]
        .refs
        .iter()
        .map(|(r, s)| format!("{r} {s}"))
        .collect();
    assert_eq!(got.lines().collect::<Vec<_>>(), want);
}
