//! `github-backup-scheduler`: the client of a backup server, and the server itself (`server`).
//!
//! This file only parses arguments, picks the command and turns the outcome into an exit code
//! (see [`exit`] for the table). Errors are printed once as `error: …`, never as Debug output.

mod api;
mod cli;
mod commands;
mod config;
mod exit;
mod interactive;
mod output;
mod restore_journal;
mod target_github;
mod transport;
mod validate;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command, MigrateArgs, StorageCommand};
use commands::Ctx;
use config::ConfigDir;
use exit::{CliError, CliResult};
use output::Printer;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> CliResult {
    let Cli {
        server,
        json,
        quiet,
        verbose,
        insecure_http,
        ca_cert,
        command,
    } = cli;
    if let Some(Command::Server(args)) = command {
        return run_server(*args);
    }
    if let Some(Command::Storage(StorageCommand::Migrate(args))) = command {
        return migrate_storage(*args, json);
    }
    if verbose {
        init_tracing("github_backup_scheduler=debug");
    }
    let config = ConfigDir::locate()?;
    let file = config.load_config()?;
    let server = config::resolve_server(server.as_deref(), &file)?;
    let ca_cert = ca_cert.or_else(|| file.ca_cert.clone());
    let ctx = Ctx {
        out: Printer { json, quiet },
        config,
        server,
        insecure_http,
        ca_cert,
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start: {e}")))?;
    let Some(command) = command else {
        if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() && !json {
            return runtime.block_on(interactive::run(&ctx));
        }
        eprintln!("{}", Cli::command().render_help());
        return Err(CliError::usage(
            "no command given and no terminal for the interactive menu: pass a command (see above)",
        ));
    };
    runtime.block_on(dispatch(&ctx, command))
}

async fn dispatch(ctx: &Ctx, command: Command) -> CliResult {
    use commands::*;
    match command {
        Command::Login(args) => login::login(ctx, &args).await,
        Command::Logout => login::logout(ctx).await,
        Command::Whoami => login::whoami(ctx).await,
        Command::Keys(args) => login::keys(ctx, &args).await,
        Command::Audit(args) => login::audit(ctx, &args).await,
        Command::Schedule(args) => schedule::schedule(ctx, &args).await,
        Command::Jobs => jobs::list(ctx).await,
        Command::Job(cmd) => jobs::job(ctx, &cmd).await,
        Command::Runs(id) => jobs::runs(ctx, id.id).await,
        Command::Snapshots(id) => jobs::snapshots(ctx, id.id).await,
        Command::Run(args) => run::run(ctx, &args).await,
        Command::Fetch(args) => fetch::fetch(ctx, &args).await,
        Command::Restore(args) => restore::restore(ctx, &args).await,
        Command::Notify(cmd) => notify::notify(ctx, &cmd).await,
        Command::Verify(args) => check::verify(ctx, &args).await,
        Command::Server(_) | Command::Storage(_) => Err(CliError::failed(
            "internal: server commands run before dispatch",
        )),
    }
}

fn run_server(args: ghbs_server::ServerArgs) -> CliResult {
    init_tracing("info");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the server: {e}")))?;
    runtime
        .block_on(ghbs_server::run(args))
        .map_err(|e| CliError::failed(format!("{e:#}")))
}

/// `storage migrate`: progress per job on stderr, the summary on stdout (or as JSON), exit 1
/// when any snapshot could not be copied or verified.
fn migrate_storage(args: MigrateArgs, json: bool) -> CliResult {
    init_tracing("warn");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start: {e}")))?;
    let to = args.to.clone();
    let report = runtime
        .block_on(ghbs_server::storage_migrate::migrate(
            &args.server,
            &to,
            &|line| eprintln!("{line}"),
        ))
        .map_err(|e| CliError::failed(format!("{e:#}")))?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "to": to,
                "jobs": report.jobs,
                "snapshots": report.snapshots,
                "objects": report.objects,
                "bytes": report.bytes,
                "problems": report.problems,
            })
        );
    } else if report.problems.is_empty() {
        println!(
            "Copied {} snapshot(s) of {} job(s) to {to} ({} objects, {} there now); every \
             snapshot verified from there through an empty cache.",
            report.snapshots,
            report.jobs,
            report.objects,
            output::size(i64::try_from(report.bytes).unwrap_or(i64::MAX))
        );
        println!(
            "Next: start the server with `--storage {to}` (or GHBS_STORAGE_URL, or \
             storage_url in its config file) and the same AWS_* settings. DATA_DIR/backups \
             stays as this node's cache; nothing was deleted."
        );
    }
    if report.problems.is_empty() {
        return Ok(());
    }
    for p in &report.problems {
        eprintln!("problem: {p}");
    }
    Err(CliError::failed(format!(
        "{} problem(s): do not switch to {to} yet (a rerun copies only what is missing)",
        report.problems.len()
    )))
}

/// Logs to stderr; `RUST_LOG` overrides `default`.
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
