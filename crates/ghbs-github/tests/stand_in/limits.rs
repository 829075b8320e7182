//! Primary and secondary rate limits: waiting when it is short, failing with the reset time when
//! it is too long, and the wait measured on the injected clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ghbs_core::{FailureKind, ManualClock, SystemClock};
use ghbs_github::MemoryCache;
use ghbs_testkit::{Fault, FaultKind, RepoOptions};

use crate::common::{Env, Recorder};

#[tokio::test]
async fn exhausted_primary_limit_waits_for_the_reset() {
    let env = Env::start().await;
    let reset = Utc::now() + chrono::Duration::seconds(2);
    env.stand_in.set_rate_limit(&env.token, 0, reset);
    let progress = Arc::new(Recorder::default());
    let s = env.session_with(progress.clone());
    let me = s.user().await.unwrap();
    assert_eq!(me.login, "alice");
    let waits = progress.waits();
    assert!(!waits.is_empty());
    assert_eq!(waits[0].0, "waiting for GitHub rate limit");
    assert_eq!(waits[0].1.timestamp(), reset.timestamp());
    assert_eq!(*progress.resumed.lock().unwrap(), waits.len());
    let statuses: Vec<u16> = env.requests_to("/user").iter().map(|r| r.status).collect();
    assert_eq!(statuses.first(), Some(&403));
    assert_eq!(statuses.last(), Some(&200));
}

#[tokio::test]
async fn a_reset_beyond_the_allowed_wait_fails_as_rate_limited() {
    let env = Env::start_with(
        |c| ghbs_github::ClientConfig {
            max_rate_limit_wait: Duration::from_secs(10),
            ..c
        },
        Arc::new(SystemClock),
    )
    .await;
    let reset = Utc::now() + chrono::Duration::hours(1);
    env.stand_in.set_rate_limit(&env.token, 0, reset);
    let progress = Arc::new(Recorder::default());
    let s = env.session_with(progress.clone());
    let err = s.user().await.unwrap_err();
    match err.kind {
        FailureKind::RateLimited { until } => assert_eq!(until.timestamp(), reset.timestamp()),
        other => panic!("expected RateLimited, got {other:?}: {}", err.message),
    }
    assert!(progress.waits().is_empty());
    // A second session of the same token knows without asking GitHub.
    let before = env.stand_in.requests().len();
    let err = env.session_with(progress).user().await.unwrap_err();
    assert!(matches!(err.kind, FailureKind::RateLimited { .. }));
    assert_eq!(env.stand_in.requests().len(), before);
}

#[tokio::test]
async fn the_primary_wait_follows_the_injected_clock() {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let env = Env::start_with(
        |c| ghbs_github::ClientConfig {
            max_rate_limit_wait: Duration::from_secs(2 * 3600),
            ..c
        },
        clock.clone(),
    )
    .await;
    let reset = Utc::now() + chrono::Duration::hours(1);
    env.stand_in.set_rate_limit(&env.token, 0, reset);
    let progress = Arc::new(Recorder::default());
    let s = env.session_with(progress.clone());
    let started = Instant::now();
    let (me, ()) = tokio::join!(s.user(), async {
        progress.waiting_started.notified().await;
        // The hour passes on the injected clock, and GitHub refills the budget.
        env.stand_in
            .set_rate_limit(&env.token, 5000, Utc::now() + chrono::Duration::hours(1));
        clock.advance(chrono::Duration::minutes(61));
    });
    assert_eq!(me.unwrap().login, "alice");
    assert_eq!(progress.waits()[0].1.timestamp(), reset.timestamp());
    assert!(
        started.elapsed() < Duration::from_secs(600),
        "no real hour was waited"
    );
}

#[tokio::test]
async fn secondary_limit_with_retry_after_is_honoured() {
    let env = Env::start().await;
    env.stand_in
        .create_repo("alice", "r", RepoOptions::default());
    env.stand_in.inject(Fault::new(
        "/repos/alice/r",
        FaultKind::SecondaryRateLimit {
            retry_after_secs: 1,
        },
        1,
    ));
    let progress = Arc::new(Recorder::default());
    let s = env.session_with(progress.clone());
    let started = Instant::now();
    let got = s.repo("alice", "r").await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(got.value.name, "r");
    let statuses: Vec<u16> = env
        .requests_to("/repos/alice/r")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [403, 200]);
    let waits = progress.waits();
    assert_eq!(waits.len(), 1);
    assert_eq!(waits[0].0, "waiting for GitHub secondary rate limit");
}

#[tokio::test]
async fn too_many_requests_without_retry_after_backs_off_then_gives_up() {
    let env = Env::start().await;
    env.stand_in
        .create_repo("alice", "r", RepoOptions::default());
    env.stand_in
        .inject(Fault::new("/repos/alice/r", FaultKind::Status(429), 1));
    let s = env.session(Arc::new(MemoryCache::new()));
    assert_eq!(s.repo("alice", "r").await.unwrap().value.name, "r");

    env.stand_in
        .inject(Fault::new("/repos/alice/r", FaultKind::Status(429), 100));
    let err = s.repo("alice", "r").await.unwrap_err();
    assert!(
        matches!(err.kind, FailureKind::RateLimited { .. }),
        "{err:?}"
    );
    assert_eq!(err.status, Some(429));
}
