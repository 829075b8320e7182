//! End-to-end harness: the GitHub stand-in, the real binary started as `server`, and the real
//! binary as client, each with its own temporary folders.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use ghbs_testkit::{GitHubStandIn, RepoOptions};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_github-backup-scheduler");

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

pub struct World {
    pub github: GitHubStandIn,
    pub token: String,
    pub server_url: String,
    server: Child,
    pub data: TempDir,
    pub config: TempDir,
    pub work: TempDir,
}

impl World {
    /// A stand-in with user `octo` owning `octo/hello` (two commits on main, a tag, a branch),
    /// and a server started on it.
    pub async fn start() -> World {
        Self::start_with(&[]).await
    }

    /// [`World::start`] with extra `server` flags (e.g. `--tls-cert`).
    pub async fn start_with(server_args: &[&std::ffi::OsStr]) -> World {
        let github = GitHubStandIn::start().await;
        let (_, token) = github.add_user("octo");
        github.create_repo("octo", "hello", RepoOptions::default());
        github.commit("octo/hello", "main", &[("README.md", "hello\n")], "first");
        let head = github.commit("octo/hello", "main", &[("src/a.txt", "a\n")], "second");
        github.create_tag("octo/hello", "v1", &head);
        github.commit("octo/hello", "dev", &[("dev.txt", "dev\n")], "on dev");

        let data = TempDir::new().unwrap();
        let (server, server_url) =
            spawn_server(&github, data.path(), "127.0.0.1:0", server_args, &[]).await;
        World {
            server_url,
            github,
            token,
            server,
            data,
            config: TempDir::new().unwrap(),
            work: TempDir::new().unwrap(),
        }
    }

    /// Stops the server (SIGKILL) and waits for it to be gone.
    pub async fn stop_server(&mut self) {
        let _ = self.server.kill().await;
    }

    /// Starts the server again on the same data folder and address with extra flags and
    /// environment (the clients keep their login: same database, same URL); the log goes on
    /// in `server.log`.
    pub async fn restart_with(
        &mut self,
        server_args: &[&std::ffi::OsStr],
        env: &[(String, String)],
    ) {
        self.stop_server().await;
        let listen = self.server_url.trim_start_matches("http://").to_owned();
        let (server, url) =
            spawn_server(&self.github, self.data.path(), &listen, server_args, env).await;
        self.server = server;
        self.server_url = url;
    }

    /// The server's data folder (`DATA_DIR`).
    pub fn state_dir(&self) -> PathBuf {
        self.data.path().join("state")
    }

    /// The client binary with this world's server and configuration.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env("GHBS_CONFIG_DIR", self.config.path())
            .env("GHBS_SERVER", &self.server_url)
            .env_remove("GITHUB_TOKEN")
            .current_dir(self.work.path())
            .kill_on_drop(true);
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Outcome {
        self.run_with(self.cli(), args, None).await
    }

    pub async fn run_with(&self, mut cmd: Command, args: &[&str], stdin: Option<&str>) -> Outcome {
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).await.unwrap();
            drop(pipe);
        }
        let out = child.wait_with_output().await.unwrap();
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and insists on exit 0, showing the server log otherwise.
    pub async fn ok(&self, args: &[&str]) -> Outcome {
        let o = self.run(args).await;
        assert_eq!(
            o.code,
            0,
            "{args:?} failed: {}\n{}",
            o.stderr,
            self.server_log()
        );
        o
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
    }

    pub async fn login(&self) {
        let o = self
            .run_with(
                self.cli(),
                &["login", "--token-stdin"],
                Some(&format!("{}\n", self.token)),
            )
            .await;
        assert_eq!(o.code, 0, "login: {}\n{}", o.stderr, self.server_log());
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }
}

/// Branches and tags of a repository (name → sha), as the stand-in's `refs` reports them.
pub fn refs(repo: &Path) -> std::collections::BTreeMap<String, String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads",
            "refs/tags",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git for-each-ref in {}",
        repo.display()
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect()
}

/// The server's ETag of a file with these bytes: its quoted hex SHA-256 (as documented).
pub fn etag_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("\"{}\"", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Hex SHA-256 of a file.
pub fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// Where the CLI keeps the partial download of `file` (snapshot `snap`, `format`).
pub fn part_of(file: &Path, snap: i64, format: &str) -> PathBuf {
    let mut name = file.file_name().unwrap().to_os_string();
    name.push(format!(".snap{snap}-{format}.part"));
    file.with_file_name(name)
}

/// The tag file beside a part.
pub fn etag_path(part: &Path) -> PathBuf {
    let mut name = part.file_name().unwrap().to_os_string();
    name.push(".etag");
    part.with_file_name(name)
}

/// Runs git (or another program) and insists it succeeds.
pub fn sh(program: &str, args: &[&str], dir: &Path) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new, empty bare repository at `path` (parents created).
pub fn bare_repo(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    sh(
        "git",
        &["init", "--bare", "--quiet", path.to_str().unwrap()],
        Path::new("."),
    );
}

/// Refs of a bundle, cloned into `dir/name`.
pub fn bundle_refs(
    bundle: &Path,
    dir: &Path,
    name: &str,
) -> std::collections::BTreeMap<String, String> {
    let clone = dir.join(name);
    sh(
        "git",
        &[
            "clone",
            "--mirror",
            "--quiet",
            bundle.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
        dir,
    );
    refs(&clone)
}

/// Starts `server` on `listen` and `data/state` against the stand-in, logging to `data/server.log`
/// (appended), and returns it with its URL.
async fn spawn_server(
    github: &GitHubStandIn,
    data: &Path,
    listen: &str,
    server_args: &[&std::ffi::OsStr],
    env: &[(String, String)],
) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("server.log"))
        .unwrap();
    let mut server = Command::new(BIN)
        .args(["server", "--listen", listen, "--data-dir"])
        .arg(data.join("state"))
        .args([
            "--github-api-url",
            &github.api_url(),
            "--manual-runs-per-hour",
            "100",
        ])
        .args(server_args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("GHBS_SERVER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let first = BufReader::new(stdout).lines().next_line().await.unwrap();
    let Some(server_url) = first
        .as_deref()
        .and_then(|l| l.strip_prefix("listening on "))
    else {
        let log = std::fs::read_to_string(data.join("server.log")).unwrap_or_default();
        panic!("server did not start: {first:?}\n{log}");
    };
    (server, server_url.to_string())
}
