//! Download formats and restore.

use ghbs_core::FailureKind;
use ghbs_wire::DownloadFormat;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_and_tar_gz_of_one_repository() {
    let w = World::start().await;
    let full = w.repo("site");
    w.gh.commit(&full, "main", &[("src/lib.rs", "pub fn hi() {}\n")], "Code");
    w.gh.commit(&full, "other", &[("only-on-other.txt", "x\n")], "Other");
    w.gh.create_annotated_tag(&full, "v1", "main", "One");
    let snap = w.snapshot("r5", &full).await;
    let meta = w.engine.data_dir().join("metadata/s1/r5");
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(meta.join("issues.json"), "[]").unwrap();
    let mut snap_meta = snap.clone();
    snap_meta.repos[0].metadata_dir = Some("metadata/s1/r5".into());

    let zip = w
        .engine
        .export(&snap, DownloadFormat::Zip, None)
        .await
        .unwrap();
    assert!(zip.file_name.ends_with(".zip") && zip.content_type == "application/zip");
    let entries = read_zip(&zip.path);
    assert_eq!(
        entries.get("site-main/README.md").map(Vec::as_slice),
        Some(&b"hello\n"[..]),
        "{:?}",
        entries.keys()
    );
    assert_eq!(
        entries.get("site-main/src/lib.rs").map(Vec::as_slice),
        Some(&b"pub fn hi() {}\n"[..])
    );
    assert!(
        !entries.keys().any(|k| k.contains("only-on-other")),
        "only the default branch"
    );

    let tgz = w
        .engine
        .export(&snap_meta, DownloadFormat::TarGz, Some("octo/site"))
        .await
        .unwrap();
    assert_eq!(tgz.content_type, "application/gzip");
    let out = w.scratch();
    untar(&tgz.path, out.path());
    assert!(out.path().join("snapshot.json").is_file());
    assert_eq!(
        std::fs::read_to_string(out.path().join("site.metadata/issues.json")).unwrap(),
        "[]"
    );
    let bare = out.path().join("site.git");
    assert!(
        !bare.join("objects/info/alternates").exists(),
        "self-contained"
    );
    let clone = out.path().join("clone");
    git(
        out.path(),
        &[
            "clone",
            "--quiet",
            bare.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(clone.join("src/lib.rs")).unwrap(),
        "pub fn hi() {}\n"
    );
    assert_eq!(refs_of(&bare), w.gh.refs(&full));

    // Cached: the same file comes back (stable for Range requests).
    let again = w
        .engine
        .export(&snap_meta, DownloadFormat::TarGz, Some("octo/site"))
        .await
        .unwrap();
    assert_eq!(again, tgz);
    let missing = w
        .engine
        .export(&snap, DownloadFormat::Bundle, Some("octo/nope"))
        .await
        .unwrap_err();
    assert!(matches!(missing.kind, FailureKind::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_snapshot_downloads_as_one_archive() {
    let w = World::start().await;
    let a = w.repo("alpha");
    let b = w.repo("beta");
    w.gh.create_tag(&b, "v9", "main");
    let fa = w.fetch("ra", &a).await;
    let fb = w.fetch("rb", &b).await;
    let snap = manifest_of(vec![capture("ra", &a, fa.refs), capture("rb", &b, fb.refs)]);
    w.engine.commit_snapshot(&snap).await.unwrap();

    // Bundle: an uncompressed tar of one bundle per repository.
    let all = w
        .engine
        .export(&snap, DownloadFormat::Bundle, None)
        .await
        .unwrap();
    assert!(
        all.file_name.starts_with("octo-") && all.file_name.ends_with(".bundles.tar"),
        "{}",
        all.file_name
    );
    assert_eq!(all.content_type, "application/x-tar");
    assert_eq!(all.sha256_hex(), sha256_hex(&all.path));
    let out = w.scratch();
    unpack_plain_tar(&all.path, out.path());
    assert!(out.path().join("snapshot.json").is_file());
    for (full, name) in [(&a, "a.git"), (&b, "b.git")] {
        let bundle = out.path().join(format!("{full}.bundle"));
        let clone = clone_mirror(&bundle, out.path(), name);
        assert_eq!(refs_of(&clone), w.gh.refs(full));
    }
    // tar.gz: bundles (and metadata) per repository, gzip'd.
    let tgz = w
        .engine
        .export(&snap, DownloadFormat::TarGz, None)
        .await
        .unwrap();
    assert!(tgz.file_name.ends_with(".tar.gz") && tgz.content_type == "application/gzip");
    let out = w.scratch();
    untar(&tgz.path, out.path());
    assert!(out.path().join(format!("{b}.bundle")).is_file());
    // Zip: an uncompressed tar of one zip per repository.
    let zips = w
        .engine
        .export(&snap, DownloadFormat::Zip, None)
        .await
        .unwrap();
    assert!(zips.file_name.ends_with(".zips.tar"), "{}", zips.file_name);
    assert_eq!(zips.content_type, "application/x-tar");
    let out = w.scratch();
    unpack_plain_tar(&zips.path, out.path());
    assert!(read_zip(&out.path().join(format!("{a}.zip"))).contains_key("alpha-main/README.md"));
    assert!(read_zip(&out.path().join(format!("{b}.zip"))).contains_key("beta-main/README.md"));
    // One repository of the account snapshot on its own.
    let zip = w
        .engine
        .export(&snap, DownloadFormat::Zip, Some("octo/beta"))
        .await
        .unwrap();
    assert!(zip.file_name.starts_with("octo-beta-"));
    assert!(read_zip(&zip.path).contains_key("beta-main/README.md"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_artifact_has_its_digest_computed_once() {
    let w = World::start().await;
    let full = w.repo("solo");
    let snap = w.snapshot("r7", &full).await;
    for format in [
        DownloadFormat::Bundle,
        DownloadFormat::TarGz,
        DownloadFormat::Zip,
    ] {
        let art = w.engine.export(&snap, format, None).await.unwrap();
        assert_eq!(art.sha256_hex(), sha256_hex(&art.path), "{format:?}");
        assert_eq!(art.etag(), format!("\"{}\"", art.sha256_hex()));
        let sidecar = format!("{}.sha256", art.path.display());
        assert_eq!(
            std::fs::read_to_string(&sidecar).unwrap(),
            format!("{} {}\n", art.sha256_hex(), art.size)
        );
        // The cached digest is what a second request gets; it is not recomputed from the file.
        std::fs::write(&sidecar, format!("{} {}\n", "ab".repeat(32), art.size)).unwrap();
        let again = w.engine.export(&snap, format, None).await.unwrap();
        assert_eq!(again.sha256_hex(), "ab".repeat(32));
        // A digest file that does not fit the artifact (another size, garbage) is redone.
        std::fs::write(&sidecar, "nonsense").unwrap();
        let redone = w.engine.export(&snap, format, None).await.unwrap();
        assert_eq!(redone.sha256, art.sha256);
    }
    // An account job with one repository still gets the per-repository archive when asked.
    let each = w
        .engine
        .export_each(&snap, DownloadFormat::Bundle)
        .await
        .unwrap();
    assert!(
        each.file_name.ends_with(".bundles.tar"),
        "{}",
        each.file_name
    );
    let out = w.scratch();
    unpack_plain_tar(&each.path, out.path());
    let clone = clone_mirror(
        &out.path().join(format!("{full}.bundle")),
        out.path(),
        "s.git",
    );
    assert_eq!(refs_of(&clone), w.gh.refs(&full));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_pushes_a_snapshot_to_an_empty_remote_only() {
    let w = World::start().await;
    let full = w.repo("lost");
    w.gh.commit(&full, "dev", &[("dev.txt", "dev\n")], "Dev");
    w.gh.create_annotated_tag(&full, "v1", "dev", "v1");
    let snap = w.snapshot("r9", &full).await;
    let bundle = w
        .engine
        .export(&snap, DownloadFormat::Bundle, None)
        .await
        .unwrap();
    let out = w.scratch();
    let remote = out.path().join("remote.git");
    git(
        out.path(),
        &["init", "--quiet", "--bare", remote.to_str().unwrap()],
    );

    ghbs_engine::restore(&bundle.path, remote.to_str().unwrap(), false)
        .await
        .unwrap();
    assert_eq!(refs_of(&remote), w.gh.refs(&full));
    git(&remote, &["fsck", "--no-dangling", "--no-progress"]);

    // Not empty any more: refused unless forced.
    let err = ghbs_engine::restore(&bundle.path, remote.to_str().unwrap(), false)
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, FailureKind::Permanent) && err.message.contains("empty"),
        "{err}"
    );
    // Forced: the remote's branches and tags become exactly the snapshot's.
    git(
        &remote,
        &[
            "update-ref",
            "refs/heads/stray",
            &w.gh.refs(&full)["refs/heads/main"],
        ],
    );
    ghbs_engine::restore(&bundle.path, remote.to_str().unwrap(), true)
        .await
        .unwrap();
    assert_eq!(refs_of(&remote), w.gh.refs(&full));

    // The bare repository inside a tar.gz export restores the same way.
    let tgz = w
        .engine
        .export(&snap, DownloadFormat::TarGz, None)
        .await
        .unwrap();
    let x = out.path().join("x");
    untar(&tgz.path, &x);
    let remote2 = out.path().join("remote2.git");
    git(
        out.path(),
        &["init", "--quiet", "--bare", remote2.to_str().unwrap()],
    );
    ghbs_engine::restore(&x.join("lost.git"), remote2.to_str().unwrap(), false)
        .await
        .unwrap();
    assert_eq!(refs_of(&remote2), w.gh.refs(&full));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_repository_snapshots_and_exports_sensibly() {
    let w = World::start().await;
    w.gh.create_repo(OWNER, "void", ghbs_testkit::RepoOptions::default());
    let full = "octo/void";
    let fetched = w.fetch("r0", full).await;
    assert!(fetched.refs.is_empty());
    let snap = manifest_of(vec![capture("r0", full, fetched.refs)]);
    w.engine.commit_snapshot(&snap).await.unwrap();
    let err = w
        .engine
        .export(&snap, DownloadFormat::Bundle, None)
        .await
        .unwrap_err();
    assert!(matches!(err.kind, FailureKind::NotFound), "{err:?}");
    let err = w
        .engine
        .export(&snap, DownloadFormat::Zip, None)
        .await
        .unwrap_err();
    assert!(matches!(err.kind, FailureKind::NotFound), "{err:?}");
    let tgz = w
        .engine
        .export(&snap, DownloadFormat::TarGz, None)
        .await
        .unwrap();
    let out = w.scratch();
    untar(&tgz.path, out.path());
    assert!(refs_of(&out.path().join("void.git")).is_empty());
}
