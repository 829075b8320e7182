//! python-github-backup (PyPI `github-backup`), run against the same stand-in world so its
//! request counts sit next to ours.
//!
//! It cannot talk to the stand-in unmodified: every URL it builds is `"https://{0}/…"` with
//! `{0}` = `--github-host` + `/api/v3` (`get_github_api_host`, `retrieve_repositories`,
//! `backup_repositories`), while the stand-in speaks plain HTTP; and it clones from
//! `https://{token}:x-oauth-basic@{host}/{owner}/{name}.git` (`get_github_repo_url`), while the
//! stand-in serves git under `/git/`. A small shim, run with `python -c` (the installed package is
//! never modified), changes the transport only:
//!
//! - `github_backup.github_backup.urlopen` is wrapped to turn `https://HOST/` into `http://HOST/`
//!   for the stand-in's host (pagination `Link`s are already `http://`);
//! - `get_github_repo_url` returns the listing's `clone_url`, and git gets the token from the
//!   bench's askpass script (the tool's own way puts the token in git's argv and `.git/config`);
//! - the token is added to `sys.argv` inside the interpreter (`-t` is the tool's only non-file,
//!   non-keychain way to take it): it never appears in the process's command line.
//!
//! Which requests it sends, and when, is the tool's own logic, untouched.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ghbs_testkit::GitHubStandIn;
use tokio::process::Command;

use crate::plain_git::PlainGit;
use crate::report::{figure, secs};
use crate::request_log::{line, print_endpoints, Tally};

/// The version docs/benchmarks.md compares with (pinned so figures stay comparable).
pub(crate) const VERSION: &str = "0.65.1";
const OWNER: &str = "bench";
const HOST_VAR: &str = "GHBS_BENCH_GH_HOST";
/// A run that takes longer than this is stopped and reported as failed.
const RUN_LIMIT: Duration = Duration::from_secs(30 * 60);

/// What our account job with `metadata` backs up, in the tool's flags: mirrors (`--bare`),
/// issues with comments, pull requests with details, conversation, review comments, reviews and
/// commits, labels, milestones and releases, private repositories included; `--incremental`.
const FLAGS: &[&str] = &[
    "--incremental",
    "--private",
    "--repositories",
    "--bare",
    "--issues",
    "--issue-comments",
    "--pulls",
    "--pull-details",
    "--pull-comments",
    "--pull-reviews",
    "--pull-commits",
    "--labels",
    "--milestones",
    "--releases",
    "--quiet",
];

const SHIM: &str = r#"
import os, sys, urllib.request
import github_backup.github_backup as gb
from github_backup import cli

host = os.environ["GHBS_BENCH_GH_HOST"]
prefix = "https://" + host + "/"
real_urlopen = gb.urlopen

def urlopen(request, *args, **kwargs):
    if isinstance(request, urllib.request.Request):
        if request.full_url.startswith(prefix):
            request.full_url = "http://" + request.full_url[len("https://"):]
    elif isinstance(request, str) and request.startswith(prefix):
        request = "http://" + request[len("https://"):]
    return real_urlopen(request, *args, **kwargs)

gb.urlopen = urlopen
gb.get_github_repo_url = lambda args, repository: repository["clone_url"]
sys.argv = ["github-backup", "-t", os.environ["GHBS_BENCH_GIT_TOKEN"]] + sys.argv[1:]
cli.main()
"#;

/// Runs the tool twice on the world (first run, then nothing changed) and prints both runs.
/// `Ok(None)` when it is not installed or a run failed (printed as such).
pub(crate) async fn compare(
    gh: &GitHubStandIn,
    token: &str,
    python: &Path,
    git: &PlainGit,
    out: &Path,
    repos: usize,
    pages: usize,
) -> anyhow::Result<Option<[(Duration, Tally); 2]>> {
    let version = match installed_version(python).await {
        Ok(v) => v,
        Err(why) => {
            figure(
                "python-github-backup",
                format!(
                    "not run: {why:#} (install: pip install github-backup=={VERSION}; pass --python)"
                ),
            );
            return Ok(None);
        }
    };
    figure(
        "python-github-backup version",
        format!(
            "{version}{}; runs serially; flags: {}",
            if version == VERSION {
                String::new()
            } else {
                format!(" (docs/benchmarks.md compares {VERSION})")
            },
            FLAGS.join(" ")
        ),
    );
    std::fs::create_dir_all(out)?;
    let base = gh.base_url();
    let host = base.trim_start_matches("http://");
    let mut runs = Vec::with_capacity(2);
    for (n, label) in ["1. first run", "2. unchanged second run"]
        .into_iter()
        .enumerate()
    {
        crate::metadata_bench::fresh_budget(gh, token);
        gh.clear_requests();
        let started = Instant::now();
        let result = run_once(python, git, host, out).await;
        let wall = started.elapsed();
        let log = gh.requests();
        let t = Tally::of(&log);
        match result {
            Err(e) => {
                figure(label, format!("FAILED after {}: {e:#}", secs(wall)));
                figure("   requests until then", t.summary(repos));
                return Ok(None);
            }
            Ok(warnings) => {
                figure(label, line(wall, &t, repos));
                if let Some(w) = warnings {
                    figure("   its stderr", w);
                }
            }
        }
        if n == 1 {
            t.against_unchanged_target("2.", repos, pages);
            print_endpoints("2. requests by endpoint", &log);
        }
        runs.push((wall, t));
    }
    let second = runs.pop().expect("two runs");
    let first = runs.pop().expect("two runs");
    Ok(Some([first, second]))
}

async fn installed_version(python: &Path) -> anyhow::Result<String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m, github_backup; print(m.version('github-backup'))",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", python.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "{} cannot import github_backup: {}",
            python.display(),
            last_line(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// One run; `Ok(Some(..))` summarises its stderr (warnings, and git's progress lines it relays).
async fn run_once(
    python: &Path,
    git: &PlainGit,
    host: &str,
    out: &Path,
) -> anyhow::Result<Option<String>> {
    let child = Command::new(python)
        .arg("-c")
        .arg(SHIM)
        .arg(OWNER)
        .args(FLAGS)
        .arg("--github-host")
        .arg(host)
        .arg("--output-directory")
        .arg(out)
        .envs(git.env())
        .env(HOST_VAR, host)
        .env("no_proxy", "*")
        .env("NO_PROXY", "*")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let done = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .map_err(|_| anyhow::anyhow!("still running after {}", secs(RUN_LIMIT)))??;
    if !done.status.success() {
        anyhow::bail!("{}: {}", done.status, last_line(&done.stderr));
    }
    let stderr = String::from_utf8_lossy(&done.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    Ok(lines
        .first()
        .map(|first| format!("{} lines, first: {first}", lines.len())))
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shim reads the token and the host from the variables the bench sets.
    #[test]
    fn shim_reads_the_variables_the_bench_sets() {
        assert!(SHIM.contains(&format!("os.environ[\"{}\"]", crate::plain_git::TOKEN_VAR)));
        assert!(SHIM.contains(&format!("os.environ[\"{HOST_VAR}\"]")));
    }
}
