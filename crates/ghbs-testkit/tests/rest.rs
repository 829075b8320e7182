//! The REST side of the stand-in, driven with a real HTTP client.

mod common;

use chrono::{Duration, Utc};
use common::{get, header, private};
use ghbs_testkit::{GitHubStandIn, RepoOptions};
use reqwest::{Client, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn user_endpoint_with_and_without_credentials() {
    let gh = GitHubStandIn::start().await;
    let (id, token) = gh.add_user("Octo");
    let resp = get(&gh, "/user", Some(&token)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "x-ratelimit-limit"), "5000");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["login"], "Octo");
    assert_eq!(body["id"], id);
    assert_eq!(body["type"], "User");

    let bearer = Client::new()
        .get(format!("{}/user", gh.api_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
    assert_eq!(
        get(&gh, "/user", None).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let second = gh.add_token("octo");
    gh.revoke_token(&token);
    let resp = get(&gh, "/user", Some(&token)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["message"],
        "Bad credentials"
    );
    assert_eq!(
        get(&gh, "/user", Some(&second)).await.status(),
        StatusCode::OK
    );

    let log = gh.requests();
    assert_eq!(log.len(), 5);
    assert_eq!(log[0].token_login.as_deref(), Some("octo"));
    assert!(log[0].counted);
    assert_eq!(log[2].token_login, None);
}

#[tokio::test]
async fn lists_paginate_with_link_headers() {
    let gh = GitHubStandIn::start().await;
    let (_, token) = gh.add_user("many");
    for i in 0..250 {
        let opts = if i % 10 == 0 {
            private()
        } else {
            RepoOptions::default()
        };
        gh.create_repo("many", &format!("repo-{i:03}"), opts);
    }
    let mut names = Vec::new();
    let mut url = Some(format!("{}/user/repos?per_page=100", gh.api_url()));
    let mut pages = 0;
    while let Some(u) = url {
        let resp = Client::new()
            .get(&u)
            .header("Authorization", format!("token {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let link = header(&resp, "link");
        if pages == 0 {
            assert!(link.contains("page=3>; rel=\"last\""), "{link}");
            assert!(
                link.starts_with(&format!(
                    "<{}/user/repos?per_page=100&page=2>",
                    gh.api_url()
                )),
                "{link}"
            );
        }
        url = link
            .split(", ")
            .find(|l| l.ends_with("rel=\"next\""))
            .map(|l| l[1..l.find('>').unwrap()].to_owned());
        let page: Vec<Value> = resp.json().await.unwrap();
        names.extend(
            page.iter()
                .map(|r| r["full_name"].as_str().unwrap().to_owned()),
        );
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 250);
    assert_eq!(names[0], "many/repo-000");
    assert_eq!(names[249], "many/repo-249");

    // Default page size is 30; anonymous callers see only the public repositories.
    let resp = get(&gh, "/users/many/repos", None).await;
    assert!(header(&resp, "link").contains("page=8>; rel=\"last\""));
    assert_eq!(resp.json::<Vec<Value>>().await.unwrap().len(), 30);
    let resp = get(&gh, "/users/many/repos?per_page=100&page=3", None).await;
    assert_eq!(resp.json::<Vec<Value>>().await.unwrap().len(), 25);
}

#[tokio::test]
async fn org_repos_and_private_visibility() {
    let gh = GitHubStandIn::start().await;
    let (_, alice) = gh.add_user("alice");
    let (_, bob) = gh.add_user("bob");
    gh.add_org("acme", &["alice"]);
    gh.create_repo("acme", "open", RepoOptions::default());
    gh.create_repo("acme", "secret", private());
    gh.create_repo("bob", "diary", private());

    let count = |v: Value| v.as_array().unwrap().len();
    assert_eq!(
        count(
            get(&gh, "/orgs/acme/repos", Some(&alice))
                .await
                .json()
                .await
                .unwrap()
        ),
        2
    );
    assert_eq!(
        count(
            get(&gh, "/orgs/acme/repos", Some(&bob))
                .await
                .json()
                .await
                .unwrap()
        ),
        1
    );
    assert_eq!(
        count(
            get(&gh, "/user/repos", Some(&alice))
                .await
                .json()
                .await
                .unwrap()
        ),
        2
    );
    assert_eq!(
        count(
            get(&gh, "/user/repos", Some(&bob))
                .await
                .json()
                .await
                .unwrap()
        ),
        1
    );

    assert_eq!(
        get(&gh, "/repos/bob/diary", Some(&alice)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&gh, "/repos/bob/diary", None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&gh, "/repos/acme/secret", Some(&bob)).await.status(),
        StatusCode::NOT_FOUND
    );
    let repo: Value = get(&gh, "/repos/acme/secret", Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(repo["full_name"], "acme/secret");
    assert_eq!(repo["private"], true);
    assert_eq!(repo["owner"]["type"], "Organization");
    assert_eq!(repo["default_branch"], "main");
    assert_eq!(
        repo["clone_url"],
        format!("{}/git/acme/secret.git", gh.base_url())
    );
    let repo: Value = get(&gh, "/repos/bob/diary", Some(&bob))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(repo["owner"]["login"], "bob");
}

#[tokio::test]
async fn etag_gives_304_without_spending_rate_limit() {
    let gh = GitHubStandIn::start().await;
    let (_, token) = gh.add_user("octo");
    gh.create_repo("octo", "r", RepoOptions::default());
    let first = get(&gh, "/repos/octo/r", Some(&token)).await;
    let etag = header(&first, "etag");
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(header(&first, "x-ratelimit-remaining"), "4999");

    let again = Client::new()
        .get(format!("{}/repos/octo/r", gh.api_url()))
        .header("Authorization", format!("token {token}"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&again, "x-ratelimit-remaining"), "4999");
    assert!(again.bytes().await.unwrap().is_empty());
    let log = gh.requests();
    assert!(log[1].conditional_hit && !log[1].counted);
    assert_eq!(gh.rate_limit_remaining(&token), 4999);

    // A change to the repository changes the body, so the old ETag no longer matches.
    gh.commit("octo/r", "main", &[("a.txt", "a")], "first");
    let changed = Client::new()
        .get(format!("{}/repos/octo/r", gh.api_url()))
        .header("Authorization", format!("token {token}"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(header(&changed, "x-ratelimit-remaining"), "4998");
}

#[tokio::test]
async fn rate_limit_exhaustion_then_reset() {
    let gh = GitHubStandIn::start().await;
    let (_, token) = gh.add_user("octo");
    let reset = Utc::now() + Duration::hours(1);
    gh.set_rate_limit(&token, 1, reset);
    assert_eq!(
        get(&gh, "/user", Some(&token)).await.status(),
        StatusCode::OK
    );
    let resp = get(&gh, "/user", Some(&token)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&resp, "x-ratelimit-remaining"), "0");
    assert_eq!(
        header(&resp, "x-ratelimit-reset"),
        reset.timestamp().to_string()
    );
    let msg = resp.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.starts_with("API rate limit exceeded for user"), "{msg}");
    assert!(!gh.requests()[1].counted);

    // Once the reset time has passed, a fresh window starts.
    gh.set_rate_limit(&token, 0, Utc::now() - Duration::seconds(1));
    let resp = get(&gh, "/user", Some(&token)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "x-ratelimit-remaining"), "4999");
    assert_eq!(header(&resp, "x-ratelimit-used"), "1");
}

#[tokio::test]
async fn rename_gives_301_and_delete_gives_404() {
    let gh = GitHubStandIn::start().await;
    let (_, token) = gh.add_user("octo");
    let id = gh.create_repo("octo", "old", RepoOptions::default());
    gh.rename_repo("octo/old", "new");
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/repos/octo/old", gh.api_url()))
        .header("Authorization", format!("token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::MOVED_PERMANENTLY);
    let location = header(&resp, "location");
    assert_eq!(location, format!("{}/repositories/{id}", gh.api_url()));
    assert_eq!(
        resp.json::<Value>().await.unwrap()["message"],
        "Moved Permanently"
    );
    let moved: Value = client
        .get(&location)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(moved["full_name"], "octo/new");
    // The default client follows the redirect, as GitHub clients do.
    let followed: Value = get(&gh, "/repos/octo/old", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(followed["id"], id);

    gh.delete_repo("octo/new");
    for path in [
        "/repos/octo/new",
        "/repos/octo/old",
        &format!("/repositories/{id}"),
    ] {
        let resp = get(&gh, path, Some(&token)).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(resp.json::<Value>().await.unwrap()["message"], "Not Found");
    }
}

#[tokio::test]
async fn metadata_lists_filter_and_paginate() {
    let gh = GitHubStandIn::start().await;
    let (_, token) = gh.add_user("octo");
    gh.create_repo("octo", "r", RepoOptions::default());
    let one = gh.create_issue("octo/r", "Bug", "it breaks");
    let pr = gh.create_pull("octo/r", "Fix", "fix", "main");
    gh.add_issue_comment("octo/r", one, "me too");
    gh.add_review("octo/r", pr, "APPROVED", "lgtm");
    gh.add_review_comment("octo/r", pr, "src/lib.rs", "nit");
    gh.create_label("octo/r", "bug", "d73a4a");
    gh.create_milestone("octo/r", "v1");
    gh.create_release("octo/r", "v1.0", "First");
    gh.edit_issue("octo/r", one, serde_json::json!({"state": "closed"}));

    let list = |path: &'static str| {
        let gh = &gh;
        let token = token.clone();
        async move {
            get(gh, path, Some(&token))
                .await
                .json::<Vec<Value>>()
                .await
                .unwrap()
        }
    };
    assert_eq!(list("/repos/octo/r/issues").await.len(), 1);
    let all = list("/repos/octo/r/issues?state=all&direction=asc").await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["state"], "closed");
    assert!(all[1]["pull_request"].is_object());
    assert_eq!(
        list("/repos/octo/r/issues?state=all&since=2999-01-01T00:00:00Z")
            .await
            .len(),
        0
    );
    assert_eq!(
        list("/repos/octo/r/issues/1/comments").await[0]["body"],
        "me too"
    );
    assert_eq!(
        list("/repos/octo/r/pulls?state=all").await[0]["head"]["ref"],
        "fix"
    );
    assert_eq!(
        list("/repos/octo/r/pulls/2/reviews").await[0]["state"],
        "APPROVED"
    );
    assert_eq!(
        list("/repos/octo/r/pulls/2/comments").await[0]["path"],
        "src/lib.rs"
    );
    assert_eq!(list("/repos/octo/r/labels").await[0]["name"], "bug");
    assert_eq!(
        list("/repos/octo/r/milestones?state=all").await[0]["title"],
        "v1"
    );
    assert_eq!(list("/repos/octo/r/releases").await[0]["tag_name"], "v1.0");
    let page = get(
        &gh,
        "/repos/octo/r/issues?state=all&per_page=1",
        Some(&token),
    )
    .await;
    assert!(header(&page, "link").contains("rel=\"next\""));
}
