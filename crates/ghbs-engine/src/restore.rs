//! Restoring a snapshot by pushing it to a (new, empty) remote.
//!
//! The source (a bundle file, a bare repository such as the `{name}.git` folder of a tar.gz
//! export, or a mirror) is first fetched into a throwaway bare repository so that exactly its
//! `refs/heads/*` and `refs/tags/*` are pushed, whatever else the source holds. This runs the
//! user's own git with the user's own credential setup: it is the CLI's operation, not the
//! service's, so no askpass, no timeout and no isolation from global config.

use std::path::Path;

use crate::error::{EngineError, Result};
use crate::git::{list_refs, parse_ref_lines};
use crate::git::{Git, GitEnv};

/// Pushes every branch and tag of `source` to `remote`. Refuses when the remote already has refs
/// unless `force`, in which case the remote's branches and tags are made identical to the
/// source's (`--force --prune`). The push is atomic and verified with `git ls-remote` afterwards.
pub async fn restore(source: &Path, remote: &str, force: bool) -> Result<(), EngineError> {
    let env = GitEnv::user();
    if remote.is_empty() || remote.starts_with('-') {
        return Err(EngineError::permanent(format!("invalid remote {remote:?}")));
    }
    let source =
        std::path::absolute(source).map_err(|e| EngineError::io("resolve restore source", e))?;
    if !source.exists() {
        return Err(EngineError::not_found(format!(
            "{} does not exist",
            source.display()
        )));
    }
    let tmp = tempfile::Builder::new()
        .prefix("ghbs-restore-")
        .tempdir()
        .map_err(|e| EngineError::io("create temporary repository", e))?;
    let work = tmp.path();
    Git::new(&env)
        .args(["init", "--bare", "--quiet", "--template="])
        .arg(work)
        .run()
        .await?;
    Git::new(&env)
        .dir(work)
        .args(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"])
        .arg(&source)
        .args(["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"])
        .run()
        .await
        .map_err(|e| {
            EngineError::new(
                e.kind,
                format!("reading {}: {}", source.display(), e.message),
            )
        })?;
    let local = list_refs(&env, work, &["refs/heads/", "refs/tags/"]).await?;
    if local.is_empty() {
        return Err(EngineError::not_found(format!(
            "{} holds no branch or tag to restore",
            source.display()
        )));
    }

    let existing = remote_refs(&env, work, remote).await?;
    if !existing.is_empty() && !force {
        return Err(EngineError::permanent(format!(
            "the remote already has {} refs; restore only pushes to an empty repository unless forced",
            existing.len()
        )));
    }
    let mut push = Git::new(&env)
        .dir(work)
        .args(["push", "--quiet", "--atomic"]);
    push = if force {
        push.args([
            "--force",
            "--prune",
            remote,
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
        ])
    } else {
        push.args([
            remote,
            "refs/heads/*:refs/heads/*",
            "refs/tags/*:refs/tags/*",
        ])
    };
    push.remote()
        .run()
        .await
        .map_err(|e| EngineError::new(e.kind, format!("pushing to the remote: {}", e.message)))?;

    let after = remote_refs(&env, work, remote).await?;
    let pushed: std::collections::BTreeMap<_, _> = after
        .into_iter()
        .filter(|(name, _)| name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
        .collect();
    if pushed != local {
        return Err(EngineError::transient(format!(
            "the remote does not show the restored refs ({} expected, {} present)",
            local.len(),
            pushed.len()
        )));
    }
    Ok(())
}

/// The remote's refs (peeled `^{}` entries and `HEAD` left out).
async fn remote_refs(
    env: &GitEnv,
    work: &Path,
    remote: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    let out = Git::new(env)
        .dir(work)
        .args(["ls-remote", "--quiet", remote])
        .remote()
        .run()
        .await
        .map_err(|e| {
            EngineError::new(e.kind, format!("listing the remote's refs: {}", e.message))
        })?;
    Ok(parse_ref_lines(&out.text())
        .into_iter()
        .filter(|(name, _)| name.starts_with("refs/") && !name.ends_with("^{}"))
        .collect())
}
