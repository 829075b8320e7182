//! Server configuration: one struct, loaded purely (loading never writes files).
//!
//! Precedence, lowest first: built-in defaults, the TOML config file (`--config` / `GHBS_CONFIG`),
//! environment variables, command-line flags. clap resolves flag-over-environment; the file fills
//! what neither gave.
//!
//! Each setting is declared once, as a field of [`ServerArgs`]: clap reads it from flags and
//! the environment, serde reads the same struct from the config file, and
//! [`ServerArgs::over`] lays one over the other. Its default and its validation live in one
//! place each: [`ServerConfig::with_data_dir`] and [`ServerConfig::load`]. Adding a setting is a
//! field here, a field with its default in `ServerConfig`, and one resolution line in `load`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

pub mod smtp;

/// `github-backup-scheduler server` settings: flags, environment variables and config-file keys
/// (the field names, e.g. `data_dir`). Unknown file keys are an error, so typos do not pass
/// silently.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerArgs {
    /// Address to listen on (a loopback address allows open registration).
    #[arg(long, env = "GHBS_LISTEN")]
    pub listen: Option<String>,
    /// Folder for state (SQLite), mirrors, the key file and download artifacts.
    #[arg(long, env = "GHBS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: `sqlite://PATH` (default: state.db in the data dir) or `postgres://…`.
    #[arg(long = "database", env = "GHBS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where snapshot manifests go: `file://PATH` (default: the data dir's `backups` folder) or
    /// `s3://BUCKET[/PREFIX]` (endpoint, region and credentials from the `AWS_*` environment).
    #[arg(long = "storage", env = "GHBS_STORAGE_URL")]
    pub storage_url: Option<String>,
    /// GitHub API base URL; GitHub Enterprise Server uses `https://HOST/api/v3`.
    #[arg(long, env = "GHBS_GITHUB_API_URL")]
    pub github_api_url: Option<String>,
    /// Extra CA certificate (PEM) trusted for the GitHub API and git, for Enterprise servers.
    #[arg(long, env = "GHBS_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Concurrent backups on this node.
    #[arg(long, env = "GHBS_WORKERS")]
    pub workers: Option<usize>,
    /// GitHub logins allowed to register (comma-separated).
    #[arg(long, env = "GHBS_ALLOW_USERS", value_delimiter = ',')]
    pub allow_users: Option<Vec<String>>,
    /// GitHub organizations whose members may register (comma-separated).
    #[arg(long, env = "GHBS_ALLOW_ORGS", value_delimiter = ',')]
    pub allow_orgs: Option<Vec<String>>,
    /// Let anyone who authenticates with GitHub register, even on a non-loopback address.
    #[arg(long, env = "GHBS_OPEN_REGISTRATION")]
    pub open_registration: Option<bool>,
    /// Minimum time between two runs of a schedule, in hours (at least 24).
    #[arg(long, env = "GHBS_MIN_INTERVAL_HOURS")]
    pub min_interval_hours: Option<u64>,
    /// On-demand runs allowed per job per hour.
    #[arg(long, env = "GHBS_MANUAL_RUNS_PER_HOUR")]
    pub manual_runs_per_hour: Option<u32>,
    /// Seconds a running backup may take to finish after SIGTERM before its lease is released.
    #[arg(long, env = "GHBS_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Retries of a run that failed for a passing reason (GitHub 5xx, network, rate limit,
    /// storage), after 5 min, 20 min, 1 h, then every 4 h, always before the next slot; 0: none.
    #[arg(long, env = "GHBS_RUN_RETRIES")]
    pub run_retries: Option<u32>,
    /// TOML configuration file (keys as the long flags with `_`, e.g. `data_dir`).
    #[arg(long, env = "GHBS_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// SMTP server for e-mail notifications (unset: e-mail targets cannot be added). The
    /// password comes from `GHBS_SMTP_PASSWORD` or the file named by `GHBS_SMTP_PASSWORD_FILE`.
    #[arg(long, env = "GHBS_SMTP_HOST")]
    pub smtp_host: Option<String>,
    /// SMTP port [default: 587 with starttls, 465 with tls, 25 with none].
    #[arg(long, env = "GHBS_SMTP_PORT")]
    pub smtp_port: Option<u16>,
    /// SMTP user name (no authentication when unset).
    #[arg(long, env = "GHBS_SMTP_USERNAME")]
    pub smtp_username: Option<String>,
    /// Sender of notification e-mails, e.g. `Backups <backups@example.com>`.
    #[arg(long, env = "GHBS_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// starttls (default: required STARTTLS), tls (TLS from the first byte) or none (plain
    /// text; only to a loopback relay).
    #[arg(long, env = "GHBS_SMTP_TLS")]
    pub smtp_tls: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key. Reloaded when it changes.
    #[arg(long, env = "GHBS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "GHBS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Reverse proxies (IP addresses, comma-separated) whose `X-Forwarded-For` is believed for
    /// the client address (rate limits, audit trail). Anyone else's header is ignored.
    #[arg(long, env = "GHBS_TRUST_PROXY", value_delimiter = ',')]
    pub trust_proxy: Option<Vec<String>>,
    /// Days the audit trail is kept (pruned hourly).
    #[arg(long, env = "GHBS_AUDIT_RETENTION_DAYS")]
    pub audit_retention_days: Option<u32>,
    /// Failed authentications (bad GitHub token at login, unknown or expired API key) allowed
    /// per client address in a burst; afterwards one more per 60/N seconds, else 429.
    #[arg(long, env = "GHBS_AUTH_FAILURES_PER_MINUTE")]
    pub auth_failures_per_minute: Option<u32>,
    /// Days between two scheduled verifications of each job (0: none; default 7).
    #[arg(long, env = "GHBS_VERIFY_INTERVAL_DAYS")]
    pub verify_interval_days: Option<u64>,
    /// Seconds one git process (a fetch, a bundle, a verification) may run before it is killed
    /// and the repository counts as failed for a passing reason [default: 3600].
    #[arg(long, env = "GHBS_GIT_TIMEOUT_SECS")]
    pub git_timeout_secs: Option<u64>,
    /// Repositories of one account job fetched at the same time [default: --workers].
    #[arg(long, env = "GHBS_REPO_PARALLELISM")]
    pub repo_parallelism: Option<usize>,
    /// Hours an object no retained snapshot needs stays in shared storage before the daily
    /// garbage collection removes it (a download on another node may still read it) [default: 24].
    #[arg(long, env = "GHBS_STORAGE_GC_GRACE_HOURS")]
    pub storage_gc_grace_hours: Option<u64>,
    /// Seconds a due job waits for the node that ran it last (whose cache holds its mirrors)
    /// before any other node may take it [default: 60; 0: no preference].
    #[arg(long, env = "GHBS_WARM_CACHE_DELAY_SECS")]
    pub warm_cache_delay_secs: Option<u64>,
    /// Seconds one storage call keeps retrying (5xx, timeouts, lost connections) before the
    /// backup counts as failed for a passing reason [default: 180]. Each attempt's own limit is
    /// `AWS_TIMEOUT` (default 30s).
    #[arg(long, env = "GHBS_STORAGE_RETRY_SECS")]
    pub storage_retry_secs: Option<u64>,
    /// S3 settings for `storage_url = "s3://…"` (config file only: `[s3]`); the `AWS_*`
    /// environment overrides each.
    #[arg(skip)]
    pub s3: Option<S3FileConfig>,
}

impl ServerArgs {
    /// Read the TOML config file: the same keys as the flags.
    fn read_file(path: &std::path::Path) -> Result<ServerArgs, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        toml::from_str::<ServerArgs>(&text)
            .map_err(|e| ConfigError(format!("config file {} is invalid: {e}", path.display())))
    }

    /// These settings laid over `lower`: every setting given here wins, `lower` fills the rest.
    /// Done through serde so that a new field needs no line here.
    pub fn over(&self, lower: ServerArgs) -> ServerArgs {
        let (Ok(serde_json::Value::Object(mine)), Ok(serde_json::Value::Object(mut merged))) =
            (serde_json::to_value(self), serde_json::to_value(&lower))
        else {
            unreachable!("ServerArgs serialises to a JSON object");
        };
        for (key, value) in mine {
            if !value.is_null() {
                merged.insert(key, value);
            }
        }
        let mut out: ServerArgs = serde_json::from_value(serde_json::Value::Object(merged))
            .expect("a merge of two valid settings is valid");
        out.config = self.config.clone().or(lower.config);
        out
    }
}

/// `[s3]` in the config file. Secrets only by file name: a config file is often readable by
/// more people than the secret should be.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3FileConfig {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key_file: Option<PathBuf>,
    pub session_token_file: Option<PathBuf>,
    pub allow_http: Option<bool>,
}

/// Secrets of the S3 client that may be given as a file named by `NAME_FILE` (Docker and
/// Kubernetes secrets), when `NAME` itself is not set.
const S3_SECRET_FILE_VARS: [&str; 3] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Everything the server needs, resolved. Built by [`ServerConfig::load`] or directly in tests.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// `file://…` or `s3://…`, validated; `None` is `file://{data_dir}/backups`.
    pub storage_url: Option<String>,
    pub github_api_url: String,
    pub ca_cert: Option<PathBuf>,
    pub workers: usize,
    pub allow_users: Vec<String>,
    pub allow_orgs: Vec<String>,
    pub open_registration: bool,
    pub min_interval: Duration,
    pub manual_runs_per_hour: u32,
    pub shutdown_grace: Duration,
    /// How long a claim holds a job before another node may take it over.
    pub lease: Duration,
    /// How often the scheduler looks for due jobs when nothing wakes it.
    pub poll_interval: Duration,
    /// Base64 of the 32-byte token-sealing key from `GHBS_MASTER_KEY`, if given. A `Secret`:
    /// this struct is `Debug`, and the key must never reach a log line.
    pub master_key: Option<ghbs_core::Secret>,
    /// Retry pacing of the GitHub client (tests shorten it).
    pub github_retry_base: Duration,
    /// Testing hook (`GHBS_TEST_DISK_FULL_FLAG`, `test-hooks` builds only): while this file
    /// exists the backup engine behaves as on a full disk.
    pub disk_full_flag: Option<PathBuf>,
    /// Server-wide SMTP settings for e-mail notifications; `None`: e-mail is not offered.
    pub smtp: Option<smtp::SmtpConfig>,
    /// HTTPS: (certificate chain, private key), PEM files watched for renewal.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How often the TLS files' modification times are checked.
    pub tls_reload_interval: Duration,
    /// Peers whose `X-Forwarded-For` is believed (`--trust-proxy`).
    pub trust_proxy: Vec<std::net::IpAddr>,
    /// How long audit entries are kept.
    pub audit_retention: Duration,
    /// Burst of failed authentications per client address before 429 (refills at this many a
    /// minute).
    pub auth_failures_per_minute: u32,
    /// Time between two scheduled verifications of each job; `None`: no scheduled verification.
    pub verify_interval: Option<Duration>,
    /// `AWS_*` settings for the storage from the config file's `[s3]` and from `AWS_*_FILE`
    /// files, in order of rising precedence; the process environment's `AWS_*` come after them
    /// (and so win). Values are `Secret`s so that this `Debug` struct never prints them.
    pub storage_settings: Vec<(String, ghbs_core::Secret)>,
    /// Retries of a failed run before its next slot (`--run-retries`).
    pub retry: ghbs_core::RetryPolicy,
    /// How long one git process may run (`--git-timeout-secs`).
    pub git_timeout: Duration,
    /// Repositories of one account run fetched at once (`--repo-parallelism`, default: workers).
    pub repo_parallelism: usize,
    /// Age before the shared-storage garbage collection removes an unneeded object
    /// (`--storage-gc-grace-hours`).
    pub storage_gc_grace: Duration,
    /// How long a due job is left to its warm node (`--warm-cache-delay-secs`).
    pub warm_cache_delay: Duration,
    /// How long one storage call retries (`--storage-retry-secs`).
    pub storage_retry: Duration,
}

/// The storage's `AWS_*` settings that do not come straight from the environment: the config
/// file's `[s3]`, then `AWS_*_FILE` files for the secrets whose variable is unset.
fn storage_settings(
    s3: Option<&S3FileConfig>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, ghbs_core::Secret)>, ConfigError> {
    fn read_secret(path: &std::path::Path, what: &str) -> Result<ghbs_core::Secret, ConfigError> {
        std::fs::read_to_string(path)
            .map(|s| ghbs_core::Secret::new(s.trim()))
            .map_err(|e| ConfigError(format!("cannot read {what} {}: {e}", path.display())))
    }
    let mut out = Vec::new();
    let mut put = |k: &str, v: ghbs_core::Secret| out.push((k.to_owned(), v));
    if let Some(s3) = s3 {
        let plain = [
            ("AWS_ENDPOINT_URL", &s3.endpoint),
            ("AWS_REGION", &s3.region),
            ("AWS_ACCESS_KEY_ID", &s3.access_key_id),
        ];
        for (k, v) in plain {
            if let Some(v) = v {
                put(k, ghbs_core::Secret::new(v.clone()));
            }
        }
        if let Some(allow) = s3.allow_http {
            put("AWS_ALLOW_HTTP", ghbs_core::Secret::new(allow.to_string()));
        }
        if let Some(path) = &s3.secret_access_key_file {
            put(
                "AWS_SECRET_ACCESS_KEY",
                read_secret(path, "[s3] secret_access_key_file")?,
            );
        }
        if let Some(path) = &s3.session_token_file {
            put(
                "AWS_SESSION_TOKEN",
                read_secret(path, "[s3] session_token_file")?,
            );
        }
    }
    for name in S3_SECRET_FILE_VARS {
        if env(name).is_some() {
            continue;
        }
        let file_var = format!("{name}_FILE");
        if let Some(path) = env(&file_var) {
            put(name, read_secret(std::path::Path::new(&path), &file_var)?);
        }
    }
    Ok(out)
}

/// Why the configuration cannot be used. Each message says how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ServerConfig {
    /// Defaults for one machine, rooted at `data_dir`.
    pub fn with_data_dir(data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            database_url: sqlite_url(&data_dir),
            data_dir,
            storage_url: None,
            github_api_url: "https://api.github.com".into(),
            ca_cert: None,
            workers: 4,
            allow_users: Vec::new(),
            allow_orgs: Vec::new(),
            open_registration: false,
            min_interval: Duration::from_secs(24 * 3600),
            manual_runs_per_hour: 6,
            shutdown_grace: Duration::from_secs(30),
            lease: Duration::from_secs(300),
            poll_interval: Duration::from_secs(5),
            master_key: None,
            github_retry_base: Duration::from_secs(1),
            disk_full_flag: None,
            smtp: None,
            tls: None,
            tls_reload_interval: Duration::from_secs(10),
            trust_proxy: Vec::new(),
            audit_retention: Duration::from_secs(180 * 86_400),
            auth_failures_per_minute: 10,
            verify_interval: Some(Duration::from_secs(7 * 86_400)),
            storage_settings: Vec::new(),
            retry: ghbs_core::RetryPolicy::default(),
            git_timeout: Duration::from_secs(3600),
            repo_parallelism: 4,
            storage_gc_grace: ghbs_engine::DEFAULT_STORAGE_GC_GRACE,
            warm_cache_delay: Duration::from_secs(60),
            storage_retry: Duration::from_secs(180),
        }
    }

    /// Resolve flags/environment (already merged by clap) over the config file over defaults.
    /// `master_key` comes from the environment only (`GHBS_MASTER_KEY`, or a file named by
    /// `GHBS_MASTER_KEY_FILE`), never from a flag, so it does not show in `ps`.
    pub fn load(
        args: &ServerArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ServerConfig, ConfigError> {
        let s = match &args.config {
            Some(path) => args.over(ServerArgs::read_file(path)?),
            None => args.clone(),
        };
        let data_dir = s.data_dir.clone().unwrap_or_else(default_data_dir);
        let mut cfg = ServerConfig::with_data_dir(data_dir);
        if let Some(listen) = s.listen.clone() {
            cfg.listen = listen.parse().map_err(|_| {
                ConfigError(format!(
                    "--listen {listen:?} is not an address: use IP:PORT, e.g. 127.0.0.1:3000"
                ))
            })?;
        }
        if let Some(url) = s.database_url.clone() {
            cfg.database_url = url;
        }
        if let Some(url) = s.storage_url.clone() {
            ghbs_engine::StorageLocation::parse(&url)
                .map_err(|e| ConfigError(format!("--storage: {e}")))?;
            cfg.storage_url = Some(url);
        }
        cfg.storage_settings = storage_settings(s.s3.as_ref(), env)?;
        if let Some(url) = s.github_api_url.clone() {
            cfg.github_api_url = url.trim_end_matches('/').to_string();
        }
        if !(cfg.github_api_url.starts_with("http://")
            || cfg.github_api_url.starts_with("https://"))
        {
            return Err(ConfigError(format!(
                "--github-api-url {:?} must start with https:// (or http:// for a local test server)",
                cfg.github_api_url
            )));
        }
        cfg.ca_cert = s.ca_cert.clone();
        if let Some(w) = s.workers {
            if w == 0 || w > 256 {
                return Err(ConfigError(format!(
                    "--workers {w}: choose between 1 and 256"
                )));
            }
            cfg.workers = w;
        }
        cfg.allow_users = s.allow_users.clone().unwrap_or_default();
        cfg.allow_orgs = s.allow_orgs.clone().unwrap_or_default();
        cfg.allow_users.retain(|s| !s.trim().is_empty());
        cfg.allow_orgs.retain(|s| !s.trim().is_empty());
        cfg.open_registration = s.open_registration.unwrap_or(false);
        if let Some(h) = s.min_interval_hours {
            if h < 24 {
                return Err(ConfigError(format!(
                    "--min-interval-hours {h}: backups run at most once a day, so the minimum is 24"
                )));
            }
            cfg.min_interval = Duration::from_secs(h * 3600);
        }
        if let Some(n) = s.manual_runs_per_hour {
            cfg.manual_runs_per_hour = n;
        }
        if let Some(s) = s.shutdown_grace_secs {
            cfg.shutdown_grace = Duration::from_secs(s);
        }
        match (
            s.tls_cert.clone(),
            s.tls_key.clone(),
        ) {
            (Some(cert), Some(key)) => cfg.tls = Some((cert, key)),
            (None, None) => {}
            _ => {
                return Err(ConfigError(
                    "--tls-cert and --tls-key go together: give both (GHBS_TLS_CERT / GHBS_TLS_KEY) or neither"
                        .into(),
                ))
            }
        }
        for addr in s.trust_proxy.clone().unwrap_or_default() {
            let addr = addr.trim();
            if addr.is_empty() {
                continue;
            }
            cfg.trust_proxy.push(addr.parse().map_err(|_| {
                ConfigError(format!(
                    "--trust-proxy {addr:?} is not an IP address: list the proxies' addresses, e.g. 127.0.0.1,10.0.0.2"
                ))
            })?);
        }
        if let Some(days) = s.audit_retention_days {
            if days == 0 {
                return Err(ConfigError(
                    "--audit-retention-days 0: keep the audit trail at least one day".into(),
                ));
            }
            cfg.audit_retention = Duration::from_secs(u64::from(days) * 86_400);
        }
        if let Some(n) = s.auth_failures_per_minute {
            if n == 0 || n > 10_000 {
                return Err(ConfigError(format!(
                    "--auth-failures-per-minute {n}: choose between 1 and 10000"
                )));
            }
            cfg.auth_failures_per_minute = n;
        }
        if let Some(n) = s.run_retries {
            if n > 20 {
                return Err(ConfigError(format!(
                    "--run-retries {n}: choose between 0 and 20 (retries stop at the next slot anyway)"
                )));
            }
            cfg.retry = ghbs_core::RetryPolicy { retries: n };
        }
        if let Some(h) = s.storage_gc_grace_hours {
            if h == 0 || h > 24 * 90 {
                return Err(ConfigError(format!(
                    "--storage-gc-grace-hours {h}: choose between 1 and 2160 (90 days); it must \
                     exceed the longest download or backup commit"
                )));
            }
            cfg.storage_gc_grace = Duration::from_secs(h * 3600);
        }
        if let Some(secs) = s.warm_cache_delay_secs {
            if secs > 3600 {
                return Err(ConfigError(format!(
                    "--warm-cache-delay-secs {secs}: choose between 0 and 3600"
                )));
            }
            cfg.warm_cache_delay = Duration::from_secs(secs);
        }
        if let Some(secs) = s.storage_retry_secs {
            if secs > 3600 {
                return Err(ConfigError(format!(
                    "--storage-retry-secs {secs}: choose between 0 and 3600"
                )));
            }
            cfg.storage_retry = Duration::from_secs(secs);
        }
        if let Some(days) = s.verify_interval_days {
            if days > 3650 {
                return Err(ConfigError(format!(
                    "--verify-interval-days {days}: at most 3650 (ten years); 0 turns scheduled verification off"
                )));
            }
            cfg.verify_interval = (days > 0).then(|| Duration::from_secs(days * 86_400));
        }
        if let Some(secs) = s.git_timeout_secs {
            if !(10..=7 * 86_400).contains(&secs) {
                return Err(ConfigError(format!(
                    "--git-timeout-secs {secs}: choose between 10 and 604800 (a week)"
                )));
            }
            cfg.git_timeout = Duration::from_secs(secs);
        }
        if let Some(n) = s.repo_parallelism {
            if n == 0 || n > 64 {
                return Err(ConfigError(format!(
                    "--repo-parallelism {n}: choose between 1 and 64"
                )));
            }
        }
        cfg.repo_parallelism = s.repo_parallelism.unwrap_or(cfg.workers);
        cfg.master_key = match (env("GHBS_MASTER_KEY"), env("GHBS_MASTER_KEY_FILE")) {
            (Some(k), _) => Some(ghbs_core::Secret::new(k)),
            (None, Some(path)) => Some(ghbs_core::Secret::new(
                std::fs::read_to_string(&path)
                    .map_err(|e| {
                        ConfigError(format!("cannot read GHBS_MASTER_KEY_FILE {path}: {e}"))
                    })?
                    .trim(),
            )),
            (None, None) => None,
        };
        cfg.smtp = smtp::SmtpConfig::load(&s, env)?;
        cfg.check_registration_policy()?;
        Ok(cfg)
    }

    /// Open registration only on loopback unless an allow-list or an explicit choice (README,
    /// "Server configuration": a public server must not let any GitHub user in by default).
    pub fn check_registration_policy(&self) -> Result<(), ConfigError> {
        if self.listen.ip().is_loopback()
            || self.open_registration
            || !self.allow_users.is_empty()
            || !self.allow_orgs.is_empty()
        {
            return Ok(());
        }
        Err(ConfigError(format!(
            "refusing to listen on {} without a registration policy: anyone who can reach it could \
             register. Set --allow-users LOGIN[,LOGIN] and/or --allow-orgs ORG[,ORG] \
             (GHBS_ALLOW_USERS / GHBS_ALLOW_ORGS), or choose --open-registration true explicitly",
            self.listen
        )))
    }

    /// Who may register under this configuration: `None` means anyone who authenticates.
    pub fn registration_allow_list(&self) -> Option<(&[String], &[String])> {
        if self.allow_users.is_empty() && self.allow_orgs.is_empty() {
            None
        } else {
            Some((&self.allow_users, &self.allow_orgs))
        }
    }
}

fn sqlite_url(data_dir: &std::path::Path) -> String {
    format!("sqlite://{}", data_dir.join("state.db").display())
}

/// `$XDG_DATA_HOME/github-backup-scheduler`, or `./ghbs-data` where no data folder is known.
fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("github-backup-scheduler"))
        .unwrap_or_else(|| PathBuf::from("ghbs-data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_are_single_machine() {
        let args = ServerArgs {
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let cfg = ServerConfig::load(&args, &no_env).unwrap();
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(cfg.database_url, "sqlite:///tmp/x/state.db");
        assert_eq!(cfg.github_api_url, "https://api.github.com");
        assert_eq!(cfg.min_interval, Duration::from_secs(86400));
    }

    #[test]
    fn file_is_below_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:4000\"\nworkers = 7\ndata_dir = \"/tmp/f\"\n",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(path),
            workers: Some(2),
            ..Default::default()
        };
        let cfg = ServerConfig::load(&args, &no_env).unwrap();
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:4000");
        assert_eq!(cfg.workers, 2);
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/f"));
    }

    #[test]
    fn s3_settings_from_the_file_and_secret_files_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("s3-secret");
        std::fs::write(&secret, "from-file-secret\n").unwrap();
        let env_secret = dir.path().join("env-secret");
        std::fs::write(&env_secret, "from-env-file-secret\n").unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            format!(
                "storage_url = \"s3://bucket/p\"\n[s3]\nendpoint = \"http://127.0.0.1:9000\"\n\
                 region = \"eu-west-1\"\naccess_key_id = \"AKID\"\nallow_http = true\n\
                 secret_access_key_file = \"{}\"\n",
                secret.display()
            ),
        )
        .unwrap();
        let args = ServerArgs {
            data_dir: Some("/tmp/x".into()),
            config: Some(path.clone()),
            ..Default::default()
        };
        let cfg = ServerConfig::load(&args, &no_env).unwrap();
        let got: Vec<(String, String)> = cfg
            .storage_settings
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
            .collect();
        let want = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_SECRET_ACCESS_KEY", "from-file-secret"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        assert!(!format!("{cfg:?}").contains("from-file-secret"));

        // AWS_SECRET_ACCESS_KEY_FILE comes after (and so wins over) the file's setting...
        let file_var = env_secret.display().to_string();
        let env = move |k: &str| (k == "AWS_SECRET_ACCESS_KEY_FILE").then(|| file_var.clone());
        let cfg = ServerConfig::load(&args, &env).unwrap();
        let (k, v) = cfg.storage_settings.last().unwrap();
        assert_eq!(
            (k.as_str(), v.expose()),
            ("AWS_SECRET_ACCESS_KEY", "from-env-file-secret")
        );
        // ...and is ignored when the variable itself is set (the environment is applied last).
        let env = |k: &str| match k {
            "AWS_SECRET_ACCESS_KEY" => Some("direct".to_string()),
            "AWS_SECRET_ACCESS_KEY_FILE" => Some("/nonexistent".to_string()),
            _ => None,
        };
        let cfg = ServerConfig::load(&args, &env).unwrap();
        assert_eq!(cfg.storage_settings.len(), 5);

        // A secret file that cannot be read is an error naming the setting, not a silent default.
        let env = |k: &str| (k == "AWS_SESSION_TOKEN_FILE").then(|| "/nonexistent/tok".to_string());
        let e = ServerConfig::load(&args, &env).unwrap_err().to_string();
        assert!(
            e.contains("AWS_SESSION_TOKEN_FILE") && e.contains("/nonexistent/tok"),
            "{e}"
        );
        // Secrets in clear text in the file are not a setting at all.
        std::fs::write(&path, "[s3]\nsecret_access_key = \"x\"\n").unwrap();
        let e = ServerConfig::load(&args, &no_env).unwrap_err().to_string();
        assert!(e.contains("secret_access_key"), "{e}");
    }

    /// Precedence for every kind of setting at once: defaults, then the file, then flags (clap
    /// puts the environment in the same place as flags; see the clap test below).
    #[test]
    fn every_setting_flag_over_file_over_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "storage_url = \"s3://from-file/ghbs\"\nrun_retries = 2\ngit_timeout_secs = 600\n\
             repo_parallelism = 3\nworkers = 7\nverify_interval_days = 2\n",
        )
        .unwrap();
        let base = ServerArgs {
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let defaults = ServerConfig::load(&base, &no_env).unwrap();
        let from_file = ServerArgs {
            config: Some(path),
            ..base.clone()
        };
        let file = ServerConfig::load(&from_file, &no_env).unwrap();
        let flags = ServerArgs {
            storage_url: Some("file:///srv/ghbs-backups".into()),
            run_retries: Some(0),
            git_timeout_secs: Some(60),
            workers: Some(2),
            verify_interval_days: Some(0),
            ..from_file
        };
        let flag = ServerConfig::load(&flags, &no_env).unwrap();
        type Get = fn(&ServerConfig) -> String;
        let rows: [(&str, Get, [&str; 3]); 6] = [
            (
                "storage_url",
                |c| format!("{:?}", c.storage_url),
                [
                    "None",
                    "Some(\"s3://from-file/ghbs\")",
                    "Some(\"file:///srv/ghbs-backups\")",
                ],
            ),
            (
                "run_retries",
                |c| c.retry.retries.to_string(),
                ["4", "2", "0"],
            ),
            (
                "git_timeout",
                |c| c.git_timeout.as_secs().to_string(),
                ["3600", "600", "60"],
            ),
            ("workers", |c| c.workers.to_string(), ["4", "7", "2"]),
            // Not given as a flag: the file's value stays; its default follows --workers.
            (
                "repo_parallelism",
                |c| c.repo_parallelism.to_string(),
                ["4", "3", "3"],
            ),
            (
                "verify_interval",
                |c| format!("{:?}", c.verify_interval),
                ["Some(604800s)", "Some(172800s)", "None"],
            ),
        ];
        for (name, get, [d, f, g]) in rows {
            assert_eq!((name, get(&defaults).as_str()), (name, d));
            assert_eq!((name, get(&file).as_str()), (name, f));
            assert_eq!((name, get(&flag).as_str()), (name, g));
        }
        assert_eq!(defaults.retry.retries, ghbs_core::DEFAULT_RETRIES);
        // Not a number: clap refuses it before loading, with the flag's name.
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            server: ServerArgs,
        }
        use clap::Parser;
        for flag in ["--run-retries", "--git-timeout-secs", "--repo-parallelism"] {
            let err = Cli::try_parse_from(["x", flag, "many"]).err().unwrap();
            assert!(err.to_string().contains(flag), "{err}");
        }
        // The `config` key itself is not a file setting.
        let dir2 = tempfile::tempdir().unwrap();
        let nested = dir2.path().join("c.toml");
        std::fs::write(&nested, "config = \"/etc/other.toml\"\n").unwrap();
        let err = ServerConfig::load(
            &ServerArgs {
                config: Some(nested),
                ..base
            },
            &no_env,
        )
        .unwrap_err();
        assert!(err.0.contains("config"), "{err}");
    }

    #[test]
    fn over_keeps_what_is_given_and_fills_the_rest() {
        let high = ServerArgs {
            workers: Some(2),
            allow_users: Some(vec!["alice".into()]),
            ..Default::default()
        };
        let low = ServerArgs {
            workers: Some(9),
            listen: Some("127.0.0.1:4000".into()),
            s3: Some(S3FileConfig {
                region: Some("eu-west-1".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let merged = high.over(low);
        assert_eq!(merged.workers, Some(2));
        assert_eq!(merged.listen.as_deref(), Some("127.0.0.1:4000"));
        assert_eq!(merged.allow_users, Some(vec!["alice".to_string()]));
        assert_eq!(
            merged.s3.and_then(|s| s.region).as_deref(),
            Some("eu-west-1")
        );
    }

    #[test]
    fn storage_url_from_the_environment_through_clap() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            server: ServerArgs,
        }
        use clap::{CommandFactory, FromArgMatches};
        let storage = Cli::command()
            .get_arguments()
            .find(|a| a.get_id() == "storage_url")
            .map(|a| {
                (
                    a.get_long().map(str::to_owned),
                    a.get_env().map(|e| e.to_owned()),
                )
            })
            .unwrap();
        assert_eq!(storage.0.as_deref(), Some("storage"));
        assert_eq!(
            storage.1.as_deref(),
            Some(std::ffi::OsStr::new("GHBS_STORAGE_URL"))
        );
        let matches = Cli::command()
            .try_get_matches_from(["x", "--storage", "s3://flag-bucket"])
            .unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        assert_eq!(cli.server.storage_url.as_deref(), Some("s3://flag-bucket"));
    }

    #[test]
    fn malformed_storage_url_is_refused_with_the_accepted_forms() {
        for url in [
            "backups",
            "s3://",
            "gs://bucket",
            "file://relative",
            "s3://AKID:hunter2@bucket",
        ] {
            let args = ServerArgs {
                data_dir: Some("/tmp/x".into()),
                storage_url: Some(url.into()),
                ..Default::default()
            };
            let err = ServerConfig::load(&args, &no_env).unwrap_err();
            assert!(err.0.starts_with("--storage: invalid storage URL"), "{err}");
            assert!(err.0.contains("s3://bucket[/prefix]"), "{err}");
            assert!(!err.0.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn unknown_file_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listn = \"127.0.0.1:4000\"\n").unwrap();
        let args = ServerArgs {
            config: Some(path),
            ..Default::default()
        };
        let err = ServerConfig::load(&args, &no_env).unwrap_err();
        assert!(err.0.contains("listn"), "{err}");
    }

    #[test]
    fn public_address_needs_a_policy() {
        let args = ServerArgs {
            listen: Some("0.0.0.0:3000".into()),
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let err = ServerConfig::load(&args, &no_env).unwrap_err();
        assert!(err.0.contains("--allow-users"), "{err}");
        let ok = ServerArgs {
            allow_orgs: Some(vec!["acme".into()]),
            ..args
        };
        assert!(ServerConfig::load(&ok, &no_env).is_ok());
    }

    #[test]
    fn bad_values_are_explained() {
        for (args, needle) in [
            (
                ServerArgs {
                    listen: Some("localhost".into()),
                    ..Default::default()
                },
                "not an address",
            ),
            (
                ServerArgs {
                    workers: Some(0),
                    ..Default::default()
                },
                "--workers",
            ),
            (
                ServerArgs {
                    min_interval_hours: Some(1),
                    ..Default::default()
                },
                "at most once a day",
            ),
            (
                ServerArgs {
                    github_api_url: Some("ftp://x".into()),
                    ..Default::default()
                },
                "https://",
            ),
            (
                ServerArgs {
                    run_retries: Some(21),
                    ..Default::default()
                },
                "--run-retries 21: choose between 0 and 20",
            ),
            (
                ServerArgs {
                    git_timeout_secs: Some(1),
                    ..Default::default()
                },
                "--git-timeout-secs 1: choose between 10",
            ),
            (
                ServerArgs {
                    repo_parallelism: Some(0),
                    ..Default::default()
                },
                "--repo-parallelism 0: choose between 1 and 64",
            ),
            (
                ServerArgs {
                    storage_gc_grace_hours: Some(0),
                    ..Default::default()
                },
                "--storage-gc-grace-hours 0: choose between 1 and 2160",
            ),
            (
                ServerArgs {
                    warm_cache_delay_secs: Some(86_400),
                    ..Default::default()
                },
                "--warm-cache-delay-secs 86400: choose between 0 and 3600",
            ),
            (
                ServerArgs {
                    storage_retry_secs: Some(7200),
                    ..Default::default()
                },
                "--storage-retry-secs 7200: choose between 0 and 3600",
            ),
        ] {
            let args = ServerArgs {
                data_dir: Some("/tmp/x".into()),
                ..args
            };
            let err = ServerConfig::load(&args, &no_env).unwrap_err();
            assert!(err.0.contains(needle), "{err}");
        }
    }

    #[test]
    fn shared_storage_settings_from_the_file_and_their_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "storage_gc_grace_hours = 48\nwarm_cache_delay_secs = 0\nstorage_retry_secs = 30\n",
        )
        .unwrap();
        let defaults = ServerConfig::load(
            &ServerArgs {
                data_dir: Some("/tmp/x".into()),
                ..Default::default()
            },
            &no_env,
        )
        .unwrap();
        assert_eq!(defaults.storage_gc_grace, Duration::from_secs(24 * 3600));
        assert_eq!(defaults.warm_cache_delay, Duration::from_secs(60));
        assert_eq!(defaults.storage_retry, Duration::from_secs(180));
        let cfg = ServerConfig::load(
            &ServerArgs {
                data_dir: Some("/tmp/x".into()),
                config: Some(path),
                ..Default::default()
            },
            &no_env,
        )
        .unwrap();
        assert_eq!(cfg.storage_gc_grace, Duration::from_secs(48 * 3600));
        assert_eq!(cfg.warm_cache_delay, Duration::ZERO);
        assert_eq!(cfg.storage_retry, Duration::from_secs(30));
    }

    #[test]
    fn security_settings_from_flags_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "tls_cert = \"/etc/ghbs/cert.pem\"\ntls_key = \"/etc/ghbs/key.pem\"\n\
             trust_proxy = [\"10.0.0.2\"]\naudit_retention_days = 30\n",
        )
        .unwrap();
        let args = ServerArgs {
            data_dir: Some("/tmp/x".into()),
            config: Some(path),
            ..Default::default()
        };
        let cfg = ServerConfig::load(&args, &no_env).unwrap();
        assert_eq!(
            cfg.tls,
            Some(("/etc/ghbs/cert.pem".into(), "/etc/ghbs/key.pem".into()))
        );
        assert_eq!(
            cfg.trust_proxy,
            vec!["10.0.0.2".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(cfg.audit_retention, Duration::from_secs(30 * 86_400));
        let flags = ServerArgs {
            trust_proxy: Some(vec!["127.0.0.1".into(), "::1".into()]),
            auth_failures_per_minute: Some(3),
            ..args
        };
        let cfg = ServerConfig::load(&flags, &no_env).unwrap();
        assert_eq!(cfg.trust_proxy.len(), 2);
        assert_eq!(cfg.auth_failures_per_minute, 3);
        let defaults = ServerConfig::with_data_dir("/tmp/x".into());
        assert_eq!(defaults.audit_retention, Duration::from_secs(180 * 86_400));
        assert_eq!(defaults.tls, None);
    }

    #[test]
    fn malformed_security_settings_are_explained() {
        for (args, needle) in [
            (
                ServerArgs {
                    tls_cert: Some("/c.pem".into()),
                    ..Default::default()
                },
                "go together",
            ),
            (
                ServerArgs {
                    trust_proxy: Some(vec!["proxy.example".into()]),
                    ..Default::default()
                },
                "not an IP address",
            ),
            (
                ServerArgs {
                    audit_retention_days: Some(0),
                    ..Default::default()
                },
                "at least one day",
            ),
            (
                ServerArgs {
                    auth_failures_per_minute: Some(0),
                    ..Default::default()
                },
                "--auth-failures-per-minute",
            ),
        ] {
            let args = ServerArgs {
                data_dir: Some("/tmp/x".into()),
                ..args
            };
            let err = ServerConfig::load(&args, &no_env).unwrap_err();
            assert!(err.0.contains(needle), "{err}");
        }
    }

    #[test]
    fn master_key_from_env() {
        let args = ServerArgs {
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let env = |k: &str| (k == "GHBS_MASTER_KEY").then(|| "abc".to_string());
        let cfg = ServerConfig::load(&args, &env).unwrap();
        assert_eq!(cfg.master_key.as_ref().map(|k| k.expose()), Some("abc"));
        // The configuration is `Debug`; the key is not in what it prints.
        let printed = format!("{cfg:?}");
        assert!(!printed.contains("abc"), "{printed}");
    }
}
