//! The real client against the real server (the same binary, `server` subcommand) and the GitHub
//! stand-in: login, schedule, jobs, run --wait, fetch in every format (with resume), restore,
//! edit, delete, logout.

mod support;

use support::{etag_of, etag_path, part_of, refs, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_backup_story() {
    let w = World::start().await;
    w.login().await;
    assert_eq!(w.ok(&["whoami", "--json"]).await.json()["login"], "octo");

    // Schedule, list, show.
    let job = w
        .ok(&[
            "schedule",
            "https://github.com/octo/hello",
            "--daily",
            "03:00",
            "--tz",
            "UTC",
            "--keep",
            "5",
            "--json",
        ])
        .await
        .json();
    let id = job["id"].as_i64().unwrap();
    let id_s = id.to_string();
    assert_eq!(job["target"], "octo/hello");
    assert_eq!(job["schedule"], "daily at 03:00");
    assert!(job["next_run_at"].is_string());
    let again = w.run(&["schedule", "octo/hello", "--weekly", "mon"]).await;
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(
        again.stderr.contains(&format!("job {id}")),
        "{}",
        again.stderr
    );
    let human = w
        .ok(&["schedule", "octo", "--weekly", "mon", "--exclude-private"])
        .await;
    assert!(
        human.stdout.contains("weekly on monday"),
        "{}",
        human.stdout
    );
    let listed = w.ok(&["jobs", "--json"]).await.json();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 2);
    let table = w.ok(&["jobs"]).await.stdout;
    assert!(
        table.contains("octo/hello") && table.contains("daily at 03:00"),
        "{table}"
    );
    assert!(w
        .ok(&["job", "show", &id_s])
        .await
        .stdout
        .contains("last 5"));

    // Run now and wait.
    let run = w.ok(&["run", &id_s, "--wait", "--json"]).await.json();
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["error"].is_null());
    let runs = w.ok(&["runs", &id_s, "--json"]).await.json();
    assert_eq!(runs["runs"][0]["status"], "succeeded");
    let snaps = w.ok(&["snapshots", &id_s, "--json"]).await.json();
    let snap = &snaps["snapshots"][0];
    assert!(snap["created_at"].is_string());
    assert!(w
        .ok(&["snapshots", &id_s])
        .await
        .stdout
        .contains(&snap["id"].to_string()));

    // Fetch every format; the bundle clones to the repository's exact refs.
    let want = w.github.refs("octo/hello");
    let bundle = w.ok(&["fetch", &id_s]).await.stdout.trim().to_string();
    let bundle = w.path(&bundle);
    assert!(bundle.exists(), "{}", bundle.display());
    let clone = w.path("clone.git");
    let status = std::process::Command::new("git")
        .args(["clone", "--mirror", "--quiet"])
        .arg(&bundle)
        .arg(&clone)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(refs(&clone), want);

    let zip = w.path("out.zip");
    w.ok(&[
        "fetch",
        &id_s,
        "--format",
        "zip",
        "-o",
        zip.to_str().unwrap(),
    ])
    .await;
    assert!(std::fs::read(&zip).unwrap().starts_with(b"PK"));
    let tgz = w
        .ok(&["fetch", &id_s, "--format", "tar.gz", "--json"])
        .await
        .json();
    let tgz_path = w.path(tgz["path"].as_str().unwrap());
    assert_eq!(
        std::fs::metadata(&tgz_path).unwrap().len(),
        tgz["bytes"].as_u64().unwrap()
    );
    assert!(std::fs::read(&tgz_path).unwrap().starts_with(&[0x1f, 0x8b]));

    // `-o -` streams the same bytes to stdout.
    let streamed = w
        .cli()
        .args(["fetch", &id_s, "-o", "-"])
        .output()
        .await
        .unwrap();
    assert!(streamed.status.success());
    assert_eq!(streamed.stdout, std::fs::read(&bundle).unwrap());

    // A half-downloaded part (with the tag of the file it began) is resumed, identically.
    let snap_id = snap["id"].as_i64().unwrap();
    let full = std::fs::read(&bundle).unwrap();
    let resumed = w.path("resumed.bundle");
    let part = part_of(&resumed, snap_id, "bundle");
    std::fs::write(&part, &full[..full.len() / 2]).unwrap();
    std::fs::write(etag_path(&part), format!("{}\n", etag_of(&full))).unwrap();
    let o = w
        .ok(&["fetch", &id_s, "-o", resumed.to_str().unwrap()])
        .await;
    assert!(o.stderr.contains("Resuming"), "{}", o.stderr);
    assert_eq!(std::fs::read(&resumed).unwrap(), full);
    assert!(!part.exists() && !etag_path(&part).exists());
    // A part that is not a prefix of the file fails the digest check and is not kept.
    let bad_path = w.path("bad.bundle");
    let bad_part = part_of(&bad_path, snap_id, "bundle");
    std::fs::write(&bad_part, vec![b'x'; full.len() / 2]).unwrap();
    std::fs::write(etag_path(&bad_part), etag_of(&full)).unwrap();
    let bad = w
        .run(&["fetch", &id_s, "-o", bad_path.to_str().unwrap()])
        .await;
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("does not match the server's SHA-256 digest"),
        "{}",
        bad.stderr
    );
    assert!(!bad_path.exists() && !bad_part.exists() && !etag_path(&bad_part).exists());

    // Restore into a new, empty repository.
    let target = w.path("restored.git");
    let status = std::process::Command::new("git")
        .args(["init", "--bare", "--quiet"])
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success());
    w.ok(&["restore", &id_s, "--to", target.to_str().unwrap()])
        .await;
    assert_eq!(refs(&target), want);

    // Edit, pause, resume.
    let edited = w
        .ok(&[
            "job",
            "edit",
            &id_s,
            "--monthly",
            "15@04:30",
            "--metadata",
            "--json",
        ])
        .await
        .json();
    assert_eq!(edited["schedule"], "monthly on 15 at 04:30");
    assert_eq!(edited["options"]["metadata"], true);
    assert_eq!(edited["retention"]["keep_last"], 5);
    assert_eq!(
        w.ok(&["job", "pause", &id_s, "--json"]).await.json()["state"],
        "paused"
    );
    assert_eq!(
        w.ok(&["job", "resume", &id_s, "--json"]).await.json()["state"],
        "active"
    );

    // A failing run: exit 1 with the run's own error.
    w.github.delete_repo("octo/hello");
    let failed = w.run(&["run", &id_s, "--wait"]).await;
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.starts_with("error: run "),
        "{}",
        failed.stderr
    );

    // Not found, delete with and without confirmation.
    assert_eq!(w.run(&["job", "show", "999999"]).await.code, 4);
    assert_eq!(
        w.run(&["fetch", &id_s, "--snapshot", "999999"]).await.code,
        4
    );
    let refused = w.run(&["job", "delete", &id_s, "--purge"]).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    w.ok(&["job", "delete", &id_s, "--purge", "--yes"]).await;
    assert_eq!(w.run(&["job", "show", &id_s]).await.code, 4);

    // Keys, logout; afterwards the client is not logged in.
    let keys = w.ok(&["keys", "--json"]).await.json();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    w.ok(&["logout"]).await;
    let after = w.run(&["jobs"]).await;
    assert_eq!(after.code, 3, "{}", after.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_keys_and_tokens_are_exit_3() {
    let w = World::start().await;
    let bad = w
        .run_with(w.cli(), &["login", "--token-stdin"], Some("ghp_wrong\n"))
        .await;
    assert_eq!(bad.code, 3, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("GitHub rejected the token"),
        "{}",
        bad.stderr
    );
    assert!(!bad.stderr.contains("ghp_wrong"));

    w.login().await;
    // A key revoked elsewhere (here: by a second login of the same user) is rejected.
    let creds = std::fs::read_to_string(w.config.path().join("credentials.json")).unwrap();
    let other = tempfile::TempDir::new().unwrap();
    let mut second = w.cli();
    second.env("GHBS_CONFIG_DIR", other.path());
    let o = w
        .run_with(
            second,
            &["login", "--token-stdin"],
            Some(&format!("{}\n", w.token)),
        )
        .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let first_key: serde_json::Value = serde_json::from_str(&creds).unwrap();
    let first_id = first_key["servers"][&w.server_url]["key_id"]
        .as_i64()
        .unwrap();
    let mut revoke = w.cli();
    revoke.env("GHBS_CONFIG_DIR", other.path());
    let o = w
        .run_with(revoke, &["keys", "revoke", &first_id.to_string()], None)
        .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = w.run(&["jobs"]).await;
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert!(
        o.stderr.contains("rejected the stored API key"),
        "{}",
        o.stderr
    );
}
