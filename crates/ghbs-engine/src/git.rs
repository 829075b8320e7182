//! Running the system `git` binary: a controlled environment, credentials through askpass and an
//! environment variable only, a timeout that kills the whole process tree, and failure
//! classification from git's (English, `LC_ALL=C`) stderr.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ghbs_core::{FailureKind, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{EngineError, Result, DISK_FULL};

/// The environment variable the askpass script reads the token from.
const TOKEN_VAR: &str = "GHBS_GIT_TOKEN";

/// The askpass script: git asks for a username, then a password; GitHub accepts any username with
/// a token as password, `x-access-token` is the conventional one.
const ASKPASS_SCRIPT: &str = "#!/bin/sh\n# Written by github-backup-scheduler: answers git's credential prompts from the\n# environment so that a token never appears in argv, a URL or a config file.\ncase \"$1\" in\n  Username*|username*) echo x-access-token ;;\n  *) printf '%s\\n' \"$GHBS_GIT_TOKEN\" ;;\nesac\n";

/// How git is run for the service's own mirrors: isolated from system config and credential
/// helpers, with our askpass, our CA and our timeout.
#[derive(Clone, Debug)]
pub(crate) struct GitEnv {
    pub askpass: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
    pub timeout: Option<Duration>,
    /// Program and arguments git is started through so that it dies with the server (see
    /// [`death_wrapper`]); empty runs git directly.
    pub wrapper: Vec<OsString>,
}

impl GitEnv {
    /// The environment of the user's own git (restore): their config and credential helpers.
    pub fn user() -> GitEnv {
        GitEnv {
            askpass: None,
            ca_cert: None,
            timeout: None,
            wrapper: Vec::new(),
        }
    }

    fn isolated(&self) -> bool {
        self.askpass.is_some()
    }
}

/// How the service's git processes die with the server, even on `kill -9` (nothing of ours runs
/// then): `setpriv --pdeathsig TERM -- timeout --kill-after=2 0 git …`. setpriv (util-linux)
/// sets the parent-death signal and execs coreutils' `timeout`, which keeps it; when the server
/// dies, `timeout` gets SIGTERM and, running as the leader of git's process group (we spawn
/// with `process_group(0)`), forwards it to the whole group — git and its helpers
/// (remote-https, index-pack) — then SIGKILLs the group two seconds later. `0` disables
/// timeout's own timer (ours is in [`Git::run`]).
///
/// The parent-death signal fires when the *thread* that spawned the child exits: git is
/// spawned by `tokio::process` on the runtime worker thread that polls [`Git::run`], and those
/// threads live as long as the runtime (never call `Git::run` from `spawn_blocking`, whose
/// threads exit when idle). Without setpriv or timeout git runs directly, with a warning.
pub(crate) fn death_wrapper() -> Vec<OsString> {
    match (find_program("setpriv"), find_program("timeout")) {
        (Some(setpriv), Some(timeout)) => vec![
            setpriv.into_os_string(),
            "--pdeathsig".into(),
            "TERM".into(),
            "--".into(),
            timeout.into_os_string(),
            "--kill-after=2".into(),
            "0".into(),
        ],
        (setpriv, _) => {
            let missing = if setpriv.is_none() {
                "setpriv (util-linux)"
            } else {
                "timeout (coreutils)"
            };
            tracing::warn!(
                "{missing} not found: git processes will not stop if the server is killed; \
                 install it so that a killed server leaves no git running"
            );
            Vec::new()
        }
    }
}

/// The first executable `name` on `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Writes `dir/askpass.sh` (mode 0700) unless it already holds exactly our script.
pub(crate) fn install_askpass(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("askpass.sh");
    let current = std::fs::read_to_string(&path).ok();
    if current.as_deref() != Some(ASKPASS_SCRIPT) {
        let tmp = dir.join(format!(".askpass.sh.{}", uuid::Uuid::new_v4()));
        std::fs::write(&tmp, ASKPASS_SCRIPT)
            .map_err(|e| EngineError::io("write askpass script", e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| EngineError::io("chmod askpass script", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| EngineError::io("install askpass script", e))?;
    } else {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| EngineError::io("chmod askpass script", e))?;
    }
    Ok(path)
}

/// One git invocation.
pub(crate) struct Git<'a> {
    env: &'a GitEnv,
    dir: Option<&'a Path>,
    /// `-c key=value` settings for this invocation only (before the subcommand).
    config: Vec<String>,
    args: Vec<OsString>,
    token: Option<&'a Secret>,
    stdin: Option<Vec<u8>>,
    /// Talks to a remote: unknown failures are then classified transient rather than permanent.
    remote: bool,
    /// On failure, put stdout before stderr in the message (`fsck` reports damage on stdout).
    report_stdout: bool,
    /// Send the token with the first HTTP request instead of after a 401 challenge.
    preemptive_auth: bool,
}

/// What a successful git run printed.
pub(crate) struct GitOutput {
    pub stdout: Vec<u8>,
}

impl GitOutput {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl<'a> Git<'a> {
    pub fn new(env: &'a GitEnv) -> Git<'a> {
        Git {
            env,
            dir: None,
            config: Vec::new(),
            args: Vec::new(),
            token: None,
            stdin: None,
            remote: false,
            report_stdout: false,
            preemptive_auth: false,
        }
    }

    /// Runs in `dir` (`git -C dir`).
    pub fn dir(mut self, dir: &'a Path) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Sets `key=value` for this invocation (`git -c key=value …`).
    pub fn config(mut self, setting: impl Into<String>) -> Self {
        self.config.push(setting.into());
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn token(mut self, token: Option<&'a Secret>) -> Self {
        self.token = token;
        self
    }

    pub fn stdin(mut self, data: Vec<u8>) -> Self {
        self.stdin = Some(data);
        self
    }

    pub fn remote(mut self) -> Self {
        self.remote = true;
        self
    }

    /// Sends the token (when there is one) as `Authorization: Basic` with the first request, so a
    /// private repository costs one HTTP request rather than a 401 challenge and a retry. The
    /// header reaches git as configuration through its environment (`GIT_CONFIG_COUNT`), never
    /// argv; askpass still answers should the server challenge anyway.
    pub fn preemptive_auth(mut self) -> Self {
        self.preemptive_auth = true;
        self
    }

    /// A failure's message also holds what git printed on stdout (before its stderr).
    pub fn report_stdout(mut self) -> Self {
        self.report_stdout = true;
        self
    }

    /// Runs git to completion; a non-zero exit becomes a classified [`EngineError`] whose message
    /// holds the (token-scrubbed) tail of stderr.
    pub async fn run(self) -> Result<GitOutput> {
        let what = self.describe();
        let mut cmd = match self.env.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args).arg("git");
                cmd
            }
            None => tokio::process::Command::new("git"),
        };
        self.configure(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| EngineError::permanent(format!("cannot start git ({what}): {e}")))?;
        let mut guard = GroupKill(child.id());
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let stdin = child.stdin.take();
        let input = self.stdin.unwrap_or_default();
        let work = async {
            let feed = async {
                if let Some(mut pipe) = stdin {
                    // A git that exits early closes its stdin; its exit status tells the story.
                    let _ = pipe.write_all(&input).await;
                    let _ = pipe.shutdown().await;
                }
            };
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (_, o, e, status) = tokio::join!(
                feed,
                stdout.read_to_end(&mut out),
                stderr.read_to_end(&mut err),
                child.wait()
            );
            o.and(e).and(status).map(|status| (status, out, err))
        };
        let outcome = match self.env.timeout {
            Some(limit) => tokio::time::timeout(limit, work).await.ok(),
            None => Some(work.await),
        };
        let (status, out, err) = match outcome {
            None => {
                guard.kill();
                return Err(EngineError::transient(format!(
                    "git {what} timed out after {:?} and was stopped",
                    self.env.timeout.unwrap_or_default()
                )));
            }
            Some(Err(e)) => {
                guard.kill();
                return Err(EngineError::permanent(format!("git {what}: {e}")));
            }
            Some(Ok(done)) => done,
        };
        guard.disarm();
        if status.success() {
            return Ok(GitOutput { stdout: out });
        }
        let mut err = err;
        if self.report_stdout {
            let mut both = out;
            both.extend_from_slice(&err);
            err = both;
        }
        let stderr = scrub(&String::from_utf8_lossy(&err), self.token);
        let kind = classify(&stderr, self.remote);
        if kind == FailureKind::StorageFull {
            // git's message names files inside the data folder: say what happened, not where.
            tracing::warn!(git = %what, stderr = %tail(stderr.trim(), 2000), "git ran out of disk space");
            return Err(EngineError::new(kind, format!("git {what}: {DISK_FULL}")));
        }
        let tail = tail(stderr.trim(), 2000);
        Err(EngineError::new(
            kind,
            format!("git {what} failed ({status}): {tail}"),
        ))
    }

    /// A short name for messages: the subcommand, never the arguments (they may hold URLs).
    fn describe(&self) -> String {
        self.args
            .iter()
            .map(|a| a.to_string_lossy())
            .find(|a| !a.starts_with('-'))
            .map(|a| a.into_owned())
            .unwrap_or_else(|| "command".to_owned())
    }

    fn configure(&self, cmd: &mut tokio::process::Command) {
        let isolated = self.env.isolated();
        for (key, _) in std::env::vars_os() {
            let key_str = key.to_string_lossy();
            // Variables that would point git at another repository always go; in isolated mode
            // every GIT_* goes (tracing variables could print credentials).
            let drop = if isolated {
                key_str.starts_with("GIT_") && key_str != "GIT_EXEC_PATH"
            } else {
                REPO_VARS.contains(&key_str.as_ref())
            };
            if drop {
                cmd.env_remove(&key);
            }
        }
        cmd.env("LC_ALL", "C").env("LANGUAGE", "C");
        if isolated {
            cmd.env("GIT_TERMINAL_PROMPT", "0")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env_remove("SSH_ASKPASS");
            if let Some(askpass) = &self.env.askpass {
                cmd.env("GIT_ASKPASS", askpass);
            }
            match self.token {
                Some(token) => cmd.env(TOKEN_VAR, token.expose()),
                None => cmd.env_remove(TOKEN_VAR),
            };
            if let Some(token) = self.token.filter(|_| self.preemptive_auth) {
                cmd.env("GIT_CONFIG_COUNT", "1")
                    .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                    .env(
                        "GIT_CONFIG_VALUE_0",
                        format!("Authorization: Basic {}", basic_credentials(token)),
                    );
            }
            cmd.args(["-c", "credential.helper="]);
            // Durability: objects and refs reach the disk before git reports success. In current
            // git `committed` already includes `reference` (checked with strace on git 2.47: each
            // loose ref's lock file is fsynced before its rename); naming it states the intent.
            // Git never fsyncs directories: callers that need a rename or a new directory to
            // survive a power cut flush those themselves (see `commit_snapshot`).
            cmd.args([
                "-c",
                "core.fsync=committed,reference",
                "-c",
                "core.fsyncMethod=fsync",
            ]);
            // A fetch keeps its pack (one fsync) instead of exploding it into loose objects; gc
            // never outlives the command (our timeout and locks cover it).
            cmd.args([
                "-c",
                "fetch.unpackLimit=1",
                "-c",
                "transfer.unpackLimit=1",
                "-c",
                "gc.autoDetach=false",
            ]);
            if let Some(ca) = &self.env.ca_cert {
                let mut value = OsString::from("http.sslCAInfo=");
                value.push(ca);
                cmd.arg("-c").arg(value);
            }
        } else {
            cmd.env_remove(TOKEN_VAR);
        }
        for setting in &self.config {
            cmd.arg("-c").arg(setting);
        }
        if let Some(dir) = self.dir {
            cmd.arg("-C").arg(dir);
        }
        cmd.args(&self.args);
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    }
}

/// Environment variables that redirect git to another repository or object store.
const REPO_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_COMMON_DIR",
    "GIT_CEILING_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
];

/// `refname -> sha` for the refs under the given prefixes.
pub(crate) async fn list_refs(
    env: &GitEnv,
    repo: &Path,
    prefixes: &[&str],
) -> Result<BTreeMap<String, String>> {
    let out = Git::new(env)
        .dir(repo)
        .args(["for-each-ref", "--format=%(objectname) %(refname)"])
        .args(prefixes)
        .run()
        .await?;
    Ok(parse_ref_lines(&out.text()))
}

/// Parses `sha refname` lines (for-each-ref, ls-remote with tabs).
pub(crate) fn parse_ref_lines(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (sha, name) = line.split_once([' ', '\t'])?;
            Some((name.trim().to_owned(), sha.trim().to_owned()))
        })
        .collect()
}

/// Kills git's whole process group (git spawns remote helpers, index-pack, pack-objects) when a
/// run times out or its future is dropped, so nothing keeps writing into a mirror we consider idle.
struct GroupKill(Option<u32>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            // The leader is not reaped yet (we have not seen its exit), so its pid still names
            // our process group and cannot have been reused. One system call: no `kill` process
            // is spawned (which could itself fail under the very pressure that made us kill).
            if let Some(pgid) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            }
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `x-access-token:TOKEN` in base64, as HTTP Basic authentication carries it (GitHub accepts any
/// user name with a token as password).
fn basic_credentials(token: &Secret) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{}", token.expose()))
}

/// Replaces every occurrence of the token (should git ever echo it), also in the base64 form
/// [`Git::preemptive_auth`] sends, with `***`.
pub(crate) fn scrub(text: &str, token: Option<&Secret>) -> String {
    match token.filter(|t| !t.expose().is_empty()) {
        Some(t) => text
            .replace(t.expose(), "***")
            .replace(&basic_credentials(t), "***"),
        None => text.to_owned(),
    }
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Maps git's stderr to a failure class. Order matters: a full local disk first (whatever git was
/// talking to), then authentication (GitHub answers 403 or 401 to bad tokens), then "not
/// found", then the network patterns.
pub(crate) fn classify(stderr: &str, remote: bool) -> FailureKind {
    let s = stderr.to_ascii_lowercase();
    const STORAGE_FULL: &[&str] = &["no space left on device", "disk quota exceeded"];
    if STORAGE_FULL.iter().any(|p| s.contains(p)) {
        return FailureKind::StorageFull;
    }
    const AUTH: &[&str] = &[
        "authentication failed",
        "authentication required",
        "invalid username or password",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "the requested url returned error: 401",
        "the requested url returned error: 403",
        "permission denied",
        "bad credentials",
    ];
    const NOT_FOUND: &[&str] = &[
        "repository not found",
        "the requested url returned error: 404",
        "does not appear to be a git repository",
        "no such file or directory",
        "not found",
    ];
    const NETWORK: &[&str] = &[
        "the requested url returned error: 5",
        "the requested url returned error: 429",
        "early eof",
        "unexpected disconnect",
        "the remote end hung up",
        "rpc failed",
        "could not resolve host",
        "failed to connect",
        "connection refused",
        "connection reset",
        "connection timed out",
        "operation timed out",
        "timed out",
        "transfer closed",
        "operation too slow",
        "ssl",
        "tls",
        "gnutls",
        "http/2 stream",
        "curl",
        "index-pack failed",
        "protocol error",
        "unable to access",
    ];
    if remote && AUTH.iter().any(|p| s.contains(p)) {
        FailureKind::Unauthorized
    } else if remote && NOT_FOUND.iter().any(|p| s.contains(p)) {
        FailureKind::NotFound
    } else if remote && NETWORK.iter().any(|p| s.contains(p)) {
        FailureKind::Transient
    } else if remote {
        // An unrecognised failure while talking to a remote is far more often a network hiccup
        // than a permanent condition; the next scheduled run retries anyway.
        FailureKind::Transient
    } else {
        FailureKind::Permanent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ref_lines() {
        let refs = parse_ref_lines("aaa refs/heads/main\nbbb\trefs/tags/v1\n");
        assert_eq!(refs.get("refs/heads/main").map(String::as_str), Some("aaa"));
        assert_eq!(refs.get("refs/tags/v1").map(String::as_str), Some("bbb"));
    }

    #[test]
    fn classifies_common_git_failures() {
        let auth =
            "remote: Invalid username or password.\nfatal: Authentication failed for 'https://x/'";
        assert!(matches!(classify(auth, true), FailureKind::Unauthorized));
        let nf = "remote: Repository not found.\nfatal: repository 'https://x/' not found";
        assert!(matches!(classify(nf, true), FailureKind::NotFound));
        let net = "error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502\nfatal: expected flush";
        assert!(matches!(classify(net, true), FailureKind::Transient));
        assert!(matches!(
            classify("fatal: early EOF", true),
            FailureKind::Transient
        ));
        assert!(matches!(
            classify("fatal: bad object", false),
            FailureKind::Permanent
        ));
        let full = "error: file write error: No space left on device\nfatal: unable to write loose object file";
        assert_eq!(classify(full, true), FailureKind::StorageFull);
        assert_eq!(classify(full, false), FailureKind::StorageFull);
    }

    #[test]
    fn scrub_removes_the_token() {
        let secret = Secret::new("ghp_abc123".to_owned());
        assert_eq!(
            scrub("x ghp_abc123 y ghp_abc123", Some(&secret)),
            "x *** y ***"
        );
        let header = format!("Authorization: Basic {}", basic_credentials(&secret));
        assert_eq!(scrub(&header, Some(&secret)), "Authorization: Basic ***");
    }

    #[test]
    fn tail_respects_char_boundaries() {
        assert_eq!(tail("héllo", 4), "llo");
        assert_eq!(tail("abc", 10), "abc");
    }
}
