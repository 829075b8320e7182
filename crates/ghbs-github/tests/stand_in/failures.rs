//! Transient faults are retried, permanent ones are classified, and no error shows the token.

use std::sync::Arc;
use std::time::Duration;

use ghbs_core::{FailureKind, Secret, SystemClock};
use ghbs_github::{GitHub, GitHubError, MemoryCache, NoProgress, ValidatorCache};
use ghbs_testkit::{Fault, FaultKind, RepoOptions};

use crate::common::{fast_config, Env};

#[tokio::test]
async fn two_502s_then_success() {
    let env = Env::start().await;
    env.stand_in
        .create_repo("alice", "r", RepoOptions::default());
    env.stand_in
        .inject(Fault::new("/repos/alice/r", FaultKind::Status(502), 2));
    let s = env.session(Arc::new(MemoryCache::new()));
    let got = s.repo("alice", "r").await.unwrap();
    assert_eq!(got.value.full_name, "alice/r");
    let statuses: Vec<u16> = env
        .requests_to("/repos/alice/r")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [502, 502, 200]);
    assert_eq!(s.counters().counted, 3);
}

#[tokio::test]
async fn endless_502_fails_as_transient_after_max_retries() {
    let env = Env::start().await;
    env.stand_in
        .create_repo("alice", "r", RepoOptions::default());
    env.stand_in
        .inject(Fault::new("/repos/alice/r", FaultKind::Status(502), 100));
    let s = env.session(Arc::new(MemoryCache::new()));
    let err = s.repo("alice", "r").await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Transient);
    assert_eq!(err.status, Some(502));
    assert!(err.message.contains("502"), "{}", err.message);
    assert!(err.message.contains("/repos/alice/r"), "{}", err.message);
    assert!(err.message.contains("next run"), "{}", err.message);
    // max_retries = 3: the first attempt and three retries.
    assert_eq!(env.requests_to("/repos/alice/r").len(), 4);
}

#[tokio::test]
async fn a_cut_body_is_retried_and_never_cached() {
    let env = Env::start().await;
    env.stand_in
        .create_repo("alice", "r", RepoOptions::default());
    env.stand_in
        .inject(Fault::new("/repos/alice/r", FaultKind::DropMidBody, 1));
    let cache = Arc::new(MemoryCache::new());
    let s = env.session(cache.clone());
    let got = s.repo("alice", "r").await.unwrap();
    assert_eq!(got.value.name, "r");
    assert_eq!(env.requests_to("/repos/alice/r").len(), 2);
    let url = format!("{}/repos/alice/r", env.stand_in.api_url());
    let cached = cache.get(&url).await.expect("the good answer is cached");
    assert!(serde_json::from_slice::<serde_json::Value>(&cached.body).is_ok());
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retried() {
    let stand_in = ghbs_testkit::GitHubStandIn::start().await;
    let (_, token) = stand_in.add_user("alice");
    stand_in.create_repo("alice", "r", RepoOptions::default());
    stand_in.inject(Fault::new(
        "/repos/alice/r",
        FaultKind::Delay(Duration::from_secs(3)),
        1,
    ));
    let client = GitHub::with_request_timeout(
        fast_config(stand_in.api_url()),
        Arc::new(SystemClock),
        Duration::from_millis(300),
    )
    .unwrap();
    let s = client.session(
        Secret::new(token),
        Arc::new(MemoryCache::new()),
        Arc::new(NoProgress),
    );
    let got = s.repo("alice", "r").await.unwrap();
    assert_eq!(got.value.name, "r");
}

#[tokio::test]
async fn revoked_token_is_unauthorized() {
    let env = Env::start().await;
    env.stand_in.revoke_token(&env.token);
    let err = env
        .session(Arc::new(MemoryCache::new()))
        .user()
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Unauthorized);
    assert_eq!(err.status, Some(401));
    assert!(err.message.contains("login"), "{}", err.message);
}

#[tokio::test]
async fn deleted_repository_is_not_found() {
    let env = Env::start().await;
    env.stand_in
        .create_repo("alice", "gone", RepoOptions::default());
    let s = env.session(Arc::new(MemoryCache::new()));
    s.repo("alice", "gone").await.unwrap();
    env.stand_in.delete_repo("alice/gone");
    let err = s.repo("alice", "gone").await.unwrap_err();
    assert_eq!(err.kind, FailureKind::NotFound);
    assert_eq!(err.status, Some(404));
    assert!(err.message.contains("alice/gone"), "{}", err.message);
    assert!(err.message.contains("backups are kept"), "{}", err.message);
}

#[tokio::test]
async fn other_statuses_are_permanent_with_githubs_message() {
    let env = Env::start().await;
    env.stand_in
        .create_repo("alice", "r", RepoOptions::default());
    env.stand_in
        .inject(Fault::new("/repos/alice/r", FaultKind::Status(422), 1));
    env.stand_in
        .inject(Fault::new("/repos/alice/r", FaultKind::Status(451), 1));
    let s = env.session(Arc::new(MemoryCache::new()));
    let err = s.repo("alice", "r").await.unwrap_err();
    assert_eq!((err.kind, err.status), (FailureKind::Permanent, Some(422)));
    assert!(err.message.contains("Unprocessable"), "{}", err.message);
    let err = s.repo("alice", "r").await.unwrap_err();
    assert_eq!((err.kind, err.status), (FailureKind::Permanent, Some(451)));
}

#[tokio::test]
async fn the_token_appears_in_no_error_or_debug_output() {
    let env = Env::start().await;
    env.stand_in
        .create_repo("alice", "r", RepoOptions::default());
    env.stand_in
        .inject(Fault::new("/repos/alice/r", FaultKind::Status(503), 100));
    let s = env.session(Arc::new(MemoryCache::new()));
    let mut errors: Vec<GitHubError> = Vec::new();
    errors.push(s.repo("alice", "r").await.unwrap_err());
    env.stand_in.clear_faults();
    errors.push(s.repo("alice", "missing").await.unwrap_err());
    errors.push(s.account_repos("nobody").await.unwrap_err());
    errors.push(s.get_json("/no/such/thing").await.unwrap_err());
    env.stand_in.revoke_token(&env.token);
    errors.push(s.get_json("/repos/alice/r/issues").await.unwrap_err());
    // A client that cannot connect at all.
    let dead = GitHub::new(
        fast_config("http://127.0.0.1:9/api/v3".to_owned()),
        Arc::new(SystemClock),
    )
    .unwrap();
    let ds = dead.session(
        Secret::new(env.token.clone()),
        Arc::new(MemoryCache::new()),
        Arc::new(NoProgress),
    );
    let e = ds.user().await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Transient);
    errors.push(e);

    assert_eq!(errors.len(), 6);
    for e in &errors {
        for shown in [format!("{e}"), format!("{e:?}"), format!("{e:#?}")] {
            assert!(!shown.contains(&env.token), "token leaked: {shown}");
        }
    }
    for shown in [
        format!("{s:?}"),
        format!("{ds:?}"),
        format!("{:?}", env.client),
    ] {
        assert!(!shown.contains(&env.token), "token leaked: {shown}");
    }
}
