//! Verification finds what the disk lost: damaged or deleted git objects, a manifest gone or
//! changed, moved snapshot refs, metadata files that no longer match their content hash; and
//! finds nothing in a clean backup.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ghbs_engine::{Manifest, ProblemKind, SnapshotVerdict};

use crate::common::*;

/// Two snapshots of one repository; the second adds `late.txt`, whose blob only it reaches.
async fn two_snapshots(w: &World) -> (String, Manifest, Manifest, String) {
    let full = w.repo("app");
    let first = w.snapshot("r1", &full).await;
    w.gh.commit(
        &full,
        "main",
        &[("late.txt", "only the second snapshot holds this\n")],
        "Late",
    );
    let second = w.snapshot("r1", &full).await;
    let blob = git(&w.mirror("r1"), &["rev-parse", "refs/heads/main:late.txt"]);
    (full, first, second, blob)
}

/// The loose file of `object`, after unpacking every pack of the mirror (the engine keeps what
/// it fetches packed; git also keeps objects loose, and a loose file is one object's bytes).
fn loose(w: &World, object: &str) -> PathBuf {
    let mirror = w.mirror("r1");
    let packs = mirror.join("objects/pack");
    let aside = w.scratch();
    for entry in std::fs::read_dir(&packs).unwrap().flatten() {
        let path = entry.path();
        std::fs::rename(&path, aside.path().join(entry.file_name())).unwrap();
    }
    for entry in std::fs::read_dir(aside.path()).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "pack") {
            let status = std::process::Command::new("git")
                .arg("-C")
                .arg(&mirror)
                .arg("unpack-objects")
                .arg("-q")
                .stdin(std::fs::File::open(entry.path()).unwrap())
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    let path = mirror.join("objects").join(&object[..2]).join(&object[2..]);
    assert!(path.is_file(), "{object} is loose now");
    path
}

fn kinds(v: &SnapshotVerdict) -> Vec<ProblemKind> {
    v.problems().map(|(_, p)| p.kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_backup_passes() {
    let w = World::start().await;
    let (_, first, second, _) = two_snapshots(&w).await;
    let verdicts = w.engine.verify_snapshots(&[first, second]).await.unwrap();
    assert_eq!(verdicts.len(), 2);
    for v in &verdicts {
        assert!(v.ok(), "clean snapshot reported {:?}", v);
        assert_eq!(v.repos.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_object_fails_the_snapshots_that_reach_it() {
    let w = World::start().await;
    let (full, first, second, blob) = two_snapshots(&w).await;
    let path = loose(&w, &blob);
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    std::fs::write(&path, b"this is not a zlib stream").unwrap();

    let verdicts = w.engine.verify_snapshots(&[first, second]).await.unwrap();
    assert!(
        verdicts[0].ok(),
        "the first snapshot does not reach the blob: {:?}",
        verdicts[0]
    );
    assert!(!verdicts[1].ok());
    let (repo, problem) = verdicts[1].problems().next().unwrap();
    assert_eq!(
        repo.unwrap().full_name,
        full,
        "the failure names the repository"
    );
    assert_eq!(problem.kind, ProblemKind::ObjectsCorrupt);
    assert!(problem.detail.contains(&blob), "{}", problem.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_object_is_reported_missing() {
    let w = World::start().await;
    let (_, first, second, blob) = two_snapshots(&w).await;
    std::fs::remove_file(loose(&w, &blob)).unwrap();

    let verdicts = w.engine.verify_snapshots(&[first, second]).await.unwrap();
    assert!(verdicts[0].ok(), "{:?}", verdicts[0]);
    let problems: Vec<_> = verdicts[1].problems().map(|(_, p)| p.clone()).collect();
    assert!(
        problems
            .iter()
            .any(|p| p.kind == ProblemKind::ObjectsMissing && p.detail.contains(&blob)),
        "{problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_manifest_or_a_moved_ref_is_caught() {
    let w = World::start().await;
    let (_, first, second, _) = two_snapshots(&w).await;
    std::fs::remove_file(
        w.engine
            .data_dir()
            .join(format!("manifests/{}.json", first.snapshot_key)),
    )
    .unwrap();
    // Point the second snapshot's main at the first one's commit.
    let old = &first.repos[0].refs["refs/heads/main"].clone();
    git(
        &w.mirror("r1"),
        &[
            "update-ref",
            &format!("refs/ghbs/snap/{}/heads/main", second.snapshot_key),
            old,
        ],
    );
    let verdicts = w.engine.verify_snapshots(&[first, second]).await.unwrap();
    assert_eq!(kinds(&verdicts[0]), vec![ProblemKind::ManifestMissing]);
    assert_eq!(kinds(&verdicts[1]), vec![ProblemKind::RefsMismatch]);
    let detail = &verdicts[1].problems().next().unwrap().1.detail;
    assert!(
        detail.contains("heads/main") && detail.contains(old),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_stored_manifest_is_caught() {
    let w = World::start().await;
    let (_, first, _, _) = two_snapshots(&w).await;
    let mut recorded = first.clone();
    recorded.repos[0].default_branch = Some("trunk".into());
    let verdicts = w.engine.verify_snapshots(&[recorded]).await.unwrap();
    assert_eq!(kinds(&verdicts[0]), vec![ProblemKind::ManifestMismatch]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_or_deleted_metadata_files_are_caught() {
    let w = World::start().await;
    let full = w.repo("app");
    let fetched = w.fetch("r1", &full).await;
    let mut manifest = manifest_of(vec![capture("r1", &full, fetched.refs)]);
    let mut writer = w
        .engine
        .metadata_writer(&manifest.snapshot_key, "r1")
        .await
        .unwrap();
    for n in [1, 2] {
        writer
            .put_json(
                &format!("issues/{n}.json"),
                &serde_json::json!({"number": n, "title": format!("issue {n}")}),
                None,
                BTreeMap::from([("issues".to_owned(), 1)]),
            )
            .await
            .unwrap();
    }
    let folder = writer.finish().await.unwrap();
    manifest.repos[0].metadata_dir = Some(folder.dir.clone());
    w.engine.commit_snapshot(&manifest).await.unwrap();
    let verdicts = w
        .engine
        .verify_snapshots(std::slice::from_ref(&manifest))
        .await
        .unwrap();
    assert!(verdicts[0].ok(), "{:?}", verdicts[0]);

    let dir = w.engine.data_dir().join(&folder.dir);
    std::fs::write(
        dir.join("issues/1.json"),
        b"{\"number\": 1, \"title\": \"edited\"}\n",
    )
    .unwrap();
    std::fs::remove_file(dir.join("issues/2.json")).unwrap();
    let verdicts = w
        .engine
        .verify_snapshots(std::slice::from_ref(&manifest))
        .await
        .unwrap();
    let problems: Vec<_> = verdicts[0].problems().map(|(_, p)| p.clone()).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems
        .iter()
        .any(|p| p.kind == ProblemKind::MetadataMismatch && p.detail.starts_with("issues/1.json")));
    assert!(problems
        .iter()
        .any(|p| p.kind == ProblemKind::MetadataMissing && p.detail.starts_with("issues/2.json")));

    std::fs::remove_file(dir.join("index.json")).unwrap();
    let verdicts = w.engine.verify_snapshots(&[manifest]).await.unwrap();
    assert_eq!(kinds(&verdicts[0]), vec![ProblemKind::MetadataMissing]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_inside_a_pack_is_caught() {
    let w = World::start().await;
    let (full, first, second, blob) = two_snapshots(&w).await;
    let packs = w.mirror("r1").join("objects/pack");
    // The pack holding the blob, and the blob's offset in it.
    let mut target = None;
    for entry in std::fs::read_dir(&packs).unwrap().flatten() {
        let idx = entry.path();
        if idx.extension().is_none_or(|e| e != "idx") {
            continue;
        }
        let out = std::process::Command::new("git")
            .arg("show-index")
            .stdin(std::fs::File::open(&idx).unwrap())
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut words = line.split_whitespace();
            let (Some(offset), Some(sha)) = (words.next(), words.next()) else {
                continue;
            };
            if sha == blob {
                target = Some((idx.with_extension("pack"), offset.parse::<u64>().unwrap()));
            }
        }
    }
    let (pack, offset) = target.expect("the blob is in a pack");
    let mut bytes = std::fs::read(&pack).unwrap();
    for b in &mut bytes[offset as usize + 2..offset as usize + 12] {
        *b ^= 0xff;
    }
    let mut perms = std::fs::metadata(&pack).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&pack, perms).unwrap();
    std::fs::write(&pack, bytes).unwrap();

    let verdicts = w.engine.verify_snapshots(&[first, second]).await.unwrap();
    let (repo, problem) = verdicts[1].problems().next().expect("damage found");
    assert_eq!(repo.unwrap().full_name, full);
    assert_eq!(problem.kind, ProblemKind::ObjectsCorrupt, "{problem:?}");
}
