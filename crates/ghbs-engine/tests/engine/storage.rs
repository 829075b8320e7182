//! Snapshots whose manifests live in a real S3 bucket (moto when `TEST_S3_ENDPOINT` is set).

use ghbs_engine::Storage;
use ghbs_testkit::S3Bucket;
use ghbs_wire::DownloadFormat;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_on_s3_keeps_its_manifest_in_the_bucket() {
    let Some(bucket) = S3Bucket::create("a_snapshot_on_s3_keeps_its_manifest_in_the_bucket").await
    else {
        return;
    };
    let url = format!("{}/install-1", bucket.url());
    let storage = Storage::from_url_with(&url, bucket.vars.clone(), None).unwrap();
    let w = World::start_with_storage(Some(storage)).await;
    let full = w.repo("cloudy");
    let snap = w.snapshot("r1", &full).await;

    // The manifest is in the bucket under the prefix, not on local disk.
    let key = format!("manifests/{}.json", snap.snapshot_key);
    let observer = Storage::from_url_with(&bucket.url(), bucket.vars.clone(), None).unwrap();
    let stored = observer.get(&format!("install-1/{key}")).await.unwrap();
    let parsed: ghbs_engine::Manifest = serde_json::from_slice(&stored).unwrap();
    assert_eq!(parsed, snap);
    assert!(!w.engine.data_dir().join(&key).exists());

    // Read back through the engine, and an export built from it.
    assert_eq!(
        w.engine.load_manifest(&snap.snapshot_key).await.unwrap(),
        snap
    );
    w.engine.storage_ready().await.unwrap();
    let bundle = w
        .engine
        .export(&snap, DownloadFormat::Bundle, None)
        .await
        .unwrap();
    assert!(bundle.size > 0);

    // A snapshot that never got its row (still pending) is forgotten from the bucket too.
    assert!(w
        .engine
        .pending_snapshots()
        .await
        .unwrap()
        .contains(&snap.snapshot_key));
    w.engine.forget_pending(&snap.snapshot_key).await.unwrap();
    let err = w
        .engine
        .load_manifest(&snap.snapshot_key)
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, ghbs_core::FailureKind::NotFound),
        "{err:?}"
    );
    assert!(observer
        .list("install-1/manifests")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_storage_keeps_manifests_where_they_always_were() {
    let w = World::start().await;
    let full = w.repo("grounded");
    let snap = w.snapshot("r2", &full).await;
    let path = w
        .engine
        .data_dir()
        .join("manifests")
        .join(format!("{}.json", snap.snapshot_key));
    let on_disk: ghbs_engine::Manifest =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(on_disk, snap);
    // Pretty JSON, as before the storage seam.
    assert_eq!(
        std::fs::read(&path).unwrap(),
        serde_json::to_vec_pretty(&snap).unwrap()
    );
}
