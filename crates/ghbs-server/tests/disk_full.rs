//! A full disk on the server, injected (the engine's `disk_full_flag` testing hook, so this runs
//! everywhere; the end-to-end test `disk_full` of the binary also uses a real small filesystem
//! when it runs as root): the run's error names the full disk without any path, `/readyz` says
//! 503 with the reason, reads keep working, and everything recovers once space is back.

mod common;

use axum::http::{Method, StatusCode};
use chrono::Duration;
use common::TestApp;
use serde_json::json;

#[tokio::test]
async fn a_full_disk_fails_the_run_clearly_and_recovery_needs_no_restart() {
    let flag_dir = tempfile::tempdir().unwrap();
    let flag = flag_dir.path().join("disk-full");
    let flag_cfg = flag.clone();
    let app = TestApp::with(move |c| c.disk_full_flag = Some(flag_cfg)).await;
    let (key, _) = app.login("fay").await;
    app.gh.create_repo("fay", "proj", Default::default());
    app.gh
        .commit("fay/proj", "main", &[("README.md", "hello\n")], "first");
    let id = app.create_job(&key, "fay/proj", "daily").await["id"]
        .as_i64()
        .unwrap();
    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    std::fs::write(&flag, b"").unwrap();
    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        body["status"],
        "disk full on the server: 0 MiB free in DATA_DIR"
    );
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.0,
        StatusCode::OK,
        "liveness does not depend on the disk"
    );
    let sched = app.backup_scheduler();
    app.post(&format!("/api/v1/jobs/{id}/runs"), &key, json!(null))
        .await;
    assert_eq!(sched.run_due_once().await, 1);
    let (status, runs) = app.get(&format!("/api/v1/jobs/{id}/runs"), &key).await;
    assert_eq!(status, StatusCode::OK, "reads work while the disk is full");
    let run = &runs["runs"][0];
    assert_eq!(run["status"], "failed", "{runs}");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains("disk full on the server: 0 MiB free in DATA_DIR"),
        "{error}"
    );
    let data_dir = app.dir.path().to_string_lossy().into_owned();
    assert!(!error.contains(&data_dir), "no internal path: {error}");

    std::fs::remove_file(&flag).unwrap();
    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.clock.advance(Duration::hours(2));
    app.post(&format!("/api/v1/jobs/{id}/runs"), &key, json!(null))
        .await;
    assert_eq!(sched.run_due_once().await, 1);
    let (_, runs) = app.get(&format!("/api/v1/jobs/{id}/runs"), &key).await;
    assert_eq!(runs["runs"][0]["status"], "succeeded", "{runs}");
}
