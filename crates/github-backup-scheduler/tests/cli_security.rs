//! The CLI against a real HTTPS server with a private CA (`--ca-cert`), scoped and expiring
//! keys, the audit trail, and `--insecure-http` warning on every use.

mod support;

use std::ffi::OsStr;

use ghbs_testkit::tls::TestCa;
use support::World;

async fn tls_world(certs: &std::path::Path) -> (World, std::path::PathBuf) {
    let ca = TestCa::new("cli");
    let (ca_path, cert, key) = ca.write(certs);
    let world = World::start_with(&[
        OsStr::new("--tls-cert"),
        cert.as_os_str(),
        OsStr::new("--tls-key"),
        key.as_os_str(),
    ])
    .await;
    assert!(
        world.server_url.starts_with("https://127.0.0.1:"),
        "{}",
        world.server_url
    );
    (world, ca_path)
}

#[tokio::test]
async fn the_cli_talks_https_to_a_private_ca_with_ca_cert_and_says_why_without() {
    let certs = tempfile::tempdir().unwrap();
    let (w, ca) = tls_world(certs.path()).await;
    let ca = ca.to_str().unwrap();

    // Without the CA: a clear refusal naming --ca-cert, nothing sent, exit 5.
    let o = w
        .run_with(
            w.cli(),
            &["login", "--token-stdin"],
            Some(&format!("{}\n", w.token)),
        )
        .await;
    assert_eq!(o.code, 5, "{}", o.stderr);
    assert!(
        o.stderr.contains("not trusted") && o.stderr.contains("--ca-cert"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains(&w.token));
    assert!(w
        .github
        .requests()
        .iter()
        .all(|r| !r.path.ends_with("/user")));

    // With it: login with an expiry, then every command over HTTPS.
    let o = w
        .run_with(
            w.cli(),
            &[
                "--ca-cert",
                ca,
                "login",
                "--token-stdin",
                "--expires",
                "30d",
            ],
            Some(&format!("{}\n", w.token)),
        )
        .await;
    assert_eq!(o.code, 0, "{}\n{}", o.stderr, w.server_log());
    let keys = w.ok(&["--ca-cert", ca, "keys", "--json"]).await.json();
    assert!(keys["keys"][0]["expires_at"].is_string(), "{keys}");

    // A read-only key for a script: printed once, listed with its scope and expiry.
    let made = w
        .ok(&[
            "--ca-cert",
            ca,
            "keys",
            "create",
            "--read-only",
            "--expires",
            "2w",
            "--label",
            "dash",
            "--json",
        ])
        .await
        .json();
    assert_eq!(made["key"]["read_only"], true);
    let ro_key = made["api_key"].as_str().unwrap().to_owned();
    let table = w.ok(&["--ca-cert", ca, "keys"]).await.stdout;
    assert!(
        table.contains("read-only") && table.contains("dash"),
        "{table}"
    );
    assert!(!table.contains(&ro_key), "a key is never listed: {table}");

    // The read-only key, used by a script, can read but not change.
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let read = client
        .get(format!("{}/api/v1/jobs", w.server_url))
        .bearer_auth(&ro_key)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let write = client
        .post(format!("{}/api/v1/jobs", w.server_url))
        .bearer_auth(&ro_key)
        .json(&serde_json::json!({"target": "octo/hello", "schedule": "daily"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 403);
    assert_eq!(write.headers()["cache-control"], "no-store");

    // The audit trail shows both, from loopback, and no secret.
    let audit = w.ok(&["--ca-cert", ca, "audit"]).await.stdout;
    assert!(
        audit.contains("login") && audit.contains("key.create"),
        "{audit}"
    );
    assert!(audit.contains("127.0.0.1"), "{audit}");
    assert!(!audit.contains(&ro_key) && !audit.contains(&w.token));
    let json = w
        .ok(&["--ca-cert", ca, "audit", "--json", "--limit", "1"])
        .await
        .json();
    assert_eq!(json["entries"].as_array().unwrap().len(), 1);
    assert_eq!(json["entries"][0]["action"], "key.create");

    // The config file's ca_cert works as the flag does.
    std::fs::write(
        w.config.path().join("config.toml"),
        format!("server = \"{}\"\nca_cert = \"{ca}\"\n", w.server_url),
    )
    .unwrap();
    w.ok(&["whoami"]).await;
}

#[tokio::test]
async fn malformed_security_input_is_refused_before_anything_is_sent() {
    let w = World::start().await;
    w.login().await;
    for (args, needle) in [
        (
            vec!["login", "--token-stdin", "--expires", "30x"],
            "not a duration",
        ),
        (
            vec!["login", "--token-stdin", "--expires", "0d"],
            "at least one minute",
        ),
        (
            vec!["keys", "create", "--expires", "soon"],
            "not a duration",
        ),
        (vec!["audit", "--limit", "0"], "--limit"),
        (vec!["audit", "--limit", "many"], "invalid value"),
        (
            vec!["--ca-cert", "/nonexistent/ca.pem", "jobs"],
            "cannot read the CA certificate",
        ),
    ] {
        let o = w.run_with(w.cli(), &args, Some("ghp_x\n")).await;
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains(needle), "{args:?}: {}", o.stderr);
    }
    let not_pem = w.path("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let o = w
        .run(&["--ca-cert", not_pem.to_str().unwrap(), "jobs"])
        .await;
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("no PEM certificate"), "{}", o.stderr);
    // Still one key, and it still works.
    let keys = w.ok(&["keys", "--json"]).await.json();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
}

/// `--insecure-http` lets the API key go to a remote plain-HTTP server, and warns each time.
#[tokio::test]
async fn insecure_http_warns_on_every_use() {
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("credentials.json"),
        r#"{"servers": {"http://backup.example.invalid": {"api_key": "ghbs_k", "key_id": 1, "login": "me"}}}"#,
    )
    .unwrap();
    for _ in 0..2 {
        let out = tokio::process::Command::new(support::BIN)
            .env("GHBS_CONFIG_DIR", config.path())
            .env_remove("GHBS_SERVER")
            .args([
                "--server",
                "http://backup.example.invalid",
                "--insecure-http",
                "jobs",
            ])
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("warning: sending credentials"), "{stderr}");
        assert!(!stderr.contains("ghbs_k"), "{stderr}");
    }
}
