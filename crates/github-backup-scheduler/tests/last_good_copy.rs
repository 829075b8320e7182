//! Never lose the last good copy (issue 8, cases 1 and 2), with the real binary as server and
//! client against the GitHub stand-in: a repository whose transfer fails, and one deleted
//! upstream, stay downloadable whatever retention says, until the user forgets them.

mod support;

use ghbs_testkit::{Fault, FaultKind, RepoOptions};
use support::{refs, World};

/// An account job over `octo/hello`, `octo/one` and `octo/two`, keeping 1 snapshot, run once.
async fn account_world() -> (World, String) {
    let w = World::start().await;
    for name in ["one", "two"] {
        let full = format!("octo/{name}");
        w.github.create_repo("octo", name, RepoOptions::default());
        w.github
            .commit(&full, "main", &[("README.md", name)], "first");
    }
    w.login().await;
    let job = w
        .ok(&["schedule", "octo", "--daily", "--keep", "1", "--json"])
        .await
        .json();
    let id = job["id"].as_i64().unwrap().to_string();
    let run = w.ok(&["run", &id, "--wait", "--json"]).await.json();
    assert_eq!(run["status"], "succeeded", "{run}");
    (w, id)
}

/// Clones the bundle `fetch` writes for one repository of a snapshot and returns its refs.
async fn fetched_refs(
    w: &World,
    id: &str,
    snapshot: &str,
    repo: &str,
    name: &str,
) -> std::collections::BTreeMap<String, String> {
    let out = w.path(&format!("{name}.bundle"));
    w.ok(&[
        "fetch",
        id,
        "--snapshot",
        snapshot,
        "--repo",
        repo,
        "-o",
        out.to_str().unwrap(),
    ])
    .await;
    let clone = w.path(&format!("{name}.git"));
    let status = std::process::Command::new("git")
        .args(["clone", "--mirror", "--quiet"])
        .arg(&out)
        .arg(&clone)
        .status()
        .unwrap();
    assert!(status.success(), "the bundle of {repo} clones");
    refs(&clone)
}

fn repo<'a>(snapshot: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    snapshot["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["full_name"] == name)
        .unwrap_or_else(|| panic!("{name} is in the snapshot: {snapshot}"))
}

fn mirrors(w: &World) -> usize {
    std::fs::read_dir(w.data.path().join("state/backups/mirrors"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".git")
        })
        .count()
}

/// Case 1: `--keep 1`, one repository's pack transfer fails on the second run. The run is
/// `partial` (exit 1, a line for that repository), its snapshot carries the last good copy, the
/// first snapshot is kept although the policy says 1, and both serve that repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transfer_never_costs_the_last_good_copy() {
    let (w, id) = account_world().await;
    let first = w.ok(&["snapshots", &id, "--json"]).await.json()["snapshots"][0].clone();
    let good = w.github.refs("octo/two");

    w.github
        .commit("octo/two", "main", &[("new.txt", "pushed")], "pushed");
    w.github.inject(Fault::new(
        "/git/octo/two.git/git-upload-pack",
        FaultKind::DropMidBody,
        100,
    ));
    let failed = w.run(&["run", &id, "--wait"]).await;
    assert_eq!(failed.code, 1, "{}\n{}", failed.stderr, failed.stdout);
    assert!(failed.stderr.contains("partial"), "{}", failed.stderr);
    assert!(
        failed
            .stderr
            .lines()
            .any(|l| l.starts_with("- octo/two:") && l.contains("is kept")),
        "a line for the failed repository: {}",
        failed.stderr
    );
    w.github.clear_faults();

    let runs = w.ok(&["runs", &id, "--json"]).await.json();
    assert_eq!(runs["runs"][0]["status"], "partial", "{runs}");
    let snaps = w.ok(&["snapshots", &id, "--json"]).await.json();
    let list = snaps["snapshots"].as_array().unwrap();
    assert_eq!(
        list.len(),
        2,
        "keep 1, but the first snapshot holds octo/two's last own capture: {snaps}"
    );
    let (newest, oldest) = (&list[0], &list[1]);
    assert_eq!(oldest["id"], first["id"]);
    assert_eq!(newest["status"], "partial");
    assert_eq!(newest["carried_forward"], 1);
    let two = repo(newest, "octo/two");
    assert_eq!(two["capture"], "carried-forward", "{two}");
    assert_eq!(two["captured_at"], first["created_at"], "{two}");
    assert_eq!(repo(newest, "octo/one")["capture"], "captured");
    let human = w.ok(&["snapshots", &id]).await.stdout;
    assert!(
        human.contains("partial") && human.contains("1 carried forward"),
        "{human}"
    );

    // Both snapshots serve octo/two as it was before the failed transfer.
    let s_new = newest["id"].to_string();
    let s_old = oldest["id"].to_string();
    assert_eq!(fetched_refs(&w, &id, &s_new, "octo/two", "new").await, good);
    assert_eq!(fetched_refs(&w, &id, &s_old, "octo/two", "old").await, good);

    // Once octo/two is captured again, retention is back to its policy.
    let run = w.ok(&["run", &id, "--wait", "--json"]).await.json();
    assert_eq!(run["status"], "succeeded", "{run}");
    let snaps = w.ok(&["snapshots", &id, "--json"]).await.json();
    let list = snaps["snapshots"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{snaps}");
    assert_eq!(list[0]["status"], "succeeded");
    let s = list[0]["id"].to_string();
    assert_eq!(
        fetched_refs(&w, &id, &s, "octo/two", "again").await,
        w.github.refs("octo/two")
    );
}

/// Case 2: a repository deleted upstream is carried forward and marked gone in every later
/// snapshot, downloadable, kept beyond retention, until `job forget-repo` (confirmed) lets it
/// go; its mirror leaves with the last snapshot that held it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_deleted_upstream_is_kept_until_forgotten() {
    let (w, id) = account_world().await;
    let good = w.github.refs("octo/two");
    assert_eq!(mirrors(&w), 3);
    w.github.delete_repo("octo/two");

    for _ in 0..3 {
        let gone = w.run(&["run", &id, "--wait"]).await;
        assert_eq!(gone.code, 1, "{}", gone.stderr);
        assert!(
            gone.stderr
                .lines()
                .any(|l| l.starts_with("- octo/two: gone upstream since")),
            "{}",
            gone.stderr
        );
    }
    let snaps = w.ok(&["snapshots", &id, "--json"]).await.json();
    let list = snaps["snapshots"].as_array().unwrap();
    assert_eq!(
        list.len(),
        2,
        "the newest, and the last that captured octo/two itself: {snaps}"
    );
    let newest = &list[0];
    assert_eq!(newest["status"], "partial");
    assert_eq!(newest["gone"], 1);
    let two = repo(newest, "octo/two");
    assert_eq!(two["capture"], "carried-forward");
    assert!(two["gone_since"].is_string(), "{two}");
    let human = w.ok(&["snapshots", &id]).await.stdout;
    assert!(human.contains("octo/two gone upstream since"), "{human}");
    let s = newest["id"].to_string();
    assert_eq!(fetched_refs(&w, &id, &s, "octo/two", "gone").await, good);

    // forget-repo: malformed input and refusals lose nothing.
    let bad = w
        .run(&["job", "forget-repo", &id, "not-a-repo", "--yes"])
        .await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let unconfirmed = w.run(&["job", "forget-repo", &id, "octo/two"]).await;
    assert_eq!(unconfirmed.code, 2, "{}", unconfirmed.stderr);
    assert!(
        unconfirmed.stderr.contains("--yes"),
        "{}",
        unconfirmed.stderr
    );
    let present = w
        .run(&["job", "forget-repo", &id, "octo/one", "--yes"])
        .await;
    assert_eq!(present.code, 1, "{}", present.stderr);
    assert!(
        present.stderr.contains("still on GitHub"),
        "{}",
        present.stderr
    );
    let unknown = w
        .run(&["job", "forget-repo", &id, "octo/nope", "--yes"])
        .await;
    assert_eq!(unknown.code, 4, "{}", unknown.stderr);
    assert_eq!(
        w.ok(&["snapshots", &id, "--json"]).await.json()["snapshots"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let forgot = w
        .ok(&["job", "forget-repo", &id, "octo/two", "--yes", "--json"])
        .await
        .json();
    assert_eq!(forgot["full_name"], "octo/two");
    assert_eq!(
        forgot["snapshots_holding"], 1,
        "the pinned snapshot went at once; the newest still holds it: {forgot}"
    );
    let run = w.ok(&["run", &id, "--wait", "--json"]).await.json();
    assert_eq!(run["status"], "succeeded", "{run}");
    let snaps = w.ok(&["snapshots", &id, "--json"]).await.json();
    let list = snaps["snapshots"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert!(
        list[0]["repos"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["full_name"] != "octo/two"),
        "{snaps}"
    );
    assert_eq!(
        mirrors(&w),
        2,
        "octo/two's mirror left with its last snapshot"
    );
}
