//! Pending markers: a committed snapshot stays pending until confirmed; a pending one can be
//! forgotten completely (refs in every mirror, manifest, objects only it held) without touching
//! any other snapshot, and a confirmed one can never be forgotten this way.

use ghbs_core::FailureKind;
use ghbs_wire::DownloadFormat;

use crate::common::*;

fn snapshot_refs(w: &World, key: &str, snapshot_key: &str) -> Vec<String> {
    git(
        &w.mirror(key),
        &[
            "for-each-ref",
            "--format=%(refname)",
            &format!("refs/ghbs/snap/{snapshot_key}/"),
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_snapshots_are_pending_and_forgotten_everywhere() {
    let w = World::start().await;
    let one = w.repo("p-one");
    let two = w.repo("p-two");
    let kept = w.snapshot("r11", &one).await;
    assert_eq!(
        w.engine.pending_snapshots().await.unwrap(),
        vec![kept.snapshot_key.clone()],
        "committed but not confirmed yet"
    );
    w.engine.confirm_snapshot(&kept.snapshot_key).await.unwrap();
    w.engine.confirm_snapshot(&kept.snapshot_key).await.unwrap();
    assert!(w.engine.pending_snapshots().await.unwrap().is_empty());

    // The orphan spans two mirrors and alone holds ~200 KB of history on `side`.
    w.gh.generate_history(&one, "side", 2, 200_000);
    let f1 = w.fetch("r11", &one).await;
    let f2 = w.fetch("r12", &two).await;
    let orphan = manifest_of(vec![
        capture("r11", &one, f1.refs),
        capture("r12", &two, f2.refs),
    ]);
    w.engine.commit_snapshot(&orphan).await.unwrap();
    assert_eq!(
        w.engine.pending_snapshots().await.unwrap(),
        vec![orphan.snapshot_key.clone()]
    );
    // A crash before the manifest was written: the refs alone must be found.
    std::fs::remove_file(
        w.engine
            .data_dir()
            .join("manifests")
            .join(format!("{}.json", orphan.snapshot_key)),
    )
    .unwrap();
    w.gh.delete_ref(&one, "refs/heads/side");
    w.fetch("r11", &one).await;
    assert!(!snapshot_refs(&w, "r11", &orphan.snapshot_key).is_empty());
    assert!(!snapshot_refs(&w, "r12", &orphan.snapshot_key).is_empty());
    let before = w.engine.disk_usage(&["r11".to_owned()]).await.unwrap();

    // A confirmed snapshot is refused, and keeps every ref.
    let refused = w
        .engine
        .forget_pending(&kept.snapshot_key)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, FailureKind::NotFound);
    assert_eq!(
        snapshot_refs(&w, "r11", &kept.snapshot_key).len(),
        kept.repos[0].refs.len()
    );
    assert!(w.engine.forget_pending("../../x").await.is_err());

    w.engine.forget_pending(&orphan.snapshot_key).await.unwrap();
    assert!(w.engine.pending_snapshots().await.unwrap().is_empty());
    for key in ["r11", "r12"] {
        assert_eq!(
            snapshot_refs(&w, key, &orphan.snapshot_key),
            Vec::<String>::new()
        );
        git(&w.mirror(key), &["fsck", "--full", "--no-dangling"]);
    }
    let after = w.engine.disk_usage(&["r11".to_owned()]).await.unwrap();
    assert!(after + 150_000 < before, "disk {before} -> {after}");
    assert_eq!(
        snapshot_refs(&w, "r11", &kept.snapshot_key).len(),
        kept.repos[0].refs.len(),
        "the confirmed snapshot is intact"
    );
    let b = w
        .engine
        .export(&kept, DownloadFormat::Bundle, None)
        .await
        .unwrap();
    let out = w.scratch();
    assert_eq!(
        refs_of(&clone_mirror(&b.path, out.path(), "k.git")),
        heads_and_tags(&kept.repos[0].refs)
    );
    assert!(w.engine.load_manifest(&kept.snapshot_key).await.is_ok());
}
