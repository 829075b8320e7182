//! Notifications end to end (issue 11): real runs against the GitHub stand-in raise events, a
//! real HTTP sink on loopback verifies each webhook's signature, a real SMTP sink receives the
//! e-mail, a sink that is down is retried, and no secret reaches a log line or a payload.

mod common;

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, StatusCode};
use chrono::Duration;
use common::TestApp;
use ghbs_server::notify::{check_stale, Deliverer, SmtpConfig, SmtpTls};
use ghbs_testkit::{Fault, FaultKind, SmtpSink};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// One request the webhook sink received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("header {name} missing"))
            .to_str()
            .unwrap()
    }
}

/// A real HTTP server on loopback that keeps what it receives and answers with the queued
/// statuses (200 once the queue is empty).
struct HookSink {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HookSink {
    async fn start() -> HookSink {
        Self::on(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    fn on(listener: tokio::net::TcpListener) -> HookSink {
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(VecDeque::new()));
        let (r, a) = (received.clone(), answers.clone());
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
                let (r, a) = (r.clone(), a.clone());
                async move {
                    r.lock().unwrap().push(Received {
                        path: uri.path().to_owned(),
                        headers,
                        body: body.to_vec(),
                    });
                    let code = a.lock().unwrap().pop_front().unwrap_or(200);
                    StatusCode::from_u16(code).unwrap()
                }
            },
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        HookSink {
            port,
            received,
            answers,
            task,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn answer(&self, codes: &[u16]) {
        self.answers.lock().unwrap().extend(codes);
    }
}

impl Drop for HookSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Verifies `X-GHBS-Signature-256` the way a receiver would: HMAC-SHA256 of the raw body.
fn assert_signed(r: &Received, secret: &str) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&r.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(r.header("x-ghbs-signature-256"), expected);
    let mut wrong = Hmac::<Sha256>::new_from_slice(b"another secret").unwrap();
    wrong.update(&r.body);
    assert_ne!(
        r.header("x-ghbs-signature-256"),
        format!("sha256={}", hex::encode(wrong.finalize().into_bytes()))
    );
    assert!(r.header("x-ghbs-timestamp").parse::<i64>().unwrap() > 0);
    assert_eq!(
        r.header("x-ghbs-delivery"),
        r.json()["delivery_id"].to_string()
    );
    assert_eq!(r.header("x-ghbs-event"), r.json()["event"]);
    assert_eq!(r.header("content-type"), "application/json");
}

/// Everything every tracing event on this thread writes (the tests run on one thread).
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

impl LogBuf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn capture_logs() -> (LogBuf, tracing::subscriber::DefaultGuard) {
    let buf = LogBuf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(buf.clone())
        .finish();
    (buf, tracing::subscriber::set_default(subscriber))
}

async fn add_webhook(app: &TestApp, key: &str, url: &str, extra: Value) -> (i64, String) {
    let mut body = json!({"kind": "webhook", "url": url});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, created) = app.post("/api/v1/notifications", key, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["target"]["id"].as_i64().unwrap(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

async fn run_job(app: &TestApp, key: &str, job: i64) {
    let (status, body) = app
        .post(&format!("/api/v1/jobs/{job}/runs"), key, json!(null))
        .await;
    assert!(status.is_success(), "{body}");
    assert_eq!(app.backup_scheduler().run_due_once().await, 1);
}

async fn last_status(app: &TestApp, key: &str, job: i64) -> String {
    let (_, job) = app.get(&format!("/api/v1/jobs/{job}"), key).await;
    job["last_run"]["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn real_runs_raise_signed_webhooks_and_no_secret_is_logged() {
    let (logs, _guard) = capture_logs();
    let app = TestApp::new().await;
    let sink = HookSink::start().await;
    let (key, token) = app.login("alice").await;
    app.gh.create_repo("alice", "r", Default::default());
    app.gh.commit("alice/r", "main", &[("a", "1")], "one");
    let job = app.create_job(&key, "alice/r", "daily").await["id"]
        .as_i64()
        .unwrap();
    let secret_path = "/hooks/T0001/B0002/xoxb-very-secret-path";
    let url = format!("http://127.0.0.1:{}{secret_path}", sink.port);
    let (target, secret) = add_webhook(&app, &key, &url, json!({})).await;
    assert!(secret.starts_with("whsec_") && secret.len() > 40);
    let deliverer = Deliverer::new(app.state.clone()).unwrap();

    // 1. GitHub fails: the run fails.
    app.gh
        .inject(Fault::new("/repos/alice/r", FaultKind::Status(502), 100));
    run_job(&app, &key, job).await;
    app.gh.clear_faults();
    assert_eq!(last_status(&app, &key, job).await, "failed");
    // 2. It works again: recovered.
    run_job(&app, &key, job).await;
    assert_eq!(last_status(&app, &key, job).await, "succeeded");
    // 3. Another success is no news.
    run_job(&app, &key, job).await;
    // 4. Gone upstream: partial (the last copy is carried forward).
    app.gh.delete_repo("alice/r");
    run_job(&app, &key, job).await;
    assert_eq!(last_status(&app, &key, job).await, "partial");
    // 5. The token is revoked: needs-login.
    app.gh.revoke_token(&token);
    run_job(&app, &key, job).await;

    // Nothing was sent while the runs happened: delivery is the background task's.
    assert!(sink.received().is_empty());
    assert_eq!(deliverer.deliver_due_once().await, 4);
    let got = sink.received();
    let events: Vec<_> = got.iter().map(|r| r.json()["event"].clone()).collect();
    assert_eq!(
        events,
        vec![
            json!("failed"),
            json!("recovered"),
            json!("partial"),
            json!("needs-login")
        ]
    );
    for r in &got {
        assert_eq!(r.path, secret_path);
        assert_signed(r, &secret);
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains(&token), "payload holds the GitHub token");
        assert!(
            !body.contains("xoxb-very-secret-path"),
            "payload holds the URL"
        );
        assert!(!body.contains(&secret), "payload holds the secret");
        let doc = r.json();
        assert_eq!(doc["job"]["id"], job);
        assert_eq!(doc["job"]["target"], "alice/r");
        assert!(
            doc["message"].as_str().unwrap().contains("alice/r"),
            "{doc}"
        );
    }
    assert_eq!(got[0].json()["run"]["status"], "failed");
    assert!(got[0].json()["run"]["error"].is_string());
    assert!(got[3].json()["message"]
        .as_str()
        .unwrap()
        .contains("Log in again"));
    // Each was delivered once: nothing is due any more.
    assert_eq!(deliverer.deliver_due_once().await, 0);

    // The listing masks the URL and shows the last delivery.
    let (status, list) = app.get("/api/v1/notifications", &key).await;
    assert_eq!(status, StatusCode::OK);
    let t = &list["targets"][0];
    assert_eq!(t["id"], target);
    assert_eq!(
        t["destination"],
        format!("http://127.0.0.1:{}/…", sink.port)
    );
    assert_eq!(t["events"], json!(["all"]));
    assert_eq!(t["format"], "json");
    assert_eq!(t["last_delivery"]["ok"], true);
    assert_eq!(t["last_delivery"]["event"], "needs-login");
    let listing = list.to_string();
    assert!(
        !listing.contains("xoxb") && !listing.contains(&secret),
        "{listing}"
    );

    // `test` sends at once, signed, and records the result.
    let (status, res) = app
        .post(
            &format!("/api/v1/notifications/{target}/test"),
            &key,
            json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res, json!({"delivered": true, "error": null}));
    let test = sink.received().pop().unwrap();
    assert_eq!(test.json()["event"], "test");
    assert_signed(&test, &secret);

    // The log saw all of it and holds no secret.
    let text = logs.text();
    assert!(text.contains("notification delivered"), "log capture works");
    assert!(text.contains("notification queued"), "log capture works");
    for secret_text in ["xoxb-very-secret-path", secret.as_str(), token.as_str()] {
        assert!(
            !text.contains(secret_text),
            "the log holds a secret: {secret_text}"
        );
    }
}

#[tokio::test]
async fn a_sink_that_is_down_is_retried_with_backoff_until_it_answers() {
    let (logs, _guard) = capture_logs();
    let app = TestApp::new().await;
    let (key, _) = app.login("bob").await;
    // A port nobody listens on (yet).
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let url = format!("http://127.0.0.1:{port}/down-then-up-secret");
    let (target, secret) = add_webhook(&app, &key, &url, json!({"events": ["failed"]})).await;
    let user = app.state.store.list_notify_targets(1).await.unwrap()[0].user_id;
    let now = ghbs_core::Clock::now(app.clock.as_ref());
    assert_eq!(
        app.state
            .store
            .enqueue_notification(user, "failed", r#"{"event":"failed","message":"m"}"#, now)
            .await
            .unwrap(),
        1
    );
    // Not subscribed: no delivery.
    assert_eq!(
        app.state
            .store
            .enqueue_notification(user, "stale", r#"{"event":"stale"}"#, now)
            .await
            .unwrap(),
        0
    );
    let deliverer = Deliverer::new(app.state.clone()).unwrap();
    assert_eq!(deliverer.deliver_due_once().await, 1);
    let (_, shown) = app
        .get(&format!("/api/v1/notifications/{target}"), &key)
        .await;
    assert_eq!(shown["last_delivery"]["ok"], false, "{shown}");
    assert_eq!(
        shown["last_delivery"]["error"],
        "could not connect to the webhook"
    );
    // Backoff: not due again at once.
    assert_eq!(deliverer.deliver_due_once().await, 0);
    // The sink comes up, answers 503 once, then 200.
    let sink = HookSink::on(
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
    );
    sink.answer(&[503]);
    app.clock.advance(Duration::seconds(30));
    assert_eq!(deliverer.deliver_due_once().await, 1);
    assert_eq!(sink.received().len(), 1);
    let (_, shown) = app
        .get(&format!("/api/v1/notifications/{target}"), &key)
        .await;
    assert_eq!(
        shown["last_delivery"]["error"],
        "the webhook answered HTTP 503"
    );
    app.clock.advance(Duration::seconds(119));
    assert_eq!(deliverer.deliver_due_once().await, 0);
    app.clock.advance(Duration::seconds(1));
    assert_eq!(deliverer.deliver_due_once().await, 1);
    let got = sink.received();
    assert_eq!(got.len(), 2);
    assert_signed(&got[1], &secret);
    // The same delivery both times (receivers de-duplicate by it).
    assert_eq!(
        got[0].header("x-ghbs-delivery"),
        got[1].header("x-ghbs-delivery")
    );
    let rows = app.state.store.target_deliveries(target).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "delivered");
    assert_eq!(rows[0].attempts, 3);
    let (_, shown) = app
        .get(&format!("/api/v1/notifications/{target}"), &key)
        .await;
    assert_eq!(shown["last_delivery"]["ok"], true);
    // Each attempt is counted in /metrics: two failed (refused, 503), one delivered.
    let (_, text) = app
        .call(axum::http::Method::GET, "/metrics", None, None)
        .await;
    let text = text.as_str().unwrap().to_owned();
    for (series, want) in [
        ("ghbs_notifications_total{result=\"delivered\"} ", "1"),
        ("ghbs_notifications_total{result=\"failed\"} ", "2"),
    ] {
        let got = text.lines().find_map(|l| l.strip_prefix(series));
        assert_eq!(got, Some(want), "{series}in\n{text}");
    }

    // A 404 is not retried; a sink failing every time is given up after MAX_ATTEMPTS.
    sink.answer(&[404]);
    app.state
        .store
        .enqueue_notification(
            user,
            "failed",
            r#"{"event":"failed"}"#,
            ghbs_core::Clock::now(app.clock.as_ref()),
        )
        .await
        .unwrap();
    assert_eq!(deliverer.deliver_due_once().await, 1);
    app.clock.advance(Duration::days(1));
    assert_eq!(deliverer.deliver_due_once().await, 0);
    let (_, shown) = app
        .get(&format!("/api/v1/notifications/{target}"), &key)
        .await;
    assert!(shown["last_delivery"]["error"]
        .as_str()
        .unwrap()
        .contains("HTTP 404 (not retried"));
    let max = ghbs_server::notify::deliver::MAX_ATTEMPTS as usize;
    sink.answer(&vec![500; max]);
    app.state
        .store
        .enqueue_notification(
            user,
            "failed",
            r#"{"event":"failed"}"#,
            ghbs_core::Clock::now(app.clock.as_ref()),
        )
        .await
        .unwrap();
    let before = sink.received().len();
    for _ in 0..max + 2 {
        deliverer.deliver_due_once().await;
        app.clock.advance(Duration::hours(3));
    }
    assert_eq!(sink.received().len() - before, max);
    let rows = app.state.store.target_deliveries(target).await.unwrap();
    assert_eq!(rows[2].status, "failed");
    assert_eq!(rows[2].attempts as usize, max);
    assert!(!logs.text().contains("down-then-up-secret"));
}

#[tokio::test]
async fn slack_and_discord_formats_and_the_stale_event() {
    let app = TestApp::new().await;
    let sink = HookSink::start().await;
    let (key, _) = app.login("carol").await;
    app.gh.create_repo("carol", "r", Default::default());
    app.gh.commit("carol/r", "main", &[("a", "1")], "one");
    let job = app.create_job(&key, "carol/r", "daily at 09:00").await["id"]
        .as_i64()
        .unwrap();
    let base = format!("http://127.0.0.1:{}", sink.port);
    add_webhook(
        &app,
        &key,
        &format!("{base}/slack"),
        json!({"format": "slack", "events": ["stale"]}),
    )
    .await;
    add_webhook(
        &app,
        &key,
        &format!("{base}/discord"),
        json!({"format": "discord", "events": ["stale"]}),
    )
    .await;
    let deliverer = Deliverer::new(app.state.clone()).unwrap();
    // A day and a half after creation: not stale yet.
    app.clock.advance(Duration::hours(36));
    assert_eq!(check_stale(&app.state).await, 0);
    // Past two days without a success: stale, once.
    app.clock.advance(Duration::hours(14));
    assert_eq!(check_stale(&app.state).await, 1);
    assert_eq!(check_stale(&app.state).await, 0);
    assert_eq!(deliverer.deliver_due_once().await, 2);
    let mut got = sink.received();
    got.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(got[0].path, "/discord");
    assert!(got[0].json()["content"]
        .as_str()
        .unwrap()
        .contains("carol/r is stale"));
    assert_eq!(got[1].path, "/slack");
    assert!(got[1].json()["text"]
        .as_str()
        .unwrap()
        .contains("carol/r is stale"));
    // A success ends the episode; going stale again notifies again.
    run_job(&app, &key, job).await;
    assert_eq!(check_stale(&app.state).await, 0);
    app.clock.advance(Duration::days(3));
    assert_eq!(check_stale(&app.state).await, 1);
}

#[tokio::test]
async fn a_failed_run_is_mailed_through_a_real_smtp_sink() {
    let smtp = SmtpSink::start().await;
    let port = smtp.port();
    let app = TestApp::with(|c| {
        c.smtp = Some(SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            username: None,
            password: None,
            from: "Backups <backups@example.com>".parse().unwrap(),
            tls: SmtpTls::None,
        })
    })
    .await;
    let (key, token) = app.login("dave").await;
    app.gh.create_repo("dave", "r", Default::default());
    app.gh.commit("dave/r", "main", &[("a", "1")], "one");
    let job = app.create_job(&key, "dave/r", "daily").await["id"]
        .as_i64()
        .unwrap();
    let (status, created) = app
        .post(
            "/api/v1/notifications",
            &key,
            json!({"kind": "email", "address": "ops@example.com", "events": ["failed"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["secret"], Value::Null);
    assert_eq!(created["target"]["destination"], "ops@example.com");
    assert_eq!(created["target"]["events"], json!(["failed"]));
    app.gh
        .inject(Fault::new("/repos/dave/r", FaultKind::Status(502), 100));
    run_job(&app, &key, job).await;
    app.gh.clear_faults();
    let deliverer = Deliverer::new(app.state.clone()).unwrap();
    assert_eq!(deliverer.deliver_due_once().await, 1);
    let mail = smtp.messages();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].from, "backups@example.com");
    assert_eq!(mail[0].to, vec!["ops@example.com".to_owned()]);
    assert!(
        mail[0]
            .data
            .contains("Subject: [github-backup-scheduler] backup of dave/r failed"),
        "{}",
        mail[0].data
    );
    assert!(
        mail[0].data.contains("Backup of dave/r failed"),
        "{}",
        mail[0].data
    );
    assert!(!mail[0].data.contains(&token));
    let (_, list) = app.get("/api/v1/notifications", &key).await;
    assert_eq!(list["targets"][0]["last_delivery"]["ok"], true, "{list}");
    // `test` through the same sink.
    let id = created["target"]["id"].as_i64().unwrap();
    let (_, res) = app
        .post(
            &format!("/api/v1/notifications/{id}/test"),
            &key,
            json!(null),
        )
        .await;
    assert_eq!(res["delivered"], true, "{res}");
    assert_eq!(smtp.messages().len(), 2);
}

#[tokio::test]
async fn malformed_notification_input_gets_a_4xx_and_nothing_is_added() {
    let app = TestApp::new().await;
    let (key, _) = app.login("erin").await;
    let (other, _) = app.login("frank").await;
    let cases = [
        (
            json!({"kind": "webhook"}),
            StatusCode::BAD_REQUEST,
            "needs `url`",
        ),
        (
            json!({"kind": "webhook", "url": ""}),
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            json!({"kind": "webhook", "url": "not a url"}),
            StatusCode::BAD_REQUEST,
            "not a URL",
        ),
        (
            json!({"kind": "webhook", "url": "ftp://example.com/x"}),
            StatusCode::BAD_REQUEST,
            "https://",
        ),
        (
            json!({"kind": "webhook", "url": "http://example.com/hook-s3cr3t"}),
            StatusCode::BAD_REQUEST,
            "only to this machine",
        ),
        (
            json!({"kind": "webhook", "url": "https://example.com/x", "events": ["exploded"]}),
            StatusCode::BAD_REQUEST,
            "unknown event",
        ),
        (
            json!({"kind": "webhook", "url": "https://example.com/x", "events": []}),
            StatusCode::BAD_REQUEST,
            "no events",
        ),
        (
            json!({"kind": "webhook", "url": "https://example.com/x", "format": "teams"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
        (
            json!({"kind": "webhook", "url": "https://example.com/x", "address": "a@b.c"}),
            StatusCode::BAD_REQUEST,
            "not `address`",
        ),
        (
            json!({"kind": "pager", "url": "https://example.com/x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
        (
            json!({"kind": "webhook", "url": "https://example.com/x", "extra": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
        (
            json!({"kind": "email", "address": "not-an-address"}),
            StatusCode::BAD_REQUEST,
            "not an e-mail address",
        ),
        (
            json!({"kind": "email"}),
            StatusCode::BAD_REQUEST,
            "needs `address`",
        ),
        // Well formed, but this server has no SMTP settings.
        (
            json!({"kind": "email", "address": "ops@example.com"}),
            StatusCode::CONFLICT,
            "--smtp-host",
        ),
    ];
    for (body, want, needle) in cases {
        let (status, err) = app.post("/api/v1/notifications", &key, body.clone()).await;
        assert_eq!(status, want, "{body} → {err}");
        assert!(err["code"].is_string(), "{err}");
        assert!(
            err["message"].as_str().unwrap().contains(needle),
            "{body} → {err}"
        );
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/notifications",
            Some(&key),
            Some("{not json"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, list) = app.get("/api/v1/notifications", &key).await;
    assert_eq!(list["targets"], json!([]));

    // Another user's target answers exactly like a missing one.
    let (id, _) = add_webhook(&app, &other, "https://example.com/franks", json!({})).await;
    let missing = id + 1000;
    for (method, suffix) in [
        (Method::GET, ""),
        (Method::DELETE, ""),
        (Method::POST, "/test"),
    ] {
        let (s1, b1) = app
            .call(
                method.clone(),
                &format!("/api/v1/notifications/{id}{suffix}"),
                Some(&key),
                None,
            )
            .await;
        let (s2, b2) = app
            .call(
                method.clone(),
                &format!("/api/v1/notifications/{missing}{suffix}"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(s1, StatusCode::NOT_FOUND, "{method} {b1}");
        assert_eq!((s1, b1), (s2, b2));
        let (s, _) = app
            .call(
                method,
                &format!("/api/v1/notifications/abc{suffix}"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }
    // Still there for its owner; unauthenticated callers get 401.
    assert_eq!(
        app.get(&format!("/api/v1/notifications/{id}"), &other)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        app.call(Method::GET, "/api/v1/notifications", None, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // At most 20 targets per user.
    for i in 1..20 {
        add_webhook(&app, &other, &format!("https://example.com/{i}"), json!({})).await;
    }
    let (status, err) = app
        .post(
            "/api/v1/notifications",
            &other,
            json!({"kind": "webhook", "url": "https://example.com/21"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    // Removing works for the owner only, once.
    assert_eq!(
        app.call(
            Method::DELETE,
            &format!("/api/v1/notifications/{id}"),
            Some(&other),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(
            Method::DELETE,
            &format!("/api/v1/notifications/{id}"),
            Some(&other),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}
