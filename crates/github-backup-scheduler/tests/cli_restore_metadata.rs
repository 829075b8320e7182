//! `restore --metadata` end to end: back up a repository with metadata from the stand-in,
//! restore it into an empty repository on the stand-in, back that up, and compare the two
//! snapshots' metadata field by field (less what the API cannot set: authors, times, ids);
//! an interrupted restore continued without duplicates; malformed input refused; the token
//! never in argv or output.

mod support;

use ghbs_testkit::RepoOptions;
use serde_json::Value;
use support::{sh, World};

async fn backup(w: &World, target: &str) -> std::path::PathBuf {
    let job = w
        .ok(&[
            "schedule", target, "--daily", "03:00", "--tz", "UTC", "--json",
        ])
        .await
        .json();
    let id = job["id"].as_i64().unwrap().to_string();
    w.ok(&["job", "edit", &id, "--metadata"]).await;
    let run = w.ok(&["run", &id, "--wait", "--json"]).await.json();
    assert_eq!(run["status"], "succeeded", "{run}");
    let name = target.replace('/', "-");
    let tgz = w.path(&format!("{name}.tar.gz"));
    w.ok(&[
        "fetch",
        &id,
        "--format",
        "tar.gz",
        "-o",
        tgz.to_str().unwrap(),
    ])
    .await;
    let dir = w.path(&name);
    std::fs::create_dir_all(&dir).unwrap();
    sh("tar", &["xzf", tgz.to_str().unwrap()], &dir);
    let meta = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".metadata"))
        .expect("metadata folder in the tar.gz");
    meta
}

fn read(p: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_owned())
        .collect();
    n.sort();
    n
}

/// The bytes of the release asset `seed` attaches (not valid UTF-8: stored as it is).
fn asset_bytes() -> Vec<u8> {
    (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn seed(w: &World) -> i64 {
    let g = &w.github;
    g.create_label("octo/hello", "bug", "d73a4a");
    g.create_label("octo/hello", "needs docs", "0075ca");
    let m = g.create_milestone("octo/hello", "v2");
    let one = g.create_issue("octo/hello", "It crashes", "Steps: run it.");
    g.add_label_to("octo/hello", one, "bug");
    g.edit_issue(
        "octo/hello",
        one,
        serde_json::json!({"milestone": {"number": m, "title": "v2"}}),
    );
    g.add_issue_comment("octo/hello", one, "Same here.");
    g.add_issue_comment("octo/hello", one, "Fixed in dev.");
    let pr = g.create_pull("octo/hello", "Add dev", "dev", "main");
    g.add_review("octo/hello", pr, "APPROVED", "Looks good");
    g.add_review_comment("octo/hello", pr, "dev.txt", "Typo here");
    g.add_issue_comment("octo/hello", pr, "Thanks!");
    let three = g.create_issue("octo/hello", "Old idea", "");
    g.edit_issue("octo/hello", three, serde_json::json!({"state": "closed"}));
    g.create_release("octo/hello", "v1", "First");
    g.add_release_asset("octo/hello", "v1", "tool.tar.gz", &asset_bytes())
}

async fn restore(w: &World, to: &str, extra: &[&str]) -> support::Outcome {
    let mut cmd = w.cli();
    cmd.env("GITHUB_TOKEN", &w.token);
    let api = w.github.api_url();
    let mut args = vec!["restore", "1", "--to", to, "--github-api-url", &api];
    args.extend_from_slice(extra);
    w.run_with(cmd, &args, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_round_trips_through_an_empty_repository() {
    let w = World::start().await;
    w.login().await;
    let asset = seed(&w);
    let before = backup(&w, "octo/hello").await;
    // The asset's file is in the snapshot, fetched from the asset host without the token.
    assert_eq!(
        std::fs::read(before.join(format!("assets/{asset}"))).unwrap(),
        asset_bytes()
    );
    let fetched: Vec<_> = w
        .github
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/_assets/"))
        .collect();
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert_eq!(
        fetched[0].token_login, None,
        "the token went to the asset host"
    );
    w.github.create_repo("octo", "copy", RepoOptions::default());

    // Dry run: counts, nothing written.
    let dry = restore(&w, "octo/copy", &["--metadata", "--dry-run", "--json"]).await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let c = &dry.json()["would_create"];
    assert_eq!(
        (
            c["labels"].as_u64(),
            c["issues"].as_u64(),
            c["pulls_as_issues"].as_u64()
        ),
        (Some(2), Some(2), Some(1)),
        "{c}"
    );
    assert_eq!(c["comments"], 3, "{c}");
    assert_eq!(c["reviews_and_review_comments"], 2, "{c}");
    assert_eq!(
        (c["assets"].as_u64(), c["assets_not_in_snapshot"].as_u64()),
        (Some(1), Some(0)),
        "{c}"
    );
    assert!(
        w.github
            .requests()
            .iter()
            .all(|r| r.method == "GET" || r.git),
        "dry run wrote"
    );

    let o = restore(&w, "octo/copy", &["--metadata", "--json"]).await;
    assert_eq!(o.code, 0, "{}\n{}", o.stderr, w.server_log());
    assert!(!o.stdout.contains(&w.token) && !o.stderr.contains(&w.token));
    let refs = w.github.refs("octo/copy");
    assert_eq!(
        refs.get("refs/heads/main"),
        w.github.refs("octo/hello").get("refs/heads/main")
    );
    assert!(refs.contains_key("refs/heads/pr/2"), "{refs:?}");

    let after = backup(&w, "octo/copy").await;
    // Labels and milestones.
    assert_eq!(
        names(&read(&before.join("labels.json"))),
        names(&read(&after.join("labels.json")))
    );
    let (m1, m2) = (
        read(&before.join("milestones.json")),
        read(&after.join("milestones.json")),
    );
    assert_eq!(m1[0]["title"], m2[0]["title"]);
    assert_eq!(m1[0]["state"], m2[0]["state"]);
    // Issues: same numbers, titles, state, labels, milestone; body kept after the attribution.
    for n in [1, 3] {
        let a = read(&before.join(format!("issues/{n}.json")));
        let b = read(&after.join(format!("issues/{n}.json")));
        for f in ["number", "title", "state"] {
            assert_eq!(a["issue"][f], b["issue"][f], "#{n} {f}");
        }
        assert_eq!(
            names(&a["issue"]["labels"]),
            names(&b["issue"]["labels"]),
            "#{n}"
        );
        assert_eq!(
            a["issue"]["milestone"]["title"], b["issue"]["milestone"]["title"],
            "#{n}"
        );
        let body = b["issue"]["body"].as_str().unwrap();
        assert!(
            body.starts_with("> *Originally opened by @octo on "),
            "{body}"
        );
        assert!(
            body.ends_with(a["issue"]["body"].as_str().unwrap()),
            "{body}"
        );
        let (ca, cb) = (
            a["comments"].as_array().unwrap(),
            b["comments"].as_array().unwrap(),
        );
        assert_eq!(ca.len(), cb.len(), "#{n}");
        for (x, y) in ca.iter().zip(cb) {
            assert!(y["body"]
                .as_str()
                .unwrap()
                .contains(x["body"].as_str().unwrap()));
        }
    }
    // The pull request came back as issue #2 saying what it was, its conversation in order.
    let pr = read(&before.join("pulls/2.json"));
    let back = read(&after.join("issues/2.json"));
    assert_eq!(back["issue"]["title"], pr["pull"]["title"]);
    let body = back["issue"]["body"].as_str().unwrap();
    assert!(
        body.contains("Originally pull request #2") && body.contains("`pr/2`"),
        "{body}"
    );
    let bodies: Vec<&str> = back["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert!(
        bodies[0].contains("Looks good")
            && bodies[1].contains("`dev.txt`")
            && bodies[2].contains("Thanks!"),
        "{bodies:?}"
    );
    // Releases.
    let (r1, r2) = (
        read(&before.join("releases.json")),
        read(&after.join("releases.json")),
    );
    assert_eq!(r1[0]["tag_name"], r2[0]["tag_name"]);
    assert_eq!(r1[0]["name"], r2[0]["name"]);
    assert_eq!(r1[0]["prerelease"], r2[0]["prerelease"]);
    // The asset went back up with its name and bytes, and the copy's backup stores it too.
    let copied = &r2[0]["assets"][0];
    assert_eq!(copied["name"], "tool.tar.gz", "{r2}");
    let copied_id = copied["id"].as_i64().unwrap();
    assert_eq!(
        w.github.release_asset_bytes("octo/copy", copied_id),
        Some(asset_bytes())
    );
    assert_eq!(
        std::fs::read(after.join(format!("assets/{copied_id}"))).unwrap(),
        asset_bytes()
    );

    // Rerun: everything is in the journal, nothing is written again.
    w.github.clear_requests();
    let again = restore(&w, "octo/copy", &["--metadata", "--json"]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        w.github
            .requests()
            .iter()
            .all(|r| r.method == "GET" || r.git),
        "{:?}",
        w.github.requests()
    );

    // A non-empty target is refused on a first run (no journal for it).
    w.github.create_repo("octo", "busy", RepoOptions::default());
    w.github.create_issue("octo/busy", "mine", "");
    let busy = restore(&w, "octo/busy", &["--metadata-only"]).await;
    assert_eq!(busy.code, 1, "{}", busy.stderr);
    assert!(
        busy.stderr.contains("already has issues"),
        "{}",
        busy.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_restore_continues_without_duplicates() {
    let w = World::start().await;
    w.login().await;
    seed(&w);
    backup(&w, "octo/hello").await;
    w.github.create_repo("octo", "copy", RepoOptions::default());
    w.github.fail_writes_after(Some(6));
    let first = restore(&w, "octo/copy", &["--metadata-only"]).await;
    assert_eq!(first.code, 1, "{}", first.stderr);
    assert!(
        first.stderr.contains("run the same command again"),
        "{}",
        first.stderr
    );
    assert!(!first.stderr.contains(&w.token));
    w.github.fail_writes_after(None);
    let second = restore(&w, "octo/copy", &["--metadata-only", "--json"]).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    let after = backup(&w, "octo/copy").await;
    let issues: Vec<_> = std::fs::read_dir(after.join("issues")).unwrap().collect();
    assert_eq!(issues.len(), 3);
    let one = read(&after.join("issues/1.json"));
    assert_eq!(one["comments"].as_array().unwrap().len(), 2, "{one}");
    assert_eq!(
        read(&after.join("issues/2.json"))["comments"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        read(&after.join("releases.json")).as_array().unwrap().len(),
        1
    );
    assert_eq!(
        read(&after.join("labels.json")).as_array().unwrap().len(),
        2
    );
}

/// Where the server offers the issue import endpoint, items go through it with their comments
/// and keep their original times; an import interrupted half-way continues without duplicates,
/// and no plain issue or comment write is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_import_keeps_original_times_and_resumes() {
    let w = World::start().await;
    w.login().await;
    seed(&w);
    let before = backup(&w, "octo/hello").await;
    w.github.create_repo("octo", "copy", RepoOptions::default());
    w.github.offer_issue_import(true);
    w.github.clear_requests();
    // Two labels and a milestone, then the first import; the second import fails.
    w.github.fail_writes_after(Some(4));
    let first = restore(&w, "octo/copy", &["--metadata-only"]).await;
    assert_eq!(first.code, 1, "{}", first.stderr);
    w.github.fail_writes_after(None);
    let second = restore(&w, "octo/copy", &["--metadata-only", "--json"]).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    let created = &second.json()["created"];
    assert_eq!(created["imported with original times"], 2, "{created}");

    let posts: Vec<String> = w
        .github
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/api/v3/repos/octo/copy/"))
        .map(|r| r.path)
        .collect();
    assert!(
        !posts
            .iter()
            .any(|p| p.ends_with("/copy/issues") || p.contains("/comments")),
        "plain writes: {posts:?}"
    );
    assert_eq!(
        posts
            .iter()
            .filter(|p| p.ends_with("/import/issues"))
            .count(),
        4,
        "three items, one of them refused once: {posts:?}"
    );

    let after = backup(&w, "octo/copy").await;
    for n in [1, 2, 3] {
        let a = if n == 2 {
            read(&before.join("pulls/2.json"))["pull"].clone()
        } else {
            read(&before.join(format!("issues/{n}.json")))["issue"].clone()
        };
        let b = read(&after.join(format!("issues/{n}.json")));
        assert_eq!(a["created_at"], b["issue"]["created_at"], "#{n}");
        assert_eq!(a["state"], b["issue"]["state"], "#{n}");
        assert_eq!(a["closed_at"], b["issue"]["closed_at"], "#{n}");
    }
    let a = read(&before.join("issues/1.json"));
    let b = read(&after.join("issues/1.json"));
    let (ca, cb) = (
        a["comments"].as_array().unwrap(),
        b["comments"].as_array().unwrap(),
    );
    assert_eq!(ca.len(), cb.len());
    for (x, y) in ca.iter().zip(cb) {
        assert_eq!(x["created_at"], y["created_at"]);
        assert!(y["body"]
            .as_str()
            .unwrap()
            .contains(x["body"].as_str().unwrap()));
    }
    assert_eq!(
        read(&after.join("issues/2.json"))["comments"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "the pull request's conversation, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_metadata_restores_are_refused() {
    let w = World::start().await;
    w.login().await;
    seed(&w);
    backup(&w, "octo/hello").await;
    let bad = restore(&w, "not a repo", &["--metadata"]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("OWNER/NAME"), "{}", bad.stderr);
    let unknown = restore(&w, "octo/copy", &["--metadata", "--snapshot", "999"]).await;
    assert_eq!(unknown.code, 4, "{}", unknown.stderr);
    let missing = restore(&w, "octo/nowhere", &["--metadata-only"]).await;
    assert_eq!(missing.code, 4, "{}", missing.stderr);
    assert!(missing.stderr.contains("create it"), "{}", missing.stderr);
    let both = restore(&w, "octo/copy", &["--metadata", "--metadata-only"]).await;
    assert_eq!(both.code, 2, "{}", both.stderr);
}
