//! `GET /api/v1/jobs` pages (issue 14): `limit` and an opaque `cursor`, stable while jobs are
//! added and deleted, each entry exactly what `GET /api/v1/jobs/{id}` shows, and a clear 400 for
//! a malformed `limit` or `cursor`.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use common::TestApp;
use ghbs_server::executor::{ExecOutcome, Executor, RunProgress};
use ghbs_server::RunContext;
use ghbs_store::Claim;
use serde_json::Value;

struct Succeeds;

#[async_trait]
impl Executor for Succeeds {
    async fn execute(&self, _: &Arc<RunContext>, _: &Claim, _: RunProgress) -> ExecOutcome {
        ExecOutcome::default()
    }
}

fn ids(page: &Value) -> Vec<i64> {
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect()
}

/// Every page from `cursor` on, `limit` at a time.
async fn follow(app: &TestApp, key: &str, limit: usize) -> (Vec<i64>, usize) {
    let mut all = Vec::new();
    let mut pages = 0;
    let mut path = format!("/api/v1/jobs?limit={limit}");
    loop {
        let (status, page) = app.get(&path, key).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        let got = ids(&page);
        assert!(got.len() <= limit);
        all.extend(got);
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/jobs?limit={limit}&cursor={c}"),
            None => return (all, pages),
        }
    }
}

#[tokio::test]
async fn pages_list_every_job_once_in_order() {
    let app = TestApp::new().await;
    let (alice, _) = app.login("alice").await;
    let (bob, _) = app.login("bob").await;
    let mut mine = Vec::new();
    for i in 0..7 {
        let j = app
            .create_job(&alice, &format!("alice/r{i}"), "daily")
            .await;
        mine.push(j["id"].as_i64().unwrap());
        app.create_job(&bob, &format!("bob/r{i}"), "daily").await;
    }
    // Two of alice's jobs have runs (the second one twice).
    for (id, times) in [(mine[1], 1), (mine[4], 2)] {
        for _ in 0..times {
            let (status, _) = app
                .post(&format!("/api/v1/jobs/{id}/runs"), &alice, Value::Null)
                .await;
            assert_eq!(status, StatusCode::ACCEPTED);
            app.scheduler(Arc::new(Succeeds)).run_due_once().await;
        }
    }

    let (all, pages) = follow(&app, &alice, 3).await;
    assert_eq!(all, mine);
    assert_eq!(pages, 3);
    // An exact multiple ends without a cursor on the full last page.
    let (all, pages) = follow(&app, &alice, 7).await;
    assert_eq!((all, pages), (mine.clone(), 1));
    // Without `limit`: one page of up to 100.
    let (_, whole) = app.get("/api/v1/jobs", &alice).await;
    assert_eq!(ids(&whole), mine);
    assert!(whole.get("next_cursor").is_none(), "{whole}");

    // Each entry is what the job's own page shows: last run, freshness, state.
    for entry in whole["jobs"].as_array().unwrap() {
        let (_, shown) = app
            .get(&format!("/api/v1/jobs/{}", entry["id"]), &alice)
            .await;
        assert_eq!(entry, &shown);
    }
    let with_runs = &whole["jobs"][4];
    assert_eq!(with_runs["last_run"]["status"], "succeeded");
    assert!(with_runs["last_success_at"].is_string());
    assert!(whole["jobs"][0]["last_run"].is_null());

    // Bob's pages hold only bob's jobs.
    let (bobs, _) = follow(&app, &bob, 4).await;
    assert_eq!(bobs.len(), 7);
    assert!(bobs.iter().all(|id| !mine.contains(id)));
}

#[tokio::test]
async fn a_cursor_stays_valid_while_jobs_are_added_and_deleted() {
    let app = TestApp::new().await;
    let (key, _) = app.login("carol").await;
    let mut mine = Vec::new();
    for i in 0..6 {
        let j = app.create_job(&key, &format!("carol/r{i}"), "daily").await;
        mine.push(j["id"].as_i64().unwrap());
    }
    let (_, first) = app.get("/api/v1/jobs?limit=2", &key).await;
    assert_eq!(ids(&first), mine[..2]);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();

    // The job the cursor points after is deleted, and one on the next page; one is added.
    for id in [mine[1], mine[3]] {
        let (status, _) = app
            .call(
                Method::DELETE,
                &format!("/api/v1/jobs/{id}"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let added = app.create_job(&key, "carol/late", "daily").await["id"]
        .as_i64()
        .unwrap();

    let (status, second) = app
        .get(&format!("/api/v1/jobs?limit=2&cursor={cursor}"), &key)
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(ids(&second), vec![mine[2], mine[4]]);
    let next = second["next_cursor"].as_str().unwrap();
    let (_, third) = app
        .get(&format!("/api/v1/jobs?limit=2&cursor={next}"), &key)
        .await;
    assert_eq!(ids(&third), vec![mine[5], added]);
    // An exactly full last page ends without a cursor.
    assert!(third.get("next_cursor").is_none(), "{third}");
    // A cursor whose later jobs are all gone gives an empty page, not an error.
    for id in [mine[5], added] {
        let (status, _) = app
            .call(
                Method::DELETE,
                &format!("/api/v1/jobs/{id}"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (status, empty) = app
        .get(&format!("/api/v1/jobs?limit=2&cursor={next}"), &key)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(ids(&empty).is_empty());
    assert!(empty.get("next_cursor").is_none());
}

#[tokio::test]
async fn a_malformed_limit_or_cursor_is_a_400_that_says_which() {
    let app = TestApp::new().await;
    let (key, _) = app.login("dave").await;
    app.create_job(&key, "dave/one", "daily").await;
    for (query, says) in [
        ("limit=0", "limit must be between 1 and 500"),
        ("limit=501", "limit must be between 1 and 500"),
        ("limit=-3", "limit must be between 1 and 500"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("cursor=", "malformed cursor"),
        ("cursor=not-a-cursor", "malformed cursor"),
        ("cursor=am9iczotNQ", "malformed cursor"), // "jobs:-5"
        ("cursor=bm9wZTo1", "malformed cursor"),   // "nope:5"
        ("cursor=%00%01", "malformed cursor"),
        ("page=2", "page"),
    ] {
        let (status, body) = app.get(&format!("/api/v1/jobs?{query}"), &key).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["code"], "bad_request", "{query}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(says), "{query}: {message}");
    }
}
