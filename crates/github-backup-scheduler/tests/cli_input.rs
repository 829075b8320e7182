//! The client's behaviour on bad input, missing login, unreachable servers and configuration,
//! checked on the real binary without a backup server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;

use assert_cmd::Command;
use tempfile::TempDir;

/// The binary with an isolated, empty configuration folder and no ambient server or token.
fn cli(config: &Path) -> Command {
    let mut cmd = Command::cargo_bin("github-backup-scheduler").unwrap();
    cmd.env("GHBS_CONFIG_DIR", config)
        .env_remove("GHBS_SERVER")
        .env_remove("GITHUB_TOKEN")
        .env_remove("RUST_LOG");
    cmd
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Outcome {
    let out = cmd.output().unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assert_clean_error(o: &Outcome) {
    assert!(o.stderr.starts_with("error: "), "stderr: {}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "stderr: {}", o.stderr);
    assert!(
        !o.stderr.contains("Error {"),
        "Debug output in: {}",
        o.stderr
    );
}

#[test]
fn malformed_targets_are_usage_errors() {
    let dir = TempDir::new().unwrap();
    for target in ["a/b/c", "../x", "a b", "", "o/.."] {
        let o = run(cli(dir.path()).args(["schedule", target]));
        assert_eq!(o.code, 2, "{target}: {}", o.stderr);
        assert_clean_error(&o);
        assert!(o.stderr.contains("owner/name"), "{target}: {}", o.stderr);
    }
}

#[test]
fn more_than_daily_schedules_get_the_once_a_day_answer() {
    let dir = TempDir::new().unwrap();
    for args in [
        &["schedule", "o/r", "--cron", "*/30 * * * *"][..],
        &["schedule", "o/r", "--every", "30m"],
        &["schedule", "o/r", "--cron", "0 * * * *"],
    ] {
        let o = run(cli(dir.path()).args(args));
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
        assert_clean_error(&o);
        assert!(
            o.stderr.contains("at most once a day") && o.stderr.contains("daily"),
            "{args:?}: {}",
            o.stderr
        );
    }
}

#[test]
fn bad_schedule_flags_and_timezones_are_usage_errors() {
    let dir = TempDir::new().unwrap();
    let o = run(cli(dir.path()).args(["schedule", "o/r", "--tz", "Mars/Olympus"]));
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("unknown timezone"), "{}", o.stderr);
    for args in [
        &["schedule", "o/r", "--daily", "25:00"][..],
        &["schedule", "o/r", "--weekly", "someday"],
        &["schedule", "o/r", "--daily", "--weekly", "mon"],
        &["job", "edit", "1"],
        &["job", "show", "not-a-number"],
    ] {
        let o = run(cli(dir.path()).args(args));
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
    }
}

#[test]
fn fetch_with_an_unknown_format_is_a_usage_error() {
    let dir = TempDir::new().unwrap();
    let o = run(cli(dir.path()).args(["fetch", "1", "--format", "rar"]));
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("bundle, tar.gz, zip or site"),
        "{}",
        o.stderr
    );
    let o = run(cli(dir.path()).args(["fetch", "1", "--repo", "a/b/c"]));
    assert_eq!(o.code, 2, "{}", o.stderr);
}

#[test]
fn not_logged_in_is_exit_3_with_the_login_hint() {
    let dir = TempDir::new().unwrap();
    for args in [
        &["jobs"][..],
        &["whoami"],
        &["schedule", "o/r"],
        &["fetch", "1"],
        &["logout"],
    ] {
        let o = run(cli(dir.path()).args(args));
        assert_eq!(o.code, 3, "{args:?}: {}", o.stderr);
        assert_clean_error(&o);
        assert!(
            o.stderr.contains("run `github-backup-scheduler login`"),
            "{}",
            o.stderr
        );
    }
}

#[test]
fn unreachable_server_is_exit_5() {
    let dir = TempDir::new().unwrap();
    let o = run(cli(dir.path())
        .args(["--server", "http://127.0.0.1:1", "login", "--token-stdin"])
        .write_stdin("ghp_not_a_real_token\n"));
    assert_eq!(o.code, 5, "{}", o.stderr);
    assert_clean_error(&o);
    assert!(
        o.stderr
            .contains("the server at http://127.0.0.1:1 is not reachable"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("github-backup-scheduler server"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("ghp_not_a_real_token"));

    // With a stored key, any command reports the same.
    std::fs::write(
        dir.path().join("credentials.json"),
        r#"{"servers":{"http://127.0.0.1:1":{"api_key":"k","key_id":1,"login":"me"}}}"#,
    )
    .unwrap();
    let o = run(cli(dir.path()).args(["--server", "http://127.0.0.1:1/", "jobs"]));
    assert_eq!(o.code, 5, "{}", o.stderr);
}

#[test]
fn server_precedence_is_flag_then_env_then_file_then_default() {
    let dir = TempDir::new().unwrap();
    let says = |o: &Outcome, url: &str| {
        assert_eq!(o.code, 3, "{}", o.stderr);
        assert!(
            o.stderr.contains(&format!("not logged in to {url}:")),
            "want {url}: {}",
            o.stderr
        );
    };
    says(&run(cli(dir.path()).arg("jobs")), "http://127.0.0.1:3000");
    std::fs::write(
        dir.path().join("config.toml"),
        "server = \"http://file.example:1\"\n",
    )
    .unwrap();
    says(&run(cli(dir.path()).arg("jobs")), "http://file.example:1");
    says(
        &run(cli(dir.path())
            .env("GHBS_SERVER", "http://env.example:2")
            .arg("jobs")),
        "http://env.example:2",
    );
    says(
        &run(cli(dir.path())
            .env("GHBS_SERVER", "http://env.example:2")
            .args(["--server", "http://flag.example:3", "jobs"])),
        "http://flag.example:3",
    );
    let o = run(cli(dir.path()).args(["--server", "ftp://x", "jobs"]));
    assert_eq!(o.code, 2, "{}", o.stderr);
}

#[test]
fn no_arguments_without_a_terminal_prints_help_and_exits_2() {
    let dir = TempDir::new().unwrap();
    let o = run(&mut cli(dir.path()));
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("Usage:"), "{}", o.stderr);
    assert!(o.stderr.contains("schedule"), "{}", o.stderr);
}

#[test]
fn purge_without_a_terminal_needs_yes() {
    let dir = TempDir::new().unwrap();
    let o = run(cli(dir.path()).args(["job", "delete", "1", "--purge"]));
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("--yes"), "{}", o.stderr);
}

#[test]
fn login_without_a_token_source_is_a_usage_error() {
    let dir = TempDir::new().unwrap();
    let o = run(cli(dir.path()).arg("login"));
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("--token-stdin"), "{}", o.stderr);
    // There is no way to pass the token as an argument.
    let o = run(cli(dir.path()).args(["login", "--token", "x"]));
    assert_eq!(o.code, 2);
}

/// A one-shot HTTP server answering `POST /api/v1/login`; returns the request it received.
fn fake_login_server() -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let reply = r#"{"api_key":"ghbs_secret_key","key_id":7,"user":{"id":1,"github_id":42,"login":"octocat","created_at":"2025-01-01T00:00:00Z"}}"#;
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
            reply.len()
        )
        .unwrap();
        head + &String::from_utf8(body).unwrap()
    });
    (url, handle)
}

#[test]
fn login_stores_the_key_privately_and_never_the_token() {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("cfg");
    let (url, server) = fake_login_server();
    let o = run(cli(&config)
        .args([
            "--server",
            &url,
            "login",
            "--token-stdin",
            "--label",
            "laptop",
        ])
        .write_stdin("ghp_the_token\n"));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("as octocat"), "{}", o.stdout);
    let request = server.join().unwrap();
    assert!(request.starts_with("POST /api/v1/login "), "{request}");
    assert!(
        request.contains(r#""github_token":"ghp_the_token""#),
        "{request}"
    );

    let creds = std::fs::read_to_string(config.join("credentials.json")).unwrap();
    assert!(
        creds.contains("ghbs_secret_key") && creds.contains(&url),
        "{creds}"
    );
    let file = std::fs::read_to_string(config.join("config.toml")).unwrap();
    assert!(file.contains(&url), "{file}");
    for entry in std::fs::read_dir(&config).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(
            !text.contains("ghp_the_token"),
            "the token was written to disk"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&config.join("credentials.json")), 0o600);
        assert_eq!(mode(&config.join("config.toml")), 0o600);
        assert_eq!(mode(&config), 0o700);
    }
    // The login made that server the default: without --server, we are "logged in" there, so
    // the next failure is about reaching it (the fake server is gone), not about logging in.
    let o = run(cli(&config).arg("jobs"));
    assert_eq!(o.code, 5, "{}", o.stderr);
}
