//! Shared storage (a real S3 bucket, moto when `TEST_S3_ENDPOINT` is set): git packs, metadata
//! and manifests in the bucket, local mirrors a cache that any engine rebuilds from it.

use std::collections::BTreeMap;
use std::time::Duration;

use ghbs_engine::{Engine, EngineConfig, Storage};
use ghbs_testkit::S3Bucket;
use ghbs_wire::DownloadFormat;

use crate::common::*;

/// A second engine ("node") on its own empty data folder, on the same storage.
fn node(storage: &Storage) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::Builder::new()
        .prefix("ghbs-engine-node-")
        .tempdir()
        .unwrap();
    let engine = Engine::new(EngineConfig {
        data_dir: dir.path().to_path_buf(),
        git_timeout: Duration::from_secs(300),
        ca_cert: None,
        disk_full_flag: None,
        storage: Some(storage.clone()),
        storage_gc_grace: ghbs_engine::DEFAULT_STORAGE_GC_GRACE,
    })
    .unwrap();
    (dir, engine)
}

async fn shared_world(test: &str) -> Option<(S3Bucket, Storage, World)> {
    let bucket = S3Bucket::create(test).await?;
    let url = format!("{}/install", bucket.url());
    let storage = Storage::from_url_with(&url, bucket.vars.clone(), None).unwrap();
    let w = World::start_with_storage(Some(storage.clone())).await;
    Some((bucket, storage, w))
}

/// [`shared_world`] with the bucket reached through a fault-injecting proxy (which also counts
/// requests), and the given retry policy.
async fn proxied_world(
    test: &str,
    retry: Option<ghbs_engine::RetryConfig>,
) -> Option<(S3Bucket, ghbs_testkit::S3FaultProxy, Storage, World)> {
    let bucket = S3Bucket::create(test).await?;
    let proxy = ghbs_testkit::S3FaultProxy::start(&bucket.endpoint).await;
    let url = format!("{}/install", bucket.url());
    let storage = Storage::from_url_with(&url, proxy.vars(&bucket.vars), retry).unwrap();
    let w = World::start_with_storage(Some(storage.clone())).await;
    Some((bucket, proxy, storage, w))
}

fn bytes_of(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_an_empty_cache_serves_every_snapshot_byte_identical() {
    let Some((_bucket, storage, w)) =
        shared_world("a_node_with_an_empty_cache_serves_every_snapshot_byte_identical").await
    else {
        return;
    };
    let full = w.repo("shared");
    w.gh.create_annotated_tag(&full, "v1", "main", "One");
    let first = w.snapshot("r1", &full).await;
    // Metadata in the first snapshot, as a run writes it.
    let mut writer = w
        .engine
        .metadata_writer(&first.snapshot_key, "r1")
        .await
        .unwrap();
    writer
        .put_json(
            "issues/1.json",
            &serde_json::json!({"number": 1, "title": "hi"}),
            Some("v1".into()),
            BTreeMap::from([("issues".to_owned(), 1)]),
        )
        .await
        .unwrap();
    let folder = writer.finish().await.unwrap();
    let mut first = first;
    first.repos[0].metadata_dir = Some(folder.dir.clone());
    w.engine.commit_snapshot(&first).await.unwrap();
    w.gh.commit(&full, "main", &[("more.txt", "more\n")], "More");
    let second = w.snapshot("r1", &full).await;

    // The bucket holds packs, the pack index, metadata objects and index, manifests.
    let keys = storage.list("packs").await.unwrap();
    assert!(keys.iter().any(|k| k.ends_with(".pack")), "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with(".idx")), "{keys:?}");
    let index = w
        .engine
        .pack_index("r1")
        .await
        .unwrap()
        .expect("pack index");
    assert!(index.snapshots.contains(&first.snapshot_key));
    assert!(index.snapshots.contains(&second.snapshot_key));
    assert_eq!(index.refs, second.repos[0].refs);
    assert_eq!(storage.list("metadata/objects").await.unwrap().len(), 1);

    let (_dir_b, b) = node(&storage);
    for snap in [&first, &second] {
        for format in [
            DownloadFormat::Bundle,
            DownloadFormat::TarGz,
            DownloadFormat::Zip,
        ] {
            let on_a = w.engine.export(snap, format, None).await.unwrap();
            let on_b = b.export(snap, format, None).await.unwrap();
            assert_eq!(
                on_a.sha256, on_b.sha256,
                "{format:?} of {}",
                snap.snapshot_key
            );
            assert_eq!(bytes_of(&on_a.path), bytes_of(&on_b.path));
            assert_eq!(on_a.file_name, on_b.file_name);
        }
    }
    // B's rebuilt metadata index is A's, and both snapshots verify on B.
    assert_eq!(
        b.metadata_index(&first.snapshot_key, "r1").await.unwrap(),
        w.engine
            .metadata_index(&first.snapshot_key, "r1")
            .await
            .unwrap()
    );
    let verdicts = b
        .verify_snapshots(&[first.clone(), second.clone()])
        .await
        .unwrap();
    assert!(verdicts.iter().all(|v| v.ok()), "{verdicts:?}");

    // Restore (what the CLI does with a downloaded bundle) from B's bundle of the first one.
    let bundle = b
        .export(&first, DownloadFormat::Bundle, None)
        .await
        .unwrap();
    let target = w.scratch();
    let remote = target.path().join("restored.git");
    git(
        target.path(),
        &["init", "--bare", "-q", remote.to_str().unwrap()],
    );
    ghbs_engine::restore(&bundle.path, remote.to_str().unwrap(), false)
        .await
        .unwrap();
    assert_eq!(refs_of(&remote), heads_and_tags(&first.repos[0].refs));
}

/// Found by the three-process story: node A captures, node B captures the next change, then A
/// runs again without fetching (GitHub reports no push) and reuses its mirror's refs. A must
/// first take B's capture from the bucket: its snapshot records B's refs, not A's older ones,
/// and A's mirror holds B's snapshot refs (so a local gc cannot drop their objects and every
/// snapshot verifies on A).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reusing_a_stale_mirror_first_takes_the_other_nodes_capture() {
    let Some((_bucket, storage, w)) =
        shared_world("a_node_reusing_a_stale_mirror_first_takes_the_other_nodes_capture").await
    else {
        return;
    };
    let full = w.repo("stale");
    let first = w.snapshot("r1", &full).await;
    // Node B: a commit upstream, captured there (B hydrates, fetches, commits).
    let (_dir_b, b) = node(&storage);
    w.gh.commit(&full, "main", &[("b.txt", "b\n")], "On B");
    let fetched = b
        .fetch(&w.source("r1", &full), Some(&w.token))
        .await
        .unwrap();
    let second = manifest_of(vec![capture("r1", &full, fetched.refs.clone())]);
    b.commit_snapshot(&second).await.unwrap();
    // Node A, nothing pushed since: the refs it reuses are B's capture.
    let reused = w.engine.mirror_refs("r1").await.unwrap();
    assert_eq!(
        reused, fetched.refs,
        "A reused refs older than the latest capture"
    );
    let third = manifest_of(vec![capture("r1", &full, reused)]);
    w.engine.commit_snapshot(&third).await.unwrap();
    let prefix = format!("refs/ghbs/snap/{}/", second.snapshot_key);
    let held = git(
        &w.mirror("r1"),
        &["for-each-ref", "--format=%(refname)", &prefix],
    );
    assert!(!held.is_empty(), "A's mirror lacks B's snapshot refs");
    let verdicts = w
        .engine
        .verify_snapshots(&[first, second, third])
        .await
        .unwrap();
    assert!(verdicts.iter().all(|v| v.ok()), "{verdicts:?}");
}

/// A commit into a mirror that missed another node's snapshot does not make the mirror pass
/// for in step: its record lists only the snapshots whose refs it holds, so the next hydration
/// writes the missing ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_into_a_stale_mirror_leaves_it_to_be_hydrated() {
    let Some((_bucket, storage, w)) =
        shared_world("a_commit_into_a_stale_mirror_leaves_it_to_be_hydrated").await
    else {
        return;
    };
    let full = w.repo("stale2");
    let first = w.snapshot("r1", &full).await;
    // B captures the same refs (no new pack: otherwise A's commit is refused as behind).
    let (_dir_b, b) = node(&storage);
    let fetched = b
        .fetch(&w.source("r1", &full), Some(&w.token))
        .await
        .unwrap();
    let second = manifest_of(vec![capture("r1", &full, fetched.refs)]);
    b.commit_snapshot(&second).await.unwrap();
    // A commits with the refs it already has, without hydrating first.
    let third = manifest_of(vec![capture("r1", &full, first.repos[0].refs.clone())]);
    w.engine.commit_snapshot(&third).await.unwrap();
    let done = w.engine.hydrate("r1").await.unwrap();
    assert!(
        done.snapshots >= 1,
        "the stale mirror passed for in step: {done:?}"
    );
    let prefix = format!("refs/ghbs/snap/{}/", second.snapshot_key);
    let held = git(
        &w.mirror("r1"),
        &["for-each-ref", "--format=%(refname)", &prefix],
    );
    assert!(
        !held.is_empty(),
        "B's snapshot refs were never written on A"
    );
    // Now in step: the next look is one GET and changes nothing.
    assert_eq!(w.engine.hydrate("r1").await.unwrap().snapshots, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_cache_is_rebuilt_from_the_bucket_then_fetches_only_what_changed() {
    let Some((_bucket, storage, w)) =
        shared_world("a_lost_cache_is_rebuilt_from_the_bucket_then_fetches_only_what_changed")
            .await
    else {
        return;
    };
    let full = w.repo("history");
    w.gh.generate_history(&full, "main", 20, 2_000_000);
    let first = w.snapshot("r2", &full).await;
    let packed_before = w.engine.stored_size("packs").await.unwrap().0;
    assert!(packed_before > 1_900_000, "{packed_before}");

    // The cache is lost; upstream gains one small commit.
    std::fs::remove_dir_all(w.mirror("r2")).unwrap();
    w.gh.commit(&full, "main", &[("small.txt", "small\n")], "Small");
    let fetched = w.fetch("r2", &full).await;
    assert!(
        fetched.bytes_fetched < 50_000,
        "fetched {} bytes: a full clone, not an incremental fetch",
        fetched.bytes_fetched
    );
    assert_eq!(heads_and_tags(&fetched.refs), w.gh.refs(&full));
    // The old snapshot's refs came back with the hydration.
    let snap_ref = format!("refs/ghbs/snap/{}/heads/main", first.snapshot_key);
    assert_eq!(
        git(&w.mirror("r2"), &["rev-parse", &snap_ref]),
        first.repos[0].refs["refs/heads/main"]
    );
    let second = manifest_of(vec![capture("r2", &full, fetched.refs)]);
    w.engine.commit_snapshot(&second).await.unwrap();
    // Only the new pack was added to the bucket.
    let packed_after = w.engine.stored_size("packs").await.unwrap().0;
    assert!(
        packed_after - packed_before < 50_000,
        "{packed_before} -> {packed_after}"
    );
    let _ = storage;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_frees_what_only_the_dropped_snapshots_held() {
    let Some((_bucket, storage, w)) =
        shared_world("retention_frees_what_only_the_dropped_snapshots_held").await
    else {
        return;
    };
    let full = w.repo("shrinking");
    w.gh.generate_history(&full, "big", 4, 1_000_000);
    let first = w.snapshot("r3", &full).await;
    w.gh.delete_ref(&full, "refs/heads/big");
    let second = w.snapshot("r3", &full).await;
    let (before, _) = w.engine.stored_size("").await.unwrap();
    let manifest_size = storage
        .get(&format!("manifests/{}.json", first.snapshot_key))
        .await
        .unwrap()
        .len();

    w.engine
        .drop_snapshots(std::slice::from_ref(&first))
        .await
        .unwrap();
    // Within the grace period nothing goes.
    let kept = w
        .engine
        .gc_storage(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(kept.swept, 0, "{kept:?}");
    let report = w.engine.gc_storage(Duration::ZERO).await.unwrap();
    let (after, _) = w.engine.stored_size("").await.unwrap();
    let freed = before - after;
    eprintln!(
        "bucket {before} -> {after} bytes: freed {freed} (the dropped branch held ~1000000, manifest {manifest_size}); {report:?}"
    );
    assert!(freed > 950_000, "freed only {freed}");
    assert!(after < 100_000, "left {after}");

    // What remains serves the kept snapshot on a cold node.
    let (_dir, cold) = node(&storage);
    let bundle = cold
        .export(&second, DownloadFormat::Bundle, None)
        .await
        .unwrap();
    let out = w.scratch();
    let clone = clone_mirror(&bundle.path, out.path(), "c.git");
    assert_eq!(refs_of(&clone), w.gh.refs(&full));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_unchanged_snapshots_cost_about_one_copy() {
    let Some((_bucket, _storage, w)) =
        shared_world("thirty_unchanged_snapshots_cost_about_one_copy").await
    else {
        return;
    };
    let full = w.repo("steady");
    w.gh.generate_history(&full, "main", 10, 500_000);
    w.snapshot("r4", &full).await;
    let (one, _) = w.engine.stored_size("").await.unwrap();
    for _ in 1..30 {
        w.snapshot("r4", &full).await;
    }
    let (thirty, count) = w.engine.stored_size("").await.unwrap();
    eprintln!("1 snapshot: {one} bytes; 30 snapshots: {thirty} bytes in {count} objects");
    assert!(
        thirty < one + one / 10,
        "30 unchanged snapshots cost {thirty} bytes against {one} for one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_file_storage_keeps_no_second_copy_of_packs() {
    let w = World::start().await;
    let full = w.repo("local");
    w.snapshot("r5", &full).await;
    assert!(!w.engine.shares_storage());
    assert!(!w.engine.data_dir().join("packs").exists());
    assert!(!w.engine.data_dir().join("repos").exists());
    assert!(w.engine.pack_index("r5").await.unwrap().is_none());
}

/// A snapshot the pack index lists without a manifest (its commit failed after the packs) costs
/// another node one hydration, not one at every run, and that node's next commit of the
/// repository takes it out of the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_in_the_pack_index_is_hydrated_past_once_then_dropped() {
    let Some((_bucket, storage, w)) =
        shared_world("an_orphan_in_the_pack_index_is_hydrated_past_once_then_dropped").await
    else {
        return;
    };
    let full = w.repo("orphan");
    let first = w.snapshot("r1", &full).await;
    let orphan = uuid::Uuid::new_v4().to_string();
    let mut index = w.engine.pack_index("r1").await.unwrap().unwrap();
    index.snapshots.insert(orphan.clone());
    storage
        .put(
            "repos/r1/packs.json",
            serde_json::to_vec(&index).unwrap().into(),
        )
        .await
        .unwrap();

    let (_dir_b, b) = node(&storage);
    assert_eq!(b.hydrate("r1").await.unwrap().snapshots, 1, "first look");
    assert_eq!(
        b.hydrate("r1").await.unwrap().snapshots,
        0,
        "the orphan made every look a full hydration"
    );
    w.gh.commit(&full, "main", &[("b.txt", "b\n")], "On B");
    let fetched = b
        .fetch(&w.source("r1", &full), Some(&w.token))
        .await
        .unwrap();
    let second = manifest_of(vec![capture("r1", &full, fetched.refs)]);
    b.commit_snapshot(&second).await.unwrap();
    let index = b.pack_index("r1").await.unwrap().unwrap();
    assert!(!index.snapshots.contains(&orphan), "{index:?}");
    assert!(index.snapshots.contains(&first.snapshot_key));
    assert!(index.snapshots.contains(&second.snapshot_key));
}

/// The node whose commit failed in the bucket notes the orphan locally (forgetting the
/// snapshot needs no upload and leaves the index as it is), and its next commit takes it out of
/// the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_failed_in_the_bucket_leaves_no_lasting_orphan() {
    let no_retries = ghbs_engine::RetryConfig {
        max_retries: 0,
        ..Default::default()
    };
    let Some((_bucket, proxy, _storage, w)) =
        proxied_world("a_commit_that_failed_in_the_bucket", Some(no_retries)).await
    else {
        return;
    };
    let full = w.repo("failing");
    let first = w.snapshot("r1", &full).await;
    // The manifest's upload fails: the pack index already lists the snapshot.
    w.gh.commit(&full, "main", &[("c.txt", "c\n")], "During the fault");
    let fetched = w.fetch("r1", &full).await;
    let failed = manifest_of(vec![capture("r1", &full, fetched.refs)]);
    proxy.set_for("PUT", "/manifests/", ghbs_testkit::S3Fault::FailAll);
    assert!(w.engine.commit_snapshot(&failed).await.is_err());
    let index = w.engine.pack_index("r1").await.unwrap().unwrap();
    assert!(index.snapshots.contains(&failed.snapshot_key), "{index:?}");
    // Forgetting it (what the server does next) needs no upload, and leaves the index as it is.
    proxy.set("PUT", ghbs_testkit::S3Fault::FailAll);
    w.engine.forget_pending(&failed.snapshot_key).await.unwrap();
    proxy.clear();
    let index = w.engine.pack_index("r1").await.unwrap().unwrap();
    assert!(index.snapshots.contains(&failed.snapshot_key), "{index:?}");
    let second = w.snapshot("r1", &full).await;
    let index = w.engine.pack_index("r1").await.unwrap().unwrap();
    assert!(
        !index.snapshots.contains(&failed.snapshot_key),
        "the failed commit stayed in the index: {index:?}"
    );
    let verdicts = w.engine.verify_snapshots(&[first, second]).await.unwrap();
    assert!(verdicts.iter().all(|v| v.ok()), "{verdicts:?}");
}

/// A fetch uploads its new pack at once (overlapping the other repositories' fetches), and the
/// commit then writes only the pack index and the manifest: each object goes up once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_pack_is_uploaded_once_right_after_the_fetch() {
    let Some((_bucket, proxy, storage, w)) =
        proxied_world("a_fetched_pack_is_uploaded_once", None).await
    else {
        return;
    };
    let full = w.repo("early");
    let fetched = w.fetch("r1", &full).await;
    let packs = storage.list("packs/r1").await.unwrap();
    assert_eq!(
        packs.len(),
        2,
        "the pack and its index after the fetch: {packs:?}"
    );
    assert_eq!(proxy.forwarded_of("PUT"), 2);
    let manifest = manifest_of(vec![capture("r1", &full, fetched.refs)]);
    w.engine.commit_snapshot(&manifest).await.unwrap();
    assert_eq!(
        proxy.forwarded_of("PUT"),
        4,
        "the commit should write only packs.json and the manifest"
    );
    let verdicts = w.engine.verify_snapshots(&[manifest]).await.unwrap();
    assert!(verdicts.iter().all(|v| v.ok()), "{verdicts:?}");
}
