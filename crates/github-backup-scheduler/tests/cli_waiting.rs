//! The built binary against the stand-in with an exhausted rate limit: `runs`, `jobs`,
//! `job show` and a `run --wait` without a terminal say "waiting for GitHub rate limit until
//! HH:MM:SS UTC", not just `running`.

mod support;

use std::process::Stdio;

use chrono::{Duration, SubsecRound, Utc};
use support::World;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waiting_for_the_rate_limit_says_until_when_without_json() {
    let w = World::start().await;
    w.login().await;
    let job = w
        .ok(&["schedule", "octo/hello", "--daily", "--json"])
        .await
        .json();
    let id = job["id"].as_i64().unwrap().to_string();
    // Spent for ten minutes: within the one-hour wait bound, so the run waits.
    let reset = Utc::now().trunc_subsecs(0) + Duration::minutes(10);
    w.github.set_rate_limit(&w.token, 0, reset);
    let want = format!(
        "waiting for GitHub rate limit until {}",
        reset.format("%H:%M:%S UTC")
    );
    w.ok(&["run", &id]).await;
    let mut runs = String::new();
    for _ in 0..300 {
        runs = w.ok(&["runs", &id]).await.stdout;
        if runs.contains(&want) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(runs.contains(&want), "runs shows the wait: {runs}");
    let jobs = w.ok(&["jobs"]).await.stdout;
    assert!(jobs.contains(&want), "jobs shows the wait: {jobs}");
    let show = w.ok(&["job", "show", &id]).await.stdout;
    assert!(show.contains(&want), "job show shows the wait: {show}");

    // `run --wait` on a pipe: the wait is a line on stderr (the run is already going).
    let mut follow = w.cli();
    follow
        .args(["run", &id, "--wait"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = follow.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    // A bound against hanging, not a timing assertion: the line comes within a poll or two.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.contains(&want);
            seen.push(line);
            if done {
                break;
            }
        }
    })
    .await;
    assert!(
        seen.iter().any(|l| l.contains(&want)),
        "run --wait said: {seen:?}"
    );
    child.kill().await.unwrap();
}
