//! `schedule` and `job edit`: turning frequency flags into the server's schedule grammar
//! (`daily at 03:00`, `weekly on monday`, `monthly on 15`, `every 2 days`, `cron EXPR`).
//!
//! Everything is validated here first, without a server, so that a typo or a schedule that would
//! run more than once a day is explained at once (exit 2).

use ghbs_wire::{Job, JobCreate, JobUpdate};

use super::Ctx;
use crate::cli::{EditArgs, FrequencyArgs, ScheduleArgs, TimingArgs};
use crate::exit::{CliError, CliResult};
use crate::output;
use crate::validate;

/// The schedule text for the frequency flags, or `None` when none was given (and no `--at`).
pub fn schedule_text(timing: &TimingArgs) -> CliResult<Option<String>> {
    let at = timing
        .at
        .as_deref()
        .map(validate::time_of_day)
        .transpose()?;
    let with_time = |base: String, own: Option<String>| -> CliResult<String> {
        let time = match (own, &at) {
            (Some(_), Some(_)) => {
                return Err(CliError::usage(
                    "the time is given twice: use either DAY@HH:MM or --at HH:MM",
                ))
            }
            (Some(t), None) => Some(t),
            (None, t) => t.clone(),
        };
        Ok(match time {
            Some(t) => format!("{base} at {t}"),
            None => base,
        })
    };
    let split_time = |value: &str| -> CliResult<(String, Option<String>)> {
        match value.split_once('@') {
            Some((head, time)) => Ok((head.to_string(), Some(validate::time_of_day(time)?))),
            None => Ok((value.to_string(), None)),
        }
    };
    let FrequencyArgs {
        daily,
        weekly,
        monthly,
        every_days,
        cron,
        every,
    } = &timing.frequency;
    let text = if let Some(daily) = daily {
        let own = if daily.trim().is_empty() {
            None
        } else {
            Some(
                validate::time_of_day(daily)
                    .map_err(|e| CliError::usage(format!("--daily takes an optional time: {e}")))?,
            )
        };
        with_time("daily".into(), own)?
    } else if let Some(weekly) = weekly {
        let (day, own) = split_time(weekly)?;
        with_time(format!("weekly on {}", validate::weekday(&day)?), own)?
    } else if let Some(monthly) = monthly {
        let (day, own) = split_time(monthly)?;
        with_time(format!("monthly on {}", validate::day_of_month(&day)?), own)?
    } else if let Some(n) = every_days {
        if *n == 0 {
            return Err(CliError::usage(
                "--every-days takes a number of days, 1 or more",
            ));
        }
        with_time(format!("every {n} days"), None)?
    } else if let Some(expr) = cron {
        format!("cron {}", expr.trim())
    } else if let Some(interval) = every {
        with_time(format!("every {}", interval.trim()), None)?
    } else if at.is_some() {
        with_time("daily".into(), None)?
    } else {
        return Ok(None);
    };
    Ok(Some(text))
}

/// The timezone to send: `--tz`, else this computer's.
fn timezone(timing: &TimingArgs) -> CliResult<String> {
    match &timing.tz {
        Some(tz) => validate::timezone(tz),
        None => Ok(validate::local_timezone()),
    }
}

/// Validates everything `schedule` was given and builds the request, without any I/O.
pub fn build_create(args: &ScheduleArgs) -> CliResult<JobCreate> {
    let target = validate::target(&args.target)?;
    let tz = timezone(&args.timing)?;
    let text = schedule_text(&args.timing)?.unwrap_or_else(|| "daily".to_string());
    let schedule = validate::schedule(&text, &tz)?;
    Ok(JobCreate {
        target,
        schedule,
        timezone: Some(tz),
        retention: args.keep.any().then(|| args.keep.apply(Default::default())),
        options: args
            .options
            .any()
            .then(|| args.options.apply(Default::default())),
    })
}

pub async fn schedule(ctx: &Ctx, args: &ScheduleArgs) -> CliResult {
    let create = build_create(args)?;
    let job = ctx.api()?.create_job(&create).await?;
    print_scheduled(ctx, &job);
    Ok(())
}

pub fn print_scheduled(ctx: &Ctx, job: &Job) {
    if !ctx.out.json(job) {
        ctx.out.line(format!(
            "Scheduled job {} for {}: {} ({}).\nNext run: {}",
            job.id,
            job.target,
            job.schedule,
            job.timezone,
            output::when(job.next_run_at)
        ));
    }
}

pub async fn edit(ctx: &Ctx, args: &EditArgs) -> CliResult {
    let text = schedule_text(&args.timing)?;
    let tz = args
        .timing
        .tz
        .as_deref()
        .map(validate::timezone)
        .transpose()?;
    if text.is_none() && tz.is_none() && !args.keep.any() && !args.options.any() {
        return Err(CliError::usage(
            "nothing to change: give a schedule flag (--daily, --weekly, ...), --tz, --keep* or an option flag",
        ));
    }
    let api = ctx.api()?;
    let current = api.job(args.id).await?;
    let schedule = match &text {
        Some(t) => Some(validate::schedule(
            t,
            tz.as_deref().unwrap_or(&current.timezone),
        )?),
        None => None,
    };
    let update = JobUpdate {
        schedule,
        timezone: tz,
        retention: args.keep.any().then(|| args.keep.apply(current.retention)),
        options: args
            .options
            .any()
            .then(|| args.options.apply(current.options.clone())),
    };
    let job = api.update_job(args.id, &update).await?;
    if !ctx.out.json(&job) {
        ctx.out.line(format!("Updated job {}.", job.id));
        ctx.out.line(output::job_details(&job));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn text(args: &[&str]) -> CliResult<String> {
        let mut argv = vec!["x", "schedule", "o/r", "--tz", "UTC"];
        argv.extend_from_slice(args);
        let Some(Command::Schedule(s)) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not a schedule command")
        };
        build_create(&s).map(|c| c.schedule)
    }

    #[test]
    fn flags_become_the_server_grammar() {
        assert_eq!(text(&[]).unwrap(), "daily");
        assert_eq!(text(&["--daily"]).unwrap(), "daily");
        assert_eq!(text(&["--daily", "3:30"]).unwrap(), "daily at 03:30");
        assert_eq!(text(&["--at", "04:00"]).unwrap(), "daily at 04:00");
        assert_eq!(
            text(&["--weekly", "Mon@05:15"]).unwrap(),
            "weekly on monday at 05:15"
        );
        assert_eq!(
            text(&["--weekly", "fri", "--at", "01:00"]).unwrap(),
            "weekly on friday at 01:00"
        );
        assert_eq!(text(&["--monthly", "15"]).unwrap(), "monthly on 15");
        assert_eq!(
            text(&["--every-days", "3", "--at", "22:00"]).unwrap(),
            "every 3 days at 22:00"
        );
        assert_eq!(
            text(&["--cron", "0 3 * * 1-5"]).unwrap(),
            "cron 0 3 * * 1-5"
        );
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for args in [
            &["--daily", "25:00"][..],
            &["--weekly", "someday"],
            &["--monthly", "32"],
            &["--every-days", "0"],
            &["--weekly", "mon@01:00", "--at", "02:00"],
            &["--cron", "*/30 * * * *"],
            &["--every", "30m"],
        ] {
            assert_eq!(text(args).unwrap_err().exit_code(), 2, "{args:?}");
        }
    }
}
