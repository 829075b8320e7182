//! Snapshots survive what happens upstream, cost nothing when nothing changed, and pruning
//! releases what only a dropped snapshot held.

use ghbs_core::FailureKind;
use ghbs_wire::DownloadFormat;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_push_and_deletes_never_reach_an_older_snapshot() {
    let w = World::start().await;
    let full = w.repo("app");
    w.gh.commits(&full, "main", 3);
    w.gh.commit(&full, "feature", &[("f.txt", "feature work\n")], "Feature");
    // `doomed` carries ~300 KB of incompressible data that only it references.
    w.gh.commit(&full, "doomed", &[("d.txt", "doomed\n")], "Doomed");
    w.gh.generate_history(&full, "doomed", 3, 300_000);
    w.gh.create_tag(&full, "v1", "main");
    w.gh.create_annotated_tag(&full, "v2", "feature", "Release 2");
    let refs1 = w.gh.refs(&full);
    assert_eq!(refs1.len(), 5);

    let snap1 = w.snapshot("r1", &full).await;
    assert_eq!(
        heads_and_tags(&snap1.repos[0].refs),
        refs1,
        "snapshot 1 holds exactly upstream's refs"
    );

    let old_feature = refs1["refs/heads/feature"].clone();
    let new_feature = w.gh.force_push_rewrite(&full, "feature");
    w.gh.delete_ref(&full, "refs/heads/doomed");
    w.gh.delete_ref(&full, "refs/tags/v1");
    w.gh.commits(&full, "main", 2);
    let refs2 = w.gh.refs(&full);
    assert_ne!(old_feature, new_feature);

    let snap2 = w.snapshot("r1", &full).await;
    assert_eq!(heads_and_tags(&snap2.repos[0].refs), refs2);
    assert_eq!(
        heads_and_tags(&w.engine.mirror_refs("r1").await.unwrap()),
        refs2,
        "live refs follow upstream"
    );

    // Git's own garbage collection must not touch what snapshot 1 holds.
    git(&w.mirror("r1"), &["gc", "--prune=now", "--quiet"]);

    let out = w.scratch();
    let b1 = w
        .engine
        .export(&snap1, DownloadFormat::Bundle, None)
        .await
        .unwrap();
    assert!(
        b1.file_name.starts_with("octo-app-") && b1.file_name.ends_with(".bundle"),
        "{}",
        b1.file_name
    );
    assert_eq!(b1.size, std::fs::metadata(&b1.path).unwrap().len());
    let c1 = clone_mirror(&b1.path, out.path(), "one.git");
    assert_eq!(
        refs_of(&c1),
        refs1,
        "snapshot 1's bundle restores the original refs"
    );
    git(
        &c1,
        &["cat-file", "-e", &format!("{old_feature}^{{commit}}")],
    );

    let b2 = w
        .engine
        .export(&snap2, DownloadFormat::Bundle, None)
        .await
        .unwrap();
    let c2 = clone_mirror(&b2.path, out.path(), "two.git");
    assert_eq!(refs_of(&c2), refs2);

    // A plain clone of the bundle checks out the default branch.
    let work = out.path().join("work");
    git(
        out.path(),
        &[
            "clone",
            "--quiet",
            b1.path.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    assert_eq!(git(&work, &["rev-parse", "HEAD"]), refs1["refs/heads/main"]);

    // Dropping snapshot 1 releases the objects only it kept (doomed's data).
    let before = w.engine.disk_usage(&["r1".to_owned()]).await.unwrap();
    w.engine
        .drop_snapshots(std::slice::from_ref(&snap1))
        .await
        .unwrap();
    let after = w.engine.disk_usage(&["r1".to_owned()]).await.unwrap();
    assert!(after + 250_000 < before, "disk {before} -> {after}");
    assert!(!b1.path.exists(), "dropped snapshot's artifacts are gone");
    let manifests = w.engine.data_dir().join("manifests");
    assert!(!manifests
        .join(format!("{}.json", snap1.snapshot_key))
        .exists());
    assert!(manifests
        .join(format!("{}.json", snap2.snapshot_key))
        .exists());
    let left = git(
        &w.mirror("r1"),
        &["for-each-ref", "--format=%(refname)", "refs/ghbs/"],
    );
    assert!(!left.contains(&snap1.snapshot_key) && left.contains(&snap2.snapshot_key));
    git(&w.mirror("r1"), &["fsck", "--no-dangling", "--no-progress"]);

    // Snapshot 2 is still whole: a fresh self-contained export of it clones.
    let tgz = w
        .engine
        .export(&snap2, DownloadFormat::TarGz, None)
        .await
        .unwrap();
    let x = out.path().join("x");
    untar(&tgz.path, &x);
    let c3 = clone_mirror(&x.join("app.git"), out.path(), "three.git");
    assert_eq!(refs_of(&c3), refs2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_repository_costs_almost_nothing() {
    let w = World::start().await;
    let full = w.repo("calm");
    w.gh.generate_history(&full, "main", 5, 200_000);
    w.gh.create_tag(&full, "v1", "main");
    let first = w.snapshot("r7", &full).await;
    let usage1 = w.engine.disk_usage(&["r7".to_owned()]).await.unwrap();
    assert!(usage1 > 200_000);
    let inode = std::fs::metadata(w.mirror("r7").join("objects")).unwrap();

    let fetched = w.fetch("r7", &full).await;
    assert_eq!(fetched.bytes_fetched, 0, "nothing new upstream");
    let second = manifest_of(vec![capture("r7", &full, fetched.refs)]);
    w.engine.commit_snapshot(&second).await.unwrap();
    let usage2 = w.engine.disk_usage(&["r7".to_owned()]).await.unwrap();
    assert!(
        usage2 - usage1 < 4096,
        "identical snapshot cost {} bytes",
        usage2 - usage1
    );
    assert_eq!(first.repos[0].refs, second.repos[0].refs);
    use std::os::unix::fs::MetadataExt;
    let same = std::fs::metadata(w.mirror("r7").join("objects")).unwrap();
    assert_eq!(
        inode.ino(),
        same.ino(),
        "the mirror was updated in place, not re-cloned"
    );

    // Forgetting one of two identical snapshots keeps the data (the other still needs it).
    w.engine
        .drop_snapshots(std::slice::from_ref(&first))
        .await
        .unwrap();
    let usage3 = w.engine.disk_usage(&["r7".to_owned()]).await.unwrap();
    assert!(usage3 > 200_000);
    let b = w
        .engine
        .export(&second, DownloadFormat::Bundle, None)
        .await
        .unwrap();
    let out = w.scratch();
    assert_eq!(
        refs_of(&clone_mirror(&b.path, out.path(), "c.git")),
        w.gh.refs(&full)
    );

    // New commits upstream: the next fetch transfers only them.
    w.gh.commit(&full, "main", &[("new.txt", "new\n")], "More");
    let fetched = w.fetch("r7", &full).await;
    assert!(
        fetched.bytes_fetched > 0 && fetched.bytes_fetched < 10_000,
        "fetched {}",
        fetched.bytes_fetched
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_leaves_nothing_behind() {
    let w = World::start().await;
    let full = w.repo("partial");
    let fetched = w.fetch("r3", &full).await;
    let mut refs = fetched.refs.clone();
    // One good ref and one pointing at an object the mirror does not have.
    refs.insert(
        "refs/heads/ghost".into(),
        "1234567890123456789012345678901234567890".into(),
    );
    let bad = manifest_of(vec![capture("r3", &full, refs)]);
    let err = w.engine.commit_snapshot(&bad).await.unwrap_err();
    assert!(matches!(err.kind, FailureKind::Permanent), "{err:?}");
    let snap_refs = git(&w.mirror("r3"), &["for-each-ref", "refs/ghbs/"]);
    assert_eq!(snap_refs, "", "the ref transaction is all or nothing");
    assert!(!w
        .engine
        .data_dir()
        .join("manifests")
        .join(format!("{}.json", bad.snapshot_key))
        .exists());

    // Keys that could name paths are refused before anything touches the disk.
    let mut evil = manifest_of(vec![capture("../r3", &full, fetched.refs.clone())]);
    assert!(w.engine.commit_snapshot(&evil).await.is_err());
    evil.repos[0].key = "r3".into();
    evil.snapshot_key = "../../x".into();
    assert!(w.engine.commit_snapshot(&evil).await.is_err());

    // Committing the same manifest twice is harmless.
    let good = manifest_of(vec![capture("r3", &full, fetched.refs)]);
    w.engine.commit_snapshot(&good).await.unwrap();
    w.engine.commit_snapshot(&good).await.unwrap();
    let loaded = w.engine.load_manifest(&good.snapshot_key).await.unwrap();
    assert_eq!(loaded, good);
}

/// Snapshot refs stay loose (no `pack-refs` per commit) but are packed before many accumulate,
/// and every snapshot keeps its refs either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loose_snapshot_refs_are_packed_before_they_pile_up() {
    let w = World::start().await;
    let full = w.repo("many");
    w.gh.commits(&full, "main", 2);
    w.gh.create_tag(&full, "v1", "main");
    let mut snaps = Vec::new();
    for _ in 0..12 {
        snaps.push(w.snapshot("r9", &full).await);
        let loose = std::fs::read_dir(w.mirror("r9").join("refs/ghbs/snap"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert!(loose <= 9, "{loose} snapshots with loose refs");
    }
    assert!(w.mirror("r9").join("packed-refs").exists());
    let listed = git(
        &w.mirror("r9"),
        &["for-each-ref", "--format=%(refname)", "refs/ghbs/"],
    );
    for snap in &snaps {
        let prefix = format!("refs/ghbs/snap/{}/", snap.snapshot_key);
        assert_eq!(
            listed.lines().filter(|l| l.starts_with(&prefix)).count(),
            snap.repos[0].refs.len(),
            "{prefix}"
        );
    }
}

/// Snapshot refs written without git (simple names, shas of live refs) and through git (any
/// other name or sha) read back the same through git, and the engine's record of a mirror's
/// live refs always agrees with git's listing: it is rebuilt when missing and never survives
/// a fetch that failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_refs_and_live_refs_agree_with_git() {
    let w = World::start().await;
    let full = w.repo("agree");
    let parent = w.gh.commits(&full, "main", 2);
    w.gh.commits(&full, "main", 1);
    w.gh.commit(&full, "café", &[("c.txt", "c\n")], "Unicode branch");
    w.gh.create_annotated_tag(&full, "v1", "main", "One");
    let fetched = w.fetch("r10", &full).await;
    let record = w.mirror("r10").join("ghbs-live-refs");
    assert!(record.exists());
    let listed = || {
        let out = git(
            &w.mirror("r10"),
            &[
                "for-each-ref",
                "--format=%(refname) %(objectname)",
                "refs/heads/",
                "refs/tags/",
                "refs/pull/",
            ],
        );
        out.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(r, s)| (r.to_owned(), s.to_owned()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(fetched.refs, listed());
    assert_eq!(w.engine.mirror_refs("r10").await.unwrap(), listed());
    std::fs::remove_file(&record).unwrap();
    assert_eq!(w.engine.mirror_refs("r10").await.unwrap(), listed());
    assert!(record.exists(), "the listing is recorded again");

    let snap_refs = |key: &str| {
        let prefix = format!("refs/ghbs/snap/{key}/");
        git(
            &w.mirror("r10"),
            &["for-each-ref", "--format=%(refname) %(objectname)", &prefix],
        )
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(r, s)| (format!("refs/{}", &r[prefix.len()..]), s.to_owned()))
        .collect::<std::collections::BTreeMap<_, _>>()
    };
    // All refs (one name git must judge), only simple ones, and a sha no live ref points at
    // (main's parent: present, but the record cannot vouch for it).
    let all = manifest_of(vec![capture("r10", &full, fetched.refs.clone())]);
    let mut simple = fetched.refs.clone();
    simple.retain(|name, _| name.is_ascii());
    let simple = manifest_of(vec![capture("r10", &full, simple)]);
    let mut older = simple.repos[0].refs.clone();
    older.insert("refs/heads/older".into(), parent);
    let older = manifest_of(vec![capture("r10", &full, older)]);
    for snap in [&all, &simple, &older] {
        w.engine.commit_snapshot(snap).await.unwrap();
        w.engine.commit_snapshot(snap).await.unwrap();
        assert_eq!(snap_refs(&snap.snapshot_key), snap.repos[0].refs);
    }
    assert_eq!(simple.repos[0].refs.len() + 1, all.repos[0].refs.len());
    let leftovers: Vec<_> = files_under(&w.mirror("r10").join("refs"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "lock"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    git(
        &w.mirror("r10"),
        &["fsck", "--no-dangling", "--no-progress"],
    );

    // A failed fetch leaves no record behind; the next listing comes from git.
    w.gh.commits(&full, "main", 1);
    w.gh.inject(ghbs_testkit::Fault::new(
        "/git/octo/agree",
        ghbs_testkit::FaultKind::Status(502),
        1,
    ));
    assert!(w
        .engine
        .fetch(&w.source("r10", &full), Some(&w.token))
        .await
        .is_err());
    assert!(!record.exists());
    assert_eq!(w.engine.mirror_refs("r10").await.unwrap(), listed());
    w.engine
        .drop_snapshots(&[all, simple, older])
        .await
        .unwrap();
    assert_eq!(git(&w.mirror("r10"), &["for-each-ref", "refs/ghbs/"]), "");
}
