//! `restore`: download a snapshot's bundle into a temporary folder and mirror-push it to a new,
//! empty remote through the engine.

use serde_json::json;

use super::fetch::{download, pick_snapshot, Dest};
use super::Ctx;
use crate::cli::RestoreArgs;
use crate::exit::{CliError, CliResult};
use crate::validate;
use ghbs_wire::DownloadFormat;

pub async fn restore(ctx: &Ctx, args: &RestoreArgs) -> CliResult {
    let repo = args.repo.as_deref().map(validate::repo_name).transpose()?;
    if args.to.trim().is_empty() {
        return Err(CliError::usage(
            "--to needs the URL or path of the new, empty remote",
        ));
    }
    let api = ctx.api()?;
    let snapshot = pick_snapshot(&api, args.id, args.snapshot).await?;
    let scratch = tempfile::tempdir()?;
    let bundle = scratch.path().join("restore.bundle");
    let (bundle, _) = download(
        ctx,
        &api,
        snapshot.id,
        DownloadFormat::Bundle,
        repo.as_deref(),
        Dest::File(bundle),
    )
    .await?;
    ctx.out
        .note(format!("Pushing snapshot {} to {} …", snapshot.id, args.to));
    ghbs_engine::restore(&bundle, &args.to, args.force)
        .await
        .map_err(|e| CliError::failed(format!("the restore failed: {e}")))?;
    if !ctx
        .out
        .json(&json!({ "snapshot_id": snapshot.id, "remote": args.to }))
    {
        ctx.out.line(format!(
            "Restored snapshot {} of job {} to {}.",
            snapshot.id, args.id, args.to
        ));
    }
    Ok(())
}
