//! Command-line grammar. Names and flags are part of the product: scripts depend on them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ghbs_wire::{DownloadFormat, JobOptions, Retention};

/// Scheduled, versioned backups of GitHub repositories.
///
/// Run without arguments on a terminal for an interactive menu. Exit codes: 0 ok, 1 failure,
/// 2 usage, 3 not logged in or key rejected, 4 not found, 5 server unreachable.
#[derive(Debug, Parser)]
#[command(name = "github-backup-scheduler", version, about, long_about)]
pub struct Cli {
    /// Server URL [env: GHBS_SERVER; default: the config file's `server`, else http://127.0.0.1:3000]
    #[arg(
        long,
        global = true,
        env = "GHBS_SERVER",
        value_name = "URL",
        hide_env = true
    )]
    pub server: Option<String>,
    /// Print the server's answer as one JSON document on stdout, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only results and errors (no notes, no progress bars).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log each HTTP request (never its credentials) on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Allow sending the GitHub token or the API key to a non-loopback server over plain
    /// http:// (anyone on the network path can read them); warns every time.
    #[arg(long, global = true)]
    pub insecure_http: bool,
    /// Trust this CA certificate (PEM) for the server's HTTPS, e.g. a private CA
    /// [env: GHBS_CLIENT_CA_CERT; default: the config file's `ca_cert`]. (`server --ca-cert`
    /// is the server's own setting, for GitHub Enterprise.)
    #[arg(
        long,
        global = true,
        env = "GHBS_CLIENT_CA_CERT",
        value_name = "FILE",
        hide_env = true
    )]
    pub ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in to the server with a GitHub token (asked for, never passed as an argument).
    Login(LoginArgs),
    /// Revoke this client's API key and forget it.
    Logout,
    /// Show who you are logged in as.
    Whoami,
    /// Schedule backups of a repository (owner/name or URL) or of a whole account (owner).
    Schedule(ScheduleArgs),
    /// List your backup jobs.
    Jobs,
    /// Show, pause, resume, change or delete one job.
    #[command(subcommand)]
    Job(JobCommand),
    /// Run a job now.
    Run(RunArgs),
    /// List a job's runs.
    Runs(IdArg),
    /// List a job's snapshots (newest first).
    Snapshots(IdArg),
    /// Download a snapshot as a git bundle, a .tar.gz or a .zip.
    Fetch(FetchArgs),
    /// Push a snapshot to a new, empty remote (mirror push); an account's repositories with
    /// --to-owner.
    Restore(RestoreArgs),
    /// List your API keys, make one (read-only, expiring) or revoke one.
    Keys(KeysArgs),
    /// Show your audit trail: logins, keys, job changes, downloads and restores (newest first).
    Audit(AuditArgs),
    /// Run the backup server (HTTP API, scheduler and workers).
    // Boxed: the server's settings dwarf every other command's arguments.
    Server(Box<ghbs_server::ServerArgs>),
    /// Be told when a backup fails, is partial, recovers, needs a login or goes stale:
    /// webhooks (Slack, Discord or signed JSON) and e-mail.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Check that a job's snapshots can still be read back (on the server); exit 1 on damage.
    Verify(VerifyArgs),
    /// Operator commands on the server's backup storage, run where the server runs.
    #[command(subcommand)]
    Storage(StorageCommand),
}

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Copy an installation's backups from the default file storage (DATA_DIR/backups) into a
    /// bucket, verify every snapshot there through an empty cache, and say what to change.
    /// Stop the installation's servers first; the file storage is left as it is.
    Migrate(Box<MigrateArgs>),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The shared storage to copy into: `s3://BUCKET[/PREFIX]` (endpoint, region and
    /// credentials from the `AWS_*` environment or the config file's `[s3]` table, as for
    /// `server`) or `file:///PATH` (a shared file system). The bucket must exist.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// The installation, given as to `server` (`--data-dir`, `--database`, `--config`, …).
    #[command(flatten)]
    pub server: ghbs_server::ServerArgs,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Read the GitHub token from the first line of standard input.
    #[arg(long)]
    pub token_stdin: bool,
    /// Label of the API key created (default: this machine's host name).
    #[arg(long)]
    pub label: Option<String>,
    /// The API key stops working after this long: N followed by m, h, d or w (e.g. 30d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub expires: Option<u64>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Show at most N entries (1-1000).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u32,
    /// Only entries older than this entry id (for paging).
    #[arg(long, value_name = "ID")]
    pub before: Option<i64>,
}

#[derive(Debug, Args)]
pub struct IdArg {
    /// Job id (see `jobs`).
    pub id: i64,
}

/// Exactly one way to say how often; none means daily (`schedule`) or unchanged (`job edit`).
#[derive(Debug, Args, Default)]
#[group(id = "frequency", multiple = false)]
pub struct FrequencyArgs {
    /// Once a day, at HH:MM when given (else at a time the server picks).
    #[arg(long, value_name = "HH:MM", num_args = 0..=1, default_missing_value = "")]
    pub daily: Option<String>,
    /// Once a week: DAY (monday … sunday), optionally @HH:MM.
    #[arg(long, value_name = "DAY[@HH:MM]")]
    pub weekly: Option<String>,
    /// Once a month on day N (1-31; the last day in shorter months), optionally @HH:MM.
    #[arg(long, value_name = "N[@HH:MM]")]
    pub monthly: Option<String>,
    /// Every N days (use --at for the time).
    #[arg(long, value_name = "N")]
    pub every_days: Option<u32>,
    /// A five-field cron expression that fires at most once a day, e.g. "0 3 * * 1-5".
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,
    /// Old-style interval (e.g. 2d); intervals under a day are refused.
    #[arg(long, value_name = "INTERVAL", hide = true)]
    pub every: Option<String>,
}

#[derive(Debug, Args, Default)]
pub struct TimingArgs {
    #[command(flatten)]
    pub frequency: FrequencyArgs,
    /// Time of day HH:MM for --daily, --weekly, --monthly or --every-days.
    #[arg(long, value_name = "HH:MM", conflicts_with = "cron")]
    pub at: Option<String>,
    /// IANA timezone the schedule is read in [default: this computer's timezone, else UTC].
    #[arg(long, value_name = "TZ")]
    pub tz: Option<String>,
}

#[derive(Debug, Args, Default)]
pub struct KeepArgs {
    /// Keep the last N snapshots [server default: 30].
    #[arg(long, value_name = "N")]
    pub keep: Option<u32>,
    /// Also keep the last snapshot of each of the last N days.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Also keep the last snapshot of each of the last N weeks.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Also keep the last snapshot of each of the last N months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
}

impl KeepArgs {
    pub fn any(&self) -> bool {
        self.keep.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
    }

    /// `base` with the given keeps replaced.
    pub fn apply(&self, base: Retention) -> Retention {
        Retention {
            keep_last: self.keep.unwrap_or(base.keep_last),
            keep_daily: self.keep_daily.unwrap_or(base.keep_daily),
            keep_weekly: self.keep_weekly.unwrap_or(base.keep_weekly),
            keep_monthly: self.keep_monthly.unwrap_or(base.keep_monthly),
        }
    }
}

/// What to back up besides branches and tags. Each switch has its opposite so that `job edit`
/// can turn it off; the last one given wins.
#[derive(Debug, Args, Default)]
pub struct OptionArgs {
    /// Also back up pull-request refs (refs/pull/*).
    #[arg(long, overrides_with = "no_pull_refs")]
    pub pull_refs: bool,
    #[arg(long, hide = true, overrides_with = "pull_refs")]
    pub no_pull_refs: bool,
    /// Also back up the wiki.
    #[arg(long, overrides_with = "no_wiki")]
    pub wiki: bool,
    #[arg(long, hide = true, overrides_with = "wiki")]
    pub no_wiki: bool,
    /// Also back up issues, pull requests, labels, milestones and releases as JSON.
    #[arg(long, overrides_with = "no_metadata")]
    pub metadata: bool,
    #[arg(long, hide = true, overrides_with = "metadata")]
    pub no_metadata: bool,
    /// With --metadata: keep only the descriptions of release assets, not their files (which
    /// are stored by default).
    #[arg(long, overrides_with = "release_assets")]
    pub no_release_assets: bool,
    #[arg(long, hide = true, overrides_with = "no_release_assets")]
    pub release_assets: bool,
    /// Account jobs: include forks.
    #[arg(long, overrides_with = "exclude_forks")]
    pub include_forks: bool,
    #[arg(long, hide = true, overrides_with = "include_forks")]
    pub exclude_forks: bool,
    /// Account jobs: skip archived repositories.
    #[arg(long, overrides_with = "include_archived")]
    pub exclude_archived: bool,
    #[arg(long, hide = true, overrides_with = "exclude_archived")]
    pub include_archived: bool,
    /// Account jobs: skip private repositories.
    #[arg(long, overrides_with = "include_private")]
    pub exclude_private: bool,
    #[arg(long, hide = true, overrides_with = "exclude_private")]
    pub include_private: bool,
}

impl OptionArgs {
    pub fn any(&self) -> bool {
        self.pull_refs
            || self.no_pull_refs
            || self.wiki
            || self.no_wiki
            || self.metadata
            || self.no_metadata
            || self.release_assets
            || self.no_release_assets
            || self.include_forks
            || self.exclude_forks
            || self.exclude_archived
            || self.include_archived
            || self.exclude_private
            || self.include_private
    }

    /// `base` with the given switches applied.
    pub fn apply(&self, base: JobOptions) -> JobOptions {
        let pick = |on: bool, off: bool, current: bool| {
            if on {
                true
            } else if off {
                false
            } else {
                current
            }
        };
        JobOptions {
            pull_refs: pick(self.pull_refs, self.no_pull_refs, base.pull_refs),
            wiki: pick(self.wiki, self.no_wiki, base.wiki),
            metadata: pick(self.metadata, self.no_metadata, base.metadata),
            release_assets: pick(
                self.release_assets,
                self.no_release_assets,
                base.release_assets,
            ),
            include_forks: pick(self.include_forks, self.exclude_forks, base.include_forks),
            include_archived: pick(
                self.include_archived,
                self.exclude_archived,
                base.include_archived,
            ),
            include_private: pick(
                self.include_private,
                self.exclude_private,
                base.include_private,
            ),
        }
    }
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// owner/name, a GitHub URL, or an account name (every repository of it).
    pub target: String,
    #[command(flatten)]
    pub timing: TimingArgs,
    #[command(flatten)]
    pub keep: KeepArgs,
    #[command(flatten)]
    pub options: OptionArgs,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Show a job's details.
    Show(IdArg),
    /// Stop running a job on schedule (its backups stay).
    Pause(IdArg),
    /// Run a paused job on schedule again.
    Resume(IdArg),
    /// Change a job's schedule, timezone, retention or options.
    Edit(Box<EditArgs>),
    /// Delete a job; its backups are kept unless --purge.
    Delete(DeleteArgs),
    /// Stop keeping a repository that is gone upstream (asks for confirmation): it is no longer
    /// carried forward into new snapshots, and leaves with the snapshots that hold it.
    ForgetRepo(ForgetRepoArgs),
}

#[derive(Debug, Args)]
pub struct ForgetRepoArgs {
    /// Job id (see `jobs`).
    pub id: i64,
    /// The repository, owner/name, as `snapshots` lists it.
    pub repo: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    /// Job id (see `jobs`).
    pub id: i64,
    #[command(flatten)]
    pub timing: TimingArgs,
    #[command(flatten)]
    pub keep: KeepArgs,
    #[command(flatten)]
    pub options: OptionArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Job id (see `jobs`).
    pub id: i64,
    /// Also delete every backup of the job (asks for confirmation).
    #[arg(long)]
    pub purge: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Job id (see `jobs`).
    pub id: i64,
    /// Wait for the run to finish, showing its progress; exit 1 if it fails.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Job id (see `jobs`).
    #[arg(required_unless_present = "all")]
    pub id: Option<i64>,
    /// Only this snapshot (see `snapshots ID`) [default: every snapshot of the job].
    #[arg(long, value_name = "S")]
    pub snapshot: Option<i64>,
    /// Every job of yours.
    #[arg(long, conflicts_with_all = ["id", "snapshot"])]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Job id (see `jobs`).
    pub id: i64,
    /// Snapshot id (see `snapshots`) [default: the latest].
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<i64>,
    /// bundle (git clone-able), tar.gz (mirror + metadata), zip (default-branch sources) or site
    /// (a zip of a static HTML site: README, issues, pull requests, releases, wiki; open its
    /// index.html in a browser). For an account job without --repo: one tar holding a bundle (or
    /// a zip) per repository; tar.gz holds a bundle and the metadata per repository; site is one
    /// site listing every repository.
    #[arg(long, default_value = "bundle", value_parser = parse_format)]
    pub format: DownloadFormat,
    /// Account jobs: download this repository only.
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: Option<String>,
    /// Where to write: a file, a folder, or - for standard output [default: the server's file
    /// name in the current folder].
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Job id (see `jobs`).
    pub id: i64,
    /// Snapshot id (see `snapshots`) [default: the latest].
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<i64>,
    /// Account jobs: the repository to restore.
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: Option<String>,
    /// The new, empty remote to push to (git URL or path); with --to-owner, the base under which
    /// each repository's remote is BASE/OWNER/NAME. With --metadata or --metadata-only: the
    /// GitHub repository to restore into, OWNER/NAME (it must exist and be empty).
    #[arg(long, value_name = "REMOTE_URL|OWNER/NAME")]
    pub to: String,
    /// Restore under this owner: each repository (every one of an account job, unless --repo)
    /// is pushed to `<--to>/OWNER/<name>`, which must exist and be empty.
    #[arg(long, value_name = "OWNER")]
    pub to_owner: Option<String>,
    /// Push even when the remote is not empty (overwrites its refs).
    #[arg(long)]
    pub force: bool,
    /// Also restore issues, pull requests (as issues), comments, labels, milestones and
    /// releases into the GitHub repository --to OWNER/NAME, after its branches and tags.
    #[arg(long, conflicts_with_all = ["metadata_only", "to_owner"])]
    pub metadata: bool,
    /// Restore only the metadata (no git push) into --to OWNER/NAME.
    #[arg(long, conflicts_with = "to_owner")]
    pub metadata_only: bool,
    /// The GitHub API of the target (GitHub Enterprise: https://HOST/api/v3).
    #[arg(
        long,
        value_name = "URL",
        env = "GHBS_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub github_api_url: String,
    /// Read the target's GitHub token from the first line of standard input (else
    /// GITHUB_TOKEN, else a hidden prompt).
    #[arg(long)]
    pub token_stdin: bool,
    /// Print what a metadata restore would create, with counts, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: Option<KeysCommand>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List your API keys (the default).
    List,
    /// Make another API key and print it once, e.g. a read-only one for a dashboard.
    Create {
        /// Only list, show and download; every change is refused.
        #[arg(long)]
        read_only: bool,
        /// The key stops working after this long: N followed by m, h, d or w (e.g. 90d).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires: Option<u64>,
        /// A label to recognise the key by in `keys`.
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke an API key.
    Revoke {
        /// Key id (see `keys`).
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Add a notification target.
    #[command(subcommand)]
    Add(NotifyAddCommand),
    /// List your targets (webhook URLs masked), their events and last delivery.
    List,
    /// Send a test notification to a target now.
    Test {
        /// Target id (see `notify list`).
        id: i64,
    },
    /// Remove a target.
    Remove {
        /// Target id (see `notify list`).
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotifyAddCommand {
    /// A webhook. Its URL is asked for (hidden) or read with --url-stdin, never taken as an
    /// argument: webhook URLs carry their credential, and arguments show in `ps`.
    Webhook {
        /// Read the URL from the first line of standard input.
        #[arg(long)]
        url_stdin: bool,
        #[command(flatten)]
        events: NotifyEventsArg,
        /// json (signed JSON event), slack or discord (a chat message).
        #[arg(long, default_value = "json", value_parser = parse_webhook_format)]
        format: ghbs_wire::WebhookFormat,
    },
    /// An e-mail address (the server's operator must have set up SMTP).
    Email {
        /// Recipient, e.g. ops@example.com.
        address: String,
        #[command(flatten)]
        events: NotifyEventsArg,
    },
}

#[derive(Debug, Args)]
pub struct NotifyEventsArg {
    /// Events to send, comma-separated: failed, partial, recovered, needs-login, stale, or
    /// all [default: all].
    #[arg(long, value_delimiter = ',', value_name = "EVENT,...")]
    pub events: Option<Vec<String>>,
}

fn parse_webhook_format(s: &str) -> Result<ghbs_wire::WebhookFormat, String> {
    ghbs_wire::WebhookFormat::parse(s)
        .ok_or_else(|| format!("unknown format `{s}`: use json, slack or discord"))
}

/// `30d`, `12h`, `2w`, `90m` → seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let bad =
        || format!("`{s}` is not a duration: use a number followed by m, h, d or w, e.g. 30d");
    let unit = s.chars().last().ok_or_else(bad)?;
    let per = match unit {
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return Err(bad()),
    };
    let n: u64 = s[..s.len() - 1].parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(format!("`{s}`: a key must live at least one minute"));
    }
    n.checked_mul(per)
        .filter(|secs| *secs <= 10 * 366 * 86_400)
        .ok_or_else(|| format!("`{s}`: at most ten years"))
}

fn parse_format(s: &str) -> Result<DownloadFormat, String> {
    DownloadFormat::parse(s)
        .ok_or_else(|| format!("unknown format `{s}`: use bundle, tar.gz, zip or site"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_for_expiry() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("12h"), Ok(12 * 3600));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400));
        assert_eq!(parse_duration("90m"), Ok(5400));
        for bad in [
            "",
            "d",
            "30",
            "30x",
            "-1d",
            "0d",
            "1.5d",
            "99999999999w",
            "30 days",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_ca_flag_does_not_shadow_the_servers() {
        // `--ca-cert` before a client command is the client's; after `server` it is the
        // server's own (for GitHub Enterprise), which keeps its meaning.
        let cli = Cli::try_parse_from(["x", "--ca-cert", "/c.pem", "jobs"]).unwrap();
        assert_eq!(cli.ca_cert.as_deref(), Some(std::path::Path::new("/c.pem")));
        let cli = Cli::try_parse_from(["x", "jobs", "--ca-cert", "/c.pem"]).unwrap();
        assert_eq!(cli.ca_cert.as_deref(), Some(std::path::Path::new("/c.pem")));
        let cli = Cli::try_parse_from(["x", "server", "--ca-cert", "/gh.pem"]).unwrap();
        let Some(Command::Server(args)) = cli.command else {
            panic!("server")
        };
        assert_eq!(
            args.ca_cert.as_deref(),
            Some(std::path::Path::new("/gh.pem"))
        );
    }

    #[test]
    fn last_option_switch_wins() {
        let cli = Cli::try_parse_from(["x", "job", "edit", "1", "--wiki", "--no-wiki"]).unwrap();
        let Some(Command::Job(JobCommand::Edit(e))) = cli.command else {
            panic!()
        };
        assert!(
            !e.options
                .apply(JobOptions {
                    wiki: true,
                    ..Default::default()
                })
                .wiki
        );
    }

    #[test]
    fn only_one_frequency() {
        let r = Cli::try_parse_from(["x", "schedule", "o/r", "--daily", "--weekly", "mon"]);
        assert_eq!(r.unwrap_err().exit_code(), 2);
    }
}
