//! Retries of failed runs at the same slot, with the injected clock and the GitHub stand-in:
//! a passing 502 is retried and succeeds, retries stop at the bound and never pass the next
//! slot, a permanent failure is not retried, a retry of an account job fetches only what
//! failed, a rate-limit reset beyond the wait bound pushes the retry back, and a run waiting for
//! a rate limit says until when (to the second).

mod common;

use axum::http::StatusCode;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use common::TestApp;
use ghbs_core::Clock;
use ghbs_testkit::{Fault, FaultKind};
use serde_json::{json, Value};

async fn job(app: &TestApp, key: &str, id: i64) -> Value {
    let (status, job) = app.get(&format!("/api/v1/jobs/{id}"), key).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    job
}

async fn runs(app: &TestApp, key: &str, id: i64) -> Vec<Value> {
    let (_, runs) = app.get(&format!("/api/v1/jobs/{id}/runs"), key).await;
    runs["runs"].as_array().unwrap().clone()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// A repository job `login/proj` due daily at 09:00, and the clock moved to that slot.
async fn repo_job(app: &TestApp, login: &str) -> (String, i64) {
    let (key, _) = app.login(login).await;
    let full = format!("{login}/proj");
    app.gh.create_repo(login, "proj", Default::default());
    app.gh
        .commit(&full, "main", &[("README.md", "hi\n")], "first");
    let id = app.create_job(&key, &full, "daily at 09:00").await["id"]
        .as_i64()
        .unwrap();
    app.clock.advance(Duration::hours(1));
    (key, id)
}

#[tokio::test]
async fn a_502_at_the_first_attempt_is_retried_and_succeeds() {
    let app = TestApp::new().await;
    let (key, id) = repo_job(&app, "rita").await;
    let slot = time(&job(&app, &key, id).await["next_run_at"]);
    app.gh.inject(Fault::new(
        "/repos/rita/proj",
        FaultKind::Status(502),
        10_000,
    ));
    let sched = app.backup_scheduler();
    assert_eq!(sched.run_due_once().await, 1);

    let pending = job(&app, &key, id).await;
    let next_slot = time(&pending["next_run_at"]);
    assert_eq!(next_slot, slot + Duration::days(1), "{pending}");
    assert_eq!(pending["failing"], true);
    let retry = &pending["retry"];
    assert_eq!(retry["attempt"], 2, "{pending}");
    assert_eq!(retry["max_attempts"], 5);
    let at = time(&retry["at"]);
    let now = app.clock.now();
    assert!(
        at >= now + Duration::minutes(5) && at < now + Duration::minutes(6),
        "5 min plus jitter: {at}"
    );
    let first = &runs(&app, &key, id).await[0];
    assert_eq!(first["status"], "failed");
    assert_eq!(first["attempt"], 1);
    assert_eq!(first["retry_at"], retry["at"]);
    assert!(first["error"].as_str().unwrap().contains("502"), "{first}");

    // Not before its time; then GitHub is back and the retry succeeds.
    app.clock.set(at - Duration::seconds(1));
    assert_eq!(sched.run_due_once().await, 0);
    app.gh.clear_faults();
    app.clock.set(at);
    assert_eq!(sched.run_due_once().await, 1);
    let runs = runs(&app, &key, id).await;
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["status"], "succeeded", "{}", runs[0]);
    assert_eq!(runs[0]["attempt"], 2);
    assert_eq!(runs[0]["trigger"], "schedule");
    assert!(runs[0]["snapshot_id"].is_i64());
    let done = job(&app, &key, id).await;
    assert!(done["retry"].is_null(), "{done}");
    assert_eq!(done["failing"], false);
    assert_eq!(
        time(&done["next_run_at"]),
        next_slot,
        "the slot did not move"
    );
    assert_eq!(done["last_success_at"], runs[0]["finished_at"]);
    // Nothing else is due until that slot.
    app.clock.set(next_slot - Duration::seconds(1));
    assert_eq!(sched.run_due_once().await, 0);
}

/// Follows every retry the job announces until there is none; returns the runs, newest first.
async fn follow_retries(app: &TestApp, key: &str, id: i64, slot: DateTime<Utc>) -> Vec<Value> {
    let sched = app.backup_scheduler();
    for _ in 0..50 {
        let j = job(app, key, id).await;
        assert_eq!(
            time(&j["next_run_at"]),
            slot,
            "a retry never moves the slot"
        );
        if j["retry"].is_null() {
            return runs(app, key, id).await;
        }
        let at = time(&j["retry"]["at"]);
        assert!(at < slot, "every retry starts before the next slot: {j}");
        app.clock.set(at);
        assert_eq!(sched.run_due_once().await, 1);
    }
    panic!("retries did not stop");
}

#[tokio::test]
async fn retries_stop_at_the_bound_and_never_pass_the_next_slot() {
    // The default bound: four retries, five attempts.
    let app = TestApp::new().await;
    let (key, id) = repo_job(&app, "sam").await;
    app.gh.inject(Fault::new(
        "/repos/sam/proj",
        FaultKind::Status(503),
        100_000,
    ));
    assert_eq!(app.backup_scheduler().run_due_once().await, 1);
    let slot = time(&job(&app, &key, id).await["next_run_at"]);
    let all = follow_retries(&app, &key, id, slot).await;
    let attempts: Vec<i64> = all.iter().map(|r| r["attempt"].as_i64().unwrap()).collect();
    assert_eq!(attempts, vec![5, 4, 3, 2, 1]);
    assert!(all.iter().all(|r| r["status"] == "failed"));
    assert!(
        all[0]["retry_at"].is_null(),
        "the last attempt announces none"
    );

    // Ten retries allowed: the next slot bounds them first (4 h apart from the fourth on).
    let app = TestApp::with(|cfg| cfg.retry = ghbs_core::RetryPolicy { retries: 10 }).await;
    let (key, id) = repo_job(&app, "sue").await;
    app.gh.inject(Fault::new(
        "/repos/sue/proj",
        FaultKind::Status(500),
        100_000,
    ));
    assert_eq!(app.backup_scheduler().run_due_once().await, 1);
    let slot = time(&job(&app, &key, id).await["next_run_at"]);
    let all = follow_retries(&app, &key, id, slot).await;
    assert!(
        all.len() < 11,
        "stopped by the slot, not the bound: {}",
        all.len()
    );
    assert!(
        all.len() >= 8,
        "5 min, 20 min, 1 h, then every 4 h fit: {}",
        all.len()
    );
    for r in &all {
        assert!(time(&r["started_at"]) < slot, "{r}");
    }
    // The slot itself runs as attempt 1 again.
    app.gh.clear_faults();
    app.clock.set(slot);
    assert_eq!(app.backup_scheduler().run_due_once().await, 1);
    let newest = &runs(&app, &key, id).await[0];
    assert_eq!(newest["attempt"], 1);
    assert_eq!(newest["status"], "succeeded");
}

#[tokio::test]
async fn a_permanent_failure_is_not_retried_and_says_what_to_do() {
    let app = TestApp::new().await;
    let (key, _) = app.login("tom").await;
    // Never existed: GitHub answers 404.
    let id = app.create_job(&key, "tom/missing", "daily at 09:00").await["id"]
        .as_i64()
        .unwrap();
    app.clock.advance(Duration::hours(1));
    assert_eq!(app.backup_scheduler().run_due_once().await, 1);
    let j = job(&app, &key, id).await;
    assert!(j["retry"].is_null(), "{j}");
    assert_eq!(j["failing"], true);
    let run = &runs(&app, &key, id).await[0];
    assert_eq!(run["status"], "failed");
    assert!(run["retry_at"].is_null());
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("Not retried"), "{error}");
    // Half an hour later (past every retry delay but the slot's): nothing runs.
    app.clock.advance(Duration::minutes(30));
    assert_eq!(app.backup_scheduler().run_due_once().await, 0);
}

#[tokio::test]
async fn a_retry_of_an_account_job_fetches_only_the_failed_repository() {
    let app = TestApp::new().await;
    let (key, _) = app.login("uma").await;
    for name in ["a", "b", "c"] {
        app.gh.create_repo("uma", name, Default::default());
        app.gh
            .commit(&format!("uma/{name}"), "main", &[("f", name)], "first");
    }
    let (status, created) = app
        .post(
            "/api/v1/jobs",
            &key,
            json!({"target": "uma", "schedule": "daily at 09:00", "timezone": "UTC",
                   "retention": {"keep_last": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    app.clock.advance(Duration::hours(1));
    app.gh.inject(Fault::new(
        "/git/uma/b.git/",
        FaultKind::Status(502),
        100_000,
    ));
    let sched = app.backup_scheduler();
    assert_eq!(sched.run_due_once().await, 1);
    let first = runs(&app, &key, id).await[0].clone();
    assert_eq!(first["status"], "partial", "{first}");
    let j = job(&app, &key, id).await;
    let at = time(&j["retry"]["at"]);

    app.gh.clear_faults();
    app.gh.commit(
        "uma/a",
        "main",
        &[("f", "changed")],
        "not fetched by the retry",
    );
    app.gh.clear_requests();
    app.clock.set(at);
    assert_eq!(sched.run_due_once().await, 1);
    let retried = runs(&app, &key, id).await[0].clone();
    assert_eq!(retried["status"], "succeeded", "{retried}");
    assert_eq!(retried["attempt"], 2);
    let git: Vec<String> = app
        .gh
        .requests()
        .into_iter()
        .filter(|r| r.git)
        .map(|r| r.path)
        .collect();
    assert!(!git.is_empty());
    assert!(
        git.iter().all(|p| p.contains("/git/uma/b.git/")),
        "only the failed repository is fetched: {git:?}"
    );

    // The retry's snapshot holds all three; a and c as the first attempt captured them.
    let (_, snaps) = app.get(&format!("/api/v1/jobs/{id}/snapshots"), &key).await;
    let snaps = snaps["snapshots"].as_array().unwrap().clone();
    let newest = &snaps[0];
    assert_eq!(newest["run_id"], retried["id"]);
    assert_eq!(newest["status"], "succeeded", "{newest}");
    let repos = newest["repos"].as_array().unwrap();
    assert_eq!(repos.len(), 3);
    let older = snaps.iter().find(|s| s["run_id"] == first["id"]);
    let older = older.expect("the first attempt's snapshot is kept: it holds a's capture");
    for r in repos {
        assert_eq!(r["capture"], "captured", "{r}");
        if r["full_name"] != "uma/b" {
            assert_eq!(r["captured_at"], older["created_at"], "{r}");
        }
    }
    // Everything downloads from the retry's snapshot.
    let files = app.tar_files(&key, newest["id"].as_i64().unwrap()).await;
    for name in ["uma/a", "uma/b", "uma/c"] {
        assert!(
            files.keys().any(|p| p.contains(name)),
            "{name} in {:?}",
            files.keys()
        );
    }
    // The next slot fetches everything again, a's new commit included.
    app.clock
        .set(time(&job(&app, &key, id).await["next_run_at"]));
    app.gh.clear_requests();
    assert_eq!(sched.run_due_once().await, 1);
    let git = app.gh.requests().into_iter().filter(|r| r.git).count();
    assert!(git > 0);
    assert_eq!(runs(&app, &key, id).await[0]["attempt"], 1);
}

/// A clock near real time: the stand-in's rate-limit windows follow the real clock.
fn real_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

#[tokio::test]
async fn a_rate_limit_beyond_the_wait_bound_is_retried_after_its_reset() {
    let app = TestApp::new().await;
    let (key, token) = app.login("val").await;
    app.gh.create_repo("val", "proj", Default::default());
    app.gh.commit("val/proj", "main", &[("f", "x")], "first");
    let now = real_now();
    app.clock.set(now);
    // The slot is about 23 h away, the reset 2 h: the retry fits before the slot.
    let at = (now - Duration::hours(1)).format("%H:%M").to_string();
    let id = app
        .create_job(&key, "val/proj", &format!("daily at {at}"))
        .await["id"]
        .as_i64()
        .unwrap();
    app.post(&format!("/api/v1/jobs/{id}/runs"), &key, json!(null))
        .await;
    // Spent for two hours: beyond the one-hour wait bound.
    let reset = now + Duration::hours(2);
    app.gh.set_rate_limit(&token, 0, reset);
    assert_eq!(app.backup_scheduler().run_due_once().await, 1);
    let j = job(&app, &key, id).await;
    let run = &runs(&app, &key, id).await[0];
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("rate limit"),
        "{run}"
    );
    let at = time(&j["retry"]["at"]);
    assert!(at > reset, "not before the reset: {at} vs {reset}");
    assert!(at < time(&j["next_run_at"]));
}

#[tokio::test]
async fn a_run_waiting_for_the_rate_limit_says_until_when() {
    let app = std::sync::Arc::new(TestApp::new().await);
    let (key, token) = app.login("wes").await;
    app.gh.create_repo("wes", "proj", Default::default());
    app.gh.commit("wes/proj", "main", &[("f", "x")], "first");
    let now = real_now();
    app.clock.set(now);
    let id = app.create_job(&key, "wes/proj", "daily").await["id"]
        .as_i64()
        .unwrap();
    app.post(&format!("/api/v1/jobs/{id}/runs"), &key, json!(null))
        .await;
    let reset = now + Duration::minutes(20) + Duration::seconds(7);
    app.gh.set_rate_limit(&token, 0, reset);
    let runner = {
        let app = app.clone();
        tokio::spawn(async move { app.backup_scheduler().run_due_once().await })
    };
    let want = format!(
        "waiting for GitHub rate limit until {}",
        reset.format("%H:%M:%S UTC")
    );
    let mut seen = None;
    for _ in 0..600 {
        let run = runs(&app, &key, id).await[0].clone();
        if run["progress"].as_str() == Some(want.as_str()) {
            seen = Some(run);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let run = seen.unwrap_or_else(|| panic!("never showed {want:?}"));
    assert_eq!(run["status"], "running");
    // The job listing shows the same run with its progress.
    let (_, list) = app.get("/api/v1/jobs", &key).await;
    assert_eq!(list["jobs"][0]["last_run"]["progress"], want.as_str());
    // The window rolls over: the run goes on and succeeds.
    app.gh
        .set_rate_limit(&token, 5000, real_now() + Duration::hours(1));
    app.clock.set(reset + Duration::seconds(1));
    assert_eq!(runner.await.unwrap(), 1);
    let run = &runs(&app, &key, id).await[0];
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["progress"].is_null());
    // The wait is counted in /metrics.
    let waited = metric(&app, "ghbs_github_rate_limit_wait_seconds_total").await;
    assert!(waited > 0.0, "rate-limit wait not counted: {waited}");
}

/// One sample of /metrics (no labels).
async fn metric(app: &TestApp, name: &str) -> f64 {
    let (status, body) = app
        .call(axum::http::Method::GET, "/metrics", None, None)
        .await;
    assert_eq!(status, axum::http::StatusCode::OK);
    let text = body.as_str().unwrap().to_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn jobs_show_the_last_success_and_flag_stale_and_failing_jobs() {
    let app = TestApp::new().await;
    let (key, id) = repo_job(&app, "xena").await;
    let fresh = job(&app, &key, id).await;
    assert!(fresh["last_success_at"].is_null());
    assert_eq!(fresh["stale"], false, "a new job is not stale yet");
    assert_eq!(fresh["failing"], false);
    let sched = app.backup_scheduler();
    assert_eq!(sched.run_due_once().await, 1);
    let ok = job(&app, &key, id).await;
    let success = ok["last_success_at"].clone();
    assert_eq!(success, runs(&app, &key, id).await[0]["finished_at"]);
    assert_eq!(ok["stale"], false);

    // GitHub fails every day from now on: failing at once, stale after two days.
    app.gh.inject(Fault::new(
        "/repos/xena/proj",
        FaultKind::Status(502),
        1_000_000,
    ));
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    let failing = job(&app, &key, id).await;
    assert_eq!(failing["failing"], true, "{failing}");
    assert_eq!(failing["stale"], false, "one day without success");
    assert_eq!(failing["last_success_at"], success);
    app.clock.advance(Duration::days(1) + Duration::hours(1));
    let (_, list) = app.get("/api/v1/jobs", &key).await;
    let listed = &list["jobs"][0];
    assert_eq!(listed["stale"], true, "{listed}");
    assert_eq!(
        metric(&app, "ghbs_jobs_stale").await,
        1.0,
        "the gauge agrees"
    );
    assert_eq!(listed["failing"], true);
    assert_eq!(listed["last_success_at"], success);
    // A paused job is not stale: nobody expects it to run.
    let (_, paused) = app
        .post(&format!("/api/v1/jobs/{id}/pause"), &key, json!(null))
        .await;
    assert_eq!(paused["stale"], false, "{paused}");
    assert_eq!(metric(&app, "ghbs_jobs_stale").await, 0.0);
}
