//! The practical limit the backup engine is compared with: plain `git clone --mirror` and
//! `git fetch`, `parallel` at a time, over the same stand-in URLs. The token reaches git the way
//! the engine passes it: an askpass script reading an environment variable, never argv or a URL.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ghbs_core::Secret;
use tokio::process::Command;

/// The variable the askpass script prints the token from.
pub const TOKEN_VAR: &str = "GHBS_BENCH_GIT_TOKEN";
const ASKPASS: &str = "#!/bin/sh\ncase \"$1\" in\n  Username*|username*) echo x-access-token ;;\n  *) printf '%s\\n' \"$GHBS_BENCH_GIT_TOKEN\" ;;\nesac\n";

pub struct PlainGit {
    askpass: PathBuf,
    home: PathBuf,
    token: Secret,
}

/// One git invocation: arguments and working directory.
struct GitTask {
    args: Vec<String>,
    dir: PathBuf,
}

impl PlainGit {
    /// Writes the askpass script (mode 0700) and an empty HOME under `dir`, so the user's own
    /// git configuration and credential helpers play no part.
    pub fn new(dir: &Path, token: Secret) -> anyhow::Result<PlainGit> {
        let home = dir.join("home");
        std::fs::create_dir_all(&home)?;
        let askpass = dir.join("askpass.sh");
        std::fs::write(&askpass, ASKPASS)?;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))?;
        Ok(PlainGit {
            askpass,
            home,
            token,
        })
    }

    /// `git clone --mirror URL DEST` for every pair, `parallel` at a time; returns the wall time.
    pub async fn clone_all(
        self: &Arc<Self>,
        pairs: &[(String, PathBuf)],
        parallel: usize,
    ) -> anyhow::Result<Duration> {
        let tasks = pairs
            .iter()
            .map(|(url, dest)| GitTask {
                args: vec![
                    "clone".into(),
                    "--mirror".into(),
                    "--quiet".into(),
                    url.clone(),
                    dest.display().to_string(),
                ],
                dir: self.home.clone(),
            })
            .collect();
        self.run_all(tasks, parallel).await
    }

    /// `git fetch --quiet origin` in every mirror (a mirror clone fetches `+refs/*:refs/*` with
    /// pruning), `parallel` at a time; returns the wall time.
    pub async fn fetch_all(
        self: &Arc<Self>,
        mirrors: &[PathBuf],
        parallel: usize,
    ) -> anyhow::Result<Duration> {
        let tasks = mirrors
            .iter()
            .map(|m| GitTask {
                args: vec!["fetch".into(), "--quiet".into(), "origin".into()],
                dir: m.clone(),
            })
            .collect();
        self.run_all(tasks, parallel).await
    }

    async fn run_all(
        self: &Arc<Self>,
        tasks: Vec<GitTask>,
        parallel: usize,
    ) -> anyhow::Result<Duration> {
        let tasks = Arc::new(tasks);
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut lanes = tokio::task::JoinSet::new();
        for _ in 0..parallel.max(1) {
            let (me, tasks, next) = (self.clone(), tasks.clone(), next.clone());
            lanes.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(task) = tasks.get(i) else {
                        return anyhow::Ok(());
                    };
                    me.git(task).await?;
                }
            });
        }
        while let Some(r) = lanes.join_next().await {
            r??;
        }
        Ok(started.elapsed())
    }

    /// The environment that gives git (or a tool that runs git) the token through the askpass
    /// script: an empty HOME, no system configuration, no prompt, credential helpers cleared.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("HOME", self.home.clone().into()),
            ("GIT_CONFIG_NOSYSTEM", "1".into()),
            ("GIT_CONFIG_COUNT", "1".into()),
            ("GIT_CONFIG_KEY_0", "credential.helper".into()),
            ("GIT_CONFIG_VALUE_0", "".into()),
            ("GIT_TERMINAL_PROMPT", "0".into()),
            ("GIT_ASKPASS", self.askpass.clone().into()),
            (TOKEN_VAR, self.token.expose().into()),
        ]
    }

    async fn git(&self, task: &GitTask) -> anyhow::Result<()> {
        let out = Command::new("git")
            .args(["-c", "credential.helper="])
            .args(&task.args)
            .current_dir(&task.dir)
            .envs(self.env())
            .stdin(Stdio::null())
            .output()
            .await?;
        if !out.status.success() {
            anyhow::bail!(
                "git {} failed: {}",
                task.args.first().map(String::as_str).unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}
