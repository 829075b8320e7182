//! `verify` with the real binary as server and client: a clean backup passes (exit 0), a
//! damaged mirror fails naming the repository and the snapshot (exit 1), for one job and with
//! `--all`; malformed or foreign input is refused with the documented exit codes.

mod support;

use ghbs_testkit::RepoOptions;
use support::World;

/// `octo/hello` and `octo/two`, each a job backed up once; returns their ids.
async fn two_jobs(w: &World) -> (String, String) {
    w.github.create_repo("octo", "two", RepoOptions::default());
    w.github
        .commit("octo/two", "main", &[("README.md", "two\n")], "first");
    w.login().await;
    let mut ids = Vec::new();
    for target in ["octo/hello", "octo/two"] {
        let job = w
            .ok(&["schedule", target, "--daily", "--json"])
            .await
            .json();
        let id = job["id"].as_i64().unwrap().to_string();
        let run = w.ok(&["run", &id, "--wait", "--json"]).await.json();
        assert_eq!(run["status"], "succeeded", "{run}");
        ids.push(id);
    }
    (ids[0].clone(), ids[1].clone())
}

/// Flips the bytes of every pack of every mirror of `job`'s repository (found through the
/// snapshot's manifest key in the mirror's refs).
fn damage_mirror_of(w: &World, full_name: &str) {
    let mirrors = w.data.path().join("state/backups/mirrors");
    let mut damaged = 0;
    for entry in std::fs::read_dir(&mirrors).unwrap().flatten() {
        let mirror = entry.path();
        let config = std::fs::read_to_string(mirror.join("config")).unwrap_or_default();
        if !config.contains(&format!("/{full_name}")) {
            continue;
        }
        for pack in std::fs::read_dir(mirror.join("objects/pack"))
            .unwrap()
            .flatten()
        {
            let path = pack.path();
            if path.extension().is_some_and(|e| e == "pack") {
                let mut bytes = std::fs::read(&path).unwrap();
                let n = bytes.len();
                for b in &mut bytes[12..n - 20] {
                    *b ^= 0x55;
                }
                let mut perms = std::fs::metadata(&path).unwrap().permissions();
                #[allow(clippy::permissions_set_readonly_false)]
                perms.set_readonly(false);
                std::fs::set_permissions(&path, perms).unwrap();
                std::fs::write(&path, bytes).unwrap();
                damaged += 1;
            }
        }
    }
    assert!(damaged > 0, "found the packs of {full_name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_backups_pass_and_a_damaged_mirror_fails_with_exit_1() {
    let w = World::start().await;
    let (hello, two) = two_jobs(&w).await;
    let o = w.ok(&["verify", &hello]).await;
    assert!(
        o.stdout
            .contains(&format!("Job {hello}: every snapshot verified")),
        "{}",
        o.stdout
    );
    let all = w.ok(&["verify", "--all", "--json"]).await.json();
    let runs = all["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs
        .iter()
        .all(|r| r["trigger"] == "verify" && r["status"] == "succeeded"));

    let snaps = w.ok(&["snapshots", &hello, "--json"]).await.json();
    let snap = snaps["snapshots"][0]["id"].as_i64().unwrap().to_string();
    damage_mirror_of(&w, "octo/hello");
    let o = w.run(&["verify", &hello]).await;
    assert_eq!(o.code, 1, "{} {}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains(&format!("snapshot {snap}: octo/hello:")),
        "names the snapshot and the repository: {}",
        o.stderr
    );
    let o = w.run(&["verify", &hello, "--snapshot", &snap]).await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    // --all: the damaged job fails the command, the clean one is still reported verified.
    let o = w.run(&["verify", "--all"]).await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stdout
            .contains(&format!("Job {two}: every snapshot verified")),
        "{}",
        o.stdout
    );
    assert!(
        o.stderr
            .contains(&format!("verification of job {hello} failed")),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("octo/two"), "{}", o.stderr);
    // The runs are in the history with their trigger.
    let runs = w.ok(&["runs", &hello, "--json"]).await.json();
    assert!(runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["trigger"] == "verify" && r["status"] == "failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_foreign_input_is_refused() {
    let w = World::start().await;
    let (hello, _) = two_jobs(&w).await;
    let snaps = w.ok(&["snapshots", &hello, "--json"]).await.json();
    let snap = snaps["snapshots"][0]["id"].as_i64().unwrap().to_string();
    for (args, code) in [
        (vec!["verify"], 2),
        (vec!["verify", "abc"], 2),
        (vec!["verify", "-1"], 2),
        (vec!["verify", &hello, "--all"], 2),
        (vec!["verify", "--all", "--snapshot", &snap], 2),
        (vec!["verify", &hello, "--snapshot", "x"], 2),
        (vec!["verify", "999999"], 4),
        (vec!["verify", &hello, "--snapshot", "999999"], 4),
    ] {
        let o = w.run(&args).await;
        assert_eq!(o.code, code, "{args:?}: {} {}", o.stdout, o.stderr);
        assert!(!o.stderr.trim().is_empty(), "{args:?} says why");
    }
    // Another user: octo's job and snapshot are not found for eve.
    let (_, eve_token) = w.github.add_user("eve");
    let eve_config = tempfile::TempDir::new().unwrap();
    let eve = || {
        let mut cmd = w.cli();
        cmd.env("GHBS_CONFIG_DIR", eve_config.path());
        cmd
    };
    let o = w
        .run_with(
            eve(),
            &["login", "--token-stdin"],
            Some(&format!("{eve_token}\n")),
        )
        .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = w.run_with(eve(), &["verify", &hello], None).await;
    assert_eq!(o.code, 4, "{}", o.stderr);
    let o = w.run_with(eve(), &["verify", "--all"], None).await;
    assert_eq!(o.code, 0, "eve has no job: {}", o.stderr);
    assert!(o.stdout.contains("No jobs to verify"), "{}", o.stdout);
    // Nothing was queued by the refused requests.
    let runs = w.ok(&["runs", &hello, "--json"]).await.json();
    assert!(runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["trigger"] != "verify"));
}
