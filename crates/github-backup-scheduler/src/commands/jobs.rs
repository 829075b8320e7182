//! `jobs`, `job show|pause|resume|delete`, `runs` and `snapshots`: reading and managing jobs.

use std::io::IsTerminal;

use serde_json::json;

use super::{prompt, Ctx};
use crate::cli::{DeleteArgs, ForgetRepoArgs, JobCommand};
use crate::exit::{CliError, CliResult};
use crate::output;

pub async fn list(ctx: &Ctx) -> CliResult {
    let jobs = ctx.api()?.jobs().await?;
    if ctx.out.json(&jobs) {
        return Ok(());
    }
    if jobs.jobs.is_empty() {
        ctx.out
            .line("No jobs yet: schedule one with `github-backup-scheduler schedule owner/name`.");
    } else {
        ctx.out.table(output::jobs_table(&jobs.jobs));
    }
    Ok(())
}

pub async fn job(ctx: &Ctx, cmd: &JobCommand) -> CliResult {
    match cmd {
        JobCommand::Show(id) => {
            let job = ctx.api()?.job(id.id).await?;
            if !ctx.out.json(&job) {
                ctx.out.line(output::job_details(&job));
            }
        }
        JobCommand::Pause(id) => {
            let job = ctx.api()?.pause(id.id).await?;
            if !ctx.out.json(&job) {
                ctx.out
                    .line(format!("Paused job {} ({}).", job.id, job.target));
            }
        }
        JobCommand::Resume(id) => {
            let job = ctx.api()?.resume(id.id).await?;
            if !ctx.out.json(&job) {
                ctx.out.line(format!(
                    "Resumed job {} ({}); next run {}.",
                    job.id,
                    job.target,
                    output::when(job.next_run_at)
                ));
            }
        }
        JobCommand::Edit(args) => super::schedule::edit(ctx, args).await?,
        JobCommand::Delete(args) => delete(ctx, args).await?,
        JobCommand::ForgetRepo(args) => forget_repo(ctx, args).await?,
    }
    Ok(())
}

async fn delete(ctx: &Ctx, args: &DeleteArgs) -> CliResult {
    let confirm = args.purge && !args.yes;
    if confirm && !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(CliError::usage(format!(
            "deleting job {} with --purge also deletes all its backups, and there is no terminal to confirm: add --yes",
            args.id
        )));
    }
    let api = ctx.api()?;
    if confirm {
        let job = api.job(args.id).await?;
        let question = format!(
            "Delete job {} ({}) and ALL its backups? This cannot be undone.",
            job.id, job.target
        );
        let confirmed = prompt(move || {
            inquire::Confirm::new(&question)
                .with_default(false)
                .prompt()
        })
        .await?;
        if !confirmed {
            return Err(CliError::failed("nothing deleted"));
        }
    }
    delete_confirmed(ctx, args.id, args.purge).await
}

async fn forget_repo(ctx: &Ctx, args: &ForgetRepoArgs) -> CliResult {
    let repo = args.repo.trim();
    let mut parts = repo.split('/');
    let well_formed = matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(o), Some(n), None) if !o.is_empty() && !n.is_empty()
    );
    if !well_formed {
        return Err(CliError::usage(format!(
            "{repo:?} is not a repository: give it as owner/name, as `snapshots {}` lists it",
            args.id
        )));
    }
    if !args.yes {
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            return Err(CliError::usage(format!(
                "forgetting {repo} lets its backups age out of job {}, and there is no terminal to confirm: add --yes",
                args.id
            )));
        }
        let question = format!(
            "Stop keeping {repo} in job {}? Its backups leave with the snapshots that hold them.",
            args.id
        );
        let confirmed = prompt(move || {
            inquire::Confirm::new(&question)
                .with_default(false)
                .prompt()
        })
        .await?;
        if !confirmed {
            return Err(CliError::failed("nothing forgotten"));
        }
    }
    let done = ctx.api()?.forget_repo(args.id, repo).await?;
    if !ctx.out.json(&done) {
        ctx.out.line(format!(
            "Forgot {} in job {}: no longer kept; {} snapshot(s) still hold it until retention drops them.",
            done.full_name, args.id, done.snapshots_holding
        ));
    }
    Ok(())
}

/// Deletes after any confirmation, and says what happened to the backups.
pub async fn delete_confirmed(ctx: &Ctx, id: i64, purge: bool) -> CliResult {
    ctx.api()?.delete_job(id, purge).await?;
    if !ctx.out.json(&json!({ "deleted": id, "purged": purge })) {
        if purge {
            ctx.out.line(format!("Deleted job {id} and its backups."));
        } else {
            ctx.out.line(format!(
                "Deleted job {id}; its backups are kept on the server."
            ));
        }
    }
    Ok(())
}

pub async fn runs(ctx: &Ctx, id: i64) -> CliResult {
    let runs = ctx.api()?.runs(id).await?;
    if ctx.out.json(&runs) {
        return Ok(());
    }
    if runs.runs.is_empty() {
        ctx.out.line(format!(
            "Job {id} has not run yet: start it with `github-backup-scheduler run {id} --wait`."
        ));
    } else {
        ctx.out.table(output::runs_table(&runs.runs));
    }
    Ok(())
}

pub async fn snapshots(ctx: &Ctx, id: i64) -> CliResult {
    let snaps = ctx.api()?.snapshots(id).await?;
    if ctx.out.json(&snaps) {
        return Ok(());
    }
    if snaps.snapshots.is_empty() {
        ctx.out.line(format!("Job {id} has no snapshots yet: start a backup with `github-backup-scheduler run {id} --wait`."));
    } else {
        ctx.out.table(output::snapshots_table(&snaps.snapshots));
    }
    Ok(())
}
