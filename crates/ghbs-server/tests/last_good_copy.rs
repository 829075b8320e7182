//! The last-good-copy rules at the API level, with an injected clock: retention over many
//! failing days, metadata carried forward, and `forget-repo`'s input checks and refusals.

mod common;

use axum::http::{Method, StatusCode};
use chrono::Duration;
use common::TestApp;
use ghbs_testkit::{Fault, FaultKind};
use serde_json::{json, Value};

/// An account job for `login` over two repositories, keeping `keep` snapshots, with metadata.
async fn account_job(app: &TestApp, login: &str, keep: u32) -> (String, i64) {
    let (key, _) = app.login(login).await;
    for name in ["a", "b"] {
        let full = format!("{login}/{name}");
        app.gh.create_repo(login, name, Default::default());
        app.gh
            .commit(&full, "main", &[("README.md", name)], "first");
        app.gh
            .create_issue(&full, "An issue", "kept with the repository");
    }
    let (status, job) = app
        .post(
            "/api/v1/jobs",
            &key,
            json!({"target": login, "schedule": "daily at 09:00", "timezone": "UTC",
                   "retention": {"keep_last": keep}, "options": {"metadata": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    (key, job["id"].as_i64().unwrap())
}

async fn snapshots(app: &TestApp, key: &str, id: i64) -> Vec<Value> {
    let (_, snaps) = app.get(&format!("/api/v1/jobs/{id}/snapshots"), key).await;
    snaps["snapshots"].as_array().unwrap().clone()
}

fn repo<'a>(snapshot: &'a Value, name: &str) -> &'a Value {
    snapshot["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["full_name"] == name)
        .unwrap_or_else(|| panic!("{name} in {snapshot}"))
}

/// Thirty failing days under `keep_last 2` (the reproduction of issue 8 with the default
/// `--keep 30` shape): the first snapshot, the last that captured `b` itself, survives them all,
/// and every later snapshot carries `b`'s refs and metadata.
#[tokio::test]
async fn many_failing_days_never_age_out_the_last_good_copy() {
    let app = TestApp::new().await;
    let (key, id) = account_job(&app, "fay", 2).await;
    let sched = app.backup_scheduler();
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    let first = snapshots(&app, &key, id).await[0].clone();
    assert_eq!(first["status"], "succeeded", "{first}");
    let b_refs = repo(&first, "fay/b")["refs"].clone();

    app.gh.commit("fay/b", "main", &[("x", "pushed")], "pushed");
    app.gh.inject(Fault::new(
        "/git/fay/b.git/",
        FaultKind::Status(500),
        100_000,
    ));
    for day in 0..30 {
        app.gh
            .commit("fay/a", "main", &[("day", &day.to_string())], "daily");
        app.clock.advance(Duration::days(1));
        assert_eq!(sched.run_due_once().await, 1);
    }
    app.gh.clear_faults();
    let (_, runs) = app.get(&format!("/api/v1/jobs/{id}/runs"), &key).await;
    assert_eq!(runs["runs"][0]["status"], "partial", "{runs}");
    let snaps = snapshots(&app, &key, id).await;
    let ids: Vec<&Value> = snaps.iter().map(|s| &s["id"]).collect();
    assert_eq!(
        snaps.len(),
        3,
        "two by policy, plus the pinned first: {ids:?}"
    );
    assert_eq!(snaps[2]["id"], first["id"]);
    for s in &snaps[..2] {
        let b = repo(s, "fay/b");
        assert_eq!(b["capture"], "carried-forward", "{b}");
        assert_eq!(b["captured_at"], first["created_at"]);
        assert_eq!(b["refs"], b_refs);
        assert_eq!(b["metadata"]["issues"], 1, "metadata carried too: {b}");
        assert_eq!(repo(s, "fay/a")["capture"], "captured");
    }
    // The carried copy downloads whole: the tar.gz holds b's issue, as captured on day one.
    let newest = snaps[0]["id"].as_i64().unwrap();
    let files = app.tar_files(&key, newest).await;
    assert!(
        files.iter().any(|(path, data)| path.contains("fay/b")
            && String::from_utf8_lossy(data).contains("kept with the repository")),
        "b's metadata is in the newest snapshot's download: {:?}",
        files.keys()
    );

    // Captured again: the pin is released and the policy alone decides.
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    let snaps = snapshots(&app, &key, id).await;
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[0]["status"], "succeeded", "{}", snaps[0]);
}

/// `forget-repo` refuses malformed input, other users' jobs (exactly like a missing job) and
/// repositories GitHub still shows, and forgets nothing then.
#[tokio::test]
async fn forget_repo_input_is_checked() {
    let app = TestApp::new().await;
    let (key, id) = account_job(&app, "gus", 3).await;
    let (other, _) = app.login("mallory").await;
    let sched = app.backup_scheduler();
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    let path = format!("/api/v1/jobs/{id}/forget-repo");

    for body in [
        "not json",
        "{}",
        r#"{"repo": 5}"#,
        r#"{"repo": "gus/a", "extra": true}"#,
        r#"{"repo": ""}"#,
        r#"{"repo": "no-slash"}"#,
        r#"{"repo": "a/b/c"}"#,
    ] {
        let (status, err) = app.call(Method::POST, &path, Some(&key), Some(body)).await;
        // The API's convention: 400 for unreadable JSON or a bad value, 422 for a wrong shape.
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {status} {err}"
        );
        assert!(
            err["code"].is_string() && err["message"].is_string(),
            "{err}"
        );
    }
    let (status, theirs) = app.post(&path, &other, json!({"repo": "gus/a"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, missing) = app
        .post(
            "/api/v1/jobs/999999/forget-repo",
            &other,
            json!({"repo": "gus/a"}),
        )
        .await;
    assert_eq!(theirs, missing, "another user's job looks missing");
    let (status, err) = app.post(&path, &key, json!({"repo": "gus/zzz"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    let (status, err) = app.post(&path, &key, json!({"repo": "gus/a"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert!(err["message"].as_str().unwrap().contains("still on GitHub"));
    let (status, _) = app
        .call(Method::POST, &path, None, Some(r#"{"repo": "gus/a"}"#))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.state.store.list_job_repos(id).await.unwrap().len(), 2);

    // Gone upstream: now it can be forgotten, and the next run no longer carries it.
    app.gh.delete_repo("gus/b");
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    assert_eq!(snapshots(&app, &key, id).await[0]["gone"], 1);
    let (status, done) = app.post(&path, &key, json!({"repo": "GUS/B"})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["full_name"], "gus/b");
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    let newest = snapshots(&app, &key, id).await[0].clone();
    assert_eq!(newest["status"], "succeeded", "{newest}");
    assert_eq!(newest["repos"].as_array().unwrap().len(), 1);
}

/// Git refusing one repository (403) while the token still logs in is that repository's
/// failure: the job does not turn `needs-login`, and the error says what to check.
#[tokio::test]
async fn a_repository_refused_to_git_is_not_a_rejected_token() {
    let app = TestApp::new().await;
    let (key, _) = app.login("hal").await;
    app.gh.create_repo("hal", "proj", Default::default());
    app.gh.commit("hal/proj", "main", &[("a", "1")], "one");
    let id = app.create_job(&key, "hal/proj", "daily at 09:00").await["id"]
        .as_i64()
        .unwrap();
    app.gh.inject(Fault::new(
        "/git/hal/proj.git/",
        FaultKind::Status(403),
        1000,
    ));
    let sched = app.backup_scheduler();
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    let (_, job) = app.get(&format!("/api/v1/jobs/{id}"), &key).await;
    assert_eq!(job["state"], "active", "{job}");
    assert_eq!(job["last_run"]["status"], "failed", "{job}");
    let error = job["last_run"]["error"].as_str().unwrap();
    assert!(error.contains("token is valid"), "{error}");
}

/// A last copy that cannot be carried (its mirror was removed by hand) costs that repository
/// only: the others are still backed up and the run is partial, not a failure of everything.
#[tokio::test]
async fn a_lost_mirror_does_not_stop_the_other_repositories() {
    let app = TestApp::new().await;
    let (key, id) = account_job(&app, "ivy", 3).await;
    let sched = app.backup_scheduler();
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    let rows = app.state.store.list_job_repos(id).await.unwrap();
    let b = rows.iter().find(|r| r.full_name == "ivy/b").unwrap();
    let mirror = app
        .state
        .engine
        .data_dir()
        .join("mirrors")
        .join(format!("{}.git", ghbs_server::backup::mirror_key(b.id)));
    std::fs::remove_dir_all(&mirror).unwrap();
    app.gh.inject(Fault::new(
        "/git/ivy/b.git/",
        FaultKind::Status(500),
        100_000,
    ));
    app.gh.commit("ivy/a", "main", &[("new", "1")], "new");
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    let (_, runs) = app.get(&format!("/api/v1/jobs/{id}/runs"), &key).await;
    assert_eq!(runs["runs"][0]["status"], "partial", "{runs}");
    let newest = snapshots(&app, &key, id).await[0].clone();
    assert_eq!(repo(&newest, "ivy/a")["capture"], "captured");
    assert_eq!(repo(&newest, "ivy/b")["capture"], "failed", "{newest}");
    assert_eq!(newest["failed"], 1);
}
