//! Verification through the API and the scheduler: a clean job passes, a damaged mirror, a lost
//! manifest or a changed metadata file fails a `verify` run that names the repository and the
//! snapshot; input is checked; the weekly verification runs every job once per slot.

mod common;

use axum::http::{Method, StatusCode};
use chrono::Duration;
use common::TestApp;
use serde_json::{json, Value};

/// A repository job with metadata, backed up twice (two snapshots); returns (key, job id).
async fn backed_up(app: &TestApp, login: &str) -> (String, i64) {
    let (key, _) = app.login(login).await;
    let full = format!("{login}/site");
    app.gh.create_repo(login, "site", Default::default());
    app.gh
        .commit(&full, "main", &[("README.md", "hi\n")], "first");
    app.gh.create_issue(&full, "An issue", "with a body");
    let (status, job) = app
        .post(
            "/api/v1/jobs",
            &key,
            json!({"target": full, "schedule": "daily at 09:00", "timezone": "UTC",
                   "options": {"metadata": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_i64().unwrap();
    let sched = app.backup_scheduler();
    for n in 0..2 {
        app.clock.advance(Duration::days(1));
        app.gh.commit(
            &full,
            "main",
            &[("day.txt", &format!("day {n}\n"))],
            "daily",
        );
        // A scheduled verification may share the look (tests that turn it on).
        assert!(sched.run_due_once().await >= 1);
    }
    assert_eq!(snapshot_ids(app, &key, id).await.len(), 2);
    (key, id)
}

async fn snapshot_ids(app: &TestApp, key: &str, id: i64) -> Vec<i64> {
    let (_, snaps) = app.get(&format!("/api/v1/jobs/{id}/snapshots"), key).await;
    snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect()
}

/// Queues a verification and runs it; returns the finished run.
async fn verify(app: &TestApp, key: &str, path: &str) -> Value {
    let (status, run) = app.post(path, key, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    assert_eq!(
        (run["trigger"].as_str(), run["status"].as_str()),
        (Some("verify"), Some("queued"))
    );
    assert_eq!(app.backup_scheduler().run_due_once().await, 1);
    let (_, run) = app.get(&format!("/api/v1/runs/{}", run["id"]), key).await;
    run
}

#[tokio::test]
async fn a_clean_job_passes_and_damage_is_named() {
    let app = TestApp::new().await;
    let (key, id) = backed_up(&app, "vera").await;
    // A webhook target: deliveries queue in the store (no deliverer runs in this test).
    let (status, created) = app
        .post(
            "/api/v1/notifications",
            &key,
            json!({"kind": "webhook", "url": "https://hooks.example.com/ghbs"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let target = created["target"]["id"].as_i64().unwrap();
    let queued = || async { app.state.store.target_deliveries(target).await.unwrap() };
    let next_run = app.get(&format!("/api/v1/jobs/{id}"), &key).await.1["next_run_at"].clone();
    let run = verify(&app, &key, &format!("/api/v1/jobs/{id}/verify")).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        queued().await.is_empty(),
        "a clean verification notifies nobody"
    );
    assert_eq!(run["bytes_fetched"], 0);
    assert_eq!(
        app.get(&format!("/api/v1/jobs/{id}"), &key).await.1["next_run_at"],
        next_run,
        "a verification does not move the backup schedule"
    );

    // Corrupt every object file and pack of the mirror: both snapshots fail, named.
    let data = app.state.engine.data_dir().to_path_buf();
    let mirrors = data.join("mirrors");
    let mirror = std::fs::read_dir(&mirrors)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "git") && !p.to_string_lossy().contains("wiki")
        })
        .unwrap();
    let mut damaged = 0;
    for pack in std::fs::read_dir(mirror.join("objects/pack"))
        .unwrap()
        .flatten()
    {
        let path = pack.path();
        if path.extension().is_some_and(|e| e == "pack") {
            let mut bytes = std::fs::read(&path).unwrap();
            let n = bytes.len();
            for b in &mut bytes[12..n - 20] {
                *b ^= 0x55;
            }
            let mut perms = std::fs::metadata(&path).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&path, perms).unwrap();
            std::fs::write(&path, bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0, "the mirror keeps packs");
    let run = verify(&app, &key, &format!("/api/v1/jobs/{id}/verify")).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap();
    let snaps = snapshot_ids(&app, &key, id).await;
    for s in &snaps {
        assert!(
            error.contains(&format!("snapshot {s}: vera/site:")),
            "names the snapshot and repository: {error}"
        );
    }
    assert!(
        !error.contains(&data.to_string_lossy().to_string()),
        "no server path: {error}"
    );
    // Damage found is notified as a failure that says it was a verification.
    let deliveries = queued().await;
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0].event, "failed");
    let payload: Value = serde_json::from_str(&deliveries[0].payload).unwrap();
    let message = payload["message"].as_str().unwrap();
    assert!(
        message.starts_with("Verification of vera/site found damaged or missing backup data"),
        "{message}"
    );
}

#[tokio::test]
async fn a_lost_manifest_or_changed_metadata_fails_only_its_snapshot() {
    let app = TestApp::new().await;
    let (key, id) = backed_up(&app, "mona").await;
    let snaps = snapshot_ids(&app, &key, id).await;
    let (newest, oldest) = (snaps[0], snaps[1]);
    let data = app.state.engine.data_dir().to_path_buf();
    // Which engine snapshot each row is: the manifests in the database.
    let rows = app.state.store.job_snapshots(id).await.unwrap();
    let key_of = |sid: i64| {
        rows.iter().find(|r| r.id == sid).unwrap().manifest["snapshot_key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    std::fs::remove_file(data.join(format!("manifests/{}.json", key_of(oldest)))).unwrap();
    // An issue file of the newest snapshot: edit it in place (its object is the same inode).
    let meta = data.join("metadata/snap").join(key_of(newest));
    let repo_dir = std::fs::read_dir(&meta)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let issue = std::fs::read_dir(repo_dir.join("issues"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    std::fs::write(&issue, b"{\"edited\": true}\n").unwrap();

    let run = verify(
        &app,
        &key,
        &format!("/api/v1/jobs/{id}/verify?snapshot={newest}"),
    )
    .await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["snapshot_id"], newest);
    let error = run["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("snapshot {newest}: mona/site: issues/")),
        "{error}"
    );
    assert!(error.contains("content hash"), "{error}");
    assert!(!error.contains(&format!("snapshot {oldest}")), "{error}");

    let run = verify(
        &app,
        &key,
        &format!("/api/v1/jobs/{id}/verify?snapshot={oldest}"),
    )
    .await;
    assert_eq!(run["status"], "failed");
    let error = run["error"].as_str().unwrap();
    let lines: Vec<&str> = error.lines().collect();
    assert_eq!(
        lines[0],
        format!("snapshot {oldest}: manifest: the manifest file is missing from the storage")
    );
    // The unchanged issue is one file shared by both snapshots (a hard link): both lost it.
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.starts_with(&format!("snapshot {oldest}: mona/site: issues/"))),
        "{error}"
    );
}

#[tokio::test]
async fn malformed_or_foreign_requests_are_refused_and_queue_nothing() {
    let app = TestApp::new().await;
    let (key, id) = backed_up(&app, "ivan").await;
    let (other_key, _) = app.login("olga").await;
    let other_job = app.create_job(&other_key, "olga/x", "daily").await["id"]
        .as_i64()
        .unwrap();
    let snaps = snapshot_ids(&app, &key, id).await;
    let cases: Vec<(String, &str, StatusCode)> = vec![
        (
            format!("/api/v1/jobs/{other_job}/verify"),
            key.as_str(),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/v1/jobs/{id}/verify"),
            other_key.as_str(),
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/jobs/999999/verify".into(),
            key.as_str(),
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/jobs/abc/verify".into(),
            key.as_str(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/v1/jobs/{id}/verify?snapshot=x"),
            key.as_str(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/v1/jobs/{id}/verify?snap=1"),
            key.as_str(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/v1/jobs/{id}/verify?snapshot=999999"),
            key.as_str(),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/v1/jobs/{other_job}/verify?snapshot={}", snaps[0]),
            other_key.as_str(),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/v1/jobs/{id}/verify"),
            "not-a-key",
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (path, k, want) in cases {
        let (status, body) = app.call(Method::POST, &path, Some(k), None).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(
            body["code"].is_string() && body["message"].is_string(),
            "{path}: {body}"
        );
    }
    let (_, runs) = app.get(&format!("/api/v1/jobs/{id}/runs"), &key).await;
    assert!(
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["trigger"] != "verify"),
        "nothing was queued: {runs}"
    );
    // Busy with a backup: 409 naming the run; the same verification twice is one run.
    let (_, backup) = app
        .post(&format!("/api/v1/jobs/{id}/runs"), &key, json!({}))
        .await;
    let (status, body) = app
        .post(&format!("/api/v1/jobs/{id}/verify"), &key, json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains(&format!("run {}", backup["id"])));
    assert_eq!(app.backup_scheduler().run_due_once().await, 1);
    let (_, a) = app
        .post(&format!("/api/v1/jobs/{id}/verify"), &key, json!({}))
        .await;
    let (_, b) = app
        .post(&format!("/api/v1/jobs/{id}/verify"), &key, json!({}))
        .await;
    assert_eq!(a["id"], b["id"]);
    // A paused job is refused (claims skip it: the run would wait unseen).
    app.post(
        &format!("/api/v1/jobs/{other_job}/pause"),
        &other_key,
        json!({}),
    )
    .await;
    let (status, _) = app
        .post(
            &format!("/api/v1/jobs/{other_job}/verify"),
            &other_key,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn every_job_is_verified_once_per_interval() {
    let app =
        TestApp::with(|cfg| cfg.verify_interval = Some(std::time::Duration::from_secs(3 * 86_400)))
            .await;
    let (key, id) = backed_up(&app, "wes").await;
    let sched = app.backup_scheduler();
    let verifications = |runs: &Value| {
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["trigger"] == "verify")
            .count()
    };
    // Nine days, a look every six hours: three slots, three verifications, each passing.
    for _ in 0..36 {
        app.clock.advance(Duration::hours(6));
        sched.run_due_once().await;
    }
    let (_, runs) = app
        .get(&format!("/api/v1/jobs/{id}/runs?limit=100"), &key)
        .await;
    let n = verifications(&runs);
    assert!(
        (3..=4).contains(&n),
        "{n} verifications in 9 days at one per 3 days: {runs}"
    );
    assert!(runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["trigger"] == "verify")
        .all(|r| r["status"] == "succeeded"));

    // Off: no verification at all.
    let app = TestApp::with(|cfg| cfg.verify_interval = None).await;
    let (key, id) = backed_up(&app, "otto").await;
    let sched = app.backup_scheduler();
    for _ in 0..10 {
        app.clock.advance(Duration::days(1));
        sched.run_due_once().await;
    }
    let (_, runs) = app
        .get(&format!("/api/v1/jobs/{id}/runs?limit=100"), &key)
        .await;
    assert_eq!(verifications(&runs), 0);
}
