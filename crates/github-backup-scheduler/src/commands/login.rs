//! `login`, `logout`, `whoami` and `keys`: the account commands.
//!
//! The GitHub token is read from a hidden prompt, from standard input (`--token-stdin`) or from
//! `GITHUB_TOKEN`; never from an argument, so that it cannot show up in `ps` or shell history.

use std::io::{BufRead, IsTerminal};

use ghbs_core::Secret;
use ghbs_wire::LoginRequest;
use serde_json::json;

use super::{prompt, Ctx};
use crate::cli::{AuditArgs, KeysArgs, KeysCommand, LoginArgs};
use crate::config::{FileConfig, StoredKey};
use crate::exit::{CliError, CliResult};
use crate::output;

/// Shown before the token prompt: which token to create and where.
pub const TOKEN_NOTE: &str = "\
The server needs a GitHub token once, to read your repositories (it stores it encrypted).
Create one at https://github.com/settings/tokens with read-only access:
  - classic token: the `repo` scope for private repositories (no scope at all for public ones);
  - fine-grained token: Contents: read and Metadata: read
    (plus Issues: read and Pull requests: read to back up metadata).";

/// Where the token comes from, in order: `--token-stdin`, `GITHUB_TOKEN`, a hidden prompt.
/// `note` is shown before the prompt: what the token needs to be able to do.
pub(crate) async fn read_token(ctx: &Ctx, token_stdin: bool, note: &str) -> CliResult<Secret> {
    let token = if token_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::failed(format!("cannot read the token from stdin: {e}")))?;
        line
    } else if let Some(t) = std::env::var("GITHUB_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        ctx.out.note("Using the GitHub token from GITHUB_TOKEN.");
        t
    } else if std::io::stdin().is_terminal() {
        ctx.out.note(note);
        prompt(|| {
            inquire::Password::new("GitHub token:")
                .without_confirmation()
                .with_display_mode(inquire::PasswordDisplayMode::Hidden)
                .prompt()
        })
        .await?
    } else {
        return Err(CliError::usage(
            "no terminal to ask for the GitHub token: pipe it with --token-stdin or set GITHUB_TOKEN",
        ));
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(CliError::usage(
            "the GitHub token is empty: create one at https://github.com/settings/tokens",
        ));
    }
    Ok(Secret::new(token))
}

fn host_label() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

pub async fn login(ctx: &Ctx, args: &LoginArgs) -> CliResult {
    ctx.check_transport()?;
    let token = read_token(ctx, args.token_stdin, TOKEN_NOTE).await?;
    login_with(ctx, token, args.label.clone(), args.expires).await
}

/// Sends the token, stores the API key for this server and makes this server the default.
pub async fn login_with(
    ctx: &Ctx,
    token: Secret,
    label: Option<String>,
    expires_in_seconds: Option<u64>,
) -> CliResult {
    let api = ctx.anonymous_api()?;
    let req = LoginRequest {
        github_token: token.expose().to_string(),
        label: label.or_else(host_label),
        expires_in_seconds,
    };
    let resp = api.login(&req).await?;
    drop(req);

    let mut creds = ctx.config.load_credentials()?;
    creds.servers.insert(
        ctx.server.clone(),
        StoredKey {
            api_key: resp.api_key,
            key_id: resp.key_id,
            login: resp.user.login.clone(),
        },
    );
    ctx.config.save_credentials(&creds)?;
    let config = ctx.config.load_config()?;
    if config.server.as_deref() != Some(ctx.server.as_str()) {
        ctx.config.save_config(&FileConfig {
            server: Some(ctx.server.clone()),
            ..config
        })?;
    }

    if !ctx
        .out
        .json(&json!({ "server": ctx.server, "key_id": resp.key_id, "user": resp.user }))
    {
        ctx.out.line(format!(
            "Logged in to {} as {} (API key {}).",
            ctx.server, resp.user.login, resp.key_id
        ));
    }
    Ok(())
}

pub async fn logout(ctx: &Ctx) -> CliResult {
    let api = ctx.api()?;
    match api.logout().await {
        Ok(()) | Err(CliError::KeyRejected { .. }) => {}
        Err(e) => return Err(e),
    }
    let mut creds = ctx.config.load_credentials()?;
    creds.servers.remove(&ctx.server);
    ctx.config.save_credentials(&creds)?;
    if !ctx
        .out
        .json(&json!({ "server": ctx.server, "logged_out": true }))
    {
        ctx.out.line(format!(
            "Logged out of {}; its API key is revoked.",
            ctx.server
        ));
    }
    Ok(())
}

pub async fn whoami(ctx: &Ctx) -> CliResult {
    let user = ctx.api()?.me().await?;
    if !ctx.out.json(&user) {
        ctx.out.line(format!(
            "{} (GitHub id {}) on {}, since {}",
            user.login,
            user.github_id,
            ctx.server,
            output::when(user.created_at)
        ));
    }
    Ok(())
}

pub async fn keys(ctx: &Ctx, args: &KeysArgs) -> CliResult {
    let api = ctx.api()?;
    match args.command {
        None | Some(KeysCommand::List) => {
            let keys = api.keys().await?;
            if !ctx.out.json(&keys) {
                ctx.out.table(output::keys_table(&keys.keys));
            }
        }
        Some(KeysCommand::Create {
            read_only,
            ref expires,
            ref label,
        }) => {
            let made = api
                .create_key(&ghbs_wire::KeyCreate {
                    label: label.clone(),
                    read_only,
                    expires_in_seconds: *expires,
                })
                .await?;
            if !ctx.out.json(&made) {
                ctx.out.note(format!(
                    "Created {} API key {}{}. It is shown once; keep it somewhere safe:",
                    if made.key.read_only {
                        "read-only"
                    } else {
                        "full"
                    },
                    made.key.id,
                    made.key
                        .expires_at
                        .map(|t| format!(", expires {}", output::when(t)))
                        .unwrap_or_default()
                ));
                ctx.out.line(&made.api_key);
            }
        }
        Some(KeysCommand::Revoke { id }) => {
            api.revoke_key(id).await?;
            let own = ctx.stored_key()?.is_some_and(|k| k.key_id == id);
            if own {
                let mut creds = ctx.config.load_credentials()?;
                creds.servers.remove(&ctx.server);
                ctx.config.save_credentials(&creds)?;
            }
            if !ctx.out.json(&json!({ "revoked": id })) {
                ctx.out.line(format!("Revoked API key {id}."));
                if own {
                    ctx.out.note("That was this client's key: run `github-backup-scheduler login` to log in again.");
                }
            }
        }
    }
    Ok(())
}

pub async fn audit(ctx: &Ctx, args: &AuditArgs) -> CliResult {
    if !(1..=1000).contains(&args.limit) {
        return Err(CliError::usage(format!(
            "--limit {}: choose between 1 and 1000",
            args.limit
        )));
    }
    let list = ctx.api()?.audit(args.limit, args.before).await?;
    if !ctx.out.json(&list) {
        ctx.out.table(output::audit_table(&list.entries));
        if let Some(before) = list.next_before {
            ctx.out.note(format!(
                "Older entries: `github-backup-scheduler audit --before {before}`."
            ));
        }
    }
    Ok(())
}
