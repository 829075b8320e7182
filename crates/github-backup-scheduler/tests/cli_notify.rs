//! `notify` on the real binary against a real server: a webhook added from standard input,
//! listed masked, tested into a loopback sink that checks its signature; malformed input of
//! every command; another user's target; the URL never in argv, output or the server's log.

mod support;

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use support::{World, BIN};
use tokio::process::Command;

type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

async fn hook_sink() -> (u16, Seen, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: axum::body::Bytes| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push((headers, body.to_vec()));
            "ok"
        }
    });
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen, task)
}

#[tokio::test]
async fn notify_add_list_test_remove_and_bad_input() {
    let w = World::start().await;
    w.login().await;
    let (port, seen, _sink) = hook_sink().await;
    let url = format!("http://127.0.0.1:{port}/hooks/very-secret-path-123");

    // Added from standard input, never from argv.
    let o = w
        .run_with(
            w.cli(),
            &[
                "--json",
                "notify",
                "add",
                "webhook",
                "--url-stdin",
                "--events",
                "failed,recovered",
            ],
            Some(&format!("{url}\n")),
        )
        .await;
    assert_eq!(o.code, 0, "{}\n{}", o.stderr, w.server_log());
    let created = o.json();
    let id = created["target"]["id"].as_i64().unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        created["target"]["events"],
        serde_json::json!(["failed", "recovered"])
    );

    let list = w.ok(&["notify", "list"]).await;
    assert!(
        list.stdout.contains(&format!("http://127.0.0.1:{port}/…")),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("failed,recovered"), "{}", list.stdout);
    assert!(!list.stdout.contains("very-secret-path"), "{}", list.stdout);

    let test = w.ok(&["notify", "test", &id.to_string()]).await;
    assert!(test.stdout.contains("delivered"), "{}", test.stdout);
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    assert_eq!(
        headers["x-ghbs-signature-256"].to_str().unwrap(),
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    let list = w.ok(&["--json", "notify", "list"]).await.json();
    assert_eq!(list["targets"][0]["last_delivery"]["ok"], true, "{list}");
    assert_eq!(list["targets"][0]["last_delivery"]["event"], "test");

    // Malformed input: a clear error, exit 2, nothing added.
    for (args, stdin, needle) in [
        (
            vec!["notify", "add", "webhook", "--url-stdin"],
            Some("ftp://example.com/x\n"),
            "https://",
        ),
        (
            vec!["notify", "add", "webhook", "--url-stdin"],
            Some("not a url\n"),
            "not a URL",
        ),
        (
            vec!["notify", "add", "webhook", "--url-stdin"],
            Some("\n"),
            "empty",
        ),
        (
            vec![
                "notify",
                "add",
                "webhook",
                "--url-stdin",
                "--events",
                "exploded",
            ],
            Some("https://example.com/x\n"),
            "unknown event",
        ),
        (
            vec![
                "notify",
                "add",
                "webhook",
                "--url-stdin",
                "--format",
                "teams",
            ],
            // Refused by the grammar before stdin is read: none is piped (no broken pipe).
            None,
            "use json, slack or discord",
        ),
        // No terminal and no --url-stdin: says how to pipe it.
        (vec!["notify", "add", "webhook"], None, "--url-stdin"),
        // A URL as an argument is refused by the grammar.
        (
            vec!["notify", "add", "webhook", "https://example.com/x"],
            None,
            "unexpected argument",
        ),
        (
            vec!["notify", "add", "email", "not-an-address"],
            None,
            "not an e-mail address",
        ),
        (vec!["notify", "remove", "abc"], None, "invalid value"),
        (vec!["notify", "test"], None, "required"),
    ] {
        let o = w.run_with(w.cli(), &args, stdin).await;
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains(needle), "{args:?}: {}", o.stderr);
        assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    }
    // E-mail on a server without SMTP settings: refused, says why.
    let o = w.run(&["notify", "add", "email", "ops@example.com"]).await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("--smtp-host"), "{}", o.stderr);
    let list = w.ok(&["--json", "notify", "list"]).await.json();
    assert_eq!(list["targets"].as_array().unwrap().len(), 1);

    // Another user sees no target and cannot test or remove this one (exit 4, as missing).
    let (_, other_token) = w.github.add_user("mallory");
    let other_cfg = tempfile::TempDir::new().unwrap();
    let other = || {
        let mut c = Command::new(BIN);
        c.env("GHBS_CONFIG_DIR", other_cfg.path())
            .env("GHBS_SERVER", &w.server_url)
            .env_remove("GITHUB_TOKEN")
            .kill_on_drop(true);
        c
    };
    let o = w
        .run_with(
            other(),
            &["login", "--token-stdin"],
            Some(&format!("{other_token}\n")),
        )
        .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = w
        .run_with(other(), &["--json", "notify", "list"], None)
        .await;
    assert_eq!(o.json()["targets"], serde_json::json!([]));
    for cmd in ["test", "remove"] {
        let theirs = w
            .run_with(other(), &["notify", cmd, &id.to_string()], None)
            .await;
        let missing = w.run_with(other(), &["notify", cmd, "99999"], None).await;
        assert_eq!(theirs.code, 4, "{}", theirs.stderr);
        assert_eq!(missing.code, 4);
        assert_eq!(
            theirs.stderr.replace(&id.to_string(), "N"),
            missing.stderr.replace("99999", "N")
        );
    }

    // Removed by its owner, once.
    w.ok(&["notify", "remove", &id.to_string()]).await;
    assert_eq!(w.run(&["notify", "remove", &id.to_string()]).await.code, 4);
    let list = w.ok(&["notify", "list"]).await;
    assert!(
        list.stdout.contains("No notification targets"),
        "{}",
        list.stdout
    );

    // The URL never reached the server's log.
    let log = w.server_log();
    assert!(
        log.contains("notification target added"),
        "the log is captured: {log}"
    );
    assert!(!log.contains("very-secret-path"), "{log}");
    assert!(!log.contains(&secret), "{log}");
}
