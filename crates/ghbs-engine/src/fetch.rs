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
use crate::git::{list_refs, Git};
use crate::{Engine, Fetched, RepoSource};

/// How long an operation waits for an orphaned git process to leave a mirror.
const ORPHAN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Namespaces a mirror keeps from upstream.
const HEADS_AND_TAGS: [&str; 2] = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];
const PULLS: &str = "+refs/pull/*:refs/pull/*";

impl Engine {
    /// Creates the bare mirror if missing, then fetches incrementally (never a re-clone when the
    /// mirror exists). The token reaches git only through the environment of the askpass script.
    /// A full disk is reported as [`ghbs_core::FailureKind::StorageFull`] with the free space.
    pub async fn fetch(
        &self,
        src: &RepoSource,
        token: Option<&Secret>,
    ) -> Result<Fetched, EngineError> {
        self.fetch_inner(src, token)
            .await
            .map_err(|e| self.explain(e))
    }

    async fn fetch_inner(
        &self,
        src: &RepoSource,
        token: Option<&Secret>,
    ) -> Result<Fetched, EngineError> {
        fsutil::validate_key(&src.key)?;
        if self.disk_full_injected() {
            return Err(EngineError::storage_full());
        }
        check_clean_url(&src.clone_url)?;
        let locks = self.locks(&src.key);
        let _ops = locks.ops.lock().await;
        let started = SystemTime::now();
        let mirror = self.mirror_path(&src.key);
        // Shared storage: a missing or stale mirror is first rebuilt from it (see `packs`).
        self.hydrate_locked(&src.key, &mirror).await?;
        if !mirror.exists() {
            self.init_mirror(&mirror).await?;
        } else {
            self.recover(&mirror, started).await?;
        }
        self.set_origin(&mirror, &src.clone_url).await?;

        // The live refs are about to change: the record of them goes first (see `refs`).
        let forget = mirror.clone();
        blocking(move || crate::refs::forget_live_refs(&forget)).await?;
        let before = pack_sizes(&mirror).await?;
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
            .map_err(|e| match e.kind {
                ghbs_core::FailureKind::StorageFull => e,
                _ => EngineError::new(e.kind, format!("fetching {}: {}", src.full_name, e.message)),
            })?;
        let after = pack_sizes(&mirror).await?;
        let bytes_fetched = after
            .iter()
            .map(|(name, size)| size.saturating_sub(*before.get(name).unwrap_or(&0)))
            .sum();

        // One listing serves both the result and the clean-up of pull-request refs a job no
        // longer wants (`--prune` leaves them alone when their refspec is not asked for).
        let mut refs = list_refs(
            self.git(),
            &mirror,
            &["refs/heads/", "refs/tags/", "refs/pull/"],
        )
        .await?;
        if !src.pull_refs {
            let pulls: Vec<String> = refs
                .keys()
                .filter(|name| name.starts_with("refs/pull/"))
                .cloned()
                .collect();
            if !pulls.is_empty() {
                self.delete_refs(&mirror, &pulls).await?;
                refs.retain(|name, _| !name.starts_with("refs/pull/"));
            }
        }
        self.record_live_refs(&mirror, &refs).await;
        // Housekeeping after measuring: consolidates packs once there are many, never prunes
        // anything reachable, and cannot detach (gc.autoDetach=false). `gc --auto` is a process
        // that almost always decides to do nothing; the same test on the directory listing we
        // already have is free, so git is asked only when it would act.
        let (dir, packs) = (mirror.clone(), after.len());
        if blocking(move || Ok(needs_housekeeping(&dir, packs))).await? {
            Git::new(self.git())
                .dir(&mirror)
                .config(format!("gc.autoPackLimit={GC_PACK_LIMIT}"))
                .config(format!("gc.auto={GC_LOOSE_LIMIT}"))
                .args(["gc", "--auto", "--quiet"])
                .run()
                .await?;
        }
        // Shared storage: the new pack goes up now, while other repositories still fetch.
        self.preupload_packs(&src.key, &mirror).await;
        Ok(Fetched {
            refs,
            bytes_fetched,
        })
    }

    /// The branches and tags a remote advertises (`refname -> sha`), with ONE HTTP request:
    /// `git ls-remote` over protocol v0 (whose ref advertisement is the answer to the first
    /// request; v2 needs a second) and the token sent up front. Compared with
    /// [`Engine::mirror_refs`] it tells whether a fetch would change anything. A repository that
    /// does not exist is [`ghbs_core::FailureKind::NotFound`].
    pub async fn remote_refs(
        &self,
        url: &str,
        token: Option<&Secret>,
    ) -> Result<BTreeMap<String, String>, EngineError> {
        check_clean_url(url)?;
        let out = Git::new(self.git())
            .config("protocol.version=0")
            .args(["ls-remote", "--refs", "--heads", "--tags", "--", url])
            .token(token)
            .preemptive_auth()
            .remote()
            .run()
            .await
            .map_err(|e| self.explain(e))?;
        Ok(crate::git::parse_ref_lines(&out.text())
            .into_iter()
            .filter(|(name, _)| name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
            .collect())
    }

    /// Whether the mirror `key` exists and holds every object in `shas` (what carrying a last
    /// copy forward needs: its refs are recorded there, and `update-ref` refuses missing objects).
    pub async fn has_objects<'a>(
        &self,
        key: &str,
        shas: impl IntoIterator<Item = &'a String>,
    ) -> Result<bool, EngineError> {
        fsutil::validate_key(key)?;
        // Shared storage: the objects may be in the bucket only (a cold or stale cache).
        self.hydrate(key).await?;
        let mirror = self.mirror_path(key);
        let dir = mirror.clone();
        if !blocking(move || Ok(dir.join("HEAD").is_file())).await? {
            return Ok(false);
        }
        let input: String = shas.into_iter().map(|s| format!("{s}\n")).collect();
        if input.is_empty() {
            return Ok(true);
        }
        let out = Git::new(self.git())
            .dir(&mirror)
            .args(["cat-file", "--batch-check"])
            .stdin(input.into_bytes())
            .run()
            .await?;
        Ok(!String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.ends_with(" missing")))
    }

    /// The refs (`refs/heads`, `refs/tags`, `refs/pull`) the mirror holds now: from the engine's
    /// record of them when there is one (no git process), else listed by git and recorded.
    /// With shared storage the mirror is first brought in step with it (one GET when it is):
    /// another node may have captured the repository since this one last did, and a run that
    /// reuses these refs instead of fetching must start from that capture, not an older one.
    pub async fn mirror_refs(&self, key: &str) -> Result<BTreeMap<String, String>, EngineError> {
        fsutil::validate_key(key)?;
        let locks = self.locks(key);
        // Under the lock every writer of live refs takes: the record cannot change meanwhile.
        let _ops = locks.ops.lock().await;
        let mirror = self.mirror_path(key);
        self.hydrate_locked(key, &mirror).await?;
        let dir = mirror.clone();
        let recorded =
            blocking(move || Ok(dir.exists().then(|| crate::refs::read_live_refs(&dir)))).await?;
        match recorded {
            None => Err(EngineError::not_found(format!("no mirror for {key}"))),
            Some(Some(refs)) => Ok(refs),
            Some(None) => {
                let listed = list_refs(
                    self.git(),
                    &mirror,
                    &["refs/heads/", "refs/tags/", "refs/pull/"],
                )
                .await?;
                self.record_live_refs(&mirror, &listed).await;
                Ok(listed)
            }
        }
    }

    /// Records the live refs git just listed (caller holds the mirror's `ops` lock). Best
    /// effort: without a record the next reader asks git, and snapshots are recorded by git.
    async fn record_live_refs(&self, mirror: &Path, refs: &BTreeMap<String, String>) {
        let dir = mirror.to_path_buf();
        let refs = refs.clone();
        if let Err(e) = blocking(move || crate::refs::write_live_refs(&dir, &refs)).await {
            tracing::warn!(mirror = %mirror.display(), error = %e.message, "could not record live refs");
        }
    }

    /// Initialises a bare repository in scratch space and renames it into place. Callers hold
    /// the mirror's lock and call this only when no usable mirror is there; a half-made one
    /// left by a crash (no HEAD: nothing in it is worth keeping) is replaced.
    pub(crate) async fn init_mirror(&self, mirror: &Path) -> Result<()> {
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
            if target.exists() {
                std::fs::remove_dir_all(&target)
                    .map_err(|e| EngineError::io("remove broken mirror", e))?;
            }
            std::fs::rename(&tmp, &target).map_err(|e| EngineError::io("install new mirror", e))?;
            fsutil::fsync_dir(target.parent().expect("mirrors dir"))
        })
        .await
    }

    /// Clears leftovers of a git process that was killed while working on this mirror. A git
    /// process still working in it (an orphan of a previous server process: its lock files are
    /// live, not leftovers) is waited for, briefly; if it is still there the operation fails
    /// (transient: the next run retries) rather than fetch into a mirror something else writes.
    pub(crate) async fn recover(&self, mirror: &Path, started: SystemTime) -> Result<()> {
        let deadline = tokio::time::Instant::now() + ORPHAN_WAIT;
        loop {
            let path = mirror.to_path_buf();
            let users = blocking(move || Ok(fsutil::processes_using(&path)))
                .await
                .unwrap_or_default();
            if users.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(mirror = %mirror.display(), pids = ?users, "processes of an earlier server still work in this mirror");
                return Err(EngineError::transient(
                    "a git process of an earlier server run is still working on this repository's \
                     mirror; the next run retries",
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let path = mirror.to_path_buf();
        let removed = blocking(move || Ok(fsutil::clean_stale(&path, started)))
            .await
            .unwrap_or_default();
        if !removed.is_empty() {
            tracing::warn!(mirror = %mirror.display(), count = removed.len(), "removed leftovers of an interrupted git run");
        }
        Ok(())
    }

    /// Points `origin` at the clean clone URL (it may change when a repository is renamed).
    /// The config file is read here rather than through `git config --get`: one process less
    /// per fetch. When the file holds anything the simple reader is unsure about, git writes
    /// the value anyway (idempotent).
    async fn set_origin(&self, mirror: &Path, url: &str) -> Result<()> {
        let config = tokio::fs::read_to_string(mirror.join("config")).await;
        if config.ok().and_then(|c| origin_url(&c)).as_deref() == Some(url) {
            return Ok(());
        }
        Git::new(self.git())
            .dir(mirror)
            .args(["config", "remote.origin.url", url])
            .run()
            .await?;
        Ok(())
    }

    /// Deletes the named refs in one transaction (no-op for an empty list).
    pub(crate) async fn delete_refs(&self, mirror: &Path, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let mut script = String::from("start\n");
        for name in names {
            script.push_str(&format!("delete {name}\n"));
        }
        script.push_str("prepare\ncommit\n");
        Git::new(self.git())
            .dir(mirror)
            .args(["update-ref", "--stdin"])
            .stdin(script.into_bytes())
            .run()
            .await?;
        Ok(())
    }
}

/// The mirror's pack sizes (a directory listing, read off the async threads).
async fn pack_sizes(mirror: &Path) -> Result<BTreeMap<String, u64>> {
    let mirror = mirror.to_path_buf();
    blocking(move || Ok(fsutil::pack_sizes(&mirror))).await
}

/// Git's defaults for `gc --auto`, pinned on the command line so that [`needs_housekeeping`] and
/// git agree whatever a global config says.
const GC_PACK_LIMIT: usize = 50;
const GC_LOOSE_LIMIT: usize = 6700;

/// Whether `git gc --auto` would act: more packs than `gc.autoPackLimit`, or more loose objects
/// than `gc.auto` (git estimates those from the `objects/17` fan-out directory, and so do we).
/// Fetches keep their packs (`fetch.unpackLimit=1`), so in practice this is the pack count.
fn needs_housekeeping(mirror: &Path, packs: usize) -> bool {
    if packs > GC_PACK_LIMIT {
        return true;
    }
    let loose = std::fs::read_dir(mirror.join("objects/17"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.len() == 38 && name.bytes().all(|b| b.is_ascii_hexdigit())
                })
                .count()
        })
        .unwrap_or(0);
    loose > GC_LOOSE_LIMIT.div_ceil(256)
}

/// The value of `remote.origin.url` in a config file git wrote, or `None` when the file holds
/// anything this reader does not fully understand (quotes, escapes, comments on the value,
/// continuation lines, includes, several values): the caller then lets git set the value.
fn origin_url(config: &str) -> Option<String> {
    if config.contains("[include") {
        return None;
    }
    let mut in_origin = false;
    let mut found = None;
    for line in config.lines() {
        let line = line.trim();
        if line.ends_with('\\') {
            return None;
        }
        if line.starts_with('[') {
            in_origin = line == "[remote \"origin\"]";
            continue;
        }
        if !in_origin {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("url") {
            continue;
        }
        let value = value.trim();
        if found.is_some() || value.is_empty() || value.contains(['"', '\\', ';', '#']) {
            return None;
        }
        found = Some(value.to_owned());
    }
    found
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
    fn reads_origin_url_only_when_certain() {
        let plain = "[core]\n\tbare = true\n[remote \"origin\"]\n\turl = https://h/o/r.git\n";
        assert_eq!(origin_url(plain).as_deref(), Some("https://h/o/r.git"));
        assert_eq!(origin_url("[core]\n\tbare = true\n"), None);
        let other = "[remote \"up\"]\n\turl = https://h/x.git\n";
        assert_eq!(origin_url(other), None);
        for unsure in [
            "[remote \"origin\"]\n\turl = \"https://h/o r.git\"\n",
            "[remote \"origin\"]\n\turl = https://a\n\turl = https://b\n",
            "[remote \"origin\"]\n\turl = https://a ; comment\n",
            "[include]\n\tpath = x\n[remote \"origin\"]\n\turl = https://a\n",
        ] {
            assert_eq!(origin_url(unsure), None, "{unsure}");
        }
    }
}
