//! The real client against the real server (the same binary, `server` subcommand) and the GitHub
//! stand-in: login, schedule, jobs, run --wait, fetch in every format (with resume), restore,
//! edit, delete, logout.

mod support;

use support::{bare_repo, bundle_refs, etag_of, etag_path, part_of, refs, sh, sha256_hex, World};

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

/// The names of the files in an uncompressed tar (the per-repository archives).
fn tar_names(path: &std::path::Path) -> Vec<String> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `octo/hello` and `octo/tools`, a repository job for the first and an account job for both,
/// each run once: (world, repository job id, account job id, refs of hello, refs of tools).
async fn two_jobs() -> (
    World,
    String,
    String,
    std::collections::BTreeMap<String, String>,
    std::collections::BTreeMap<String, String>,
) {
    let w = World::start().await;
    w.github
        .create_repo("octo", "tools", ghbs_testkit::RepoOptions::default());
    w.github
        .commit("octo/tools", "main", &[("t.txt", "t\n")], "tools");
    w.login().await;
    let repo_job = w.ok(&["schedule", "octo/hello", "--json"]).await.json()["id"].to_string();
    let account_job = w.ok(&["schedule", "octo", "--json"]).await.json()["id"].to_string();
    for job in [&repo_job, &account_job] {
        w.ok(&["run", job, "--wait"]).await;
    }
    let hello = w.github.refs("octo/hello");
    let tools = w.github.refs("octo/tools");
    (w, repo_job, account_job, hello, tools)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_for_repository_and_account_jobs() {
    let (w, repo_job, account_job, hello, tools) = two_jobs().await;

    // A repository job: the same single file with or without --repo.
    for repo in [None, Some("octo/hello")] {
        for (format, magic) in [
            ("bundle", &b"# v2 git bundle"[..]),
            ("tar.gz", &[0x1f, 0x8b]),
            ("zip", b"PK"),
            ("site", b"PK"),
        ] {
            let mut args = vec!["fetch", &repo_job, "--format", format, "--json"];
            if let Some(r) = repo {
                args.extend(["--repo", r]);
            }
            let got = w.ok(&args).await.json();
            let path = w.path(got["path"].as_str().unwrap());
            assert_eq!(got["per_repository"], false, "{got}");
            assert_eq!(got["sha256"].as_str().unwrap(), sha256_hex(&path));
            let bytes = std::fs::read(&path).unwrap();
            assert!(bytes.starts_with(magic), "{format} {repo:?}");
            if format == "bundle" {
                let dir = tempfile::tempdir().unwrap();
                assert_eq!(bundle_refs(&path, dir.path(), "c.git"), hello);
            }
            std::fs::remove_file(&path).unwrap();
        }
    }

    // An account job without --repo: one tar of a bundle per repository, each verified.
    let o = w.ok(&["fetch", &account_job]).await;
    assert!(
        o.stderr
            .contains("one tar archive holding one git bundle per repository"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("each verified (2)"), "{}", o.stderr);
    let all = w.path(o.stdout.trim());
    assert!(
        all.to_str().unwrap().ends_with(".bundles.tar"),
        "{}",
        o.stdout
    );
    assert_eq!(
        tar_names(&all),
        ["octo/hello.bundle", "octo/tools.bundle", "snapshot.json"]
    );
    let out = tempfile::tempdir().unwrap();
    sh("tar", &["-xf", all.to_str().unwrap()], out.path());
    assert_eq!(
        bundle_refs(&out.path().join("octo/hello.bundle"), out.path(), "h.git"),
        hello
    );
    assert_eq!(
        bundle_refs(&out.path().join("octo/tools.bundle"), out.path(), "t.git"),
        tools
    );
    let zips = w
        .ok(&["fetch", &account_job, "--format", "zip", "--json"])
        .await
        .json();
    assert_eq!(zips["per_repository"], true);
    assert_eq!(
        zips["repositories"],
        serde_json::json!(["octo/hello", "octo/tools"])
    );
    let zips = w.path(zips["path"].as_str().unwrap());
    assert!(zips.to_str().unwrap().ends_with(".zips.tar"));
    assert_eq!(
        tar_names(&zips),
        ["octo/hello.zip", "octo/tools.zip", "snapshot.json"]
    );
    let tgz = w
        .ok(&["fetch", &account_job, "--format", "tar.gz", "--json"])
        .await
        .json();
    let tgz = w.path(tgz["path"].as_str().unwrap());
    let out = tempfile::tempdir().unwrap();
    sh("tar", &["-xzf", tgz.to_str().unwrap()], out.path());
    assert!(out.path().join("octo/tools.bundle").is_file());

    // The site of an account job: one zip, one folder, one top index listing both repositories.
    let o = w.ok(&["fetch", &account_job, "--format", "site"]).await;
    let site = w.path(o.stdout.trim());
    let name = site.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.ends_with(".site.zip"), "{name}");
    let folder = name.strip_suffix(".zip").unwrap();
    assert!(
        o.stderr.contains(&format!("open {folder}/index.html")),
        "{}",
        o.stderr
    );
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&site).unwrap()).unwrap();
    let names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    for want in [
        "index.html",
        "octo/hello/index.html",
        "octo/tools/index.html",
        "style.css",
    ] {
        assert!(
            names.contains(&format!("{folder}/{want}")),
            "{want} not in {names:?}"
        );
    }
    let mut index = String::new();
    std::io::Read::read_to_string(
        &mut zip.by_name(&format!("{folder}/index.html")).unwrap(),
        &mut index,
    )
    .unwrap();
    assert!(
        index.contains("href=\"octo/hello/index.html\"") && index.contains("octo/tools"),
        "{index}"
    );

    // An account job with --repo: that repository's single file, in every format.
    for (format, magic) in [
        ("bundle", &b"# v2 git bundle"[..]),
        ("tar.gz", &[0x1f, 0x8b]),
        ("zip", b"PK"),
    ] {
        let got = w
            .ok(&[
                "fetch",
                &account_job,
                "--repo",
                "octo/tools",
                "--format",
                format,
                "--json",
            ])
            .await
            .json();
        assert_eq!(got["per_repository"], false);
        let path = w.path(got["path"].as_str().unwrap());
        assert!(
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("octo-tools-"),
            "{got}"
        );
        assert!(std::fs::read(&path).unwrap().starts_with(magic), "{format}");
        if format == "bundle" {
            let dir = tempfile::tempdir().unwrap();
            assert_eq!(bundle_refs(&path, dir.path(), "c.git"), tools);
        }
    }
    let missing = w.run(&["fetch", &account_job, "--repo", "octo/nope"]).await;
    assert_eq!(missing.code, 4, "{}", missing.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_of_an_account_job_needs_a_repository_or_an_owner() {
    let (w, repo_job, account_job, hello, tools) = two_jobs().await;

    // Neither --repo nor --to-owner: refused (usage), naming both working commands.
    let lone = w.path("lone.git");
    bare_repo(&lone);
    let refused = w
        .run(&["restore", &account_job, "--to", lone.to_str().unwrap()])
        .await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!(
            "restore {account_job} --repo octo/NAME --to REMOTE_URL"
        )) && refused.stderr.contains("--to-owner OWNER"),
        "{}",
        refused.stderr
    );
    assert!(refs(&lone).is_empty());
    let bad_owner = w
        .run(&["restore", &account_job, "--to", "/tmp", "--to-owner", "a/b"])
        .await;
    assert_eq!(bad_owner.code, 2, "{}", bad_owner.stderr);

    // --repo: that repository to --to.
    w.ok(&[
        "restore",
        &account_job,
        "--repo",
        "octo/tools",
        "--to",
        lone.to_str().unwrap(),
    ])
    .await;
    assert_eq!(refs(&lone), tools);

    // --to-owner: every repository to BASE/OWNER/NAME.
    let base = w.path("srv");
    bare_repo(&base.join("neworg/hello"));
    bare_repo(&base.join("neworg/tools"));
    let o = w
        .ok(&[
            "restore",
            &account_job,
            "--to",
            &format!("{}/", base.display()),
            "--to-owner",
            "neworg",
            "--json",
        ])
        .await
        .json();
    assert_eq!(o["restored"].as_array().unwrap().len(), 2, "{o}");
    assert_eq!(refs(&base.join("neworg/hello")), hello);
    assert_eq!(refs(&base.join("neworg/tools")), tools);
    // Again: the remotes are no longer empty, so each push is refused and reported.
    let again = w
        .run(&[
            "restore",
            &account_job,
            "--to",
            base.to_str().unwrap(),
            "--to-owner",
            "neworg",
        ])
        .await;
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(
        again.stderr.contains("restored 0 of 2 repositories"),
        "{}",
        again.stderr
    );
    // A missing remote under the owner fails that repository, not silently.
    bare_repo(&base.join("other/hello"));
    let partial = w
        .run(&[
            "restore",
            &account_job,
            "--to",
            base.to_str().unwrap(),
            "--to-owner",
            "other",
        ])
        .await;
    assert_eq!(partial.code, 1, "{}", partial.stderr);
    assert!(
        partial.stderr.contains("restored 1 of 2") && partial.stderr.contains("octo/tools"),
        "{}",
        partial.stderr
    );
    assert_eq!(refs(&base.join("other/hello")), hello);

    // A repository job with --to-owner goes to BASE/OWNER/NAME too.
    bare_repo(&base.join("solo/hello"));
    w.ok(&[
        "restore",
        &repo_job,
        "--to",
        base.to_str().unwrap(),
        "--to-owner",
        "solo",
    ])
    .await;
    assert_eq!(refs(&base.join("solo/hello")), hello);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_across_a_new_snapshot_gets_the_new_whole_file() {
    let w = World::start().await;
    w.login().await;
    let job = w.ok(&["schedule", "octo/hello", "--json"]).await.json()["id"].to_string();
    w.ok(&["run", &job, "--wait"]).await;
    let old = w.path("old.tar.gz");
    w.ok(&[
        "fetch",
        &job,
        "--format",
        "tar.gz",
        "-o",
        old.to_str().unwrap(),
    ])
    .await;
    let old_bytes = std::fs::read(&old).unwrap();

    // A new snapshot lands while a download of the old file is half done.
    w.github
        .commit("octo/hello", "main", &[("new.txt", "new\n")], "newer");
    let run = w.ok(&["run", &job, "--wait", "--json"]).await.json();
    let new_snap = run["snapshot_id"].as_i64().unwrap();
    let new = w.path("new.tar.gz");
    // A part of the old snapshot under the same name is never continued, and goes at the end.
    let old_snap = new_snap - 1;
    let old_part = part_of(&new, old_snap, "tar.gz");
    std::fs::write(&old_part, &old_bytes[..10]).unwrap();
    std::fs::write(etag_path(&old_part), etag_of(&old_bytes)).unwrap();
    let part = part_of(&new, new_snap, "tar.gz");
    std::fs::write(&part, &old_bytes[..old_bytes.len() / 2]).unwrap();
    std::fs::write(etag_path(&part), format!("{}\n", etag_of(&old_bytes))).unwrap();
    let got = w
        .ok(&[
            "fetch",
            &job,
            "--format",
            "tar.gz",
            "-o",
            new.to_str().unwrap(),
            "--json",
        ])
        .await;
    assert!(got.stderr.contains("another version"), "{}", got.stderr);
    let got = got.json();
    assert_eq!(got["snapshot_id"], new_snap);
    assert_eq!(got["sha256"].as_str().unwrap(), sha256_hex(&new));
    assert!(!part.exists() && !etag_path(&part).exists());
    assert!(!old_part.exists() && !etag_path(&old_part).exists());
    let new_bytes = std::fs::read(&new).unwrap();
    assert_ne!(new_bytes, old_bytes);
    // The content is the new snapshot's: the extracted repository has the new commit.
    let out = tempfile::tempdir().unwrap();
    sh("tar", &["-xzf", new.to_str().unwrap()], out.path());
    assert_eq!(
        refs(&out.path().join("hello.git")),
        w.github.refs("octo/hello")
    );

    // The same file again: a part with its own tag resumes and ends identical.
    let again = w.path("again.tar.gz");
    let part = part_of(&again, new_snap, "tar.gz");
    std::fs::write(&part, &new_bytes[..new_bytes.len() / 3]).unwrap();
    std::fs::write(etag_path(&part), etag_of(&new_bytes)).unwrap();
    let o = w
        .ok(&[
            "fetch",
            &job,
            "--format",
            "tar.gz",
            "-o",
            again.to_str().unwrap(),
        ])
        .await;
    assert!(o.stderr.contains("Resuming"), "{}", o.stderr);
    assert_eq!(std::fs::read(&again).unwrap(), new_bytes);
    // A part already as long as the file (interrupted before its rename): 416, then whole.
    let whole = w.path("whole.tar.gz");
    let part = part_of(&whole, new_snap, "tar.gz");
    std::fs::write(&part, &new_bytes).unwrap();
    std::fs::write(etag_path(&part), etag_of(&new_bytes)).unwrap();
    let o = w
        .ok(&[
            "fetch",
            &job,
            "--format",
            "tar.gz",
            "-o",
            whole.to_str().unwrap(),
        ])
        .await;
    assert!(o.stderr.contains("416"), "{}", o.stderr);
    assert_eq!(std::fs::read(&whole).unwrap(), new_bytes);

    // The old snapshot's part under the server's own name is never joined to the new file.
    let by_name = w
        .ok(&["fetch", &job, "--format", "zip", "--json"])
        .await
        .json();
    let zip_path = w.path(by_name["path"].as_str().unwrap());
    let zip_bytes = std::fs::read(&zip_path).unwrap();
    std::fs::remove_file(&zip_path).unwrap();
    let part = part_of(&zip_path, new_snap, "zip");
    std::fs::write(&part, b"PK\x03\x04 not this file").unwrap();
    std::fs::write(etag_path(&part), "\"0000\"").unwrap();
    let o = w.ok(&["fetch", &job, "--format", "zip"]).await;
    assert!(o.stderr.contains("another version"), "{}", o.stderr);
    assert_eq!(std::fs::read(&zip_path).unwrap(), zip_bytes);
}
