//! The CLI never sends a GitHub token or an API key to another machine over plain HTTP unless
//! told to (`--insecure-http`). Refusals happen before any connection is attempted, so these
//! tests name hosts that are never contacted.

mod support;

use std::process::Stdio;

use support::BIN;
use tokio::io::AsyncWriteExt;

async fn login_to(server: &str, extra: &[&str]) -> (i32, String) {
    let config = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .env("GHBS_CONFIG_DIR", config.path())
        .env_remove("GHBS_SERVER")
        .env_remove("GITHUB_TOKEN")
        .args(["--server", server, "login", "--token-stdin"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"ghp_secret_token_never_sent\n").await;
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("ghp_secret_token_never_sent"),
        "the token is never echoed: {stderr}"
    );
    assert!(
        !config.path().join("credentials.json").exists(),
        "nothing stored"
    );
    (out.status.code().unwrap_or(-1), stderr)
}

#[tokio::test]
async fn a_remote_plain_http_server_gets_no_token() {
    for server in [
        "http://backup.example.invalid:3000",
        "http://backup.example.invalid",
    ] {
        let (code, stderr) = login_to(server, &[]).await;
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("plain HTTP") && stderr.contains("--insecure-http"),
            "{stderr}"
        );
    }
}

/// Loopback over plain HTTP is allowed (the traffic never leaves the machine): the login gets
/// as far as connecting, which fails on a closed port with the "not reachable" exit code.
#[tokio::test]
async fn loopback_plain_http_is_allowed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, stderr) = login_to(&format!("http://127.0.0.1:{port}"), &[]).await;
    assert_eq!(code, 5, "{stderr}");
    assert!(!stderr.contains("--insecure-http"), "{stderr}");
}
