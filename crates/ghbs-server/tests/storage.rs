//! A backup with `storage_url = s3://…` (moto when `TEST_S3_ENDPOINT` is set): the snapshot's
//! manifest and a release asset (large enough to go up in parts) land in the bucket, and the
//! snapshot downloads, also after the node lost its local cache. One test in its own binary, because
//! the server reads the `AWS_*` settings from the process environment.

mod common;

use axum::http::StatusCode;
use chrono::Duration;
use common::TestApp;
use ghbs_engine::Storage;
use ghbs_testkit::{RepoOptions, S3Bucket};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_on_s3_storage_downloads() {
    let Some(bucket) = S3Bucket::create("a_backup_on_s3_storage_downloads").await else {
        return;
    };
    // The secret comes from a file named by AWS_SECRET_ACCESS_KEY_FILE (as Docker and
    // Kubernetes secrets are mounted), the rest from the environment.
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("aws-secret");
    for (k, v) in &bucket.vars {
        // The only test in this binary: nothing else reads the environment concurrently.
        if k == "AWS_SECRET_ACCESS_KEY" {
            std::fs::write(&secret_file, format!("{v}\n")).unwrap();
            std::env::remove_var(k);
            std::env::set_var("AWS_SECRET_ACCESS_KEY_FILE", &secret_file);
        } else {
            std::env::set_var(k, v);
        }
    }
    let args = ghbs_server::ServerArgs {
        data_dir: Some(secrets.path().to_path_buf()),
        ..Default::default()
    };
    let settings = ghbs_server::ServerConfig::load(&args, &|k| std::env::var(k).ok())
        .unwrap()
        .storage_settings;
    assert_eq!(settings.len(), 1, "only the secret is read from a file");
    let url = format!("{}/node-a", bucket.url());
    let app = TestApp::with(|cfg| {
        cfg.storage_url = Some(url.clone());
        cfg.storage_settings = settings.clone();
    })
    .await;
    let (key, _) = app.login("ana").await;
    app.gh.create_repo("ana", "proj", RepoOptions::default());
    app.gh
        .commit("ana/proj", "main", &[("README.md", "hello\n")], "first");
    app.gh.create_tag("ana/proj", "v1", "main");
    app.gh.create_release("ana/proj", "v1", "One");
    let asset_len = ghbs_engine::MULTIPART_THRESHOLD as usize + (2 << 20);
    let asset_bytes: Vec<u8> = (0..asset_len).map(|i| (i % 253) as u8).collect();
    let asset = app
        .gh
        .add_release_asset("ana/proj", "v1", "big.bin", &asset_bytes);
    let (status, body) = app
        .post(
            "/api/v1/jobs",
            &key,
            json!({"target": "ana/proj", "schedule": "daily at 09:00", "timezone": "UTC",
                   "options": {"metadata": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let job = body["id"].as_i64().unwrap();
    app.clock.advance(Duration::days(1));
    assert_eq!(app.backup_scheduler().run_due_once().await, 1);

    let (_, snaps) = app
        .get(&format!("/api/v1/jobs/{job}/snapshots"), &key)
        .await;
    let snaps = snaps["snapshots"].as_array().unwrap().clone();
    assert_eq!(snaps.len(), 1, "{snaps:?}");

    // The manifest is in the bucket, under the prefix, and not in the local folder.
    let observer = Storage::from_url_with(&bucket.url(), bucket.vars.clone(), None).unwrap();
    let manifests = observer.list("node-a/manifests").await.unwrap();
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    let local = app.dir.path().join("backups/manifests");
    assert_eq!(std::fs::read_dir(&local).unwrap().count(), 0);
    app.state.engine.storage_ready().await.unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&asset_bytes))
    };
    let object = format!("node-a/metadata/objects/{}/{digest}.bin", &digest[..2]);
    assert_eq!(
        observer.get(&object).await.unwrap().len(),
        asset_len,
        "the asset is in the bucket"
    );
    // A node that lost its cache (mirrors and metadata) rebuilds the download from the bucket.
    for dir in ["backups/metadata", "backups/mirrors", "backups/artifacts"] {
        for entry in std::fs::read_dir(app.dir.path().join(dir))
            .unwrap()
            .flatten()
        {
            std::fs::remove_dir_all(entry.path()).unwrap();
        }
    }
    let files = app.tar_files(&key, snaps[0]["id"].as_i64().unwrap()).await;
    assert!(
        files.get(&format!("proj.metadata/assets/{asset}")) == Some(&asset_bytes),
        "the asset came back from the bucket: {:?}",
        files.keys()
    );

    let bundle = app
        .download(&key, snaps[0]["id"].as_i64().unwrap(), "bundle")
        .await;
    assert!(bundle.starts_with(b"# v2 git bundle"), "not a bundle");
    let tar = app
        .download(&key, snaps[0]["id"].as_i64().unwrap(), "tar.gz")
        .await;
    assert!(tar.starts_with(&[0x1f, 0x8b]), "not gzip");

    // `/readyz` asks the storage too: ready here, and 503 naming the storage on a node whose
    // bucket does not exist (the server never creates it), with the database still fine.
    let (status, body) = app.get("/readyz", &key).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ready")),
        "{body}"
    );
    let missing = format!("s3://{}-missing/node-b", bucket.name);
    let lost = TestApp::with(|cfg| {
        cfg.storage_url = Some(missing.clone());
        cfg.storage_settings = settings.clone();
    })
    .await;
    let (status, body) = lost.get("/readyz", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "backup storage unreachable", "{body}");
    assert!(
        !body.to_string().contains("testing"),
        "no credentials in {body}"
    );
}
