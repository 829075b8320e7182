//! Router tests: every input path gets its malformed-input case, isolation between users, and
//! the committed OpenAPI document matches the served one.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::json;

#[tokio::test]
async fn openapi_document_is_committed() {
    let app = TestApp::new().await;
    let (status, served) = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let generated = ghbs_server::openapi::document();
    if std::env::var("UPDATE_OPENAPI").is_ok() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path)
        .expect("docs/openapi.json exists (UPDATE_OPENAPI=1 writes it)");
    assert_eq!(
        committed, generated,
        "docs/openapi.json is stale: rerun the test with UPDATE_OPENAPI=1"
    );
    assert_eq!(
        served,
        serde_json::from_str::<serde_json::Value>(&committed).unwrap()
    );
    assert!(served["paths"]["/api/v1/jobs"]["post"].is_object());
}

#[tokio::test]
async fn health_and_metrics() {
    let app = TestApp::new().await;
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.0,
        StatusCode::OK
    );
    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.as_str().unwrap().contains("ghbs_jobs 0"), "{body}");
}

#[tokio::test]
async fn login_once_then_keys_work_and_can_be_revoked() {
    let app = TestApp::new().await;
    let (key, _) = app.login("alice").await;
    let (status, me) = app.get("/api/v1/me", &key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["login"], "alice");
    // A second login (new key) for the same GitHub user finds the same account.
    let token2 = app.gh.add_token("alice");
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            Some(&json!({"github_token": token2, "label": "laptop"}).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["user"]["id"], me["id"]);
    let key2 = body["api_key"].as_str().unwrap().to_string();
    let (_, keys) = app.get("/api/v1/keys", &key2).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    // Revoke the first key with the second; the first stops working.
    let first_id = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == false)
        .unwrap()["id"]
        .clone();
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/keys/{first_id}"),
            Some(&key2),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.get("/api/v1/me", &key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "unauthorized");
    // Logout revokes the calling key.
    assert_eq!(
        app.call(Method::POST, "/api/v1/logout", Some(&key2), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/v1/me", &key2).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn bad_credentials_are_refused_with_the_error_shape() {
    let app = TestApp::new().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            Some(&json!({"github_token": "ghp_wrong"}).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "github_token_rejected");
    for (auth, why) in [
        (None, "missing"),
        (Some("Bearer "), "empty"),
        (Some("Basic abc"), "wrong scheme"),
        (Some("Bearer ghbs_notakey"), "unknown"),
    ] {
        let mut req = axum::http::Request::builder().uri("/api/v1/jobs");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = tower::ServiceExt::oneshot(
            ghbs_server::router(app.state.clone()),
            req.body(axum::body::Body::empty()).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{why}");
    }
    for bad in [
        json!({"github_token": ""}),
        json!({"github_token": "a b"}),
        json!({"token": "x"}),
        json!({"github_token": 5}),
    ] {
        let (status, body) = app
            .call(Method::POST, "/api/v1/login", None, Some(&bad.to_string()))
            .await;
        assert!(status.is_client_error(), "{bad}: {status}");
        assert!(
            body["code"].is_string() && body["message"].is_string(),
            "{body}"
        );
    }
}

#[tokio::test]
async fn malformed_job_input_gets_a_4xx_and_a_message() {
    let app = TestApp::new().await;
    let (key, _) = app.login("bob").await;
    let cases: Vec<(String, u16, &str)> = vec![
        ("{not json".into(), 400, "invalid_json"),
        ("[]".into(), 422, "invalid_json"),
        (json!({"target": "o/r"}).to_string(), 422, "invalid_json"),
        (
            json!({"target": "o/r", "schedule": 5}).to_string(),
            422,
            "invalid_json",
        ),
        (
            json!({"target": "o/r", "schedule": "daily", "colour": "red"}).to_string(),
            422,
            "invalid_json",
        ),
        (
            json!({"target": "../etc", "schedule": "daily"}).to_string(),
            400,
            "invalid_target",
        ),
        (
            json!({"target": "a/b/c", "schedule": "daily"}).to_string(),
            400,
            "invalid_target",
        ),
        (
            json!({"target": "a b/c", "schedule": "daily"}).to_string(),
            400,
            "invalid_target",
        ),
        (
            json!({"target": "a/b\u{7}", "schedule": "daily"}).to_string(),
            400,
            "invalid_target",
        ),
        (
            json!({"target": "o/r..x", "schedule": "daily"}).to_string(),
            400,
            "invalid_target",
        ),
        // Another forge's URL is not read as the GitHub repository of the same path.
        (
            json!({"target": "https://gitlab.com/a/b", "schedule": "daily"}).to_string(),
            400,
            "invalid_target",
        ),
        (
            json!({"target": "o/r", "schedule": "30m"}).to_string(),
            400,
            "schedule_too_frequent",
        ),
        (
            json!({"target": "o/r", "schedule": "5h"}).to_string(),
            400,
            "schedule_too_frequent",
        ),
        (
            json!({"target": "o/r", "schedule": "cron */30 * * * *"}).to_string(),
            400,
            "schedule_too_frequent",
        ),
        (
            json!({"target": "o/r", "schedule": "fortnightly-ish"}).to_string(),
            400,
            "invalid_schedule",
        ),
        (
            json!({"target": "o/r", "schedule": "monthly on 32"}).to_string(),
            400,
            "invalid_schedule",
        ),
        (
            json!({"target": "o/r", "schedule": "daily", "timezone": "Mars/Olympus"}).to_string(),
            400,
            "invalid_timezone",
        ),
        (
            json!({"target": "o/r", "schedule": "daily", "retention": {"keep_last": 0}})
                .to_string(),
            400,
            "bad_request",
        ),
        (
            format!(
                "{{\"target\": \"{}\", \"schedule\": \"daily\"}}",
                "x".repeat(100_000)
            ),
            413,
            "payload_too_large",
        ),
    ];
    for (body, want, code) in cases {
        let (status, resp) = app
            .call(Method::POST, "/api/v1/jobs", Some(&key), Some(&body))
            .await;
        assert_eq!(
            status.as_u16(),
            want,
            "{}: {resp}",
            &body[..body.len().min(80)]
        );
        assert_eq!(
            resp["code"],
            code,
            "{}: {resp}",
            &body[..body.len().min(80)]
        );
        assert!(!resp["message"].as_str().unwrap().is_empty());
    }
    let (_, body) = app
        .call(
            Method::POST,
            "/api/v1/jobs",
            Some(&key),
            Some(&json!({"target": "o/r", "schedule": "30m"}).to_string()),
        )
        .await;
    assert!(
        body["message"].as_str().unwrap().contains("daily"),
        "{body}"
    );
    // Nothing was created by any of that.
    let (_, jobs) = app.get("/api/v1/jobs", &key).await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0);
    // Bad ids and query strings.
    assert_eq!(
        app.get("/api/v1/jobs/abc", &key).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/api/v1/jobs/1/runs?limit=0", &key)
            .await
            .0
            .as_u16()
            / 100,
        4
    );
    assert_eq!(
        app.call(
            Method::DELETE,
            "/api/v1/jobs/1?purge=maybe",
            Some(&key),
            None
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(app.get("/api/v1/nope", &key).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn jobs_crud_and_duplicate_target() {
    let app = TestApp::new().await;
    let (key, _) = app.login("carol").await;
    let job = app
        .create_job(&key, "https://github.com/carol/site.git", "daily at 03:00")
        .await;
    assert_eq!(job["target"], "carol/site");
    assert_eq!(job["target_kind"], "repository");
    assert_eq!(job["schedule"], "daily at 03:00");
    assert_eq!(job["next_run_at"], "2026-03-03T03:00:00Z");
    let id = job["id"].as_i64().unwrap();
    let (status, body) = app
        .post(
            "/api/v1/jobs",
            &key,
            json!({"target": "carol/site", "schedule": "weekly on mon"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&format!("job {id}")),
        "{body}"
    );
    let (status, job) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/jobs/{id}"),
            Some(&key),
            Some(
                &json!({"schedule": "weekly on friday at 22:30", "timezone": "Europe/Paris"})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["timezone"], "Europe/Paris");
    assert_eq!(job["next_run_at"], "2026-03-06T21:30:00Z");
    let (_, job) = app
        .post(&format!("/api/v1/jobs/{id}/pause"), &key, json!(null))
        .await;
    assert_eq!(job["state"], "paused");
    let (_, job) = app
        .post(&format!("/api/v1/jobs/{id}/resume"), &key, json!(null))
        .await;
    assert_eq!(job["state"], "active");
    let account = app.create_job(&key, "carol", "every 3 days").await;
    assert_eq!(account["target_kind"], "account");
    let (_, list) = app.get("/api/v1/jobs", &key).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.call(
            Method::DELETE,
            &format!("/api/v1/jobs/{id}"),
            Some(&key),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("/api/v1/jobs/{id}"), &key).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn users_never_see_each_others_jobs() {
    let app = TestApp::new().await;
    let (alice, _) = app.login("alice").await;
    let (mallory, _) = app.login("mallory").await;
    let job = app.create_job(&alice, "alice/secret", "daily").await;
    let id = job["id"].as_i64().unwrap();
    let missing = 999_999;
    for suffix in ["", "/runs", "/snapshots"] {
        let path = format!("/api/v1/jobs/{id}{suffix}");
        let theirs = app.get(&path, &mallory).await;
        let absent = app
            .get(&format!("/api/v1/jobs/{missing}{suffix}"), &mallory)
            .await;
        assert_eq!(theirs.0, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            theirs, absent,
            "another user's job must look exactly like a missing one"
        );
    }
    assert_eq!(
        app.post(&format!("/api/v1/jobs/{id}/runs"), &mallory, json!(null))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post(&format!("/api/v1/jobs/{id}/pause"), &mallory, json!(null))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let patch = app
        .call(
            Method::PATCH,
            &format!("/api/v1/jobs/{id}"),
            Some(&mallory),
            Some(r#"{"schedule":"weekly on mon"}"#),
        )
        .await;
    assert_eq!(patch.0, StatusCode::NOT_FOUND);
    assert_eq!(
        app.call(
            Method::DELETE,
            &format!("/api/v1/jobs/{id}"),
            Some(&mallory),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    let (_, list) = app.get("/api/v1/jobs", &mallory).await;
    assert!(list["jobs"].as_array().unwrap().is_empty());
    // Alice's job is untouched.
    let (status, job) = app.get(&format!("/api/v1/jobs/{id}"), &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["schedule"], "daily");
    assert_eq!(job["state"], "active");
}

#[tokio::test]
async fn run_now_is_rate_limited_per_job() {
    let app = TestApp::with(|c| c.manual_runs_per_hour = 2).await;
    let (key, _) = app.login("dave").await;
    let id = app.create_job(&key, "dave/r", "daily").await["id"]
        .as_i64()
        .unwrap();
    let (s1, r1) = app
        .post(&format!("/api/v1/jobs/{id}/runs"), &key, json!(null))
        .await;
    assert_eq!(s1, StatusCode::ACCEPTED);
    assert_eq!(r1["status"], "queued");
    // While queued, asking again returns the same run.
    let (_, again) = app
        .post(&format!("/api/v1/jobs/{id}/runs"), &key, json!(null))
        .await;
    assert_eq!(again["id"], r1["id"]);
}

#[tokio::test]
async fn registration_allow_list() {
    let app = TestApp::with(|c| c.allow_users = vec!["Erin".into()]).await;
    app.login("erin").await;
    let (_, token) = app.gh.add_user("frank");
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            Some(&json!({"github_token": token}).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "registration_closed");
}

#[tokio::test]
async fn registration_by_organization() {
    let app = TestApp::with(|c| c.allow_orgs = vec!["acme".into()]).await;
    let (_, member_token) = app.gh.add_user("gina");
    let (_, outsider_token) = app.gh.add_user("hank");
    app.gh.add_org("acme", &["gina"]);
    let body_of = |t: &str| json!({"github_token": t}).to_string();
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            Some(&body_of(&member_token)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            Some(&body_of(&outsider_token)),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["message"].as_str().unwrap().contains("hank"), "{body}");
}

#[tokio::test]
async fn the_github_token_is_never_in_an_api_response() {
    let app = TestApp::new().await;
    let (key, token) = app.login("lena").await;
    app.gh.create_repo("lena", "r", Default::default());
    app.gh.commit("lena/r", "main", &[("a", "b")], "c");
    let id = app.create_job(&key, "lena/r", "daily").await["id"]
        .as_i64()
        .unwrap();
    app.post(&format!("/api/v1/jobs/{id}/runs"), &key, json!(null))
        .await;
    app.backup_scheduler().run_due_once().await;
    let mut bodies = Vec::new();
    for path in [
        "/api/v1/me".to_string(),
        "/api/v1/keys".into(),
        "/api/v1/jobs".into(),
        format!("/api/v1/jobs/{id}"),
        format!("/api/v1/jobs/{id}/runs"),
        format!("/api/v1/jobs/{id}/snapshots"),
        "/metrics".into(),
    ] {
        let (status, body) = app.get(&path, &key).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        bodies.push(body.to_string());
    }
    assert!(
        bodies.iter().all(|b| !b.contains(&token)),
        "the token leaked into a response"
    );
    // The stored form is sealed: not even the database file holds it in clear text.
    let db = std::fs::read(app.dir.path().join("state.db")).unwrap_or_default();
    let wal = std::fs::read(app.dir.path().join("state.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
    }
}

/// The header's value as text ("" when absent).
fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// The names of the regular files in an uncompressed tar.
fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(bytes);
    let mut names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn downloads_carry_a_digest_and_honour_if_range_only_for_the_same_file() {
    use base64::Engine as _;
    use sha2::Digest;
    let app = TestApp::new().await;
    let (key, _) = app.login("rita").await;
    app.gh
        .create_repo("rita", "r", ghbs_testkit::RepoOptions::default());
    app.gh
        .commit("rita/r", "main", &[("README.md", "one\n")], "one");
    let id = app.create_job(&key, "rita/r", "daily").await["id"]
        .as_i64()
        .unwrap();
    let sched = app.backup_scheduler();
    app.post(&format!("/api/v1/jobs/{id}/runs"), &key, json!(null))
        .await;
    assert_eq!(sched.run_due_once().await, 1);
    let (_, snaps) = app.get(&format!("/api/v1/jobs/{id}/snapshots"), &key).await;
    let first = snaps["snapshots"][0]["id"].as_i64().unwrap();
    let url =
        |snap: i64, format: &str| format!("/api/v1/snapshots/{snap}/download?format={format}");

    for format in ["bundle", "tar.gz", "zip"] {
        let (status, h, full) = app.get_raw(&url(first, format), &key, &[]).await;
        assert_eq!(status, StatusCode::OK, "{format}");
        let digest = sha2::Sha256::digest(&full);
        let etag = format!("\"{}\"", hex::encode(digest));
        assert_eq!(header(&h, "etag"), etag, "{format}");
        assert_eq!(
            header(&h, "repr-digest"),
            format!(
                "sha-256=:{}:",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        );
        assert_eq!(header(&h, "x-checksum-sha256"), hex::encode(digest));
        let n = full.len();

        // The same file: If-Range matches, the rest comes as 206 with the whole file's digest.
        let (status, h2, part) = app
            .get_raw(
                &url(first, format),
                &key,
                &[("range", b"bytes=10-"), ("if-range", etag.as_bytes())],
            )
            .await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{format}");
        assert_eq!(part, full[10..]);
        assert_eq!(
            header(&h2, "content-range"),
            format!("bytes 10-{}/{n}", n - 1)
        );
        assert_eq!(header(&h2, "repr-digest"), header(&h, "repr-digest"));
        assert_eq!(header(&h2, "etag"), etag);
        // Range without If-Range is still served.
        let (status, _, part) = app
            .get_raw(&url(first, format), &key, &[("range", b"bytes=0-3")])
            .await;
        assert_eq!(
            (status, part.as_slice()),
            (StatusCode::PARTIAL_CONTENT, &full[..4])
        );

        // Any other If-Range (another tag, the weak form, a date, garbage bytes): the whole file.
        let weak = format!("W/{etag}");
        for other in [
            &b"\"0000\""[..],
            weak.as_bytes(),
            b"Tue, 01 Dec 2026 10:00:00 GMT",
            b"\xff\xfe",
        ] {
            let (status, h3, body) = app
                .get_raw(
                    &url(first, format),
                    &key,
                    &[("range", b"bytes=10-"), ("if-range", other)],
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{format} If-Range {other:?}");
            assert_eq!(body, full);
            assert_eq!(header(&h3, "etag"), etag);
        }
        // A range unit we do not serve is ignored (RFC 9110): the whole file.
        let (status, _, body) = app
            .get_raw(&url(first, format), &key, &[("range", b"items=0-5")])
            .await;
        assert_eq!((status, body.len()), (StatusCode::OK, n));

        // Malformed, multiple and unsatisfiable ranges: 416 with an error body, never a 500.
        let past = format!("bytes={n}-");
        for (range, says) in [
            ("bytes=abc", "malformed"),
            ("bytes=-", "malformed"),
            ("bytes", "malformed"),
            ("bytes=9-2", "ends before it starts"),
            ("bytes=0-1,5-6", "only one range"),
            (past.as_str(), "file has"),
        ] {
            let (status, h4, body) = app
                .get_raw(&url(first, format), &key, &[("range", range.as_bytes())])
                .await;
            assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
            assert_eq!(
                header(&h4, "content-range"),
                format!("bytes */{n}"),
                "{range}"
            );
            let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(err["code"], "bad_request", "{range}");
            assert!(
                err["message"].as_str().unwrap().contains(says),
                "{range}: {err}"
            );
        }
        let (status, _, _) = app
            .get_raw(&url(first, format), &key, &[("range", b"bytes=\xff-")])
            .await;
        assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    }

    // A new snapshot lands: the old tag no longer matches, so a resume gets the new whole file.
    let (_, h, old_bundle) = app.get_raw(&url(first, "tar.gz"), &key, &[]).await;
    let old_etag = header(&h, "etag").to_string();
    app.gh
        .commit("rita/r", "main", &[("README.md", "two\n")], "two");
    app.clock.advance(chrono::Duration::days(2));
    assert_eq!(sched.run_due_once().await, 1);
    let (_, snaps) = app.get(&format!("/api/v1/jobs/{id}/snapshots"), &key).await;
    let second = snaps["snapshots"][0]["id"].as_i64().unwrap();
    assert_ne!(second, first);
    let (status, h, body) = app
        .get_raw(
            &url(second, "tar.gz"),
            &key,
            &[("range", b"bytes=100-"), ("if-range", old_etag.as_bytes())],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(header(&h, "etag"), old_etag);
    assert_ne!(body, old_bundle);
    assert_eq!(
        header(&h, "x-checksum-sha256"),
        hex::encode(sha2::Sha256::digest(&body))
    );
}

#[tokio::test]
async fn an_account_job_downloads_one_file_per_repository() {
    let app = TestApp::new().await;
    let (key, _) = app.login("sam").await;
    for name in ["a", "b"] {
        app.gh
            .create_repo("sam", name, ghbs_testkit::RepoOptions::default());
        app.gh.commit(
            &format!("sam/{name}"),
            "main",
            &[("README.md", "hi\n")],
            "first",
        );
    }
    let id = app.create_job(&key, "sam", "daily").await["id"]
        .as_i64()
        .unwrap();
    let sched = app.backup_scheduler();
    app.post(&format!("/api/v1/jobs/{id}/runs"), &key, json!(null))
        .await;
    assert_eq!(sched.run_due_once().await, 1);
    let (_, snaps) = app.get(&format!("/api/v1/jobs/{id}/snapshots"), &key).await;
    let snap = snaps["snapshots"][0]["id"].as_i64().unwrap();
    let get = |q: String| {
        let app = &app;
        let key = &key;
        async move {
            app.get_raw(&format!("/api/v1/snapshots/{snap}/download?{q}"), key, &[])
                .await
        }
    };

    let (status, h, body) = get("format=bundle".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&h, "content-type"), "application/x-tar");
    assert!(
        header(&h, "content-disposition").contains(".bundles.tar\""),
        "{h:?}"
    );
    assert_eq!(
        tar_names(&body),
        ["sam/a.bundle", "sam/b.bundle", "snapshot.json"]
    );
    let (status, h, body) = get("format=zip".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&h, "content-type"), "application/x-tar");
    assert_eq!(
        tar_names(&body),
        ["sam/a.zip", "sam/b.zip", "snapshot.json"]
    );
    let (status, h, body) = get("format=tar.gz".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&h, "content-type"), "application/gzip");
    assert!(body.starts_with(&[0x1f, 0x8b]));
    // One repository of the account, in each format.
    for (format, kind, magic) in [
        ("bundle", "application/x-git-bundle", &b"# v"[..]),
        ("zip", "application/zip", b"PK"),
        ("tar.gz", "application/gzip", &[0x1f, 0x8b]),
    ] {
        let (status, h, body) = get(format!("format={format}&repo=sam/b")).await;
        assert_eq!(status, StatusCode::OK, "{format}");
        assert_eq!(header(&h, "content-type"), kind);
        assert!(body.starts_with(magic), "{format}");
        assert!(
            header(&h, "content-disposition").contains("sam-b-"),
            "{h:?}"
        );
    }
    let (status, _, body) = get("format=bundle&repo=sam/zzz".into()).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test]
async fn a_wrong_method_is_a_405_with_the_error_body() {
    let app = TestApp::new().await;
    let (key, _) = app.login("meth").await;
    for (method, path) in [
        (Method::DELETE, "/api/v1/me"),
        (Method::PUT, "/api/v1/jobs"),
        (Method::POST, "/api/v1/snapshots/1/download"),
    ] {
        let (status, body) = app.call(method.clone(), path, Some(&key), None).await;
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {body}"
        );
        assert_eq!(
            body["code"], "method_not_allowed",
            "{method} {path}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains(method.as_str()),
            "{body}"
        );
    }
    // An unknown route stays a 404 with the body.
    let (status, body) = app
        .call(Method::GET, "/api/v1/nope", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "not_found");
}
