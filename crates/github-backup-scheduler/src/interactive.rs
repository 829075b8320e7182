//! The interactive mode: no arguments on a terminal. A welcome line, a login prompt when needed,
//! then a menu whose every action also exists as a scriptable subcommand.

use inquire::validator::Validation;
use inquire::{Confirm, Select, Text};

use crate::commands::download_check as verify;
use crate::commands::fetch::{download, site_hint, Dest};
use crate::commands::{jobs, prompt, run, schedule, Ctx};
use crate::exit::{CliError, CliResult};
use crate::output;
use crate::validate;
use ghbs_wire::{DownloadFormat, Job, JobCreate};

const SCHEDULE: &str = "Schedule a new backup";
const SEE_JOBS: &str = "See my jobs";
const DOWNLOAD: &str = "Download a backup";
const RUN_NOW: &str = "Run a backup now";
const DELETE: &str = "Delete a scheduled backup";
const EXIT: &str = "Exit";

pub async fn run(ctx: &Ctx) -> CliResult {
    println!(
        "Welcome to github-backup-scheduler: scheduled, versioned backups of your GitHub repositories (server: {}).",
        ctx.server
    );
    ensure_login(ctx).await?;
    loop {
        let menu = vec![SCHEDULE, SEE_JOBS, DOWNLOAD, RUN_NOW, DELETE, EXIT];
        let choice =
            match prompt(move || Select::new("What would you like to do?", menu).prompt()).await {
                Ok(c) => c,
                Err(CliError::Cancelled) => return Ok(()),
                Err(e) => return Err(e),
            };
        let result = match choice {
            SCHEDULE => schedule_new(ctx).await,
            SEE_JOBS => jobs::list(ctx).await,
            DOWNLOAD => download_backup(ctx).await,
            RUN_NOW => run_now(ctx).await,
            DELETE => delete_job(ctx).await,
            _ => return Ok(()),
        };
        match result {
            Ok(()) | Err(CliError::Cancelled) => {}
            // Nothing else will work either: stop with the right exit code.
            Err(e @ (CliError::Unreachable { .. } | CliError::KeyRejected { .. })) => {
                return Err(e)
            }
            Err(e) => eprintln!("error: {e}"),
        }
    }
}

/// Logs in when there is no key for this server or the server rejects the one we have.
async fn ensure_login(ctx: &Ctx) -> CliResult {
    if ctx.stored_key()?.is_some() {
        match ctx.api()?.me().await {
            Ok(user) => {
                println!("Logged in as {}.", user.login);
                return Ok(());
            }
            Err(CliError::KeyRejected { .. }) => {
                println!("The server no longer accepts this computer's key; please log in again.");
            }
            Err(e) => return Err(e),
        }
    } else {
        println!("You are not logged in to this server yet.");
    }
    let args = crate::cli::LoginArgs {
        token_stdin: false,
        label: None,
        expires: None,
    };
    crate::commands::login::login(ctx, &args).await
}

async fn schedule_new(ctx: &Ctx) -> CliResult {
    let target = prompt(|| {
        Text::new("Repository to back up (owner/name, GitHub URL, or an account name):")
            .with_validator(|s: &str| {
                Ok(match ghbs_core::Target::parse_syntax(s) {
                    Ok(_) => Validation::Valid,
                    Err(e) => Validation::Invalid(e.to_string().into()),
                })
            })
            .prompt()
    })
    .await?;
    let tz = validate::local_timezone();
    let frequencies = vec!["daily", "weekly", "monthly", "custom"];
    let frequency = prompt(move || Select::new("How often?", frequencies).prompt()).await?;
    let base = match frequency {
        "weekly" => {
            let days = validate::weekday_names();
            let day = prompt(move || Select::new("Which day?", days).prompt()).await?;
            format!("weekly on {day}")
        }
        "monthly" => {
            let day = prompt(|| {
                Text::new("Which day of the month (1-31)?")
                    .with_validator(|s: &str| Ok(valid_or(validate::day_of_month(s).map(|_| ()))))
                    .prompt()
            })
            .await?;
            format!("monthly on {}", validate::day_of_month(&day)?)
        }
        "custom" => {
            let zone = tz.clone();
            let text = prompt(move || {
                Text::new("Schedule (e.g. `every 2 days at 04:00` or `cron 0 3 * * 1-5`):")
                    .with_validator(move |s: &str| {
                        Ok(valid_or(validate::schedule(s, &zone).map(|_| ())))
                    })
                    .prompt()
            })
            .await?;
            validate::schedule(&text, &tz)?
        }
        _ => "daily".to_string(),
    };
    let schedule_text = if frequency == "custom" {
        base
    } else {
        let time = prompt(|| {
            Text::new(
                "At what time (HH:MM, 24-hour)? Leave empty to let the server pick a quiet time:",
            )
            .with_validator(|s: &str| {
                Ok(if s.trim().is_empty() {
                    Validation::Valid
                } else {
                    valid_or(validate::time_of_day(s).map(|_| ()))
                })
            })
            .prompt()
        })
        .await?;
        if time.trim().is_empty() {
            base
        } else {
            format!("{base} at {}", validate::time_of_day(&time)?)
        }
    };
    let schedule_text = validate::schedule(&schedule_text, &tz)?;
    let question = format!("Back up {} {} ({})?", target.trim(), schedule_text, tz);
    if !prompt(move || Confirm::new(&question).with_default(true).prompt()).await? {
        println!("Nothing scheduled.");
        return Ok(());
    }
    let create = JobCreate {
        target: target.trim().to_string(),
        schedule: schedule_text,
        timezone: Some(tz),
        retention: None,
        options: None,
    };
    let job = ctx.api()?.create_job(&create).await?;
    schedule::print_scheduled(ctx, &job);
    Ok(())
}

fn valid_or(result: CliResult) -> Validation {
    match result {
        Ok(()) => Validation::Valid,
        Err(e) => Validation::Invalid(e.to_string().into()),
    }
}

/// Lets the user pick one of their jobs; `None` (with a hint) when they have none.
async fn pick_job(ctx: &Ctx, question: &str) -> CliResult<Option<Job>> {
    let mut jobs = ctx.api()?.jobs().await?.jobs;
    if jobs.is_empty() {
        println!("You have no jobs yet: choose \"{SCHEDULE}\" first.");
        return Ok(None);
    }
    let labels: Vec<String> = jobs
        .iter()
        .map(|j| {
            format!(
                "#{} {} — {} ({})",
                j.id,
                j.target,
                j.schedule,
                output::state(j.state)
            )
        })
        .collect();
    let question = question.to_string();
    let picked = prompt(move || Select::new(&question, labels).raw_prompt()).await?;
    Ok(Some(jobs.swap_remove(picked.index)))
}

async fn download_backup(ctx: &Ctx) -> CliResult {
    let Some(job) = pick_job(ctx, "Download a backup of which job?").await? else {
        return Ok(());
    };
    let api = ctx.api()?;
    let snapshots = api.snapshots(job.id).await?.snapshots;
    if snapshots.is_empty() {
        println!(
            "Job {} has no backups yet: choose \"{RUN_NOW}\" first.",
            job.id
        );
        return Ok(());
    }
    let labels: Vec<String> = snapshots
        .iter()
        .map(|s| {
            format!(
                "#{} {} — {} refs, {}",
                s.id,
                output::when(s.created_at),
                s.refs,
                output::size(s.size_bytes)
            )
        })
        .collect();
    let picked = prompt(move || Select::new("Which backup?", labels).raw_prompt()).await?;
    let snapshot = &snapshots[picked.index];
    let formats = if job.target_kind == ghbs_wire::TargetKind::Account {
        vec![
            "bundle (one tar holding a git bundle per repository)",
            "tar.gz (a bundle plus metadata per repository)",
            "zip (one tar holding a zip of the default branch per repository)",
            "site (a web site to read offline: every repository's README, issues, pull requests, releases, wiki)",
        ]
    } else {
        vec![
            "bundle (every branch and tag; `git clone` restores it)",
            "tar.gz (the mirror plus metadata)",
            "zip (the default branch's files)",
            "site (a web site to read offline: README, issues, pull requests, releases, wiki)",
        ]
    };
    let picked = prompt(move || Select::new("Which format?", formats).raw_prompt()).await?;
    let format = [
        DownloadFormat::Bundle,
        DownloadFormat::TarGz,
        DownloadFormat::Zip,
        DownloadFormat::Site,
    ][picked.index];
    let got = download(ctx, &api, snapshot.id, format, None, Dest::Dir(".".into())).await?;
    let inside = if got.repos.is_empty() {
        String::new()
    } else {
        format!(
            ", one verified {} per repository: {}",
            verify::member_kind(format),
            got.repos.join(", ")
        )
    };
    println!(
        "Saved {} ({}{inside}).",
        got.path.display(),
        output::size(got.bytes as i64)
    );
    if format == DownloadFormat::Site {
        println!("{}.", site_hint(&got.path));
    }
    Ok(())
}

async fn run_now(ctx: &Ctx) -> CliResult {
    let Some(job) = pick_job(ctx, "Run which job now?").await? else {
        return Ok(());
    };
    let started = ctx.api()?.start_run(job.id).await?;
    let finished = run::wait(ctx, started).await?;
    run::finish(ctx, &finished)
}

async fn delete_job(ctx: &Ctx) -> CliResult {
    let Some(job) = pick_job(ctx, "Delete which job?").await? else {
        return Ok(());
    };
    let purge = prompt(|| {
        Confirm::new("Also delete all of its backups? (No keeps them on the server)")
            .with_default(false)
            .prompt()
    })
    .await?;
    let question = if purge {
        format!(
            "Delete job {} ({}) and ALL its backups? This cannot be undone.",
            job.id, job.target
        )
    } else {
        format!("Delete job {} ({})?", job.id, job.target)
    };
    if !prompt(move || Confirm::new(&question).with_default(false).prompt()).await? {
        println!("Nothing deleted.");
        return Ok(());
    }
    jobs::delete_confirmed(ctx, job.id, purge).await
}
