//! Fetching: credentials hygiene, failure classes, recovery from interrupted fetches.

use std::time::Duration;

use ghbs_core::{FailureKind, Secret};
use ghbs_testkit::{Fault, FaultKind};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_fetch_keeps_the_token_out_of_every_file() {
    let w = World::start().await;
    let full = w.repo("secret-sauce");
    w.gh.create_tag(&full, "v1", "main");
    let fetched = w.fetch("r1", &full).await;
    assert_eq!(heads_and_tags(&fetched.refs), w.gh.refs(&full));
    assert!(fetched.bytes_fetched > 0);
    let snap = manifest_of(vec![capture("r1", &full, fetched.refs)]);
    w.engine.commit_snapshot(&snap).await.unwrap();
    w.engine
        .export(&snap, ghbs_wire::DownloadFormat::Bundle, None)
        .await
        .unwrap();

    let config = std::fs::read_to_string(w.mirror("r1").join("config")).unwrap();
    assert!(config.contains(&w.gh.clone_url(&full)), "{config}");
    let token = w.token.expose().as_bytes();
    let files = files_under(w.engine.data_dir());
    assert!(files.len() > 5);
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(token.len()).any(|win| win == token),
            "token found in {}",
            file.display()
        );
    }
    let askpass = w.engine.data_dir().join("askpass.sh");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&askpass).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_classified() {
    let w = World::start().await;
    let full = w.repo("guarded");
    let src = w.source("r2", &full);

    let wrong = Secret::new("ghp_wrongwrongwrongwrongwrongwrongwrong");
    let err = w.engine.fetch(&src, Some(&wrong)).await.unwrap_err();
    assert!(matches!(err.kind, FailureKind::Unauthorized), "{err:?}");
    assert!(!err.message.contains(wrong.expose()));

    let missing = w.source("r3", "octo/does-not-exist");
    let err = w.engine.fetch(&missing, Some(&w.token)).await.unwrap_err();
    assert!(
        matches!(err.kind, FailureKind::NotFound | FailureKind::Unauthorized),
        "{err:?}"
    );

    w.gh.inject(Fault::new("/git/octo/guarded", FaultKind::Status(502), 1));
    let err = w.engine.fetch(&src, Some(&w.token)).await.unwrap_err();
    assert!(matches!(err.kind, FailureKind::Transient), "{err:?}");

    // A connection dropped in the middle of the pack: transient, and the next run succeeds.
    w.gh.generate_history(&full, "main", 4, 400_000);
    w.gh.inject(Fault::new("/git-upload-pack", FaultKind::DropMidBody, 1));
    let err = w.engine.fetch(&src, Some(&w.token)).await.unwrap_err();
    assert!(matches!(err.kind, FailureKind::Transient), "{err:?}");
    let fetched = w.engine.fetch(&src, Some(&w.token)).await.unwrap();
    assert_eq!(heads_and_tags(&fetched.refs), w.gh.refs(&full));
    git(&w.mirror("r2"), &["fsck", "--no-dangling", "--no-progress"]);

    let bad_key = w.source("../evil", &full);
    assert!(w.engine.fetch(&bad_key, Some(&w.token)).await.is_err());
    let mut with_creds = w.source("r4", &full);
    with_creds.clone_url = with_creds.clone_url.replace("http://", "http://user:pw@");
    assert!(w.engine.fetch(&with_creds, Some(&w.token)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_fetch_leaves_a_usable_mirror() {
    let w = World::start().await;
    let full = w.repo("big");
    w.gh.commits(&full, "main", 2);
    w.fetch("r8", &full).await;
    w.gh.generate_history(&full, "main", 64, 24_000_000);

    // Kill git at growing points of the transfer; the first surely interrupts it.
    let mut interrupted = 0;
    for millis in [5u64, 40, 160, 640] {
        let hasty = engine_with_timeout(w.dir.path(), Duration::from_millis(millis));
        match hasty.fetch(&w.source("r8", &full), Some(&w.token)).await {
            Err(e) => {
                assert!(matches!(e.kind, FailureKind::Transient), "{e:?}");
                assert!(e.message.contains("timed out"), "{e}");
                interrupted += 1;
            }
            Ok(_) => break,
        }
    }
    assert!(interrupted >= 1);
    // Leftovers a SIGKILLed git can leave: a ref lock and a half-written pack.
    std::fs::write(w.mirror("r8").join("packed-refs.lock"), "").unwrap();
    std::fs::write(
        w.mirror("r8").join("objects/pack/tmp_pack_abc123"),
        "partial",
    )
    .unwrap();

    let fetched = w.fetch("r8", &full).await;
    assert_eq!(heads_and_tags(&fetched.refs), w.gh.refs(&full));
    git(&w.mirror("r8"), &["fsck", "--no-dangling", "--no-progress"]);
    assert!(!w.mirror("r8").join("packed-refs.lock").exists());
    let snap = manifest_of(vec![capture("r8", &full, fetched.refs)]);
    w.engine.commit_snapshot(&snap).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_refs_and_renamed_urls() {
    let w = World::start().await;
    let full = w.repo("prs");
    let head = w.gh.commit(&full, "topic", &[("t.txt", "t\n")], "Topic");
    git(
        &w.gh.bare_path(&full),
        &["update-ref", "refs/pull/1/head", &head],
    );

    let mut src = w.source("r6", &full);
    src.pull_refs = true;
    let fetched = w.engine.fetch(&src, Some(&w.token)).await.unwrap();
    assert_eq!(fetched.refs.get("refs/pull/1/head"), Some(&head));

    src.pull_refs = false;
    let fetched = w.engine.fetch(&src, Some(&w.token)).await.unwrap();
    assert!(!fetched.refs.keys().any(|k| k.starts_with("refs/pull/")));
    assert!(!w
        .engine
        .mirror_refs("r6")
        .await
        .unwrap()
        .keys()
        .any(|k| k.starts_with("refs/pull/")));

    // A renamed repository: the new URL is used and stored (clean) in the mirror config.
    w.gh.rename_repo(&full, "prs-renamed");
    let renamed = "octo/prs-renamed";
    w.gh.commit(renamed, "main", &[("after.txt", "after rename\n")], "After");
    let src = w.source("r6", renamed);
    let fetched = w.engine.fetch(&src, Some(&w.token)).await.unwrap();
    assert_eq!(heads_and_tags(&fetched.refs), w.gh.refs(renamed));
    let url = git(&w.mirror("r6"), &["config", "--get", "remote.origin.url"]);
    assert_eq!(url, w.gh.clone_url(renamed));

    w.engine.remove_mirror("r6").await.unwrap();
    assert!(!w.mirror("r6").exists());
    assert!(matches!(
        w.engine.mirror_refs("r6").await.unwrap_err().kind,
        FailureKind::NotFound
    ));
}
