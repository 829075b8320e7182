//! Helpers shared by the integration tests: an HTTP GET with a token, and git runs that get
//! their token from an askpass script (never from a URL or argv).
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use ghbs_testkit::{git_with_env, GitHubStandIn, RepoOptions};

pub fn private() -> RepoOptions {
    RepoOptions {
        private: true,
        ..RepoOptions::default()
    }
}

pub async fn get(gh: &GitHubStandIn, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}{path}", gh.api_url()));
    if let Some(t) = token {
        req = req.header("Authorization", format!("token {t}"));
    }
    req.send().await.expect("request")
}

pub fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// An askpass script that answers git's password prompt from `GHBS_TEST_TOKEN`, so the token is
/// never in a URL or argv.
pub fn askpass(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("askpass.sh");
    let script = "#!/bin/sh\ncase \"$1\" in Username*) echo x-access-token ;; *) echo \"$GHBS_TEST_TOKEN\" ;; esac\n";
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Runs git off the async runtime (the server lives on it) and reports success and stderr.
pub async fn git_async(dir: &Path, args: &[&str], token: Option<&str>) -> Result<String, String> {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let token = token.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let askpass = askpass(&dir);
        let askpass = askpass.to_str().unwrap().to_owned();
        let mut env = vec![("GIT_ASKPASS", askpass.as_str())];
        if let Some(t) = &token {
            env.push(("GHBS_TEST_TOKEN", t.as_str()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        std::panic::catch_unwind(|| git_with_env(&dir, &args, &env)).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "git panicked".to_owned())
        })
    })
    .await
    .unwrap()
}
