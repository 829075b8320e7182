//! Metadata backup end to end against the stand-in: issues, pull requests, reviews, labels,
//! milestones, releases and the wiki land in the snapshot and its `.tar.gz`; unchanged
//! repositories cost only 304s; a failed part does not move the checkpoint; every 7th run syncs
//! in full.

mod common;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::Duration;
use common::TestApp;
use ghbs_server::scheduler::Scheduler;
use ghbs_testkit::{Fault, FaultKind, RepoOptions};
use serde_json::{json, Value};

struct Job {
    key: String,
    id: i64,
    sched: Scheduler,
}

/// A logged-in user `login`, a repository `login/proj` with one commit and a daily job on it.
async fn job(app: &TestApp, login: &str, options: Value) -> Job {
    let (key, _) = app.login(login).await;
    let full = format!("{login}/proj");
    app.gh.create_repo(login, "proj", RepoOptions::default());
    app.gh
        .commit(&full, "main", &[("README.md", "hello\n")], "first");
    let (status, body) = app
        .post(
            "/api/v1/jobs",
            &key,
            json!({"target": full, "schedule": "daily at 09:00", "timezone": "UTC", "options": options}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    Job {
        key,
        id: body["id"].as_i64().unwrap(),
        sched: app.backup_scheduler(),
    }
}

/// Moves the clock a day forward, runs the due slot, returns the run record.
async fn next_run(app: &TestApp, job: &Job) -> Value {
    app.clock.advance(Duration::days(1));
    assert_eq!(job.sched.run_due_once().await, 1);
    let (_, runs) = app
        .get(&format!("/api/v1/jobs/{}/runs", job.id), &job.key)
        .await;
    runs["runs"][0].clone()
}

/// Snapshots, newest first.
async fn snapshots(app: &TestApp, job: &Job) -> Vec<Value> {
    let (_, snaps) = app
        .get(&format!("/api/v1/jobs/{}/snapshots", job.id), &job.key)
        .await;
    snaps["snapshots"].as_array().unwrap().clone()
}

async fn download(app: &TestApp, key: &str, snapshot: &Value, format: &str) -> Vec<u8> {
    app.download(key, snapshot["id"].as_i64().unwrap(), format)
        .await
}

/// The regular files of a snapshot's `.tar.gz`, by path.
async fn tar_files(app: &TestApp, key: &str, snapshot: &Value) -> BTreeMap<String, Vec<u8>> {
    app.tar_files(key, snapshot["id"].as_i64().unwrap()).await
}

fn json_file(files: &BTreeMap<String, Vec<u8>>, path: &str) -> Value {
    let bytes = files
        .get(path)
        .unwrap_or_else(|| panic!("{path} not in archive: {:?}", files.keys()));
    serde_json::from_slice(bytes).unwrap()
}

/// Counted (rate-limited) REST requests the stand-in served whose path contains `part`.
fn counted_rest(app: &TestApp, part: &str) -> Vec<String> {
    app.gh
        .requests()
        .into_iter()
        .filter(|r| !r.git && r.counted && r.path.contains(part))
        .map(|r| r.path)
        .collect()
}

#[tokio::test]
async fn metadata_round_trip_and_edits_keep_old_snapshots() {
    let app = TestApp::new().await;
    let job = job(&app, "meta", json!({"metadata": true})).await;
    let repo = "meta/proj";
    app.gh.create_label(repo, "bug", "d73a4a");
    app.gh.create_milestone(repo, "v1 planning");
    app.gh.create_tag(repo, "v1.0", "main");
    app.gh.create_release(repo, "v1.0", "First release");
    let issue = app.gh.create_issue(repo, "Broken thing", "original text");
    app.gh
        .add_issue_comment(repo, issue, "a comment on the issue");
    app.gh
        .commit(repo, "feature", &[("f.txt", "feature\n")], "feature work");
    let pull = app.gh.create_pull(repo, "Add feature", "feature", "main");
    app.gh.add_issue_comment(repo, pull, "pr conversation");
    app.gh.add_review(repo, pull, "APPROVED", "looks good");
    app.gh
        .add_review_comment(repo, pull, "f.txt", "nit: newline");

    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    app.gh
        .edit_issue(repo, issue, json!({"body": "edited text"}));
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "succeeded", "{run}");

    let snaps = snapshots(&app, &job).await;
    assert_eq!(snaps.len(), 2);
    let (new, old) = (&snaps[0], &snaps[1]);
    let want: BTreeMap<String, u64> = [
        ("issues", 1),
        ("pulls", 1),
        ("comments", 2),
        ("reviews", 1),
        ("review_comments", 1),
        ("labels", 1),
        ("milestones", 1),
        ("releases", 1),
        ("pull_commits", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for snap in [old, new] {
        let counts: BTreeMap<String, u64> =
            serde_json::from_value(snap["repos"][0]["metadata"].clone()).unwrap();
        for (kind, n) in &want {
            assert_eq!(counts.get(kind), Some(n), "{kind} in {counts:?}");
        }
    }

    let files = tar_files(&app, &job.key, old).await;
    let i = json_file(&files, &format!("proj.metadata/issues/{issue}.json"));
    assert_eq!(i["issue"]["body"], "original text");
    assert_eq!(i["comments"][0]["body"], "a comment on the issue");
    let p = json_file(&files, &format!("proj.metadata/pulls/{pull}.json"));
    assert_eq!(p["pull"]["head"]["ref"], "feature");
    assert_eq!(p["comments"][0]["body"], "pr conversation");
    assert_eq!(p["reviews"][0]["body"], "looks good");
    assert_eq!(p["reviews"][0]["state"], "APPROVED");
    assert_eq!(p["review_comments"][0]["body"], "nit: newline");
    assert_eq!(p["commits"][0]["commit"]["message"], "feature work");
    assert_eq!(
        json_file(&files, "proj.metadata/labels.json")[0]["name"],
        "bug"
    );
    assert_eq!(
        json_file(&files, "proj.metadata/milestones.json")[0]["title"],
        "v1 planning"
    );
    assert_eq!(
        json_file(&files, "proj.metadata/releases.json")[0]["tag_name"],
        "v1.0"
    );
    let index = json_file(&files, "proj.metadata/index.json");
    assert_eq!(index["counts"]["issues"], 1);
    assert!(files.keys().any(|k| k.starts_with("proj.git/")));

    let files = tar_files(&app, &job.key, new).await;
    let i = json_file(&files, &format!("proj.metadata/issues/{issue}.json"));
    assert_eq!(i["issue"]["body"], "edited text");
    assert_eq!(i["comments"][0]["body"], "a comment on the issue");
}

#[tokio::test]
async fn unchanged_repository_costs_only_conditional_requests() {
    let app = TestApp::new().await;
    let job = job(&app, "quiet", json!({"metadata": true, "wiki": true})).await;
    let repo = "quiet/proj";
    app.gh.create_label(repo, "bug", "d73a4a");
    app.gh.create_release(repo, "v1", "one");
    let issue = app.gh.create_issue(repo, "Question", "why?");
    app.gh.add_issue_comment(repo, issue, "because");
    let pull = app.gh.create_pull(repo, "Change", "main", "main");
    app.gh.add_review(repo, pull, "COMMENTED", "hm");

    let first = next_run(&app, &job).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    assert!(first["api_requests"].as_i64().unwrap() > 0);
    app.gh.clear_requests();
    let second = next_run(&app, &job).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(counted_rest(&app, repo), Vec::<String>::new());
    assert_eq!(second["api_requests"], 0, "{second}");
    assert!(second["api_requests_conditional"].as_i64().unwrap() >= 5);
    let snaps = snapshots(&app, &job).await;
    assert_eq!(
        snaps[0]["repos"][0]["metadata"],
        snaps[1]["repos"][0]["metadata"]
    );
}

#[tokio::test]
async fn failed_part_does_not_advance_the_checkpoint() {
    let app = TestApp::new().await;
    let job = job(&app, "flaky", json!({"metadata": true})).await;
    let repo = "flaky/proj";
    app.gh.create_issue(repo, "First", "one");
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let state_after = |app: &TestApp| {
        let store = app.state.store.clone();
        let id = job.id;
        async move { store.list_job_repos(id).await.unwrap()[0].state["meta"].clone() }
    };
    let checkpoint = state_after(&app).await;
    assert!(checkpoint["since"].is_string(), "{checkpoint}");

    let second = app.gh.create_issue(repo, "Second", "two");
    app.gh
        .add_issue_comment(repo, second, "the comment that failed");
    // One attempt plus every retry of the client: the repository's comment listing (which
    // holds #2's comment) cannot be fetched.
    let path = "/issues/comments".to_owned();
    app.gh.inject(Fault::new(&path, FaultKind::Status(502), 6));
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "partial", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("metadata incomplete"), "{error}");
    let snaps = snapshots(&app, &job).await;
    assert_eq!(
        snaps.len(),
        2,
        "git data and the rest of the metadata are kept"
    );
    assert_eq!(snaps[0]["repos"][0]["metadata"]["issues"], 1);
    let partial = state_after(&app).await;
    assert_eq!(partial["since"], checkpoint["since"]);
    assert_eq!(partial["runs_since_full"], checkpoint["runs_since_full"]);

    app.gh.clear_requests();
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        counted_rest(&app, repo).iter().any(|p| p.contains(&path)),
        "the missed item is fetched"
    );
    let snaps = snapshots(&app, &job).await;
    assert_eq!(snaps[0]["repos"][0]["metadata"]["issues"], 2);
    let files = tar_files(&app, &job.key, &snaps[0]).await;
    let i = json_file(&files, &format!("proj.metadata/issues/{second}.json"));
    assert_eq!(i["comments"][0]["body"], "the comment that failed");
}

#[tokio::test]
async fn full_sync_every_seventh_run_catches_what_since_misses() {
    let app = TestApp::new().await;
    let job = job(&app, "slow", json!({"metadata": true})).await;
    let repo = "slow/proj";
    let issue = app.gh.create_issue(repo, "Old", "body");
    let comment = app.gh.add_issue_comment(repo, issue, "first words");
    next_run(&app, &job).await;
    // Like GitHub, an edited comment leaves the issue's listing (and so the probe) unchanged.
    app.gh.edit_issue_comment(repo, comment, "edited words");
    let body_in_latest = || async {
        let snaps = snapshots(&app, &job).await;
        let files = tar_files(&app, &job.key, &snaps[0]).await;
        json_file(&files, &format!("proj.metadata/issues/{issue}.json"))["comments"][0]["body"]
            .clone()
    };
    for n in 2..=7 {
        app.gh.clear_requests();
        let run = next_run(&app, &job).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        // The repository itself changed (GitHub bumps its `updated_at`); its metadata lists did not.
        let metadata = counted_rest(&app, &format!("{repo}/"));
        assert_eq!(metadata, Vec::<String>::new(), "run {n}");
        assert_eq!(body_in_latest().await, "first words", "run {n}");
    }
    app.gh.clear_requests();
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let counted = counted_rest(&app, &format!("{repo}/"));
    assert_eq!(
        counted.len(),
        1,
        "only the changed comment list: {counted:?}"
    );
    assert!(counted[0].contains("/issues/comments"), "{counted:?}");
    assert_eq!(body_in_latest().await, "edited words");
}

#[tokio::test]
async fn wiki_is_mirrored_into_the_archive_and_kept_out_of_the_bundle() {
    let app = TestApp::new().await;
    let job = job(&app, "wik", json!({"wiki": true})).await;
    app.gh.commit(
        "wik/proj.wiki",
        "master",
        &[("Home.md", "# Wiki home\n")],
        "wiki page",
    );
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    app.gh.commit(
        "wik/proj.wiki",
        "master",
        &[("Home.md", "# Wiki home, edited\n")],
        "edit wiki page",
    );
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "succeeded", "{run}");

    let snaps = snapshots(&app, &job).await;
    let work = tempfile::tempdir().unwrap();
    for (snap, want) in [
        (&snaps[1], "# Wiki home\n"),
        (&snaps[0], "# Wiki home, edited\n"),
    ] {
        assert_eq!(snap["repos"][0]["metadata"], json!({"wiki": 1}));
        let files = tar_files(&app, &job.key, snap).await;
        let clone = ghbs_testkit::clone_bundle(
            work.path(),
            &format!("wiki-{}", snap["id"]),
            &files["proj.metadata/wiki.bundle"],
        );
        let page = ghbs_testkit::git(&clone, &["show", "refs/heads/master:Home.md"]);
        assert_eq!(page.trim_end(), want.trim_end());

        // The repository's own bundle holds exactly its refs, no wiki.
        let main = work.path().join(format!("main-{}.bundle", snap["id"]));
        std::fs::write(&main, download(&app, &job.key, snap, "bundle").await).unwrap();
        let heads = ghbs_testkit::git(
            work.path(),
            &["bundle", "list-heads", main.to_str().unwrap()],
        );
        let names: Vec<&str> = heads
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|n| n.starts_with("refs/"))
            .collect();
        assert_eq!(names, ["refs/heads/main"], "{heads}");
    }
}

/// A logged-in user `login` and a daily wiki job on the private repository `login/proj`.
async fn private_wiki_job(app: &TestApp, login: &str) -> Job {
    let (key, _) = app.login(login).await;
    let full = format!("{login}/proj");
    let opts = RepoOptions {
        private: true,
        ..RepoOptions::default()
    };
    app.gh.create_repo(login, "proj", opts);
    app.gh
        .commit(&full, "main", &[("README.md", "hello\n")], "first");
    let (status, body) = app
        .post(
            "/api/v1/jobs",
            &key,
            json!({"target": full, "schedule": "daily at 09:00", "timezone": "UTC", "options": {"wiki": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    Job {
        key,
        id: body["id"].as_i64().unwrap(),
        sched: app.backup_scheduler(),
    }
}

/// The git requests the stand-in served for `repo`'s wiki since the last `clear_requests`, as
/// `METHOD path status`.
fn wiki_git_requests(app: &TestApp, repo: &str) -> Vec<String> {
    let prefix = format!("/git/{repo}.wiki.git/");
    app.gh
        .requests()
        .into_iter()
        .filter(|r| r.git && r.path.starts_with(&prefix))
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect()
}

#[tokio::test]
async fn unchanged_wiki_costs_one_request_and_a_changed_one_is_fetched() {
    let app = TestApp::new().await;
    let job = private_wiki_job(&app, "wone").await;
    app.gh.commit(
        "wone/proj.wiki",
        "master",
        &[("Home.md", "# Home\n")],
        "wiki page",
    );
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "succeeded", "{run}");

    // Unchanged: one ref advertisement (the token sent up front, so no 401 first), no fetch.
    app.gh.clear_requests();
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        wiki_git_requests(&app, "wone/proj"),
        ["GET /git/wone/proj.wiki.git/info/refs?service=git-upload-pack 200"]
    );
    let snaps = snapshots(&app, &job).await;
    assert_eq!(snaps[0]["repos"][0]["metadata"], json!({"wiki": 1}));
    let work = tempfile::tempdir().unwrap();
    let page = |files: &BTreeMap<String, Vec<u8>>, name: &str| {
        let clone =
            ghbs_testkit::clone_bundle(work.path(), name, &files["proj.metadata/wiki.bundle"]);
        ghbs_testkit::git(&clone, &["show", "refs/heads/master:Home.md"])
    };
    let files = tar_files(&app, &job.key, &snaps[0]).await;
    assert_eq!(page(&files, "unchanged").trim_end(), "# Home");

    // Changed: the advertisement differs from the mirror, so the wiki is fetched.
    app.gh.commit(
        "wone/proj.wiki",
        "master",
        &[("Home.md", "# Home, edited\n")],
        "edit",
    );
    app.gh.clear_requests();
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let asked = wiki_git_requests(&app, "wone/proj");
    assert!(
        asked.iter().any(|r| r.starts_with("POST ")),
        "fetched: {asked:#?}"
    );
    let snaps = snapshots(&app, &job).await;
    let files = tar_files(&app, &job.key, &snaps[0]).await;
    assert_eq!(page(&files, "changed").trim_end(), "# Home, edited");
}

#[tokio::test]
async fn absent_wiki_is_asked_about_at_most_weekly() {
    let app = TestApp::new().await;
    // `has_wiki` (GitHub's default) but no page: the wiki does not exist.
    let job = private_wiki_job(&app, "wnone").await;
    app.gh.clear_requests();
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let first = wiki_git_requests(&app, "wnone/proj");
    assert_eq!(
        first,
        ["GET /git/wnone/proj.wiki.git/info/refs?service=git-upload-pack 404"]
    );
    assert_eq!(
        snapshots(&app, &job).await[0]["repos"][0]["metadata"],
        json!({})
    );

    // Someone creates the wiki the next day; daily runs within the week do not ask.
    app.gh.commit(
        "wnone/proj.wiki",
        "master",
        &[("Home.md", "# Late wiki\n")],
        "first page",
    );
    for day in 2..=7 {
        app.gh.clear_requests();
        let run = next_run(&app, &job).await;
        assert_eq!(run["status"], "succeeded", "day {day}: {run}");
        assert_eq!(
            wiki_git_requests(&app, "wnone/proj"),
            Vec::<String>::new(),
            "day {day}"
        );
    }
    // Seven days after it was found absent it is asked again, found and fetched.
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let snaps = snapshots(&app, &job).await;
    assert_eq!(snaps[0]["repos"][0]["metadata"], json!({"wiki": 1}));
    let files = tar_files(&app, &job.key, &snaps[0]).await;
    let work = tempfile::tempdir().unwrap();
    let clone =
        ghbs_testkit::clone_bundle(work.path(), "late", &files["proj.metadata/wiki.bundle"]);
    assert_eq!(
        ghbs_testkit::git(&clone, &["show", "refs/heads/master:Home.md"]).trim_end(),
        "# Late wiki"
    );
}

/// Release asset files: stored once and carried while unchanged (no second download); a
/// transfer cut on every try makes the run partial and keeps what the snapshot had, and the
/// next run fetches only what was missed. With `release_assets: false` only the list is kept.
#[tokio::test]
async fn release_assets_are_stored_once_and_a_cut_download_loses_nothing() {
    let app = TestApp::new().await;
    let job = job(&app, "rel", json!({"metadata": true})).await;
    let repo = "rel/proj";
    app.gh.create_tag(repo, "v1", "main");
    app.gh.create_release(repo, "v1", "One");
    let a_bytes = vec![7u8; 40_000];
    let a = app.gh.add_release_asset(repo, "v1", "a.bin", &a_bytes);
    let downloads = |app: &TestApp| {
        app.gh
            .requests()
            .into_iter()
            .filter(|r| r.path.starts_with("/_assets/"))
            .map(|r| (r.path, r.status, r.token_login))
            .collect::<Vec<_>>()
    };
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let files = tar_files(&app, &job.key, &snapshots(&app, &job).await[0]).await;
    assert_eq!(files[&format!("proj.metadata/assets/{a}")], a_bytes);
    assert_eq!(downloads(&app).len(), 1);
    assert!(downloads(&app).iter().all(|(_, _, token)| token.is_none()));

    // A second asset whose transfer is cut on every try (one attempt plus the client's retries).
    let b_bytes = vec![9u8; 50_000];
    let b = app.gh.add_release_asset(repo, "v1", "b.bin", &b_bytes);
    app.gh.clear_requests();
    app.gh
        .inject(Fault::new("/_assets/", FaultKind::DropMidBody, 20));
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "partial", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("b.bin"), "{error}");
    let cut = downloads(&app);
    assert!(
        cut.iter()
            .all(|(p, _, _)| p.ends_with(&format!("/{b}?signature=stand-in"))),
        "the unchanged asset is carried, not fetched: {cut:?}"
    );
    let snaps = snapshots(&app, &job).await;
    assert_eq!(snaps.len(), 2);
    let files = tar_files(&app, &job.key, &snaps[0]).await;
    assert_eq!(files[&format!("proj.metadata/assets/{a}")], a_bytes);
    assert!(!files.contains_key(&format!("proj.metadata/assets/{b}")));

    app.gh.clear_faults();
    app.gh.clear_requests();
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(downloads(&app).len(), 1, "only the missed asset");
    let snaps = snapshots(&app, &job).await;
    let files = tar_files(&app, &job.key, &snaps[0]).await;
    assert_eq!(files[&format!("proj.metadata/assets/{a}")], a_bytes);
    assert_eq!(files[&format!("proj.metadata/assets/{b}")], b_bytes);
    assert_eq!(snaps[0]["repos"][0]["metadata"]["release_assets"], 2);

    // Descriptions only: nothing is downloaded, the list still names both.
    let patch = json!({"options": {"metadata": true, "release_assets": false}}).to_string();
    let (status, body) = app
        .call(
            axum::http::Method::PATCH,
            &format!("/api/v1/jobs/{}", job.id),
            Some(&job.key),
            Some(&patch),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.gh.clear_requests();
    let run = next_run(&app, &job).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(downloads(&app).is_empty());
    let files = tar_files(&app, &job.key, &snapshots(&app, &job).await[0]).await;
    assert!(
        !files.keys().any(|k| k.contains("/assets/")),
        "{:?}",
        files.keys()
    );
    let releases = json_file(&files, "proj.metadata/releases.json");
    assert_eq!(releases[0]["assets"].as_array().unwrap().len(), 2);
}
