//! `run ID [--wait]`: start a backup now and optionally follow it to the end.

use std::time::Duration;

use ghbs_wire::{Run, RunStatus};
use indicatif::{ProgressBar, ProgressStyle};

use super::Ctx;
use crate::cli::RunArgs;
use crate::exit::{CliError, CliResult};
use crate::output;

pub async fn run(ctx: &Ctx, args: &RunArgs) -> CliResult {
    let api = ctx.api()?;
    let run = api.start_run(args.id).await?;
    if !args.wait {
        if !ctx.out.json(&run) {
            ctx.out.line(format!(
                "Started run {} of job {}: follow it with `github-backup-scheduler runs {}`.",
                run.id, run.job_id, run.job_id
            ));
        }
        return Ok(());
    }
    let run = wait(ctx, run).await?;
    finish(ctx, &run)
}

/// Polls the run about once a second until it ends, with a spinner on stderr.
pub async fn wait(ctx: &Ctx, mut run: Run) -> CliResult<Run> {
    let api = ctx.api()?;
    let spinner = if ctx.out.progress() {
        let s = ProgressBar::new_spinner();
        s.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        s.enable_steady_tick(Duration::from_millis(120));
        s
    } else {
        ProgressBar::hidden()
    };
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.tick().await;
    let mut said = String::new();
    while !run.status.is_finished() {
        let text = describe(&run);
        // No spinner (not a terminal): what the run waits for becomes a line when it changes,
        // so a log shows it ("waiting for GitHub rate limit until 20:11:30 UTC"); plain
        // `queued` and `running` stay silent, so stderr holds only the outcome otherwise.
        let telling = output::activity(&run) != run.status.as_str();
        if spinner.is_hidden() && telling && text != said {
            ctx.out.note(&text);
        }
        spinner.set_message(text.clone());
        said = text;
        interval.tick().await;
        run = api.run(run.id).await?;
    }
    spinner.finish_and_clear();
    Ok(run)
}

fn describe(run: &Run) -> String {
    format!("run {}: {}", run.id, output::run_state(run))
}

/// Prints the outcome; a failed run is exit 1 with the run's own error text.
pub fn finish(ctx: &Ctx, run: &Run) -> CliResult {
    if !ctx.out.json(run) && run.status == RunStatus::Succeeded {
        let snapshot = run
            .snapshot_id
            .map(|s| format!(", snapshot {s}"))
            .unwrap_or_default();
        ctx.out.line(format!(
            "Run {} of job {} succeeded: fetched {}{snapshot}.",
            run.id,
            run.job_id,
            output::size(run.bytes_fetched)
        ));
    }
    if run.status == RunStatus::Partial {
        let snapshot = run
            .snapshot_id
            .map(|s| format!("snapshot {s}"))
            .unwrap_or_else(|| "a snapshot".into());
        let retry = match run.retry_at {
            Some(at) => format!(
                "\nattempt {} fetches the failed repositories again at {}",
                run.attempt + 1,
                output::when(at)
            ),
            None => String::new(),
        };
        return Err(CliError::failed(format!(
            "run {} of job {} is partial: {snapshot} was recorded, but {}{retry}",
            run.id,
            run.job_id,
            run.error
                .as_deref()
                .unwrap_or("some repositories were not captured")
        )));
    }
    if run.status == RunStatus::Failed {
        let retry = match run.retry_at {
            Some(at) => format!(
                "\nattempt {} starts at {} (before the next scheduled run)",
                run.attempt + 1,
                output::when(at)
            ),
            None => String::new(),
        };
        return Err(CliError::failed(format!(
            "run {} of job {} failed: {}{retry}",
            run.id,
            run.job_id,
            run.error.as_deref().unwrap_or("no reason given")
        )));
    }
    Ok(())
}
