//! `ghbs-bench metadata`: what a metadata backup costs in GitHub's rate limit. One account job
//! with `options.metadata` over a world where every repository has issues, comments, pull
//! requests, reviews, labels, a milestone and a release; a first run, then a run with nothing
//! changed. The same world is then backed up by python-github-backup with `--incremental`, when
//! it is installed (see `python_github_backup.rs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ghbs_server::backup::BackupExecutor;
use ghbs_server::scheduler::Scheduler;
use ghbs_testkit::{GitHubStandIn, RepoOptions};
use ghbs_wire::JobOptions;

use crate::backup_bench::{app, run_job, RunFigures};
use crate::plain_git::PlainGit;
use crate::report::{self, figure, secs};
use crate::request_log::{line, print_endpoints, Tally};
use chrono::Utc;
use ghbs_core::Secret;

const OWNER: &str = "bench";
/// The page size of the account's repository listing (ours and python-github-backup's).
const PER_PAGE: usize = 100;
const ISSUES: usize = 5;
const COMMENTS_PER_ISSUE: usize = 2;
const PULLS: usize = 2;
const LABELS: usize = 2;

/// Options of the `metadata` subcommand (see `main.rs` for the flags).
pub struct MetadataBench {
    pub repos: usize,
    pub parallel: usize,
    /// The Python interpreter that has `github-backup` installed; `None` skips the comparison.
    pub python: Option<PathBuf>,
}

fn name(i: usize) -> String {
    format!("{OWNER}/meta-{i:04}")
}

pub async fn run(opts: MetadataBench) -> anyhow::Result<()> {
    anyhow::ensure!(opts.repos > 0, "--repos must be at least 1");
    let pages = opts.repos.div_ceil(PER_PAGE);
    report::header(
        "metadata backup benchmark",
        &format!(
            "{} private repositories, each: 2 commits, {ISSUES} issues x {COMMENTS_PER_ISSUE} comments, {PULLS} pull requests (1 commit, 1 review, 1 review comment each), {LABELS} labels, 1 milestone, 1 release; {} workers",
            opts.repos, opts.parallel
        ),
    );
    let dir = tempfile::Builder::new()
        .prefix("ghbs-bench-meta-")
        .tempdir()?;
    let gh = GitHubStandIn::start().await;
    let (gh_id, token) = gh.add_user(OWNER);

    let started = Instant::now();
    build_world(&gh, opts.repos, opts.parallel);
    figure(
        "world built in the stand-in",
        format!("{} repositories in {}", opts.repos, secs(started.elapsed())),
    );

    let options = JobOptions {
        metadata: true,
        ..JobOptions::default()
    };
    let (state, user, job) = app(
        &gh,
        opts.parallel,
        dir.path(),
        (gh_id, OWNER, &token),
        options,
    )
    .await?;
    let scheduler = Scheduler::new(state.clone(), Arc::new(BackupExecutor));

    println!("-- github-backup-scheduler: account job, metadata on --");
    fresh_budget(&gh, &token);
    let r1 = run_job(&gh, &state, &scheduler, &user, &job).await?;
    ours("1. first run", &r1, opts.repos);
    fresh_budget(&gh, &token);
    let r2 = run_job(&gh, &state, &scheduler, &user, &job).await?;
    ours("2. unchanged second run", &r2, opts.repos);
    Tally::of(&r2.log).against_unchanged_target("2.", opts.repos, pages);
    print_endpoints("2. requests by endpoint", &r2.log);

    let Some(python) = opts.python else {
        figure("python-github-backup", "not run (--no-python)");
        return Ok(());
    };
    println!("-- python-github-backup --incremental, same world --");
    let plain = PlainGit::new(&dir.path().join("python-git"), Secret::new(&token))?;
    let theirs = crate::python_github_backup::compare(
        &gh,
        &token,
        &python,
        &plain,
        &dir.path().join("python-github-backup"),
        opts.repos,
        pages,
    )
    .await?;
    if let Some([t1, t2]) = theirs {
        println!("-- side by side (wall time; counted requests) --");
        for (label, a, b) in [("first run", &r1, t1), ("unchanged second run", &r2, t2)] {
            figure(
                label,
                format!(
                    "ours {} / {} counted; python-github-backup {} / {} counted",
                    secs(a.wall),
                    Tally::of(&a.log).counted,
                    secs(b.0),
                    b.1.counted
                ),
            );
        }
    }
    Ok(())
}

/// Every run (ours and python-github-backup's) starts with GitHub's full hourly budget of a
/// token (5,000): two first runs of a large world would not fit in one, and a tool that runs
/// out waits for the reset, which would measure the budget rather than the tool.
pub(crate) fn fresh_budget(gh: &GitHubStandIn, token: &str) {
    gh.set_rate_limit(token, 5_000, Utc::now() + chrono::Duration::hours(1));
}

/// Prints one of our runs: wall time and the stand-in's tally, then the run row's own counts.
fn ours(label: &str, r: &RunFigures, repos: usize) {
    figure(label, line(r.wall, &Tally::of(&r.log), repos));
    figure(
        "   run row",
        format!(
            "{}; api_requests {} counted + {} conditional",
            r.row.status.as_str(),
            r.row.api_requests,
            r.row.api_requests_conditional
        ),
    );
    if let Some(e) = r.row.error.as_deref() {
        figure("   run error", e);
    }
}

/// `lanes` builders at a time (the stand-in's control methods run git outside its lock).
/// Private repositories, so git really asks for the token.
fn build_world(gh: &GitHubStandIn, repos: usize, lanes: usize) {
    let lanes = lanes.max(1);
    std::thread::scope(|s| {
        for lane in 0..lanes {
            s.spawn(move || {
                for i in (lane..repos).step_by(lanes) {
                    repository(gh, i);
                }
            });
        }
    });
}

fn repository(gh: &GitHubStandIn, i: usize) {
    let full = name(i);
    let (_, short) = full.split_once('/').expect("owner/name");
    gh.create_repo(
        OWNER,
        short,
        RepoOptions {
            private: true,
            has_wiki: false,
            ..RepoOptions::default()
        },
    );
    gh.commits(&full, "main", 2);
    for l in 0..LABELS {
        gh.create_label(&full, &format!("label-{l}"), "ededed");
    }
    gh.create_milestone(&full, "v1");
    for n in 0..ISSUES {
        let number = gh.create_issue(&full, &format!("Issue {n}"), "Something is wrong.");
        for c in 0..COMMENTS_PER_ISSUE {
            gh.add_issue_comment(&full, number, &format!("Comment {c}."));
        }
    }
    for p in 0..PULLS {
        let branch = format!("topic-{p}");
        gh.commits(&full, &branch, 1);
        let number = gh.create_pull(&full, &format!("Pull {p}"), &branch, "main");
        gh.add_review(&full, number, "APPROVED", "Looks good.");
        gh.add_review_comment(&full, number, "history.txt", "Nit.");
    }
    gh.create_tag(&full, "v1.0", "main");
    gh.create_release(&full, "v1.0", "Version 1.0");
}
