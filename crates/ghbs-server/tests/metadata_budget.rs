//! The metadata backup's request budget (issue 12), asserted as counts against the stand-in: a
//! first run spends no more than the listings-first rules allow for the world, an unchanged run
//! spends nothing, and what changes between runs (issue, comment, review, label, release) is in
//! the next snapshot without per-item requests where a listing already tells.

mod common;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::Duration;
use common::TestApp;
use ghbs_server::scheduler::Scheduler;
use ghbs_testkit::RepoOptions;
use serde_json::{json, Value};

struct Job {
    key: String,
    id: i64,
    sched: Scheduler,
}

/// A logged-in user `login`, a repository `login/proj` (with `opts`) with one commit, and a
/// daily job on it with metadata and pull refs.
async fn job(app: &TestApp, login: &str, opts: RepoOptions) -> Job {
    let (key, _) = app.login(login).await;
    let full = format!("{login}/proj");
    app.gh.create_repo(login, "proj", opts);
    app.gh
        .commit(&full, "main", &[("README.md", "hello\n")], "first");
    let options = json!({"metadata": true, "pull_refs": true});
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

/// Moves the clock a day forward, runs the due slot, checks it succeeded.
async fn next_run(app: &TestApp, job: &Job) {
    app.clock.advance(Duration::days(1));
    assert_eq!(job.sched.run_due_once().await, 1);
    let (_, runs) = app
        .get(&format!("/api/v1/jobs/{}/runs", job.id), &job.key)
        .await;
    assert_eq!(
        runs["runs"][0]["status"], "succeeded",
        "{}",
        runs["runs"][0]
    );
}

/// The metadata files of the newest snapshot's `.tar.gz`, parsed, by path inside the folder.
async fn latest(app: &TestApp, job: &Job) -> BTreeMap<String, Value> {
    let (_, snaps) = app
        .get(&format!("/api/v1/jobs/{}/snapshots", job.id), &job.key)
        .await;
    let id = snaps["snapshots"][0]["id"].as_i64().unwrap();
    app.tar_files(&job.key, id)
        .await
        .into_iter()
        .filter_map(|(path, bytes)| {
            let rest = path.strip_prefix("proj.metadata/")?.to_owned();
            Some((rest, serde_json::from_slice(&bytes).ok()?))
        })
        .collect()
}

/// Counted REST requests for the repository's metadata (under `/repos/O/R/`, not the
/// repository itself), since the last `clear_requests`.
fn counted_metadata(app: &TestApp, repo: &str) -> Vec<String> {
    let prefix = format!("/api/v3/repos/{repo}/");
    app.gh
        .requests()
        .into_iter()
        .filter(|r| !r.git && r.counted && r.path.starts_with(&prefix))
        .map(|r| r.path)
        .collect()
}

/// Pages of 100 a listing of `n` items takes; an empty listing is still one request.
fn pages(n: usize) -> usize {
    n.div_ceil(100).max(1)
}

/// What the rules allow for a first run of one repository: the three small lists, the issue
/// listing, then only when something can be there the pull listing and the two repository-wide
/// comment listings, one reviews request per pull request, and no commits request (pull refs
/// are mirrored).
fn first_run_allowance(
    issues: usize,
    pulls: usize,
    comments: usize,
    review_comments: usize,
) -> usize {
    let lists = 3;
    let listing = pages(issues + pulls);
    let pull_listing = if pulls > 0 { pages(pulls) } else { 0 };
    let comment_listing = if comments > 0 { pages(comments) } else { 0 };
    let review_listing = if pulls > 0 { pages(review_comments) } else { 0 };
    lists + listing + pull_listing + comment_listing + review_listing + pulls
}

/// A world with every kind: issues with and without comments, pull requests with and without
/// reviews, review comments and a conversation.
struct World {
    issue: u64,
    commented: u64,
    comment_ids: Vec<i64>,
    pull: u64,
    quiet_pull: u64,
}

fn world(app: &TestApp, repo: &str) -> World {
    app.gh.create_label(repo, "bug", "d73a4a");
    app.gh.create_label(repo, "idea", "00ff00");
    app.gh.create_milestone(repo, "v1");
    app.gh.create_tag(repo, "v1.0", "main");
    app.gh.create_release(repo, "v1.0", "First");
    let issue = app.gh.create_issue(repo, "Quiet issue", "no comments");
    app.gh
        .create_issue(repo, "Another quiet one", "none either");
    let commented = app.gh.create_issue(repo, "Talked about", "body");
    let comment_ids = (0..3)
        .map(|c| {
            app.gh
                .add_issue_comment(repo, commented, &format!("comment {c}"))
        })
        .collect();
    app.gh
        .commit(repo, "feature", &[("f.txt", "feature\n")], "feature work");
    let pull = app.gh.create_pull(repo, "Add feature", "feature", "main");
    app.gh.add_issue_comment(repo, pull, "pr conversation");
    app.gh.add_review(repo, pull, "APPROVED", "looks good");
    app.gh.add_review_comment(repo, pull, "f.txt", "nit one");
    app.gh.add_review_comment(repo, pull, "f.txt", "nit two");
    app.gh
        .commit(repo, "other", &[("g.txt", "g\n")], "other work");
    let quiet_pull = app.gh.create_pull(repo, "Other", "other", "main");
    World {
        issue,
        commented,
        comment_ids,
        pull,
        quiet_pull,
    }
}

#[tokio::test]
async fn first_run_stays_within_the_listing_budget_and_rerun_costs_nothing() {
    let app = TestApp::new().await;
    let job = job(&app, "budget", RepoOptions::default()).await;
    let repo = "budget/proj";
    let w = world(&app, repo);
    app.gh.clear_requests();
    next_run(&app, &job).await;

    // 3 issues, 2 pull requests, 4 conversation comments, 2 review comments.
    let allowed = first_run_allowance(3, 2, 4, 2);
    let spent = counted_metadata(&app, repo);
    assert!(
        spent.len() <= allowed,
        "{} counted requests, {allowed} allowed: {spent:#?}",
        spent.len()
    );
    for path in &spent {
        assert!(
            !path.contains("/comments?")
                || path.contains("/issues/comments?")
                || path.contains("/pulls/comments?"),
            "a per-item comment request: {path}"
        );
        assert!(!path.contains("/commits"), "commits come from git: {path}");
    }
    assert!(
        !spent
            .iter()
            .any(|p| p.ends_with(&format!("/pulls/{}", w.pull))),
        "no detail request: {spent:?}"
    );

    let files = latest(&app, &job).await;
    let issue = &files[&format!("issues/{}.json", w.issue)];
    assert_eq!(issue["comments"], json!([]));
    let talked = &files[&format!("issues/{}.json", w.commented)];
    let bodies: Vec<&str> = talked["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["comment 0", "comment 1", "comment 2"]);
    let pull = &files[&format!("pulls/{}.json", w.pull)];
    assert_eq!(pull["issue"]["number"], w.pull);
    assert_eq!(pull["pull"]["head"]["ref"], "feature");
    assert_eq!(pull["comments"][0]["body"], "pr conversation");
    assert_eq!(pull["reviews"][0]["state"], "APPROVED");
    assert_eq!(pull["review_comments"].as_array().unwrap().len(), 2);
    assert_eq!(pull["commits"].as_array().unwrap().len(), 1);
    assert_eq!(pull["commits"][0]["commit"]["message"], "feature work");
    assert!(pull["commits"][0]["sha"].as_str().unwrap().len() >= 40);
    let quiet = &files[&format!("pulls/{}.json", w.quiet_pull)];
    assert_eq!(quiet["review_comments"], json!([]));
    assert_eq!(quiet["commits"][0]["commit"]["message"], "other work");
    assert_eq!(files["index.json"]["counts"]["comments"], 4);

    app.gh.clear_requests();
    next_run(&app, &job).await;
    assert_eq!(counted_metadata(&app, repo), Vec::<String>::new());
}

#[tokio::test]
async fn without_pull_refs_the_commit_list_is_asked_per_pull_request() {
    let app = TestApp::new().await;
    let (key, _) = app.login("norefs").await;
    let repo = "norefs/proj";
    app.gh.create_repo("norefs", "proj", RepoOptions::default());
    app.gh
        .commit(repo, "main", &[("README.md", "hello\n")], "first");
    let (status, body) = app
        .post(
            "/api/v1/jobs",
            &key,
            json!({"target": repo, "schedule": "daily at 09:00", "timezone": "UTC", "options": {"metadata": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let job = Job {
        key,
        id: body["id"].as_i64().unwrap(),
        sched: app.backup_scheduler(),
    };
    let w = world(&app, repo);
    app.gh.clear_requests();
    next_run(&app, &job).await;
    let spent = counted_metadata(&app, repo);
    assert!(
        spent.len() <= first_run_allowance(3, 2, 4, 2) + 2,
        "{spent:#?}"
    );
    let commits: Vec<&String> = spent.iter().filter(|p| p.contains("/commits")).collect();
    assert_eq!(commits.len(), 2, "{spent:#?}");
    let files = latest(&app, &job).await;
    let pull = &files[&format!("pulls/{}.json", w.pull)];
    assert_eq!(pull["commits"][0]["commit"]["message"], "feature work");
}

#[tokio::test]
async fn issues_disabled_asks_nothing_of_issues_and_keeps_pull_requests() {
    let app = TestApp::new().await;
    let opts = RepoOptions {
        has_issues: false,
        ..RepoOptions::default()
    };
    let job = job(&app, "noiss", opts).await;
    let repo = "noiss/proj";
    app.gh
        .commit(repo, "feature", &[("f.txt", "feature\n")], "feature work");
    let pull = app.gh.create_pull(repo, "Add feature", "feature", "main");
    app.gh.add_review(repo, pull, "APPROVED", "fine");
    app.gh.clear_requests();
    next_run(&app, &job).await;
    let spent = counted_metadata(&app, repo);
    assert!(
        !spent.iter().any(|p| p.contains("/issues?")),
        "the issue listing is not asked: {spent:#?}"
    );
    // The lists, the pull listing, both comment listings (the conversation count is unknown
    // without the issue listing) and one reviews request.
    assert!(spent.len() <= 3 + 1 + 2 + 1, "{spent:#?}");
    let files = latest(&app, &job).await;
    let doc = &files[&format!("pulls/{pull}.json")];
    assert_eq!(doc["issue"], Value::Null);
    assert_eq!(doc["pull"]["number"], pull);
    assert_eq!(doc["reviews"][0]["body"], "fine");
    assert_eq!(doc["commits"][0]["commit"]["message"], "feature work");
}

/// Runs once, applies `change`, runs again; returns the second run's counted metadata requests
/// and the newest snapshot's files.
async fn change_between_runs(
    login: &str,
    change: impl FnOnce(&TestApp, &str, &World),
) -> (Vec<String>, BTreeMap<String, Value>, World) {
    let app = TestApp::new().await;
    let job = job(&app, login, RepoOptions::default()).await;
    let repo = format!("{login}/proj");
    let w = world(&app, &repo);
    next_run(&app, &job).await;
    change(&app, &repo, &w);
    app.gh.clear_requests();
    next_run(&app, &job).await;
    let spent = counted_metadata(&app, &repo);
    (spent, latest(&app, &job).await, w)
}

/// No request for one item's own detail, comments, review comments or commits (its reviews
/// have no repository-wide listing and are allowed).
fn no_per_item_requests(spent: &[String]) {
    for p in spent {
        let path = p.split('?').next().unwrap_or(p);
        let segs: Vec<&str> = path.split('/').collect();
        let per_item = segs.windows(2).enumerate().any(|(i, w)| {
            matches!(w[0], "issues" | "pulls")
                && w[1].parse::<u64>().is_ok()
                && segs.get(i + 2) != Some(&"reviews")
        });
        assert!(!per_item, "per-item request {p} in {spent:#?}");
    }
}

#[tokio::test]
async fn edited_issue_is_in_the_next_snapshot() {
    let (spent, files, w) = change_between_runs("ed", |app, repo, w| {
        app.gh.edit_issue(repo, w.issue, json!({"body": "edited"}));
    })
    .await;
    assert_eq!(
        files[&format!("issues/{}.json", w.issue)]["issue"]["body"],
        "edited"
    );
    // The probe page only: the issue has no comments.
    assert_eq!(spent.len(), 1, "{spent:#?}");
}

#[tokio::test]
async fn added_comment_is_in_the_next_snapshot() {
    let (spent, files, w) = change_between_runs("com", |app, repo, w| {
        app.gh.add_issue_comment(repo, w.commented, "one more");
    })
    .await;
    let comments = files[&format!("issues/{}.json", w.commented)]["comments"].clone();
    let bodies: Vec<&str> = comments
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["comment 0", "comment 1", "comment 2", "one more"]);
    // The probe page and the `since` comment listing.
    assert_eq!(spent.len(), 2, "{spent:#?}");
    assert!(spent[1].contains("/issues/comments?") && spent[1].contains("since="));
    no_per_item_requests(&spent);
}

#[tokio::test]
async fn deleted_comment_falls_back_to_the_items_own_listing() {
    let (spent, files, w) = change_between_runs("del", |app, repo, w| {
        app.gh.delete_issue_comment(repo, w.comment_ids[1]);
    })
    .await;
    let comments = files[&format!("issues/{}.json", w.commented)]["comments"].clone();
    let bodies: Vec<&str> = comments
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["comment 0", "comment 2"]);
    // The merged listing (3) disagrees with the issue's count (2): its own list is asked.
    let own = format!("/issues/{}/comments", w.commented);
    assert!(spent.iter().any(|p| p.contains(&own)), "{spent:#?}");
    assert!(spent.len() <= 3, "{spent:#?}");
}

#[tokio::test]
async fn submitted_review_is_in_the_next_snapshot() {
    let (spent, files, w) = change_between_runs("rev", |app, repo, w| {
        app.gh
            .add_review(repo, w.quiet_pull, "CHANGES_REQUESTED", "please fix");
    })
    .await;
    let doc = &files[&format!("pulls/{}.json", w.quiet_pull)];
    assert_eq!(doc["reviews"][0]["state"], "CHANGES_REQUESTED");
    assert_eq!(doc["reviews"][0]["body"], "please fix");
    // Probe, pull listing, review comments since, the one reviews request.
    assert!(spent.len() <= 4, "{spent:#?}");
    no_per_item_requests(&spent);
}

#[tokio::test]
async fn renamed_label_is_in_the_next_snapshot() {
    let (spent, files, w) = change_between_runs("lab", |app, repo, w| {
        app.gh.add_label_to(repo, w.issue, "bug");
        app.gh.rename_label(repo, "bug", "defect");
    })
    .await;
    let names: Vec<&str> = files["labels.json"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["defect", "idea"]);
    assert_eq!(
        files[&format!("issues/{}.json", w.issue)]["issue"]["labels"][0]["name"],
        "defect"
    );
    no_per_item_requests(&spent);
}

#[tokio::test]
async fn edited_release_is_in_the_next_snapshot() {
    let (spent, files, _) = change_between_runs("rel", |app, repo, _| {
        app.gh
            .edit_release(repo, "v1.0", json!({"body": "release notes, edited"}));
    })
    .await;
    assert_eq!(files["releases.json"][0]["body"], "release notes, edited");
    assert_eq!(spent.len(), 1, "only the release list: {spent:#?}");
    assert!(spent[0].contains("/releases"));
}
