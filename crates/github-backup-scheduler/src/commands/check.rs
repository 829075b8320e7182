//! `verify ID [--snapshot S]` and `verify --all`: the server reads its backups back (git
//! objects, snapshot refs, manifests, metadata hashes) in a `verify` run; this command queues
//! the runs, waits for them, prints one line per problem and exits 1 when any is found.
//! (The checks of a downloaded file are in `download_check`.)

use ghbs_wire::{Run, RunStatus};
use serde::Serialize;

use super::Ctx;
use crate::cli::VerifyArgs;
use crate::exit::{CliError, CliResult};

/// What `--json` prints: the finished verification run of each job.
#[derive(Serialize)]
struct Report {
    runs: Vec<Run>,
}

pub async fn verify(ctx: &Ctx, args: &VerifyArgs) -> CliResult {
    let api = ctx.api()?;
    let jobs: Vec<i64> = match (args.id, args.all) {
        (Some(_), true) => return Err(CliError::Usage("give a job id or --all, not both".into())),
        (None, false) => {
            return Err(CliError::Usage(
                "which job? give its id (see `jobs`), or --all for every job".into(),
            ))
        }
        (None, true) if args.snapshot.is_some() => {
            return Err(CliError::Usage(
                "--snapshot names a snapshot of one job: give the job id too".into(),
            ))
        }
        (Some(id), false) => vec![id],
        (None, true) => api.jobs().await?.jobs.iter().map(|j| j.id).collect(),
    };
    // Queue every verification first: the server runs them side by side.
    let mut queued = Vec::with_capacity(jobs.len());
    for &id in &jobs {
        queued.push(api.start_verify(id, args.snapshot).await?);
    }
    let mut finished = Vec::with_capacity(queued.len());
    let mut failed = Vec::new();
    for run in queued {
        let run = super::run::wait(ctx, run).await?;
        if run.status != RunStatus::Succeeded {
            failed.push(run.clone());
        }
        finished.push(run);
    }
    if !ctx.out.json(&Report {
        runs: finished.clone(),
    }) {
        for run in finished.iter().filter(|r| r.status == RunStatus::Succeeded) {
            let what = run
                .snapshot_id
                .map_or("every snapshot".to_owned(), |s| format!("snapshot {s}"));
            ctx.out.line(format!(
                "Job {}: {what} verified, no problem found.",
                run.job_id
            ));
        }
    }
    if failed.is_empty() {
        if jobs.is_empty() {
            ctx.out.line("No jobs to verify.");
        }
        return Ok(());
    }
    let text: Vec<String> = failed
        .iter()
        .map(|run| {
            let problems = run.error.as_deref().unwrap_or("no reason given");
            let lines: Vec<String> = problems.lines().map(|l| format!("  {l}")).collect();
            format!(
                "verification of job {} failed (run {}):\n{}",
                run.job_id,
                run.id,
                lines.join("\n")
            )
        })
        .collect();
    Err(CliError::failed(text.join("\n")))
}
