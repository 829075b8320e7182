//! Story 6 of issue 9: the bucket misbehaves under a running server (the built binary on
//! `s3://` storage reached through a fault-injecting proxy in front of a real S3 endpoint).
//! A few 500s are retried and the run succeeds; a bucket that keeps failing or stops answering
//! fails the run cleanly: no snapshot row, no manifest in the bucket, the earlier snapshots
//! still served and verified, the secret in no message; once the bucket is back, the next run
//! carries everything that was missed.

mod support;

use std::ffi::OsStr;

use ghbs_testkit::{S3Bucket, S3Fault, S3FaultProxy};
use support::World;

/// Snapshot ids of job 1, oldest first.
async fn snapshot_ids(w: &World) -> Vec<i64> {
    let snaps = w.ok(&["snapshots", "1", "--json"]).await.json();
    let mut ids: Vec<i64> = snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    ids
}

/// The latest run of job 1 as the API shows it.
async fn last_run(w: &World) -> serde_json::Value {
    let runs = w.ok(&["runs", "1", "--json"]).await.json();
    let list = runs["runs"].as_array().cloned().unwrap_or_default();
    list.into_iter()
        .max_by_key(|r| r["id"].as_i64().unwrap_or_default())
        .expect("a run")
}

#[tokio::test]
async fn bucket_faults_are_retried_or_fail_the_run_cleanly() {
    let Some(bucket) = S3Bucket::create("s3 faults").await else {
        return;
    };
    let secret = bucket.secret();
    let proxy = S3FaultProxy::start(&bucket.endpoint).await;
    let mut env = proxy.vars(&bucket.vars);
    // Short limits so a dead bucket fails a run in seconds, not in object_store's 3 minutes.
    env.push(("AWS_TIMEOUT".into(), "2s".into()));
    let url = bucket.url();
    let args: [&OsStr; 4] = [
        "--storage".as_ref(),
        url.as_ref(),
        "--storage-retry-secs".as_ref(),
        "4".as_ref(),
    ];
    let mut w = World::start().await;
    w.restart_with(&args, &env).await;
    let issue = w.github.create_issue("octo/hello", "Broken", "It breaks.");
    w.login().await;
    w.ok(&["schedule", "octo/hello", "--daily", "--metadata"])
        .await;
    w.ok(&["run", "1", "--wait"]).await;
    assert_eq!(snapshot_ids(&w).await.len(), 1);
    let manifests = bucket.keys("manifests/").await;
    assert_eq!(manifests.len(), 1, "{manifests:?}");

    // A few 500s on uploads: object_store retries them and the run succeeds.
    w.github
        .commit("octo/hello", "main", &[("b.txt", "b\n")], "third");
    proxy.set("PUT", S3Fault::FailNext(3));
    w.ok(&["run", "1", "--wait"]).await;
    assert_eq!(proxy.failed(), 3, "the injected 500s were not all met");
    assert_eq!(last_run(&w).await["status"], "succeeded");
    assert_eq!(snapshot_ids(&w).await.len(), 2);
    assert_eq!(bucket.keys("manifests/").await.len(), 2);

    // The bucket keeps failing, then stops answering: each run fails cleanly.
    for (fault, what) in [(S3Fault::FailAll, "500s"), (S3Fault::Stall, "timeouts")] {
        w.github.commit(
            "octo/hello",
            "main",
            &[("c.txt", &format!("{what}\n") as &str)],
            what,
        );
        w.github
            .add_issue_comment("octo/hello", issue, &format!("during {what}"));
        proxy.set("PUT", fault);
        let o = w.run(&["run", "1", "--wait"]).await;
        assert_ne!(o.code, 0, "{what}: the run did not fail: {}", o.stdout);
        let run = last_run(&w).await;
        assert_eq!(run["status"], "failed", "{what}: {run}");
        let error = run["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            error.to_lowercase().contains("storage"),
            "{what}: the error does not name the storage: {error}"
        );
        for text in [&error, &o.stdout, &o.stderr] {
            assert!(!text.contains(&secret), "{what}: secret shown: {text}");
        }
        // Nothing half-written became visible: two snapshots, two manifests, both verify.
        assert_eq!(snapshot_ids(&w).await.len(), 2, "{what}");
        assert_eq!(bucket.keys("manifests/").await.len(), 2, "{what}");
        proxy.clear();
        let verified = w.ok(&["verify", "1"]).await;
        assert!(
            verified.stdout.contains("no problem found"),
            "{what}: {}",
            verified.stdout
        );
        // Downloads of what exists keep working.
        let file = w.path(&format!("during-{what}.bundle"));
        w.ok(&[
            "fetch",
            "1",
            "--format",
            "bundle",
            "-o",
            file.to_str().unwrap(),
        ])
        .await;
        assert!(std::fs::metadata(&file).unwrap().len() > 0);
    }
    assert!(proxy.stalled() >= 1, "no request was left hanging");

    // The bucket is back: the next run succeeds and holds everything the failed ones missed.
    w.ok(&["run", "1", "--wait"]).await;
    let ids = snapshot_ids(&w).await;
    assert_eq!(ids.len(), 3);
    assert_eq!(bucket.keys("manifests/").await.len(), 3);
    let latest = ids.last().unwrap().to_string();
    let tarball = w.path("latest.tar.gz");
    w.ok(&[
        "fetch",
        "1",
        "--snapshot",
        &latest,
        "--format",
        "tar.gz",
        "-o",
        tarball.to_str().unwrap(),
    ])
    .await;
    let listing = support::sh(
        "tar",
        &[
            "-xzOf",
            tarball.to_str().unwrap(),
            "--wildcards",
            "*issues/1.json",
        ],
        w.work.path(),
    );
    assert!(
        listing.contains("during 500s") && listing.contains("during timeouts"),
        "the comments added while the bucket failed are missing: {listing}"
    );
    let verified = w.ok(&["verify", "1"]).await;
    assert!(
        verified.stdout.contains("no problem found"),
        "{}",
        verified.stdout
    );
    assert!(
        !w.server_log().contains(&secret),
        "the server log shows the secret"
    );
}
