//! A download failing on the server's own disk is the server's fault: a 5xx whose body names
//! no internal path and carries no git or OS text (the log has them), never the caller's 4xx.

mod common;

use axum::http::StatusCode;
use common::TestApp;
use serde_json::{json, Value};

/// One recorded snapshot of `login/proj`; returns (api key, snapshot id).
async fn snapshot(app: &TestApp, login: &str) -> (String, i64) {
    let (key, _) = app.login(login).await;
    app.gh.create_repo(login, "proj", Default::default());
    let full = format!("{login}/proj");
    app.gh
        .commit(&full, "main", &[("README.md", "hi\n")], "first");
    let id = app.create_job(&key, &full, "daily").await["id"]
        .as_i64()
        .unwrap();
    app.post(&format!("/api/v1/jobs/{id}/runs"), &key, json!(null))
        .await;
    assert_eq!(app.backup_scheduler().run_due_once().await, 1);
    let (_, snaps) = app.get(&format!("/api/v1/jobs/{id}/snapshots"), &key).await;
    (key, snaps["snapshots"][0]["id"].as_i64().unwrap())
}

fn assert_ours(app: &TestApp, status: StatusCode, body: &Value) {
    assert!(status.is_server_error(), "{status}: {body}");
    assert!(
        body["code"].is_string() && body["message"].is_string(),
        "{body}"
    );
    let text = body.to_string();
    let data_dir = app.dir.path().to_string_lossy().into_owned();
    assert!(!text.contains(&data_dir), "no internal path: {text}");
    for driver in [
        "os error",
        "fatal:",
        "git ",
        "No such file",
        "Is a directory",
    ] {
        assert!(!text.contains(driver), "no driver text ({driver}): {text}");
    }
}

#[tokio::test]
async fn a_lost_mirror_is_a_500_without_internals() {
    let app = TestApp::new().await;
    let (key, snap) = snapshot(&app, "ida").await;
    let mirrors = app.dir.path().join("backups/mirrors");
    for entry in std::fs::read_dir(&mirrors).unwrap() {
        std::fs::remove_dir_all(entry.unwrap().path()).unwrap();
    }
    let (status, body) = app
        .get(
            &format!("/api/v1/snapshots/{snap}/download?format=bundle"),
            &key,
        )
        .await;
    assert_ours(&app, status, &body);
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn an_unwritable_artifact_folder_is_a_500_without_internals() {
    let app = TestApp::new().await;
    let (key, snap) = snapshot(&app, "jon").await;
    // Where downloads are built is a file now: every write under it fails (even as root).
    let artifacts = app.dir.path().join("backups/artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::write(&artifacts, b"not a folder").unwrap();
    for format in ["bundle", "tar.gz", "zip"] {
        let (status, body) = app
            .get(
                &format!("/api/v1/snapshots/{snap}/download?format={format}"),
                &key,
            )
            .await;
        assert_ours(&app, status, &body);
    }
    // The caller's own mistakes stay 4xx.
    let (status, _) = app
        .get(
            &format!("/api/v1/snapshots/{snap}/download?format=rar"),
            &key,
        )
        .await;
    assert!(status.is_client_error(), "{status}");
    // Once the folder is back, the download works.
    std::fs::remove_file(&artifacts).unwrap();
    std::fs::create_dir_all(&artifacts).unwrap();
    assert!(!app.download(&key, snap, "bundle").await.is_empty());
}
