//! `restore`: download a snapshot's bundle into a temporary folder and mirror-push it to a new,
//! empty remote through the engine.
//!
//! An account job's snapshot holds many repositories and a remote holds one, so it needs either
//! `--repo` (one repository to `--to`) or `--to-owner OWNER` (each repository to
//! `<--to>/OWNER/<name>`); without either it is refused before anything is downloaded. The remote
//! URL is passed to the user's own git exactly as given (no credentials are added: git's own
//! credential setup answers), and shown with any `user:password@` part hidden.

use serde_json::json;

use super::download_check::{self as verify, Layout};
use super::fetch::{download, pick_snapshot, Dest};
use super::Ctx;
use crate::cli::RestoreArgs;
use crate::exit::{CliError, CliResult};
use crate::validate;
use ghbs_wire::{DownloadFormat, TargetKind};

pub async fn restore(ctx: &Ctx, args: &RestoreArgs) -> CliResult {
    let repo = args.repo.as_deref().map(validate::repo_name).transpose()?;
    let to_owner = args
        .to_owner
        .as_deref()
        .map(validate::owner_name)
        .transpose()?;
    let base = args.to.trim();
    if base.is_empty() {
        return Err(CliError::usage(
            "--to needs the URL or path of the new, empty remote",
        ));
    }
    let api = ctx.api()?.for_restore();
    let job = api.job(args.id).await?;
    let account = job.target_kind == TargetKind::Account;
    if account && repo.is_none() && to_owner.is_none() {
        let id = args.id;
        let target = &job.target;
        return Err(CliError::usage(format!(
            "job {id} backs up the account {target}, and a remote holds one repository: restore one with \
             `github-backup-scheduler restore {id} --repo {target}/NAME --to REMOTE_URL`, or every repository with \
             `github-backup-scheduler restore {id} --to BASE_URL --to-owner OWNER` (each goes to BASE_URL/OWNER/NAME, \
             which must exist and be empty)"
        )));
    }
    if (args.metadata || args.metadata_only) && account && repo.is_none() {
        return Err(CliError::usage(format!(
            "job {} backs up the account {}: a metadata restore goes into one repository; choose it with --repo {}/NAME",
            args.id, job.target, job.target
        )));
    }
    if args.dry_run && !(args.metadata || args.metadata_only) {
        return Err(CliError::usage(
            "--dry-run goes with --metadata or --metadata-only",
        ));
    }
    let snapshot = pick_snapshot(&api, args.id, args.snapshot).await?;
    if args.metadata || args.metadata_only {
        return super::restore_metadata::restore_metadata(
            ctx,
            &api,
            args,
            &snapshot,
            repo.as_deref(),
        )
        .await;
    }
    let scratch = tempfile::tempdir()?;

    if account && repo.is_none() {
        let owner = to_owner.as_deref().unwrap_or_default();
        let archive = scratch.path().join("restore.bundles.tar");
        let got = download(
            ctx,
            &api,
            snapshot.id,
            DownloadFormat::Bundle,
            None,
            Dest::File(archive),
        )
        .await?;
        if got.layout != Layout::PerRepository {
            return Err(CliError::failed(
                "the server did not send one bundle per repository for this account job; are client and server the same version?",
            ));
        }
        let unpacked = scratch.path().join("bundles");
        std::fs::create_dir_all(&unpacked)?;
        let members = verify::unpack_members(&got.path, DownloadFormat::Bundle, &unpacked).await?;
        let mut restored = Vec::new();
        let mut failed = Vec::new();
        for member in &members {
            let name = member.name.rsplit('/').next().unwrap_or(&member.name);
            let remote = remote_under(base, owner, name);
            ctx.out.note(format!(
                "Pushing {} of snapshot {} to {} …",
                member.name,
                snapshot.id,
                shown(&remote)
            ));
            match ghbs_engine::restore(&member.path, &remote, args.force).await {
                Ok(()) => restored.push(json!({ "repo": member.name, "remote": shown(&remote) })),
                Err(e) => failed.push((member.name.clone(), shown(&remote), e.to_string())),
            }
        }
        let skipped: Vec<&str> = snapshot
            .repos
            .iter()
            .map(|r| r.full_name.as_str())
            .filter(|full| !members.iter().any(|m| m.name.eq_ignore_ascii_case(full)))
            .collect();
        let report = json!({
            "snapshot_id": snapshot.id, "restored": restored,
            "failed": failed.iter().map(|(repo, remote, error)| json!({"repo": repo, "remote": remote, "error": error})).collect::<Vec<_>>(),
            "skipped": skipped,
        });
        let printed = ctx.out.json(&report);
        if !skipped.is_empty() {
            ctx.out.note(format!(
                "Nothing to restore (no branch or tag) in: {}",
                skipped.join(", ")
            ));
        }
        if !failed.is_empty() {
            let list: Vec<String> = failed
                .iter()
                .map(|(repo, remote, error)| format!("{repo} → {remote}: {error}"))
                .collect();
            return Err(CliError::failed(format!(
                "restored {} of {} repositories of snapshot {}; these failed: {} — restore each again with \
                 `github-backup-scheduler restore {} --snapshot {} --repo OWNER/NAME --to REMOTE_URL`",
                restored.len(),
                members.len(),
                snapshot.id,
                list.join("; "),
                args.id,
                snapshot.id
            )));
        }
        if !printed {
            ctx.out.line(format!(
                "Restored {} repositories of snapshot {} of job {} under {}.",
                restored.len(),
                snapshot.id,
                args.id,
                shown(&remote_under(base, owner, ""))
            ));
        }
        return Ok(());
    }

    let remote = match &to_owner {
        Some(owner) => {
            let full = repo.as_deref().unwrap_or(&job.target);
            remote_under(base, owner, full.rsplit('/').next().unwrap_or(full))
        }
        None => base.to_string(),
    };
    let bundle = scratch.path().join("restore.bundle");
    let got = download(
        ctx,
        &api,
        snapshot.id,
        DownloadFormat::Bundle,
        repo.as_deref(),
        Dest::File(bundle),
    )
    .await?;
    ctx.out.note(format!(
        "Pushing snapshot {} to {} …",
        snapshot.id,
        shown(&remote)
    ));
    ghbs_engine::restore(&got.path, &remote, args.force)
        .await
        .map_err(|e| CliError::failed(format!("the restore failed: {e}")))?;
    if !ctx
        .out
        .json(&json!({ "snapshot_id": snapshot.id, "remote": shown(&remote) }))
    {
        ctx.out.line(format!(
            "Restored snapshot {} of job {} to {}.",
            snapshot.id,
            args.id,
            shown(&remote)
        ));
    }
    Ok(())
}

/// `BASE/OWNER/NAME` (`BASE` without its trailing `/`; an scp-like `host:` base gets no `/`).
fn remote_under(base: &str, owner: &str, name: &str) -> String {
    let base = base.trim_end_matches('/');
    let sep = if base.ends_with(':') { "" } else { "/" };
    format!("{base}{sep}{owner}/{name}")
}

/// The remote for messages: `scheme://user:secret@host/…` shows as `scheme://***@host/…`.
fn shown(remote: &str) -> String {
    if let Some((scheme, rest)) = remote.split_once("://") {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    remote.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_under_a_base() {
        assert_eq!(
            remote_under("https://git.example.com/", "neworg", "site"),
            "https://git.example.com/neworg/site"
        );
        assert_eq!(
            remote_under("git@example.com:", "o", "r"),
            "git@example.com:o/r"
        );
        assert_eq!(remote_under("/srv/git", "o", "r"), "/srv/git/o/r");
    }

    #[test]
    fn credentials_in_a_remote_are_never_shown() {
        assert_eq!(
            shown("https://me:ghp_secret@example.com/o/r"),
            "https://***@example.com/o/r"
        );
        assert_eq!(shown("https://example.com/a@b"), "https://example.com/a@b");
        assert_eq!(shown("/srv/git/o/r"), "/srv/git/o/r");
    }
}
