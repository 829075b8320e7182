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

/// The world is shaped like the account of issue 12 at `--repos 250`: totals below are spread
/// over the repositories deterministically (item `k` of a kind goes to repository
/// `k % holders`), so a few repositories hold nothing of a kind, as in a real account.
/// Issues (not pull requests) of the whole world; repositories `0..ISSUE_HOLDERS` hold them.
const ISSUES: usize = 2_300;
/// Conversation comments, on every second issue (1,150 issues: 1,000 with 3, 150 with 2).
const COMMENTS: usize = 3_300;
/// Pull requests (each on its own branch with one commit) in repositories `0..PULL_HOLDERS`.
const PULLS: usize = 1_000;
/// One review comment each on the first 760 pull requests; one review each on the first 700.
const REVIEW_COMMENTS: usize = 760;
const REVIEWS: usize = 700;
/// Three releases (each on its own tag) in each of the first 100 repositories.
const RELEASES: usize = 300;
const LABELS: usize = 2;
/// Shares of the world at 250 repositories, scaled to `--repos`.
const ISSUE_HOLDERS: f64 = 200.0 / 250.0;
const PULL_HOLDERS: f64 = 150.0 / 250.0;
const RELEASE_HOLDERS: f64 = 100.0 / 250.0;
/// The last tenth of the repositories have issues disabled (`has_issues: false`).
const ISSUES_OFF: f64 = 25.0 / 250.0;
/// `has_wiki` without a wiki (GitHub's default), and `has_wiki` with one page.
const EMPTY_WIKIS: f64 = 135.0 / 250.0;
const WIKIS: f64 = 20.0 / 250.0;

/// Options of the `metadata` subcommand (see `main.rs` for the flags).
pub struct MetadataBench {
    pub repos: usize,
    pub parallel: usize,
    /// The Python interpreter that has `github-backup` installed; `None` skips the comparison.
    pub python: Option<PathBuf>,
    /// The server binary whose memory a first run is measured with; `None` skips that.
    pub server_bin: Option<PathBuf>,
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
            "{} private repositories (2 commits, {LABELS} labels each), scaled from issue 12's account at 250: {} issues with {} comments, {} pull requests with {} reviews and {} review comments, {} releases, {} repositories with issues disabled, {} wikis and {} empty wikis; job with metadata, wiki and pull refs; {} workers",
            opts.repos,
            scale(ISSUES, opts.repos),
            scale(COMMENTS, opts.repos),
            scale(PULLS, opts.repos),
            scale(REVIEWS, opts.repos),
            scale(REVIEW_COMMENTS, opts.repos),
            scale(RELEASES, opts.repos),
            share(ISSUES_OFF, opts.repos),
            share(WIKIS, opts.repos),
            share(EMPTY_WIKIS, opts.repos),
            opts.parallel
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
        wiki: true,
        pull_refs: true,
        ..JobOptions::default()
    };
    let (state, user, job) = app(
        &gh,
        opts.parallel,
        dir.path(),
        (gh_id, OWNER, &token),
        options.clone(),
    )
    .await?;
    let scheduler = Scheduler::new(state.clone(), Arc::new(BackupExecutor));

    println!("-- github-backup-scheduler: account job, metadata on --");
    fresh_budget(&gh, &token);
    let r1 = run_job(&gh, &state, &scheduler, &user, &job).await?;
    ours("1. first run", &r1, opts.repos);
    let first = Tally::of(&r1.log).counted;
    crate::report::against(
        "1. counted, first run",
        format!("{first}"),
        &format!("<= {}", scale(3_000, opts.repos)),
        first <= scale(3_000, opts.repos),
    );
    print_endpoints("1. requests by endpoint", &r1.log);
    fresh_budget(&gh, &token);
    let r2 = run_job(&gh, &state, &scheduler, &user, &job).await?;
    ours("2. unchanged second run", &r2, opts.repos);
    Tally::of(&r2.log).against_unchanged_target("2.", opts.repos, pages);
    print_endpoints("2. requests by endpoint", &r2.log);

    match &opts.server_bin {
        Some(bin) => {
            println!("-- the real server process: memory during a first run --");
            fresh_budget(&gh, &token);
            let options = serde_json::to_value(&options)?;
            let m = crate::server_memory::first_run(
                &gh,
                &token,
                OWNER,
                options,
                bin,
                dir.path(),
                opts.parallel,
            )
            .await?;
            crate::server_memory::print(&m);
        }
        None => figure("3. real server memory", "not measured (--no-memory)"),
    }

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

/// `total` of a kind at 250 repositories, scaled to `repos`.
fn scale(total: usize, repos: usize) -> usize {
    total * repos / 250
}

/// How many of `repos` repositories a share covers.
fn share(fraction: f64, repos: usize) -> usize {
    (fraction * repos as f64).round() as usize
}

/// What repository `i` of `repos` holds.
struct Plan {
    issues: Vec<Vec<usize>>,
    pulls: Vec<Vec<usize>>,
    releases: Vec<usize>,
}

/// Spreads the kinds over the repositories (see the constants).
fn plan(repos: usize) -> Plan {
    let holders = |f: f64| share(f, repos).max(1);
    let mut issues = vec![Vec::new(); repos];
    let n_issues = scale(ISSUES, repos);
    let mut comments = vec![0usize; n_issues];
    if n_issues > 0 {
        let commented = n_issues.div_ceil(2);
        for j in 0..scale(COMMENTS, repos) {
            comments[(j % commented) * 2 % n_issues] += 1;
        }
    }
    for (k, n) in comments.into_iter().enumerate() {
        issues[k % holders(ISSUE_HOLDERS)].push(n);
    }
    let mut pulls = vec![Vec::new(); repos];
    for p in 0..scale(PULLS, repos) {
        pulls[p % holders(PULL_HOLDERS)].push(p);
    }
    let mut releases = vec![0; repos];
    for r in 0..scale(RELEASES, repos) {
        releases[r % holders(RELEASE_HOLDERS)] += 1;
    }
    Plan {
        issues,
        pulls,
        releases,
    }
}

/// `lanes` builders at a time (the stand-in's control methods run git outside its lock).
/// Private repositories, so git really asks for the token.
fn build_world(gh: &GitHubStandIn, repos: usize, lanes: usize) {
    let lanes = lanes.max(1);
    let plan = plan(repos);
    let plan = &plan;
    std::thread::scope(|s| {
        for lane in 0..lanes {
            s.spawn(move || {
                for i in (lane..repos).step_by(lanes) {
                    repository(gh, i, repos, plan);
                }
            });
        }
    });
}

fn repository(gh: &GitHubStandIn, i: usize, repos: usize, plan: &Plan) {
    let full = name(i);
    let (_, short) = full.split_once('/').expect("owner/name");
    let empty_wikis = share(EMPTY_WIKIS, repos);
    let wiki = i >= empty_wikis && i < empty_wikis + share(WIKIS, repos);
    gh.create_repo(
        OWNER,
        short,
        RepoOptions {
            private: true,
            has_wiki: i < empty_wikis || wiki,
            has_issues: i < repos - share(ISSUES_OFF, repos),
            ..RepoOptions::default()
        },
    );
    gh.commits(&full, "main", 2);
    if wiki {
        gh.commit(
            &format!("{full}.wiki"),
            "master",
            &[("Home.md", "# Home\n")],
            "wiki home",
        );
    }
    for l in 0..LABELS {
        gh.create_label(&full, &format!("label-{l}"), "ededed");
    }
    if !plan.issues[i].is_empty() {
        gh.create_milestone(&full, "v1");
    }
    for (n, comments) in plan.issues[i].iter().enumerate() {
        let number = gh.create_issue(&full, &format!("Issue {n}"), "Something is wrong.");
        for c in 0..*comments {
            gh.add_issue_comment(&full, number, &format!("Comment {c}."));
        }
    }
    for &p in &plan.pulls[i] {
        let branch = format!("topic-{p}");
        gh.commits(&full, &branch, 1);
        let number = gh.create_pull(&full, &format!("Pull {p}"), &branch, "main");
        if p < scale(REVIEWS, repos) {
            gh.add_review(&full, number, "APPROVED", "Looks good.");
        }
        if p < scale(REVIEW_COMMENTS, repos) {
            gh.add_review_comment(&full, number, "history.txt", "Nit.");
        }
    }
    for r in 0..plan.releases[i] {
        let tag = format!("v1.{r}");
        gh.create_tag(&full, &tag, "main");
        gh.create_release(&full, &tag, &format!("Version 1.{r}"));
    }
}
