use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use serde_json::json;

use super::*;
use crate::{EngineConfig, Manifest};

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(EngineConfig::new(dir.path())).unwrap();
    (dir, engine)
}

fn counts(kind: &str, n: u64) -> BTreeMap<String, u64> {
    BTreeMap::from([(kind.to_owned(), n)])
}

fn snap(n: u8) -> String {
    format!("00000000-0000-0000-0000-00000000000{n}")
}

fn object_files(engine: &Engine) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for shard in std::fs::read_dir(engine.objects_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        for e in std::fs::read_dir(shard.path()).unwrap().flatten() {
            out.insert(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

fn empty_manifest(key: &str) -> Manifest {
    Manifest {
        snapshot_key: key.to_owned(),
        repos: Vec::new(),
    }
}

#[tokio::test]
async fn unchanged_items_are_shared_and_dropping_frees_only_unshared_objects() {
    let (_dir, engine) = engine();
    let (s1, s2) = (snap(1), snap(2));

    let mut w = engine.metadata_writer(&s1, "r1").await.unwrap();
    let issue = json!({"issue": {"number": 1, "body": "old"}, "comments": []});
    w.put_json(
        "issues/1.json",
        &issue,
        Some("v1".into()),
        counts("issues", 1),
    )
    .await
    .unwrap();
    w.put_json(
        "labels.json",
        &json!([{"name": "bug"}]),
        None,
        counts("labels", 1),
    )
    .await
    .unwrap();
    let first = w.finish().await.unwrap();
    assert_eq!(first.dir, format!("metadata/snap/{s1}/r1"));
    assert_eq!(
        first.counts,
        BTreeMap::from([("issues".into(), 1), ("labels".into(), 1)])
    );

    // The second snapshot carries the label list and replaces the issue.
    let index = engine.metadata_index(&s1, "r1").await.unwrap().unwrap();
    assert_eq!(index.files["issues/1.json"].version.as_deref(), Some("v1"));
    let mut w = engine.metadata_writer(&s2, "r1").await.unwrap();
    assert!(w
        .carry("labels.json", &index.files["labels.json"])
        .await
        .unwrap());
    let edited = json!({"issue": {"number": 1, "body": "new"}, "comments": []});
    w.put_json(
        "issues/1.json",
        &edited,
        Some("v2".into()),
        counts("issues", 1),
    )
    .await
    .unwrap();
    w.finish().await.unwrap();

    let root = engine.data_dir().to_path_buf();
    let labels1 = root.join(format!("metadata/snap/{s1}/r1/labels.json"));
    let labels2 = root.join(format!("metadata/snap/{s2}/r1/labels.json"));
    let (m1, m2) = (
        std::fs::metadata(&labels1).unwrap(),
        std::fs::metadata(&labels2).unwrap(),
    );
    assert_eq!(m1.ino(), m2.ino(), "an unchanged file is one inode");
    let old: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join(format!("metadata/snap/{s1}/r1/issues/1.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(old["issue"]["body"], "old");
    assert_eq!(object_files(&engine).len(), 3);

    engine.drop_snapshots(&[empty_manifest(&s1)]).await.unwrap();
    assert!(!root.join(format!("metadata/snap/{s1}")).exists());
    assert_eq!(
        object_files(&engine).len(),
        2,
        "the old issue's object is gone"
    );
    assert!(labels2.is_file());
    engine.drop_snapshots(&[empty_manifest(&s2)]).await.unwrap();
    assert!(object_files(&engine).is_empty());
}

#[tokio::test]
async fn unfinished_writers_leave_nothing_visible_and_gc_collects_their_objects() {
    let (_dir, engine) = engine();
    let s1 = snap(1);
    {
        let mut w = engine.metadata_writer(&s1, "r1").await.unwrap();
        w.put_json("releases.json", &json!([]), None, BTreeMap::new())
            .await
            .unwrap();
        assert!(w.contains("releases.json"));
        assert_eq!(object_files(&engine).len(), 1);
        // The object is linked by the staging folder: collection must leave it.
        assert_eq!(engine.gc_metadata().await.unwrap(), 0);
    }
    assert!(engine.metadata_index(&s1, "r1").await.unwrap().is_none());
    assert_eq!(engine.gc_metadata().await.unwrap(), 1);
    assert!(object_files(&engine).is_empty());
}

#[tokio::test]
async fn carrying_a_missing_object_reports_it() {
    let (_dir, engine) = engine();
    let mut w = engine.metadata_writer(&snap(1), "r1").await.unwrap();
    let gone = MetadataEntry {
        object: format!("{}.json", "a".repeat(64)),
        ..Default::default()
    };
    assert!(!w.carry("issues/9.json", &gone).await.unwrap());
    let bogus = MetadataEntry {
        object: "../../etc/passwd".into(),
        ..Default::default()
    };
    assert!(!w.carry("issues/9.json", &bogus).await.unwrap());
    assert!(!w.contains("issues/9.json"));
}

#[test]
fn names_are_validated() {
    for good in ["labels.json", "issues/12.json", "wiki.bundle"] {
        assert!(validate_path(good, "").is_ok(), "{good}");
    }
    for bad in [
        "",
        "../x.json",
        "a/b/c.json",
        ".hidden.json",
        "index.json",
        "a//b.json",
        "i s.json",
    ] {
        assert!(validate_path(bad, "").is_err(), "{bad}");
    }
    assert!(validate_path("labels.txt", "json").is_err());
    assert!(valid_object(&format!("{}.json", "0f".repeat(32))));
    assert!(!valid_object(&format!("{}.json", "0F".repeat(32))));
    assert!(!valid_object("x.json"));
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn wiki_bundles_are_made_once_per_ref_state() {
    let (dir, engine) = engine();
    let mut w = engine.metadata_writer(&snap(1), "r1").await.unwrap();
    assert!(
        !w.put_wiki("r1-wiki", "wiki.bundle").await.unwrap(),
        "no mirror yet"
    );

    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "master"]);
    std::fs::write(work.join("Home.md"), "# Home\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "home"]);
    let mirror = engine.mirror_path("r1-wiki");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            mirror.to_str().unwrap(),
        ],
    );

    assert!(w.put_wiki("r1-wiki", "wiki.bundle").await.unwrap());
    let folder = w.finish().await.unwrap();
    assert_eq!(folder.counts, counts("wiki", 1));
    let mut w = engine.metadata_writer(&snap(2), "r1").await.unwrap();
    assert!(w.put_wiki("r1-wiki", "wiki.bundle").await.unwrap());
    w.finish().await.unwrap();
    assert_eq!(object_files(&engine).len(), 1, "same refs, same bundle");

    let bundle = engine
        .data_dir()
        .join(format!("{}/wiki.bundle", folder.dir));
    let clone = dir.path().join("restored");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--mirror",
            bundle.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    git(&clone, &["cat-file", "-e", "refs/heads/master:Home.md"]);
}

/// A release asset is stored once however many snapshots hold it, verifies by its content hash,
/// and goes when the last snapshot holding it is dropped.
#[tokio::test]
async fn files_are_objects_shared_by_content() {
    let (_dir, engine) = engine();
    let (s1, s2) = (snap(1), snap(2));
    let bytes = b"\x00binary release asset\xff".repeat(1000);
    for s in [&s1, &s2] {
        let mut w = engine.metadata_writer(s, "r1").await.unwrap();
        let scratch = w.scratch_file("asset");
        std::fs::write(&scratch, &bytes).unwrap();
        let size = w
            .put_file(
                "assets/77",
                scratch.clone(),
                Some("v".into()),
                counts("release_assets", 1),
            )
            .await
            .unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert!(!scratch.exists(), "the scratch file is consumed");
        w.finish().await.unwrap();
    }
    assert_eq!(
        object_files(&engine).len(),
        1,
        "{:?}",
        object_files(&engine)
    );
    let root = engine.data_dir().to_path_buf();
    for s in [&s1, &s2] {
        let stored = root.join(format!("metadata/snap/{s}/r1/assets/77"));
        assert_eq!(std::fs::read(&stored).unwrap(), bytes);
    }
    let index = engine.metadata_index(&s2, "r1").await.unwrap().unwrap();
    let object = &index.files["assets/77"].object;
    assert!(object.ends_with(".bin") && valid_object(object), "{object}");
    assert_eq!(index.counts["release_assets"], 1);

    // JSON and bundles have their own writers; a bad path is refused before anything moves.
    let mut w = engine.metadata_writer(&snap(3), "r1").await.unwrap();
    let scratch = w.scratch_file("asset");
    std::fs::write(&scratch, b"x").unwrap();
    for bad in ["assets/1.json", "../x", "wiki.bundle"] {
        assert!(w
            .put_file(bad, scratch.clone(), None, BTreeMap::new())
            .await
            .is_err());
    }
    assert!(scratch.exists());
    drop(w);

    engine.drop_snapshots(&[empty_manifest(&s1)]).await.unwrap();
    assert_eq!(object_files(&engine).len(), 1, "still held by the second");
    engine.drop_snapshots(&[empty_manifest(&s2)]).await.unwrap();
    assert!(object_files(&engine).is_empty());
}
