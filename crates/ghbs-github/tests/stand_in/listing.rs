//! Pagination, conditional requests, account listing and single resources.

use std::sync::Arc;

use ghbs_github::MemoryCache;
use ghbs_testkit::RepoOptions;

use crate::common::Env;

fn private() -> RepoOptions {
    RepoOptions {
        private: true,
        ..RepoOptions::default()
    }
}

#[tokio::test]
async fn lists_250_repositories_over_three_pages_then_costs_only_304s() {
    let env = Env::start().await;
    for i in 0..250 {
        let opts = if i % 10 == 0 {
            private()
        } else {
            RepoOptions::default()
        };
        env.stand_in.create_repo("alice", &format!("r{i:03}"), opts);
    }
    let cache = Arc::new(MemoryCache::new());

    let first = env.session(cache.clone());
    let repos = first.account_repos("alice").await.unwrap();
    assert_eq!(repos.len(), 250);
    assert_eq!(repos.iter().filter(|r| r.private).count(), 25);
    assert!(repos
        .iter()
        .all(|r| r.owner == "alice" && r.clone_url.ends_with(".git")));
    let pages = env.requests_to("/user/repos");
    assert_eq!(pages.len(), 3, "{pages:#?}");
    assert!(pages.iter().all(|r| r.counted && r.status == 200));
    assert!(pages[0].path.contains("per_page=100"));
    assert!(pages[2].path.contains("page=3"));
    assert_eq!(first.counters().counted, 4); // /user + 3 pages
    assert_eq!(first.counters().conditional_hits, 0);

    env.stand_in.clear_requests();
    let second = env.session(cache.clone());
    let again = second.account_repos("alice").await.unwrap();
    assert_eq!(again, repos);
    let log = env.stand_in.requests();
    assert_eq!(log.len(), 4, "{log:#?}");
    assert!(
        log.iter().all(|r| r.conditional_hit && !r.counted),
        "{log:#?}"
    );
    assert_eq!(second.counters().counted, 0);
    assert_eq!(second.counters().conditional_hits, 4);

    // The generic list reports that nothing changed.
    let listed = second
        .get_json_pages("/user/repos?affiliation=owner")
        .await
        .unwrap();
    assert!(listed.not_modified);
    assert_eq!(listed.value.len(), 250);

    // A change shows up: page 1 is fetched again (counted), the others stay free.
    env.stand_in
        .create_repo("alice", "a-new-first", RepoOptions::default());
    env.stand_in.clear_requests();
    let third = env.session(cache);
    let listed = third
        .get_json_pages("/user/repos?affiliation=owner")
        .await
        .unwrap();
    assert!(!listed.not_modified);
    assert_eq!(listed.value.len(), 251);
    assert!(third.counters().counted >= 1);
}

#[tokio::test]
async fn organization_and_other_user_accounts() {
    let env = Env::start().await;
    env.stand_in.add_org("acme", &["alice"]);
    env.stand_in.add_user("bob");
    env.stand_in
        .create_repo("acme", "tool", RepoOptions::default());
    env.stand_in.create_repo("acme", "secret", private());
    env.stand_in
        .create_repo("bob", "pub", RepoOptions::default());
    env.stand_in.create_repo("bob", "hidden", private());
    env.stand_in
        .create_repo("alice", "mine", RepoOptions::default());
    let s = env.session(Arc::new(MemoryCache::new()));

    let mut org: Vec<String> = s
        .account_repos("acme")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.full_name)
        .collect();
    org.sort();
    assert_eq!(org, ["acme/secret", "acme/tool"]);

    let bob: Vec<String> = s
        .account_repos("bob")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.full_name)
        .collect();
    assert_eq!(bob, ["bob/pub"]);
    assert_eq!(env.requests_to("/orgs/bob/repos")[0].status, 404);

    // The token's own account lists only what it owns, not its organizations' repositories.
    let mine: Vec<String> = s
        .account_repos("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.full_name)
        .collect();
    assert_eq!(mine, ["alice/mine"]);

    let err = s.account_repos("nobody-here").await.unwrap_err();
    assert_eq!(err.kind, ghbs_core::FailureKind::NotFound);
    assert!(err.message.contains("nobody-here"), "{}", err.message);
}

#[tokio::test]
async fn user_repo_and_single_documents() {
    let env = Env::start().await;
    let id = env.stand_in.create_repo(
        "alice",
        "proj",
        RepoOptions {
            private: true,
            archived: true,
            has_wiki: false,
            default_branch: "trunk".to_owned(),
            ..RepoOptions::default()
        },
    );
    let cache = Arc::new(MemoryCache::new());
    let s = env.session(cache.clone());
    let me = s.user().await.unwrap();
    assert_eq!(me.login, "alice");

    let repo = s.repo("alice", "proj").await.unwrap();
    assert_eq!(repo.moved_to, None);
    assert!(!repo.not_modified);
    let r = repo.value;
    assert_eq!(
        (r.id, r.full_name.as_str(), r.name.as_str()),
        (id, "alice/proj", "proj")
    );
    assert!(r.private && r.archived && !r.has_wiki && !r.fork);
    assert_eq!(r.default_branch.as_deref(), Some("trunk"));
    assert_eq!(r.clone_url, env.stand_in.clone_url("alice/proj"));

    // The same call again is a conditional hit serving the same value.
    let again = s.repo("alice", "proj").await.unwrap();
    assert!(again.not_modified);
    assert_eq!(again.value, r);
    let doc = s.get_json("/repos/alice/proj").await.unwrap();
    assert!(doc.not_modified);
    assert_eq!(doc.value["full_name"], "alice/proj");
    assert_eq!(s.counters().conditional_hits, 2);

    // Names that could change the shape of the URL are refused before any request.
    let before = env.stand_in.requests().len();
    let err = s.repo("alice", "..").await.unwrap_err();
    assert_eq!(err.kind, ghbs_core::FailureKind::Permanent);
    assert!(s.get_json("//elsewhere.example/x").await.is_err());
    assert_eq!(env.stand_in.requests().len(), before);
}

#[tokio::test]
async fn renamed_repository_is_followed_and_reported() {
    let env = Env::start().await;
    let id = env
        .stand_in
        .create_repo("alice", "old-name", RepoOptions::default());
    env.stand_in.rename_repo("alice/old-name", "new-name");
    let s = env.session(Arc::new(MemoryCache::new()));
    let got = s.repo("alice", "old-name").await.unwrap();
    assert_eq!(got.moved_to.as_deref(), Some("alice/new-name"));
    assert_eq!(got.value.id, id);
    assert_eq!(got.value.full_name, "alice/new-name");
    let hops: Vec<u16> = env
        .requests_to("/api/v3/")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(hops, [301, 200]);

    env.stand_in.add_user("carol");
    env.stand_in.transfer_repo("alice/new-name", "carol");
    let got = s.repo("alice", "new-name").await.unwrap();
    assert_eq!(got.moved_to.as_deref(), Some("carol/new-name"));
}
