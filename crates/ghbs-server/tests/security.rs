//! The service's own security through the real router: scoped and expiring keys, the live-key
//! cap, the audit trail, security headers, and the limit on failed authentications per client
//! address (with and without a trusted proxy).

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use chrono::Duration;
use common::TestApp;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// One request as if from the TCP peer `peer`, with extra headers; (status, headers, JSON body).
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
    peer: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let mut req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    if let Some(peer) = peer {
        let addr: SocketAddr = peer.parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
    }
    let resp = ghbs_server::router(app.state.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, value)
}

async fn new_key(app: &TestApp, key: &str, body: Value) -> (String, i64) {
    let (status, made) = app.post("/api/v1/keys", key, body).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    (
        made["api_key"].as_str().unwrap().to_owned(),
        made["key"]["id"].as_i64().unwrap(),
    )
}

/// A repository job with one successful run: (full key, job id, run id, snapshot id).
async fn job_with_snapshot(app: &TestApp, login: &str) -> (String, i64, i64, i64) {
    let (key, _) = app.login(login).await;
    app.gh.create_repo(login, "proj", Default::default());
    app.gh
        .commit(&format!("{login}/proj"), "main", &[("a", "1")], "one");
    let job = app
        .create_job(&key, &format!("{login}/proj"), "daily at 09:00")
        .await["id"]
        .as_i64()
        .unwrap();
    let sched = app.backup_scheduler();
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    let (_, runs) = app.get(&format!("/api/v1/jobs/{job}/runs"), &key).await;
    let run = runs["runs"][0]["id"].as_i64().unwrap();
    let (_, snaps) = app
        .get(&format!("/api/v1/jobs/{job}/snapshots"), &key)
        .await;
    let snap = snaps["snapshots"][0]["id"].as_i64().unwrap();
    (key, job, run, snap)
}

/// Every route of the router, every method that changes something: a read-only key gets 403
/// with the error body (or 405 where the route has no such method), and nothing changes.
/// Reads are allowed. The routes come from `ghbs_server::app::api_routes`, the list the router
/// is built from, so a route added later is checked here without editing this test.
#[tokio::test]
async fn a_read_only_key_is_refused_on_every_write_route_and_allowed_on_reads() {
    let app = TestApp::new().await;
    let (full, job, run, snap) = job_with_snapshot(&app, "rita").await;
    let (ro, ro_id) = new_key(
        &app,
        &full,
        json!({"read_only": true, "label": "dashboard"}),
    )
    .await;
    let (_, other_id) = new_key(&app, &full, json!({})).await;
    let (_, before) = app.get(&format!("/api/v1/jobs/{job}"), &full).await;

    let concrete = |path: &str| {
        let id = if path.starts_with("/keys/") {
            other_id
        } else if path.starts_with("/runs/") {
            run
        } else if path.starts_with("/snapshots/") {
            snap
        } else {
            job
        };
        format!("/api/v1{}", path.replace("{id}", &id.to_string()))
    };
    let mut refused = Vec::new();
    for (path, _) in ghbs_server::app::api_routes() {
        // Login takes no key at all; logout only revokes the calling key (checked below).
        if path == "/login" || path == "/logout" {
            continue;
        }
        let url = concrete(path);
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let (status, err) = app.call(method.clone(), &url, Some(&ro), Some("{}")).await;
            if status == StatusCode::METHOD_NOT_ALLOWED {
                continue;
            }
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {url}: {err}");
            assert_eq!(err["code"], "read_only_key", "{method} {url}: {err}");
            assert!(
                err["message"].as_str().unwrap().contains("read-only"),
                "{err}"
            );
            refused.push(format!("{method} {path}"));
        }
        let (status, body) = app.get(&url, &ro).await;
        assert_ne!(status, StatusCode::FORBIDDEN, "GET {url}: {body}");
        assert_ne!(status, StatusCode::UNAUTHORIZED, "GET {url}: {body}");
    }
    eprintln!("write routes refused to a read-only key: {refused:?}");
    for route in [
        "POST /keys",
        "DELETE /keys/{id}",
        "POST /jobs",
        "PATCH /jobs/{id}",
        "DELETE /jobs/{id}",
        "POST /jobs/{id}/pause",
        "POST /jobs/{id}/resume",
        "POST /jobs/{id}/forget-repo",
        "POST /jobs/{id}/runs",
    ] {
        assert!(refused.iter().any(|r| r == route), "{route} in {refused:?}");
    }
    // Reads work, the download included.
    for path in [
        "/api/v1/jobs".to_string(),
        format!("/api/v1/jobs/{job}"),
        format!("/api/v1/jobs/{job}/runs"),
        format!("/api/v1/jobs/{job}/snapshots"),
        format!("/api/v1/snapshots/{snap}"),
        "/api/v1/keys".to_string(),
        "/api/v1/audit".to_string(),
    ] {
        let (status, body) = app.get(&path, &ro).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    assert!(!app.download(&ro, snap, "bundle").await.is_empty());
    // Nothing changed: same job, no run queued, every key still live.
    let (_, after) = app.get(&format!("/api/v1/jobs/{job}"), &full).await;
    assert_eq!(before, after);
    let (_, runs) = app.get(&format!("/api/v1/jobs/{job}/runs"), &full).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    let (_, keys) = app.get("/api/v1/keys", &full).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 3);
    // A read-only key may log itself out, and only itself.
    let (status, _) = app
        .call(Method::POST, "/api/v1/logout", Some(&ro), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get("/api/v1/jobs", &ro).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, keys) = app.get("/api/v1/keys", &full).await;
    let ids: Vec<i64> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_i64().unwrap())
        .collect();
    assert!(!ids.contains(&ro_id) && ids.contains(&other_id), "{ids:?}");
}

#[tokio::test]
async fn keys_show_scope_last_use_and_expiry_and_expired_keys_say_so() {
    let app = TestApp::new().await;
    let (full, _) = app.login("ed").await;
    let (short, short_id) = new_key(
        &app,
        &full,
        json!({"read_only": true, "expires_in_seconds": 3600, "label": "cron"}),
    )
    .await;
    let (status, _) = app.get("/api/v1/jobs", &short).await;
    assert_eq!(status, StatusCode::OK);
    let (_, keys) = app.get("/api/v1/keys", &full).await;
    let listed = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == short_id)
        .unwrap()
        .clone();
    assert_eq!(listed["read_only"], true);
    assert_eq!(listed["label"], "cron");
    assert_eq!(listed["current"], false);
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(listed["expires_at"].clone()).unwrap();
    assert_eq!(expires, common::start_time() + Duration::hours(1));
    assert!(listed["last_used_at"].is_string(), "{listed}");

    app.clock.advance(Duration::seconds(3600));
    let (status, err) = app.get("/api/v1/jobs", &short).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["code"], "key_expired");
    assert!(
        err["message"].as_str().unwrap().contains("expired"),
        "{err}"
    );
    // The full key, which never expires, still works.
    assert_eq!(app.get("/api/v1/jobs", &full).await.0, StatusCode::OK);

    // login --expires: the key it returns expires too.
    let (_, token) = app.gh.add_user("fran");
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            Some(&json!({"github_token": token, "expires_in_seconds": 86400}).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let fran = body["api_key"].as_str().unwrap().to_owned();
    let (_, keys) = app.get("/api/v1/keys", &fran).await;
    assert!(keys["keys"][0]["expires_at"].is_string(), "{keys}");
    assert_eq!(keys["keys"][0]["read_only"], false);
    app.clock.advance(Duration::days(1));
    let (status, err) = app.get("/api/v1/me", &fran).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("key_expired"))
    );
}

#[tokio::test]
async fn malformed_key_requests_are_refused_and_create_nothing() {
    let app = TestApp::new().await;
    let (full, token) = app.login("gia").await;
    for body in [
        r#"{"expires_in_seconds": 0}"#,
        r#"{"expires_in_seconds": 59}"#,
        r#"{"expires_in_seconds": 999999999999}"#,
        r#"{"expires_in_seconds": -5}"#,
        r#"{"expires_in_seconds": "30d"}"#,
        r#"{"read_only": "yes"}"#,
        r#"{"scope": "read"}"#,
        r#"{"label": "a\u0007b"}"#,
        "not json",
    ] {
        let (status, err) = app
            .call(Method::POST, "/api/v1/keys", Some(&full), Some(body))
            .await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {status} {err}"
        );
        assert!(
            err["code"].is_string() && err["message"].is_string(),
            "{err}"
        );
    }
    for extra in [json!(0), json!(-1), json!("30d"), json!(1e12)] {
        let (status, err) = app
            .call(
                Method::POST,
                "/api/v1/login",
                None,
                Some(&json!({"github_token": token, "expires_in_seconds": extra}).to_string()),
            )
            .await;
        assert!(status.is_client_error(), "{extra}: {status} {err}");
        assert!(err["message"].is_string(), "{err}");
    }
    let (_, keys) = app.get("/api/v1/keys", &full).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");
}

#[tokio::test]
async fn live_keys_per_user_are_capped_with_a_clear_error() {
    let app = TestApp::new().await;
    let (full, token) = app.login("hoarder").await;
    let cap = ghbs_server::auth::MAX_LIVE_KEYS_PER_USER;
    for _ in 1..cap {
        new_key(&app, &full, json!({})).await;
    }
    let (status, err) = app.post("/api/v1/keys", &full, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["code"], "too_many_keys");
    assert!(err["message"].as_str().unwrap().contains("revoke"), "{err}");
    let (status, err) = app
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            Some(&json!({"github_token": token}).to_string()),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::CONFLICT, Some("too_many_keys"))
    );
    // Another user is not affected; revoking one frees a place.
    app.login("someone-else").await;
    let (_, keys) = app.get("/api/v1/keys", &full).await;
    let last = keys["keys"].as_array().unwrap().last().unwrap()["id"].clone();
    assert_eq!(keys["keys"].as_array().unwrap().len() as i64, cap);
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/keys/{last}"),
            Some(&full),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    new_key(&app, &full, json!({})).await;
}

/// Each audited action leaves one entry with who, when, from where and with which key; users
/// see only their own; no entry holds a token or a key.
#[tokio::test]
async fn every_audited_action_leaves_an_entry_without_secrets() {
    let app = TestApp::new().await;
    let peer = Some("198.51.100.20:5000");
    let (_, token) = app.gh.add_user("ivy");
    let (status, _, login) = send(
        &app,
        Method::POST,
        "/api/v1/login",
        None,
        Some(&json!({"github_token": token}).to_string()),
        peer,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let key = login["api_key"].as_str().unwrap().to_owned();
    let key_id = login["key_id"].as_i64().unwrap();
    let call = |method: Method, path: String, body: Option<Value>| {
        let key = key.clone();
        let app = &app;
        async move {
            let body = body.map(|b| b.to_string());
            let (status, _, v) =
                send(app, method, &path, Some(&key), body.as_deref(), peer, &[]).await;
            assert!(status.is_success(), "{path}: {status} {v}");
            v
        }
    };
    // An account job over two repositories, one of which goes away (so it can be forgotten).
    for name in ["a", "b"] {
        app.gh.create_repo("ivy", name, Default::default());
        app.gh
            .commit(&format!("ivy/{name}"), "main", &[("f", name)], "one");
    }
    let job = call(
        Method::POST,
        "/api/v1/jobs".into(),
        Some(json!({"target": "ivy", "schedule": "daily at 09:00", "timezone": "UTC"})),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let sched = app.backup_scheduler();
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    app.gh.delete_repo("ivy/b");
    app.clock.advance(Duration::days(1));
    assert_eq!(sched.run_due_once().await, 1);
    let made = call(
        Method::POST,
        "/api/v1/keys".into(),
        Some(json!({"read_only": true})),
    )
    .await;
    let made_key = made["api_key"].as_str().unwrap().to_owned();
    let made_id = made["key"]["id"].as_i64().unwrap();
    call(Method::DELETE, format!("/api/v1/keys/{made_id}"), None).await;
    call(
        Method::PATCH,
        format!("/api/v1/jobs/{job}"),
        Some(json!({"schedule": "daily at 10:00"})),
    )
    .await;
    call(Method::POST, format!("/api/v1/jobs/{job}/pause"), None).await;
    call(Method::POST, format!("/api/v1/jobs/{job}/resume"), None).await;
    call(
        Method::POST,
        format!("/api/v1/jobs/{job}/forget-repo"),
        Some(json!({"repo": "ivy/b"})),
    )
    .await;
    call(Method::POST, format!("/api/v1/jobs/{job}/runs"), None).await;
    let snaps = call(Method::GET, format!("/api/v1/jobs/{job}/snapshots"), None).await;
    let snap = snaps["snapshots"][0]["id"].as_i64().unwrap();
    for q in [
        "format=bundle&repo=ivy/a",
        "format=bundle&repo=ivy/a&purpose=restore",
    ] {
        let (status, _, _) = send(
            &app,
            Method::GET,
            &format!("/api/v1/snapshots/{snap}/download?{q}"),
            Some(&key),
            None,
            peer,
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{q}");
    }
    let (status, _, err) = send(
        &app,
        Method::GET,
        &format!("/api/v1/snapshots/{snap}/download?purpose=steal"),
        Some(&key),
        None,
        peer,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    call(Method::DELETE, format!("/api/v1/jobs/{job}"), None).await;
    let job2 = call(
        Method::POST,
        "/api/v1/jobs".into(),
        Some(json!({"target": "ivy/a", "schedule": "daily", "timezone": "UTC"})),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    call(
        Method::DELETE,
        format!("/api/v1/jobs/{job2}?purge=true"),
        None,
    )
    .await;

    // Mallory's own actions stay hers.
    let (mallory, _) = app.login("mallory").await;
    app.create_job(&mallory, "mallory", "daily").await;

    let (status, audit) = app.get("/api/v1/audit", &key).await;
    assert_eq!(status, StatusCode::OK);
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .rev()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "login",
            "job.create",
            "key.create",
            "key.revoke",
            "job.update",
            "job.pause",
            "job.resume",
            "repo.forget",
            "run.request",
            "snapshot.download",
            "restore",
            "job.delete",
            "job.create",
            "job.purge",
        ]
    );
    for e in entries {
        assert_eq!(e["client_addr"], "198.51.100.20", "{e}");
        assert_eq!(e["key_id"], key_id, "{e}");
        assert!(e["at"].is_string(), "{e}");
    }
    let by = |action: &str| entries.iter().find(|e| e["action"] == action).unwrap();
    assert_eq!(by("repo.forget")["detail"]["repo"], "ivy/b");
    assert_eq!(by("restore")["detail"]["snapshot_id"], snap.to_string());
    assert_eq!(by("snapshot.download")["job_id"], job);
    assert_eq!(by("key.revoke")["detail"]["key_id"], made_id.to_string());
    assert_eq!(by("job.purge")["job_id"], job2);
    // No secret anywhere in the trail, as served or as stored.
    let text = audit.to_string();
    let stored = format!(
        "{:?}",
        app.state.store.list_audit(1, None, 1000).await.unwrap()
    );
    for secret in [
        token.as_str(),
        key.as_str(),
        made_key.as_str(),
        mallory.as_str(),
    ] {
        assert!(!text.contains(secret) && !stored.contains(secret));
        let hash = ghbs_server::crypto::hash_api_key(secret);
        assert!(!text.contains(&hash) && !stored.contains(&hash));
    }
    // Isolation: Mallory sees her login and her job, nothing of Ivy's.
    let (_, theirs) = app.get("/api/v1/audit", &mallory).await;
    let actions: Vec<&str> = theirs["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["job.create", "login"]);
    // Paging: two at a time, newest first, no entry twice.
    let (_, page) = app.get("/api/v1/audit?limit=2", &key).await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    let before = page["next_before"].as_i64().unwrap();
    let (_, next) = app
        .get(&format!("/api/v1/audit?limit=2&before={before}"), &key)
        .await;
    assert_eq!(next["entries"][0]["action"], "job.delete");
    for q in ["limit=0", "limit=5000", "limit=x", "before=-1", "since=1"] {
        let (status, err) = app.get(&format!("/api/v1/audit?{q}"), &key).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {err}");
    }
}

#[tokio::test]
async fn old_audit_entries_are_pruned_after_the_retention() {
    let app =
        TestApp::with(|c| c.audit_retention = std::time::Duration::from_secs(10 * 86_400)).await;
    let (key, _) = app.login("old").await;
    app.clock.advance(Duration::days(9));
    app.create_job(&key, "old/proj", "daily").await;
    app.clock.advance(Duration::days(2));
    ghbs_server::audit::prune_once(&app.state).await;
    let (_, audit) = app.get("/api/v1/audit", &key).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["job.create"], "the login, 11 days old, is gone");
}

#[tokio::test]
async fn security_headers_are_on_every_answer() {
    let app = TestApp::new().await;
    let (key, job, _, snap) = job_with_snapshot(&app, "hed").await;
    let authed = [
        "/api/v1/jobs".to_string(),
        format!("/api/v1/jobs/{job}"),
        format!("/api/v1/snapshots/{snap}/download"),
        "/api/v1/nope".to_string(),
    ];
    for path in &authed {
        let (status, headers, _) = send(&app, Method::GET, path, Some(&key), None, None, &[]).await;
        assert!(status != StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(
            headers["content-security-policy"],
            ghbs_server::security::CSP
        );
        assert!(headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
    }
    // A rejected key and an unauthenticated probe get them too (no-store for the former).
    let (_, headers, _) = send(
        &app,
        Method::GET,
        "/api/v1/jobs",
        Some("ghbs_bad"),
        None,
        None,
        &[],
    )
    .await;
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    for path in ["/healthz", "/api/v1/openapi.json"] {
        let (_, headers, _) = send(&app, Method::GET, path, None, None, None, &[]).await;
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(
            headers["content-security-policy"],
            ghbs_server::security::CSP
        );
        assert!(!headers.contains_key("strict-transport-security"));
    }
}

fn user_requests(app: &TestApp) -> usize {
    app.gh
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/user"))
        .count()
}

/// Garbage logins from one address: the first N are relayed to GitHub (and fail), the rest get
/// 429 with Retry-After before GitHub is asked. Another address is unaffected.
#[tokio::test]
async fn failed_logins_are_limited_per_address_before_github_is_asked() {
    let app = TestApp::with(|c| c.auth_failures_per_minute = 5).await;
    let bad = json!({"github_token": "ghp_garbage"}).to_string();
    app.gh.clear_requests();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let (status, headers, err) = send(
            &app,
            Method::POST,
            "/api/v1/login",
            None,
            Some(&bad),
            Some("203.0.113.5:4000"),
            &[],
        )
        .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&wait), "{wait}");
            assert_eq!(err["code"], "rate_limited");
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        5
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        15
    );
    assert_eq!(
        user_requests(&app),
        5,
        "only the allowed attempts reached GitHub"
    );
    // A real user elsewhere logs in fine.
    let (_, token) = app.gh.add_user("nice");
    let (status, _, body) = send(
        &app,
        Method::POST,
        "/api/v1/login",
        None,
        Some(&json!({"github_token": token}).to_string()),
        Some("203.0.113.6:4000"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A minute later the address may try again.
    app.clock.advance(Duration::seconds(60));
    let (status, _, _) = send(
        &app,
        Method::POST,
        "/api/v1/login",
        None,
        Some(&bad),
        Some("203.0.113.5:4000"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn invalid_api_keys_are_limited_per_address() {
    let app = TestApp::with(|c| c.auth_failures_per_minute = 3).await;
    let (good, _) = app.login("val").await;
    let from = Some("203.0.113.7:1");
    for i in 0..3 {
        let (status, _, _) = send(
            &app,
            Method::GET,
            "/api/v1/jobs",
            Some(&format!("ghbs_{i}")),
            None,
            from,
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, headers, _) = send(
        &app,
        Method::GET,
        "/api/v1/jobs",
        Some("ghbs_x"),
        None,
        from,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key("retry-after"));
    // Elsewhere the good key works; a good key never counts as a failure.
    for _ in 0..10 {
        let (status, _, _) = send(
            &app,
            Method::GET,
            "/api/v1/jobs",
            Some(&good),
            None,
            Some("203.0.113.8:1"),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
}

/// `X-Forwarded-For` decides the address only when the peer is a configured proxy.
#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let proxy = "10.0.0.2:443";
    let bad = json!({"github_token": "ghp_garbage"}).to_string();
    // Trusted: each forwarded client has its own budget.
    let app = TestApp::with(|c| {
        c.auth_failures_per_minute = 2;
        c.trust_proxy = vec!["10.0.0.2".parse().unwrap()];
    })
    .await;
    for client in ["192.0.2.1", "192.0.2.2"] {
        for expect in [401, 401, 429] {
            let (status, _, _) = send(
                &app,
                Method::POST,
                "/api/v1/login",
                None,
                Some(&bad),
                Some(proxy),
                &[("x-forwarded-for", client)],
            )
            .await;
            assert_eq!(status.as_u16(), expect, "{client}");
        }
    }
    // And the audit trail shows the forwarded address.
    let (_, token) = app.gh.add_user("pat");
    let (_, _, login) = send(
        &app,
        Method::POST,
        "/api/v1/login",
        None,
        Some(&json!({"github_token": token}).to_string()),
        Some(proxy),
        &[("x-forwarded-for", "192.0.2.9")],
    )
    .await;
    let key = login["api_key"].as_str().unwrap();
    let (_, audit) = app.get("/api/v1/audit", key).await;
    assert_eq!(audit["entries"][0]["client_addr"], "192.0.2.9");

    // Not trusted: the header is ignored, so changing it does not buy new attempts.
    let app = TestApp::with(|c| c.auth_failures_per_minute = 2).await;
    let mut statuses = Vec::new();
    for client in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        let (status, _, _) = send(
            &app,
            Method::POST,
            "/api/v1/login",
            None,
            Some(&bad),
            Some(proxy),
            &[("x-forwarded-for", client)],
        )
        .await;
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 429]);
}
