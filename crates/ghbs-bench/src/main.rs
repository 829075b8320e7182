//! `ghbs-bench`: prints performance figures of the server and of the backup engine next to their
//! targets. It never asserts a timing: figures depend on the machine, and a person judges them.
//! Run in release mode: `cargo run --release -p ghbs-bench -- server|api-load|backup|metadata`.

mod api_load;
mod backup_bench;
mod breakdown;
mod db;
mod metadata_bench;
mod plain_git;
mod python_github_backup;
mod real_server;
mod report;
mod request_log;
mod s3_backup;
mod server_bench;
mod server_memory;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Benchmarks of github-backup-scheduler (prints figures, asserts nothing)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Store load, real server start-to-ready, GET /api/v1/jobs latency, RSS, claim throughput.
    Server {
        /// `sqlite://PATH`, or `postgres://…` (the benchmark creates its own schema there and
        /// drops it at the end). Default: a SQLite file in a temporary folder.
        #[arg(long)]
        database: Option<String>,
        /// Jobs to load.
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
        /// Users the jobs are spread over.
        #[arg(long, default_value_t = 1_000)]
        users: usize,
        /// Due runs the in-process scheduler claims and completes.
        #[arg(long, default_value_t = 10_000)]
        claims: usize,
        /// Concurrent HTTP clients of the latency test (each with its own user's API key).
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Requests of the latency test (it also stops after --seconds).
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Time limit of the latency test.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// The server binary (default: github-backup-scheduler next to this binary).
        #[arg(long)]
        server_bin: Option<PathBuf>,
    },
    /// `GET /api/v1/jobs` of one user with many jobs, loaded by `wrk` against the real server.
    ApiLoad {
        /// `sqlite://PATH`, or `postgres://…` (own schema, dropped at the end).
        #[arg(long)]
        database: Option<String>,
        /// Jobs of the one user.
        #[arg(long, default_value_t = 100)]
        jobs: usize,
        /// Concurrent connections of the loaded test.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// wrk threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Duration of the loaded test.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// `limit` of each request (a page of that many jobs).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// The server binary (default: github-backup-scheduler next to this binary).
        #[arg(long)]
        server_bin: Option<PathBuf>,
        /// The wrk binary.
        #[arg(long, default_value = "wrk")]
        wrk: PathBuf,
    },
    /// First backup, unchanged run and run after pushes of an account job, against plain git;
    /// with `--storage s3|both`, also on S3 storage and on a cold node hydrating from it.
    Backup {
        /// Repositories in the account.
        #[arg(long, default_value_t = 200)]
        repos: usize,
        /// How many of them are large.
        #[arg(long, default_value_t = 5)]
        large: usize,
        /// Commits of each large repository.
        #[arg(long, default_value_t = 3_000)]
        large_commits: usize,
        /// Size of each large repository's history, in MB of incompressible data.
        #[arg(long, default_value_t = 20)]
        large_mb: usize,
        /// Server workers, and plain git processes at a time for the comparison.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Backup storage measured: `file` (the data folder, as by default), `s3` (a fresh
        /// bucket on the endpoint `TEST_S3_ENDPOINT` names, e.g. moto; adds a cold node that
        /// hydrates every mirror from it) or `both` (also the S3 / file ratio).
        #[arg(long, value_enum, default_value_t = backup_bench::StorageChoice::File)]
        storage: backup_bench::StorageChoice,
    },
    /// Counted GitHub requests and wall time of a metadata backup (first run, unchanged run),
    /// and of python-github-backup --incremental on the same world.
    Metadata {
        /// Repositories in the account (each with issues, comments, pull requests, reviews,
        /// labels, a milestone and a release).
        #[arg(long, default_value_t = 200)]
        repos: usize,
        /// Server workers.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Python interpreter with `github-backup` installed (pip install github-backup==0.65.1).
        #[arg(long, default_value = "python3")]
        python: PathBuf,
        /// Skip the python-github-backup comparison.
        #[arg(long)]
        no_python: bool,
        /// The server binary whose resident memory a first run is measured with (default:
        /// `github-backup-scheduler` next to `ghbs-bench`).
        #[arg(long)]
        server_bin: Option<PathBuf>,
        /// Skip the real server's memory measurement.
        #[arg(long)]
        no_memory: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // In-process server parts log warnings (a failed run, a store error) to stderr; figures go to
    // stdout. RUST_LOG overrides.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Server {
            database,
            jobs,
            users,
            claims,
            clients,
            requests,
            seconds,
            server_bin,
        } => {
            server_bench::run(server_bench::ServerBench {
                database,
                jobs,
                users,
                claims,
                clients: clients.max(1),
                requests,
                duration: Duration::from_secs(seconds),
                server_bin,
            })
            .await
        }
        Command::ApiLoad {
            database,
            jobs,
            connections,
            threads,
            seconds,
            limit,
            server_bin,
            wrk,
        } => {
            api_load::run(api_load::ApiLoad {
                database,
                jobs,
                connections: connections.max(1),
                threads: threads.clamp(1, connections.max(1)),
                seconds: seconds.max(1),
                limit,
                server_bin,
                wrk,
            })
            .await
        }
        Command::Backup {
            repos,
            large,
            large_commits,
            large_mb,
            parallel,
            storage,
        } => {
            backup_bench::run(backup_bench::BackupBench {
                repos,
                large,
                large_commits,
                large_mb,
                parallel: parallel.max(1),
                storage,
            })
            .await
        }
        Command::Metadata {
            repos,
            parallel,
            python,
            no_python,
            server_bin,
            no_memory,
        } => {
            metadata_bench::run(metadata_bench::MetadataBench {
                repos,
                parallel: parallel.max(1),
                python: (!no_python).then_some(python),
                server_bin: (!no_memory)
                    .then(|| server_bin.unwrap_or_else(real_server::default_binary)),
            })
            .await
        }
    }
}
