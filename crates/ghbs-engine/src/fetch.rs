//! Creating and updating mirrors.
//!
//! A mirror is created in `tmp/` and renamed into `mirrors/` once initialised, so a crash never
//! leaves a half-made mirror. Updates are `git fetch --atomic --prune` over three explicit
//! namespaces; `--prune` only touches refs matching the refspecs' destinations, so the snapshot
//! refs under `refs/ghbs/` (which keep old objects alive) are never pruned. A fetch killed
//! mid-way leaves git's own state consistent (new objects land in a `tmp_pack_*` that is renamed
//! only when complete; refs change in one locked transaction); the next run removes the leftover
//! `*.lock` and `tmp_*` files (see [`crate::fsutil::clean_stale`]) and fetches again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use ghbs_core::Secret;

use crate::error::{EngineError, Result};
use crate::fsutil::{self, blocking};
use crate::git::{Git, GitEnv};
use crate::{Engine, Fetched, RepoSource};

/// Namespaces a mirror keeps from upstream.
const HEADS_AND_TAGS: [&str; 2] = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];
const PULLS: &str = "+refs/pull/*:refs/pull/*";

impl Engine {
    /// Creates the bare mirror if missing, then fetches incrementally (never a re-clone when the
    /// mirror exists). The token reaches git only through the environment of the askpass script.
    pub async fn fetch(
        &self,
        src: &RepoSource,
        token: Option<&Secret>,
    ) -> Result<Fetched, EngineError> {
        fsutil::validate_key(&src.key)?;
        check_clean_url(&src.clone_url)?;
        let locks = self.locks(&src.key);
        let _ops = locks.ops.lock().await;
        let started = SystemTime::now();
        let mirror = self.mirror_path(&src.key);
        if !mirror.exists() {
            self.init_mirror(&mirror).await?;
        } else {
            self.recover(&mirror, started).await;
        }
        self.set_origin(&mirror, &src.clone_url).await?;

        let before = fsutil::pack_sizes(&mirror);
        let mut refspecs: Vec<&str> = HEADS_AND_TAGS.to_vec();
        if src.pull_refs {
            refspecs.push(PULLS);
        }
        Git::new(self.git())
            .dir(&mirror)
            .args([
                "fetch",
                "--quiet",
                "--prune",
                "--no-tags",
                "--atomic",
                "--no-write-fetch-head",
                "--no-auto-gc",
                "--no-show-forced-updates",
                "--no-recurse-submodules",
                "origin",
            ])
            .args(refspecs)
            .token(token)
            .remote()
            .run()
            .await
            .map_err(|e| {
                EngineError::new(e.kind, format!("fetching {}: {}", src.full_name, e.message))
            })?;
        let after = fsutil::pack_sizes(&mirror);
        let bytes_fetched = after
            .iter()
            .map(|(name, size)| size.saturating_sub(*before.get(name).unwrap_or(&0)))
            .sum();

        if !src.pull_refs {
            self.delete_refs_under(&mirror, "refs/pull/").await?;
        }
        // Housekeeping after measuring: consolidates packs once there are many (gc.autoPackLimit),
        // never prunes anything reachable, and cannot detach (gc.autoDetach=false).
        Git::new(self.git())
            .dir(&mirror)
            .args(["gc", "--auto", "--quiet"])
            .run()
            .await?;
        let refs = list_refs(
            self.git(),
            &mirror,
            &["refs/heads/", "refs/tags/", "refs/pull/"],
        )
        .await?;
        Ok(Fetched {
            refs,
            bytes_fetched,
        })
    }

    /// The refs (`refs/heads`, `refs/tags`, `refs/pull`) the mirror holds now.
    pub async fn mirror_refs(&self, key: &str) -> Result<BTreeMap<String, String>, EngineError> {
        fsutil::validate_key(key)?;
        let mirror = self.mirror_path(key);
        if !mirror.exists() {
            return Err(EngineError::not_found(format!("no mirror for {key}")));
        }
        list_refs(
            self.git(),
            &mirror,
            &["refs/heads/", "refs/tags/", "refs/pull/"],
        )
        .await
    }

    /// Initialises a bare repository in scratch space and renames it into place.
    async fn init_mirror(&self, mirror: &Path) -> Result<()> {
        let tmp = self.scratch("init");
        Git::new(self.git())
            .args(["init", "--bare", "--quiet", "--template="])
            .arg(&tmp)
            .run()
            .await?;
        Git::new(self.git())
            .dir(&tmp)
            .args(["config", "core.logAllRefUpdates", "false"])
            .run()
            .await?;
        let target = mirror.to_path_buf();
        blocking(move || {
            std::fs::rename(&tmp, &target).map_err(|e| EngineError::io("install new mirror", e))?;
            fsutil::fsync_dir(target.parent().expect("mirrors dir"))
        })
        .await
    }

    /// Clears leftovers of a git process that was killed while working on this mirror.
    pub(crate) async fn recover(&self, mirror: &Path, started: SystemTime) {
        let path = mirror.to_path_buf();
        let removed = blocking(move || Ok(fsutil::clean_stale(&path, started)))
            .await
            .unwrap_or_default();
        if !removed.is_empty() {
            tracing::warn!(mirror = %mirror.display(), count = removed.len(), "removed leftovers of an interrupted git run");
        }
    }

    /// Points `origin` at the clean clone URL (it may change when a repository is renamed).
    async fn set_origin(&self, mirror: &Path, url: &str) -> Result<()> {
        let current = Git::new(self.git())
            .dir(mirror)
            .args(["config", "--get", "remote.origin.url"])
            .run()
            .await;
        if current.map(|o| o.text().trim() == url).unwrap_or(false) {
            return Ok(());
        }
        Git::new(self.git())
            .dir(mirror)
            .args(["config", "remote.origin.url", url])
            .run()
            .await?;
        Ok(())
    }

    /// Deletes every ref under `prefix` in one transaction (no-op when there is none).
    pub(crate) async fn delete_refs_under(&self, mirror: &Path, prefix: &str) -> Result<usize> {
        let refs = list_refs(self.git(), mirror, &[prefix]).await?;
        if refs.is_empty() {
            return Ok(0);
        }
        let mut script = String::from("start\n");
        for name in refs.keys() {
            script.push_str(&format!("delete {name}\n"));
        }
        script.push_str("prepare\ncommit\n");
        Git::new(self.git())
            .dir(mirror)
            .args(["update-ref", "--stdin"])
            .stdin(script.into_bytes())
            .run()
            .await?;
        Ok(refs.len())
    }
}

/// `refname -> sha` for the refs under the given prefixes.
pub(crate) async fn list_refs(
    env: &GitEnv,
    repo: &Path,
    prefixes: &[&str],
) -> Result<BTreeMap<String, String>> {
    let out = Git::new(env)
        .dir(repo)
        .args(["for-each-ref", "--format=%(objectname) %(refname)"])
        .args(prefixes)
        .run()
        .await?;
    Ok(parse_ref_lines(&out.text()))
}

/// Parses `sha refname` lines (for-each-ref, ls-remote with tabs).
pub(crate) fn parse_ref_lines(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (sha, name) = line.split_once([' ', '\t'])?;
            Some((name.trim().to_owned(), sha.trim().to_owned()))
        })
        .collect()
}

/// The mirror's config must never hold credentials: refuse URLs with a user-info part.
fn check_clean_url(url: &str) -> Result<()> {
    if url.is_empty() || url.starts_with('-') {
        return Err(EngineError::permanent("invalid clone URL"));
    }
    if let Some((_, rest)) = url.split_once("://") {
        let authority = rest.split('/').next().unwrap_or("");
        if authority.contains('@') {
            return Err(EngineError::permanent(
                "clone URL must not carry credentials",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_credentials_are_refused() {
        assert!(check_clean_url("https://github.com/o/r.git").is_ok());
        assert!(check_clean_url("file:///tmp/x.git").is_ok());
        assert!(check_clean_url("https://x:tok@github.com/o/r.git").is_err());
        assert!(check_clean_url("--upload-pack=evil").is_err());
    }

    #[test]
    fn parses_ref_lines() {
        let refs = parse_ref_lines("aaa refs/heads/main\nbbb\trefs/tags/v1\n");
        assert_eq!(refs.get("refs/heads/main").map(String::as_str), Some("aaa"));
        assert_eq!(refs.get("refs/tags/v1").map(String::as_str), Some("bbb"));
    }
}
