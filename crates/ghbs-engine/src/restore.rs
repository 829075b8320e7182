//! Restoring a snapshot by pushing it to a (new, empty) remote.
//!
//! The source (a bundle file, a bare repository such as the `{name}.git` folder of a tar.gz
//! export, or a mirror) is first fetched into a throwaway bare repository so that exactly its
//! `refs/heads/*` and `refs/tags/*` are pushed, whatever else the source holds. This runs the
//! user's own git with the user's own credential setup: it is the CLI's operation, not the
//! service's, so no askpass, no timeout and no isolation from global config.

use std::path::Path;

use ghbs_core::Secret;

use crate::error::{EngineError, Result};
use crate::git::{install_askpass, list_refs, parse_ref_lines};
use crate::git::{Git, GitEnv};

/// How [`restore_with`] pushes.
#[derive(Debug, Default)]
pub struct RestoreOptions {
    /// Push even when the remote has refs (its branches and tags are made the source's).
    pub force: bool,
    /// Authenticate to an HTTPS remote with this token (through askpass and the environment,
    /// never argv or the URL), isolated from the user's credential helpers. `None`: the user's
    /// own git setup answers.
    pub token: Option<Secret>,
    /// Extra branches to create: `(branch name, commit)`, e.g. `pr/7` at a pull request's head.
    /// One whose commit the source lacks is left out (see the returned list).
    pub extra_branches: Vec<(String, String)>,
}

/// Pushes every branch and tag of `source` to `remote`. Refuses when the remote already has refs
/// unless `force`, in which case the remote's branches and tags are made identical to the
/// source's (`--force --prune`). The push is atomic and verified with `git ls-remote` afterwards.
pub async fn restore(source: &Path, remote: &str, force: bool) -> Result<(), EngineError> {
    restore_with(
        source,
        remote,
        &RestoreOptions {
            force,
            ..RestoreOptions::default()
        },
    )
    .await
    .map(|_| ())
}

/// [`restore`] with a token and extra branches; returns the extra branches that were pushed.
pub async fn restore_with(
    source: &Path,
    remote: &str,
    opts: &RestoreOptions,
) -> Result<Vec<String>, EngineError> {
    let force = opts.force;
    let tmp = tempfile::Builder::new()
        .prefix("ghbs-restore-")
        .tempdir()
        .map_err(|e| EngineError::io("create temporary repository", e))?;
    let mut env = GitEnv::user();
    if opts.token.is_some() {
        let home = tmp.path().join("auth");
        std::fs::create_dir_all(&home).map_err(|e| EngineError::io("create askpass folder", e))?;
        env.askpass = Some(install_askpass(&home)?);
    }
    let token = opts.token.as_ref();
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
    let work_dir = tmp.path().join("work.git");
    let work = work_dir.as_path();
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
    let mut local = list_refs(&env, work, &["refs/heads/", "refs/tags/"]).await?;
    if local.is_empty() {
        return Err(EngineError::not_found(format!(
            "{} holds no branch or tag to restore",
            source.display()
        )));
    }
    let mut extra = Vec::new();
    for (branch, sha) in &opts.extra_branches {
        let name = format!("refs/heads/{branch}");
        let valid = !branch.starts_with('-')
            && sha.len() >= 40
            && sha.bytes().all(|b| b.is_ascii_hexdigit())
            && !local.contains_key(&name);
        if !valid {
            continue;
        }
        let has = Git::new(&env)
            .dir(work)
            .args(["cat-file", "-e", &format!("{sha}^{{commit}}")])
            .run()
            .await
            .is_ok();
        if has {
            Git::new(&env)
                .dir(work)
                .args(["update-ref", &name, sha])
                .run()
                .await?;
            local.insert(name, sha.clone());
            extra.push(branch.clone());
        }
    }

    let existing = remote_refs(&env, work, remote, token).await?;
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
        .token(token)
        .run()
        .await
        .map_err(|e| EngineError::new(e.kind, format!("pushing to the remote: {}", e.message)))?;

    let after = remote_refs(&env, work, remote, token).await?;
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
    Ok(extra)
}

/// The remote's refs (peeled `^{}` entries and `HEAD` left out).
async fn remote_refs(
    env: &GitEnv,
    work: &Path,
    remote: &str,
    token: Option<&Secret>,
) -> Result<std::collections::BTreeMap<String, String>> {
    let out = Git::new(env)
        .dir(work)
        .args(["ls-remote", "--quiet", remote])
        .remote()
        .token(token)
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
