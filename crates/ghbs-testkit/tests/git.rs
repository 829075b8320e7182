//! The git smart-HTTP side and the git control methods, driven with the real git CLI, plus
//! injected faults on both sides.

mod common;

use common::{get, git_async, header, private};
use ghbs_testkit::{git, Fault, FaultKind, GitHubStandIn, RepoOptions};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn git_clone_and_push_over_http_with_askpass() {
    let gh = GitHubStandIn::start().await;
    let (_, owner) = gh.add_user("octo");
    let (_, other) = gh.add_user("mallory");
    gh.create_repo("octo", "secret", private());
    let head = gh.commit("octo/secret", "main", &[("README.md", "hello\n")], "init");
    let url = gh.clone_url("octo/secret");
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();

    let err = git_async(t, &["clone", "-q", &url, "anon"], None)
        .await
        .unwrap_err();
    assert!(
        err.contains("Authentication failed") || err.contains("could not read"),
        "{err}"
    );
    assert!(git_async(t, &["clone", "-q", &url, "other"], Some(&other))
        .await
        .is_err());
    git_async(t, &["clone", "-q", &url, "work"], Some(&owner))
        .await
        .unwrap();
    let work = t.join("work");
    assert_eq!(git(&work, &["rev-parse", "HEAD"]), head);
    assert_eq!(
        std::fs::read_to_string(work.join("README.md")).unwrap(),
        "hello\n"
    );
    assert!(gh.requests().iter().all(|r| r.git && !r.counted));
    assert!(!git(&work, &["remote", "get-url", "origin"]).contains("ghp_"));

    std::fs::write(work.join("new.txt"), "pushed\n").unwrap();
    git(&work, &["add", "new.txt"]);
    git(&work, &["commit", "-q", "-m", "push me"]);
    let pushed = git(&work, &["rev-parse", "HEAD"]);
    assert!(
        git_async(&work, &["push", "-q", "origin", "main"], Some(&other))
            .await
            .is_err()
    );
    git_async(&work, &["push", "-q", "origin", "main"], Some(&owner))
        .await
        .unwrap();
    assert_eq!(gh.refs("octo/secret")["refs/heads/main"], pushed);
    let repo: Value = get(&gh, "/repos/octo/secret", Some(&owner))
        .await
        .json()
        .await
        .unwrap();
    assert!(repo["pushed_at"].as_str().unwrap() > repo["created_at"].as_str().unwrap());

    // Public repositories clone anonymously but still refuse anonymous pushes.
    gh.create_repo("octo", "open", RepoOptions::default());
    gh.commits("octo/open", "main", 3);
    let open = gh.clone_url("octo/open");
    git_async(t, &["clone", "-q", &open, "open"], None)
        .await
        .unwrap();
    assert_eq!(git(&t.join("open"), &["rev-list", "--count", "HEAD"]), "3");
    assert!(git_async(
        &t.join("open"),
        &["push", "-q", "origin", "HEAD:refs/heads/x"],
        None
    )
    .await
    .is_err());

    // The wiki is a separate repository that exists once it has a page.
    let wiki = open.replace(".git", ".wiki.git");
    assert!(git_async(t, &["clone", "-q", &wiki, "nowiki"], None)
        .await
        .is_err());
    gh.commit(
        "octo/open.wiki",
        "master",
        &[("Home.md", "# Home\n")],
        "wiki",
    );
    git_async(t, &["clone", "-q", &wiki, "wiki"], None)
        .await
        .unwrap();
    assert!(t.join("wiki/Home.md").exists());
}

#[tokio::test]
async fn refs_tags_rewrites_and_deletes() {
    let gh = GitHubStandIn::start().await;
    gh.add_user("octo");
    gh.create_repo("octo", "r", RepoOptions::default());
    let first = gh.commit("octo/r", "main", &[("a", "1")], "one");
    let second = gh.commit("octo/r", "main", &[("b", "2")], "two");
    let feature = gh.commit("octo/r", "feature", &[("c", "3")], "three");
    let bare = gh.bare_path("octo/r");
    assert_eq!(git(&bare, &["rev-parse", &format!("{feature}^")]), second);
    assert_eq!(git(&bare, &["rev-parse", &format!("{second}^")]), first);
    gh.create_tag("octo/r", "v1", "main");
    gh.create_tag("octo/r", "v0", &first);
    gh.create_annotated_tag("octo/r", "v2", "main", "release two");
    let rewritten = gh.force_push_rewrite("octo/r", "main");
    assert_ne!(rewritten, second);
    assert_eq!(git(&bare, &["rev-parse", &format!("{rewritten}^")]), first);
    gh.delete_ref("octo/r", "refs/heads/feature");

    let refs = gh.refs("octo/r");
    let names: Vec<&str> = refs.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "refs/heads/main",
            "refs/tags/v0",
            "refs/tags/v1",
            "refs/tags/v2"
        ]
    );
    assert_eq!(refs["refs/heads/main"], rewritten);
    assert_eq!(refs["refs/tags/v1"], second);
    assert_eq!(git(&bare, &["cat-file", "-t", "v2"]), "tag");
}

#[tokio::test]
async fn injected_faults_are_observed_in_order() {
    let gh = GitHubStandIn::start().await;
    let (_, token) = gh.add_user("octo");
    gh.create_repo("octo", "r", RepoOptions::default());
    gh.commits("octo/r", "main", 20);

    gh.inject(Fault::new("/user", FaultKind::Status(502), 2));
    assert_eq!(
        get(&gh, "/user", Some(&token)).await.status(),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        get(&gh, "/user", Some(&token)).await.status(),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        get(&gh, "/user", Some(&token)).await.status(),
        StatusCode::OK
    );

    gh.inject(Fault::new(
        "/repos/",
        FaultKind::SecondaryRateLimit {
            retry_after_secs: 7,
        },
        1,
    ));
    let resp = get(&gh, "/repos/octo/r", Some(&token)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&resp, "retry-after"), "7");
    assert!(resp.text().await.unwrap().contains("secondary rate limit"));

    gh.inject(Fault::new(
        "/repos/octo/r",
        FaultKind::Delay(std::time::Duration::from_millis(50)),
        1,
    ));
    assert_eq!(
        get(&gh, "/repos/octo/r", Some(&token)).await.status(),
        StatusCode::OK
    );

    gh.inject(Fault::new("/repos/octo/r", FaultKind::DropMidBody, 1));
    let resp = get(&gh, "/repos/octo/r", Some(&token)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.is_err(), "body should be cut");

    // git: the pack is cut mid-way, so the clone fails; the next one succeeds.
    let tmp = tempfile::tempdir().unwrap();
    let url = gh.clone_url("octo/r");
    gh.inject(Fault::new("/git-upload-pack", FaultKind::DropMidBody, 1));
    let err = git_async(tmp.path(), &["clone", "-q", &url, "a"], None)
        .await
        .unwrap_err();
    assert!(
        err.contains("transfer closed") || err.contains("early EOF"),
        "{err}"
    );
    git_async(tmp.path(), &["clone", "-q", &url, "b"], None)
        .await
        .unwrap();
    assert_eq!(
        git(&tmp.path().join("b"), &["rev-list", "--count", "HEAD"]),
        "20"
    );

    let statuses: Vec<u16> = gh
        .requests()
        .iter()
        .filter(|r| !r.git)
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [502, 502, 200, 403, 200, 200]);
}

#[tokio::test]
async fn generate_history_is_quick_and_complete() {
    let gh = GitHubStandIn::start().await;
    gh.add_user("big");
    gh.create_repo("big", "history", RepoOptions::default());
    gh.generate_history("big/history", "main", 2000, 4 << 20);
    let bare = gh.bare_path("big/history");
    assert_eq!(git(&bare, &["rev-list", "--count", "main"]), "2000");
    let (_, token) = gh.add_user("reader");
    let repo: Value = get(&gh, "/repos/big/history", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert!(repo["size"].as_u64().unwrap() >= 4000, "{}", repo["size"]);
}
