//! `notify add webhook|email`, `notify list`, `notify test`, `notify remove`.
//!
//! A webhook URL is read from a hidden prompt or standard input (`--url-stdin`), never from an
//! argument: Slack, Discord and most hook URLs are their own credential, and arguments are
//! visible to every user of the machine (`ps`, `/proc/PID/cmdline`) and land in shell history.

use std::io::{BufRead, IsTerminal};

use ghbs_core::Secret;
use ghbs_wire::{NotifyKind, NotifyTarget, NotifyTargetCreate};
use serde_json::json;

use super::{prompt, Ctx};
use crate::cli::{NotifyAddCommand, NotifyCommand};
use crate::exit::{CliError, CliResult};
use crate::output;

pub async fn notify(ctx: &Ctx, cmd: &NotifyCommand) -> CliResult {
    match cmd {
        NotifyCommand::Add(add) => add_target(ctx, add).await,
        NotifyCommand::List => list(ctx).await,
        NotifyCommand::Test { id } => test(ctx, *id).await,
        NotifyCommand::Remove { id } => remove(ctx, *id).await,
    }
}

/// `--url-stdin`, else a hidden prompt on a terminal, else a usage error.
async fn read_url(url_stdin: bool) -> CliResult<Secret> {
    let url = if url_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::failed(format!("cannot read the URL from stdin: {e}")))?;
        line
    } else if std::io::stdin().is_terminal() {
        prompt(|| {
            inquire::Password::new("Webhook URL:")
                .without_confirmation()
                .with_display_mode(inquire::PasswordDisplayMode::Masked)
                .prompt()
        })
        .await?
    } else {
        return Err(CliError::usage(
            "no terminal to ask for the webhook URL: pipe it with --url-stdin",
        ));
    };
    let url = url.trim().to_owned();
    if url.is_empty() {
        return Err(CliError::usage("the webhook URL is empty"));
    }
    Ok(Secret::new(url))
}

async fn add_target(ctx: &Ctx, add: &NotifyAddCommand) -> CliResult {
    let api = ctx.api()?;
    let req = match add {
        NotifyAddCommand::Webhook {
            url_stdin,
            events,
            format,
        } => NotifyTargetCreate {
            kind: NotifyKind::Webhook,
            url: Some(read_url(*url_stdin).await?.expose().to_owned()),
            address: None,
            events: events.events.clone(),
            format: Some(*format),
        },
        NotifyAddCommand::Email { address, events } => NotifyTargetCreate {
            kind: NotifyKind::Email,
            url: None,
            address: Some(address.clone()),
            events: events.events.clone(),
            format: None,
        },
    };
    let created = api.add_notify_target(&req).await?;
    drop(req);
    if ctx.out.json(&created) {
        return Ok(());
    }
    let t = &created.target;
    ctx.out.line(format!(
        "Added notification target {} ({}, events: {}).",
        t.id,
        t.destination,
        t.events.join(",")
    ));
    if let Some(secret) = &created.secret {
        ctx.out
            .line(format!("Signing secret (shown once): {secret}"));
        ctx.out.note(
            "Each request carries X-GHBS-Signature-256: sha256=HMAC-SHA256(secret, body); \
             check it before trusting the body.",
        );
    }
    ctx.out.note(format!(
        "Try it: github-backup-scheduler notify test {}",
        t.id
    ));
    Ok(())
}

fn targets_table(targets: &[NotifyTarget]) -> comfy_table::Table {
    let mut t = output::table(&["ID", "KIND", "DESTINATION", "EVENTS", "LAST DELIVERY"]);
    for n in targets {
        let kind = match (n.kind, n.format) {
            (NotifyKind::Email, _) => "email".to_owned(),
            (NotifyKind::Webhook, Some(f)) => format!("webhook ({})", f.as_str()),
            (NotifyKind::Webhook, None) => "webhook".to_owned(),
        };
        let last = match &n.last_delivery {
            None => "-".to_owned(),
            Some(d) if d.ok => format!("delivered `{}` {}", d.event, output::when(d.at)),
            Some(d) => format!(
                "NOT delivered `{}` {}: {}",
                d.event,
                output::when(d.at),
                d.error.as_deref().unwrap_or("")
            ),
        };
        t.add_row(vec![
            n.id.to_string(),
            kind,
            n.destination.clone(),
            n.events.join(","),
            last,
        ]);
    }
    t
}

async fn list(ctx: &Ctx) -> CliResult {
    let list = ctx.api()?.notify_targets().await?;
    if !ctx.out.json(&list) {
        if list.targets.is_empty() {
            ctx.out.line("No notification targets. Add one with `github-backup-scheduler notify add webhook` or `notify add email ADDRESS`.");
        } else {
            ctx.out.table(targets_table(&list.targets));
        }
    }
    Ok(())
}

async fn test(ctx: &Ctx, id: i64) -> CliResult {
    let res = ctx.api()?.test_notify_target(id).await?;
    if !ctx.out.json(&res) && res.delivered {
        ctx.out
            .line(format!("Test notification delivered to target {id}."));
    }
    match res.error {
        None => Ok(()),
        Some(e) => Err(CliError::failed(format!(
            "the test notification to target {id} was not delivered: {e}"
        ))),
    }
}

async fn remove(ctx: &Ctx, id: i64) -> CliResult {
    ctx.api()?.remove_notify_target(id).await?;
    if !ctx.out.json(&json!({ "removed": id })) {
        ctx.out.line(format!("Removed notification target {id}."));
    }
    Ok(())
}
