//! `storage migrate`: an installation on the default file storage is copied into a bucket on a
//! real S3 endpoint (moto, `TEST_S3_ENDPOINT`) by the built binary, then the server is started
//! on that bucket with its local cache emptied. Every snapshot must come back byte-identical,
//! verify, and the next backup must fetch only what changed. Bad `--to` values are refused
//! before anything is touched; the S3 secret never appears in what the commands print.

mod support;

use std::ffi::OsStr;
use std::path::Path;

use ghbs_testkit::S3Bucket;
use support::World;

const FORMATS: [&str; 4] = ["bundle", "tar.gz", "zip", "site"];

/// Every snapshot of job 1 in every format, as bytes, keyed by (snapshot, format).
async fn downloads(w: &World, dir: &str) -> Vec<((i64, &'static str), Vec<u8>)> {
    let snaps = w.ok(&["snapshots", "1", "--json"]).await.json();
    let ids: Vec<i64> = snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    std::fs::create_dir_all(w.path(dir)).unwrap();
    let mut out = Vec::new();
    for id in ids {
        for format in FORMATS {
            let file = w.path(dir).join(format!("{id}.{format}"));
            let id_s = id.to_string();
            w.ok(&[
                "fetch",
                "1",
                "--snapshot",
                &id_s,
                "--format",
                format,
                "-o",
                file.to_str().unwrap(),
            ])
            .await;
            out.push(((id, format), std::fs::read(&file).unwrap()));
        }
    }
    out
}

/// Empties a folder's contents (the folder stays).
fn empty(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

async fn migrate(w: &World, bucket: &S3Bucket, to: &str, extra: &[&str]) -> support::Outcome {
    let mut cmd = w.cli();
    cmd.envs(bucket.vars.iter().map(|(k, v)| (k, v)))
        .args(["storage", "migrate", "--data-dir"])
        .arg(w.state_dir())
        .args(["--to", to]);
    w.run_with(cmd, extra, None).await
}

#[tokio::test]
async fn an_installation_moves_to_s3_and_serves_every_snapshot_from_an_empty_cache() {
    let Some(bucket) = S3Bucket::create("storage migrate").await else {
        return;
    };
    let secret = bucket.secret();
    let mut w = World::start().await;
    let issue = w.github.create_issue("octo/hello", "Broken", "It breaks.");
    w.github
        .add_issue_comment("octo/hello", issue, "Confirmed.");
    w.login().await;
    w.ok(&["schedule", "octo/hello", "--daily", "--metadata"])
        .await;
    w.ok(&["run", "1", "--wait"]).await;
    w.github
        .commit("octo/hello", "main", &[("b.txt", "b\n")], "third");
    w.ok(&["run", "1", "--wait"]).await;
    let before = downloads(&w, "before").await;
    assert_eq!(before.len(), 2 * FORMATS.len());
    w.stop_server().await;

    // Refused before anything is read or written: what to pass instead is said.
    let backups = w.state_dir().join("backups");
    let listing = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = walk(dir);
        names.sort();
        names
    };
    let untouched = listing(&backups);
    for (to, says) in [
        ("ftp://nowhere", "--to: invalid storage URL"),
        ("s3://", "--to: invalid storage URL"),
        (
            &format!("file://{}", backups.display()) as &str,
            "own backups folder",
        ),
        (
            &format!("s3://AKIA:{secret}@{}", bucket.name) as &str,
            "do not belong in the URL",
        ),
        ("s3://ghbs-no-such-bucket-anywhere", "cannot reach"),
    ] {
        let o = migrate(&w, &bucket, to, &[]).await;
        assert_eq!(o.code, 1, "{to}: {}{}", o.stdout, o.stderr);
        assert!(o.stderr.contains(says), "{to}: {}", o.stderr);
        assert!(!o.stderr.contains(&secret), "{}", o.stderr);
    }
    assert_eq!(
        listing(&backups),
        untouched,
        "a refused migration changed files"
    );

    // The copy, twice: the second finds everything in place.
    let to = format!("{}/prod", bucket.url());
    let o = migrate(&w, &bucket, &to, &["--json"]).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let first = o.json();
    assert_eq!(
        (first["jobs"].as_i64(), first["snapshots"].as_i64()),
        (Some(1), Some(2))
    );
    assert_eq!(first["problems"].as_array().unwrap().len(), 0, "{first}");
    assert!(first["objects"].as_u64().unwrap() > 4, "{first}");
    assert!(!o.stdout.contains(&secret) && !o.stderr.contains(&secret));
    let o = migrate(&w, &bucket, &to, &[]).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("Copied 2 snapshot(s) of 1 job(s)")
            && o.stdout.contains(&format!("--storage {to}")),
        "{}",
        o.stdout
    );
    let again: u64 = first["objects"].as_u64().unwrap();
    let o = migrate(&w, &bucket, &to, &["--json"]).await;
    assert_eq!(
        o.json()["objects"].as_u64(),
        Some(again),
        "a rerun added objects"
    );
    assert!(!w.state_dir().join("storage-migrate-check").exists());
    // Migrating again from an installation already on shared storage is refused.
    let o = migrate(&w, &bucket, &to, &["--storage", &to]).await;
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("already keeps its backups in shared storage"),
        "{}",
        o.stderr
    );

    // The switch, with nothing cached: mirrors, metadata folders and built downloads gone.
    for dir in ["mirrors", "metadata", "artifacts"] {
        if backups.join(dir).is_dir() {
            empty(&backups.join(dir));
        }
    }
    let storage: [&OsStr; 2] = ["--storage".as_ref(), to.as_ref()];
    w.restart_with(&storage, &bucket.vars).await;
    let after = downloads(&w, "after").await;
    assert_eq!(after.len(), before.len());
    for ((key, a), (_, b)) in before.iter().zip(&after) {
        assert!(
            a == b,
            "snapshot {} as {} differs after the move",
            key.0,
            key.1
        );
    }
    // The emptied cache was rebuilt from the bucket, and /metrics says so.
    let metrics = reqwest::get(format!("{}/metrics", w.server_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let misses = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ghbs_storage_cache_total{result=\"miss\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(misses.is_some_and(|n| n >= 1), "{metrics}");
    let verified = w.ok(&["verify", "1"]).await;
    assert!(
        verified.stdout.contains("no problem found"),
        "{}",
        verified.stdout
    );

    // The next backup starts from the hydrated mirror: only the new commit crosses.
    w.github
        .commit("octo/hello", "main", &[("c.txt", "c\n")], "fourth");
    let run = w.ok(&["run", "1", "--wait", "--json"]).await.json();
    assert_eq!(run["status"], "succeeded", "{run}");
    let fetched = run["bytes_fetched"].as_i64().unwrap_or(i64::MAX);
    assert!(
        fetched < 2_000,
        "fetched {fetched} bytes: a clone, not an update"
    );
    let snaps = w.ok(&["snapshots", "1", "--json"]).await.json();
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 3);
    assert!(!w.server_log().contains(&secret));
}

/// Every file under `dir`, relative, with its size (what a refused migration must not change).
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                out.push(format!(
                    "{} {size}",
                    path.strip_prefix(dir).unwrap().display()
                ));
            }
        }
    }
    out
}
