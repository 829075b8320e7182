//! The one printer: tables and sentences for people, one JSON document for scripts (`--json`),
//! notes and progress on standard error so that standard output stays clean.

use std::io::IsTerminal;

use chrono::{DateTime, Local, Utc};
use comfy_table::{presets, ContentArrangement, Table};
use ghbs_wire::{ApiKey, Job, JobState, Run, RunStatus, Snapshot};
use serde::Serialize;

/// How to print: chosen once from `--json`, `-q` and `-v`.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub json: bool,
    pub quiet: bool,
}

impl Printer {
    /// Prints `value` as one JSON document when `--json` is on; returns whether it did.
    pub fn json<T: Serialize>(&self, value: &T) -> bool {
        if self.json {
            match serde_json::to_string_pretty(value) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("error: cannot encode the answer as JSON: {e}"),
            }
        }
        self.json
    }

    /// A result line on standard output (skipped under `--json`, which printed the object).
    pub fn line(&self, text: impl AsRef<str>) {
        if !self.json {
            println!("{}", text.as_ref());
        }
    }

    /// A hint or status note on standard error; `-q` silences it.
    pub fn note(&self, text: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", text.as_ref());
        }
    }

    /// Whether progress bars and spinners should be drawn.
    pub fn progress(&self) -> bool {
        !self.quiet && std::io::stderr().is_terminal()
    }

    pub fn table(&self, table: Table) {
        if !self.json {
            println!("{table}");
        }
    }
}

/// A borderless table with a header, sized to the terminal when there is one.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_header(header.to_vec());
    if std::io::stdout().is_terminal() {
        t.set_content_arrangement(ContentArrangement::Dynamic);
    }
    t
}

/// Local time plus a relative hint: `2025-03-01 03:00 (in 3 h)`.
pub fn when(t: DateTime<Utc>) -> String {
    when_at(t, Utc::now())
}

fn when_at(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let local = t.with_timezone(&Local).format("%Y-%m-%d %H:%M");
    format!("{local} ({})", relative(t, now))
}

/// `in 3 h`, `2 d ago`, `now`.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let abs = secs.unsigned_abs();
    let amount = if abs < 60 {
        return "now".to_string();
    } else if abs < 3600 {
        format!("{} min", abs / 60)
    } else if abs < 48 * 3600 {
        format!("{} h", abs / 3600)
    } else {
        format!("{} d", abs / 86400)
    };
    if secs > 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// `1.5 MiB`.
pub fn size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub fn state(s: JobState) -> &'static str {
    match s {
        JobState::Active => "active",
        JobState::Paused => "paused",
        JobState::NeedsLogin => "needs-login",
    }
}

/// What a run is doing or how it ended, for people: a running run says what it waits for
/// (`waiting for GitHub rate limit until 20:11:30 UTC`), a retry says its attempt.
pub fn run_state(run: &Run) -> String {
    let mut text = activity(run);
    if run.attempt > 1 {
        text.push_str(&format!(" (attempt {})", run.attempt));
    }
    text
}

/// The run's status, or for a running run what it is doing when it says so.
pub fn activity(run: &Run) -> String {
    match (run.status, run.progress.as_deref()) {
        (RunStatus::Running, Some(p)) if !p.is_empty() && p != "running" => p.to_owned(),
        (status, _) => status.as_str().to_owned(),
    }
}

/// `retry at 2025-03-01 09:05 (in 5 min)` for a failed run that will be attempted again.
pub fn retry_note(run: &Run) -> Option<String> {
    run.retry_at.map(|at| format!("retry at {}", when(at)))
}

/// `succeeded 2 h ago`, `running`, `waiting for GitHub rate limit until …`, or `-`.
pub fn last_result(run: Option<&Run>) -> String {
    let Some(run) = run else {
        return "-".to_string();
    };
    let at = run.finished_at.or(run.started_at).unwrap_or(run.queued_at);
    match run.status {
        RunStatus::Queued | RunStatus::Running => run_state(run),
        _ => {
            let mut text = format!("{} {}", run_state(run), relative(at, Utc::now()));
            if let Some(note) = retry_note(run) {
                text.push_str(&format!(", {note}"));
            }
            text
        }
    }
}

/// `2 h ago`, `never`; with `STALE` when no success for twice the schedule's interval.
pub fn last_success(j: &Job) -> String {
    let mut text = match j.last_success_at {
        Some(t) => relative(t, Utc::now()),
        None => "never".to_owned(),
    };
    if j.stale {
        text.push_str(" STALE");
    }
    if j.failing {
        text.push_str(" FAILING");
    }
    text
}

pub fn jobs_table(jobs: &[Job]) -> Table {
    let mut t = table(&[
        "ID",
        "TARGET",
        "SCHEDULE",
        "STATE",
        "NEXT RUN",
        "LAST SUCCESS",
        "LAST RESULT",
    ]);
    for j in jobs {
        let next = if j.state == JobState::Active {
            when(j.next_run_at)
        } else {
            "-".into()
        };
        t.add_row(vec![
            j.id.to_string(),
            j.target.clone(),
            format!("{} ({})", j.schedule, j.timezone),
            state(j.state).to_string(),
            next,
            last_success(j),
            last_result(j.last_run.as_ref()),
        ]);
    }
    t
}

pub fn runs_table(runs: &[Run]) -> Table {
    let mut t = table(&[
        "ID", "TRIGGER", "ATTEMPT", "STATUS", "STARTED", "DURATION", "FETCHED", "ERROR",
    ]);
    for r in runs {
        let duration = match (r.started_at, r.finished_at) {
            (Some(s), Some(f)) => format!("{} s", (f - s).num_seconds().max(0)),
            _ => "-".into(),
        };
        t.add_row(vec![
            r.id.to_string(),
            r.trigger.as_str().to_string(),
            r.attempt.to_string(),
            activity(r),
            when(r.started_at.unwrap_or(r.queued_at)),
            duration,
            size(r.bytes_fetched),
            // The first line; `run --wait` and `--json` give one line per repository.
            {
                let first = r
                    .error
                    .as_deref()
                    .and_then(|e| e.lines().next())
                    .unwrap_or_default()
                    .to_owned();
                match retry_note(r) {
                    Some(note) if first.is_empty() => note,
                    Some(note) => format!("{first} ({note})"),
                    None => first,
                }
            },
        ]);
    }
    t
}

pub fn snapshots_table(snapshots: &[Snapshot]) -> Table {
    let mut t = table(&["ID", "TIME", "STATUS", "REFS", "SIZE", "REPOSITORIES"]);
    for s in snapshots {
        t.add_row(vec![
            s.id.to_string(),
            when(s.created_at),
            s.status.as_str().to_string(),
            s.refs.to_string(),
            size(s.size_bytes),
            repositories(s),
        ]);
    }
    t
}

/// `13`, or `13 (2 carried forward, 1 gone upstream since 2026-11-30, 1 failed)`.
fn repositories(s: &Snapshot) -> String {
    let mut notes = Vec::new();
    let failed_carried = s.carried_forward.saturating_sub(s.gone);
    if failed_carried > 0 {
        notes.push(format!("{failed_carried} carried forward"));
    }
    for r in s.repos.iter().filter(|r| r.gone_since.is_some()) {
        if let Some(since) = r.gone_since {
            notes.push(format!(
                "{} gone upstream since {}",
                r.full_name,
                since.format("%Y-%m-%d")
            ));
        }
    }
    if s.failed > 0 {
        notes.push(format!("{} failed", s.failed));
    }
    if notes.is_empty() {
        s.repos.len().to_string()
    } else {
        format!("{} ({})", s.repos.len(), notes.join(", "))
    }
}

pub fn keys_table(keys: &[ApiKey]) -> Table {
    let mut t = table(&[
        "ID",
        "LABEL",
        "SCOPE",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "",
    ]);
    let now = chrono::Utc::now();
    for k in keys {
        t.add_row(vec![
            k.id.to_string(),
            k.label.clone().unwrap_or_default(),
            if k.read_only { "read-only" } else { "full" }.into(),
            when(k.created_at),
            k.last_used_at.map(when).unwrap_or_else(|| "-".into()),
            match k.expires_at {
                None => "never".into(),
                Some(t) if t <= now => format!("expired {}", when(t)),
                Some(t) => when(t),
            },
            if k.current {
                "(this client)".into()
            } else {
                String::new()
            },
        ]);
    }
    t
}

/// The audit trail, newest first.
pub fn audit_table(entries: &[ghbs_wire::AuditEntry]) -> Table {
    let mut t = table(&["ID", "WHEN", "ACTION", "JOB", "KEY", "FROM", "DETAIL"]);
    for e in entries {
        t.add_row(vec![
            e.id.to_string(),
            when(e.at),
            e.action.clone(),
            e.job_id.map(|j| j.to_string()).unwrap_or_default(),
            e.key_id.map(|k| k.to_string()).unwrap_or_default(),
            e.client_addr.clone().unwrap_or_default(),
            e.detail
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    t
}

/// Details of one job, one `key: value` per line.
pub fn job_details(j: &Job) -> String {
    let r = &j.retention;
    let o = &j.options;
    let mut keep = format!("last {}", r.keep_last);
    for (n, what) in [
        (r.keep_daily, "daily"),
        (r.keep_weekly, "weekly"),
        (r.keep_monthly, "monthly"),
    ] {
        if n > 0 {
            keep.push_str(&format!(", {n} {what}"));
        }
    }
    let mut opts = Vec::new();
    for (on, name) in [
        (o.pull_refs, "pull-refs"),
        (o.wiki, "wiki"),
        (o.metadata, "metadata"),
    ] {
        if on {
            opts.push(name.to_string());
        }
    }
    if j.target_kind == ghbs_wire::TargetKind::Account {
        opts.push(format!("forks {}", yes_no(o.include_forks)));
        opts.push(format!("archived {}", yes_no(o.include_archived)));
        opts.push(format!("private {}", yes_no(o.include_private)));
    }
    let next = if j.state == JobState::Active {
        when(j.next_run_at)
    } else {
        "-".into()
    };
    let retry = match &j.retry {
        Some(r) => format!(
            "\nretry:      attempt {} of {} at {}",
            r.attempt,
            r.max_attempts,
            when(r.at)
        ),
        None => String::new(),
    };
    format!(
        "job:        {}\ntarget:     {}\nschedule:   {} ({})\nstate:      {}\nnext run:   {}{retry}\nlast run:   {}\nlast success: {}\nretention:  {}\noptions:    {}\ncreated:    {}",
        j.id,
        j.target,
        j.schedule,
        j.timezone,
        state(j.state),
        next,
        last_result(j.last_run.as_ref()),
        last_success(j),
        keep,
        if opts.is_empty() { "-".into() } else { opts.join(", ") },
        when(j.created_at),
    )
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "included"
    } else {
        "excluded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn relative_times() {
        let now = Utc.with_ymd_and_hms(2025, 1, 10, 12, 0, 0).unwrap();
        let h = chrono::Duration::hours;
        assert_eq!(relative(now + h(3), now), "in 3 h");
        assert_eq!(relative(now - h(48), now), "2 d ago");
        assert_eq!(
            relative(now + chrono::Duration::minutes(5), now),
            "in 5 min"
        );
        assert_eq!(relative(now, now), "now");
        assert!(when_at(now + h(3), now).ends_with("(in 3 h)"));
    }

    fn run(status: RunStatus, progress: Option<&str>, attempt: u32) -> Run {
        let t = Utc.with_ymd_and_hms(2025, 1, 10, 12, 0, 0).unwrap();
        Run {
            id: 1,
            job_id: 1,
            trigger: ghbs_wire::RunTrigger::Schedule,
            status,
            queued_at: t,
            started_at: Some(t),
            finished_at: None,
            error: None,
            progress: progress.map(str::to_owned),
            bytes_fetched: 0,
            api_requests: 0,
            api_requests_conditional: 0,
            snapshot_id: None,
            attempt,
            retry_at: None,
        }
    }

    #[test]
    fn a_waiting_run_says_what_it_waits_for_not_just_running() {
        let wait = "waiting for GitHub rate limit until 20:11:30 UTC";
        let r = run(RunStatus::Running, Some(wait), 1);
        assert_eq!(run_state(&r), wait);
        assert_eq!(last_result(Some(&r)), wait);
        assert_eq!(
            run_state(&run(RunStatus::Running, Some(wait), 3)),
            format!("{wait} (attempt 3)")
        );
        assert_eq!(
            run_state(&run(RunStatus::Running, Some("running"), 1)),
            "running"
        );
        assert_eq!(run_state(&run(RunStatus::Running, None, 1)), "running");
        assert_eq!(
            run_state(&run(RunStatus::Queued, None, 2)),
            "queued (attempt 2)"
        );
    }

    #[test]
    fn a_failed_run_with_a_retry_says_when() {
        let mut r = run(RunStatus::Failed, None, 1);
        r.finished_at = r.started_at;
        assert!(!last_result(Some(&r)).contains("retry"));
        r.retry_at = Some(Utc::now() + chrono::Duration::minutes(10));
        let text = last_result(Some(&r));
        assert!(text.starts_with("failed "), "{text}");
        assert!(text.contains(", retry at "), "{text}");
    }

    #[test]
    fn sizes() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
    }
}
