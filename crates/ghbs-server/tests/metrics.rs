//! `/metrics` after real runs: the exposition text parses, and its values are what happened
//! (runs by outcome, durations, repositories failed by kind, verifications), with no label that
//! names a job, a user or a repository.

mod common;

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use chrono::Duration;
use common::TestApp;
use ghbs_testkit::{Fault, FaultKind};
use serde_json::json;

/// `name{labels}` → value, from Prometheus' text format (HELP/TYPE lines checked as such).
fn scrape(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?}"));
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "{series} twice"
        );
    }
    samples
}

async fn metrics(app: &TestApp) -> BTreeMap<String, f64> {
    let (status, body) = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    scrape(body.as_str().unwrap())
}

#[tokio::test]
async fn metrics_count_what_the_runs_did() {
    let app = TestApp::new().await;
    let (key, _) = app.login("mia").await;
    app.gh.create_repo("mia", "ok", Default::default());
    app.gh.commit("mia/ok", "main", &[("a", "a")], "first");
    app.gh.create_repo("mia", "bad", Default::default());
    app.gh.commit("mia/bad", "main", &[("b", "b")], "first");
    let ok = app.create_job(&key, "mia/ok", "daily at 09:00").await["id"]
        .as_i64()
        .unwrap();
    let _bad = app.create_job(&key, "mia/bad", "daily at 09:00").await["id"]
        .as_i64()
        .unwrap();
    app.gh.inject(Fault::new(
        "/git/mia/bad.git/",
        FaultKind::Status(500),
        100_000,
    ));

    let before = metrics(&app).await;
    assert_eq!(before["ghbs_runs_total{outcome=\"succeeded\"}"], 0.0);
    assert_eq!(before["ghbs_queue_waiting_jobs"], 0.0);
    let sched = app.backup_scheduler();
    app.clock.advance(Duration::days(1));
    // Both jobs are due: they wait, the oldest since its slot (09:00, the clock is later).
    let waiting = metrics(&app).await;
    assert_eq!(waiting["ghbs_queue_waiting_jobs"], 2.0);
    assert!(
        waiting["ghbs_queue_oldest_due_seconds"] > 0.0,
        "{waiting:?}"
    );
    assert_eq!(sched.run_due_once().await, 2);
    let (status, _) = app
        .post(&format!("/api/v1/jobs/{ok}/verify"), &key, json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(sched.run_due_once().await, 1);

    let m = metrics(&app).await;
    assert_eq!(m["ghbs_runs_total{outcome=\"succeeded\"}"], 1.0, "{m:?}");
    assert_eq!(m["ghbs_runs_total{outcome=\"failed\"}"], 1.0);
    assert_eq!(m["ghbs_runs_total{outcome=\"partial\"}"], 0.0);
    assert_eq!(m["ghbs_verify_runs_total{outcome=\"succeeded\"}"], 1.0);
    assert_eq!(m["ghbs_verify_runs_total{outcome=\"failed\"}"], 0.0);
    // The failing transfer (a 500 from git's HTTP) is a transient failure of one repository.
    assert_eq!(m["ghbs_repos_failed_total{kind=\"transient\"}"], 1.0);
    assert_eq!(m["ghbs_repos_failed_total{kind=\"not_found\"}"], 0.0);
    // One duration per finished backup, in cumulative buckets.
    for outcome in ["succeeded", "failed"] {
        assert_eq!(
            m[&format!("ghbs_run_duration_seconds_count{{outcome=\"{outcome}\"}}")],
            1.0
        );
        assert_eq!(
            m[&format!("ghbs_run_duration_seconds_bucket{{outcome=\"{outcome}\",le=\"+Inf\"}}")],
            1.0
        );
        assert!(m[&format!("ghbs_run_duration_seconds_sum{{outcome=\"{outcome}\"}}")] > 0.0);
    }
    assert_eq!(
        m["ghbs_run_duration_seconds_count{outcome=\"partial\"}"],
        0.0
    );
    assert_eq!(m["ghbs_notifications_total{result=\"delivered\"}"], 0.0);
    assert!(m["ghbs_github_requests_total"] >= 2.0, "{m:?}");
    assert_eq!(m["ghbs_jobs"], 2.0);
    assert_eq!(m["ghbs_queue_waiting_jobs"], 0.0);
    assert_eq!(before["ghbs_stored_bytes"], 0.0);
    let (_, snaps) = app.get(&format!("/api/v1/jobs/{ok}/snapshots"), &key).await;
    let size = snaps["snapshots"][0]["size_bytes"].as_f64().unwrap();
    assert!(size > 0.0);
    assert_eq!(
        m["ghbs_stored_bytes"], size,
        "the only snapshot's mirror size"
    );
    app.clock.advance(Duration::hours(2));
    let later = metrics(&app).await;
    assert_eq!(later["ghbs_oldest_last_success_age_seconds"], 7200.0);
    // Low cardinality: labels are only outcome, kind, result and bucket bounds.
    for series in m.keys() {
        let Some((_, labels)) = series.split_once('{') else {
            continue;
        };
        for pair in labels.trim_end_matches('}').split(',') {
            let (name, value) = pair.split_once('=').unwrap();
            assert!(
                ["outcome", "kind", "result", "le"].contains(&name),
                "{series}"
            );
            assert!(!value.contains("mia"), "{series}");
        }
    }
}
