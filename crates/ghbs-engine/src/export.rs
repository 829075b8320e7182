//! Download artifacts built from a snapshot.
//!
//! Every export starts from a throwaway bare repository in `data_dir/tmp` whose
//! `objects/info/alternates` points at the mirror and whose refs are the snapshot's, under their
//! original names; no object is copied until git packs what the artifact needs.
//!
//! One repository (a repository job, or `repo` chosen in an account snapshot):
//! - Bundle: `git bundle create --all` of the snapshot's branches and tags (HEAD = default branch).
//! - TarGz: `{name}.git/`, the snapshot as a self-contained bare repository
//!   (`git repack -a -d`, then the alternates link is removed and connectivity checked), plus
//!   `{name}.metadata/` and `snapshot.json`. `git clone name.git` works on the extracted folder,
//!   and [`crate::restore`] accepts it.
//! - Zip: `git archive --format=zip` of the default branch's commit.
//! - Site: a zip of the static HTML site of that repository (see [`crate::site_export`]).
//!
//! Every repository of the snapshot ([`Engine::export_each`], or several without `repo`), one
//! archive holding one file per repository plus `snapshot.json` (which lists them all, also
//! those with nothing to export, e.g. an empty repository):
//! - Bundle: an uncompressed tar (`….bundles.tar`) of `{owner}/{name}.bundle`.
//! - TarGz: `{owner}/{name}.bundle` and `{owner}/{name}.metadata/` per repository.
//! - Zip: an uncompressed tar (`….zips.tar`) of `{owner}/{name}.zip`.
//! - Site: one zip of one site, its top index listing every repository.
//!
//! Artifacts are cached in `data_dir/artifacts/{snapshot}/` and appear there only complete
//! (built in `tmp/`, fsynced, renamed), so Range and resumed requests see one stable file. The
//! SHA-256 of each is computed once, when it is built, and kept next to it in `{file}.sha256`
//! (`HEX SIZE`); one builder at a time per file, so the two always belong together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ghbs_wire::DownloadFormat;

use crate::error::{EngineError, Result};
use crate::fsutil::{self, blocking};
use crate::git::Git;
use crate::snapshot::validate_manifest;
use crate::{Artifact, Engine, Manifest, RepoCapture};

const BUNDLE_TYPE: &str = "application/x-git-bundle";
const TAR_GZ_TYPE: &str = "application/gzip";
const ZIP_TYPE: &str = "application/zip";
const TAR_TYPE: &str = "application/x-tar";

/// What one export builds.
#[derive(Clone, Copy)]
enum Shape<'a> {
    Bundle(&'a RepoCapture),
    RepoTar(&'a RepoCapture),
    Zip(&'a RepoCapture),
    /// One file per repository (bundle, zip) or bundles plus metadata (tar.gz).
    Each(DownloadFormat),
    /// The HTML site of one repository (`Some`) or of every repository of the snapshot.
    Site(Option<&'a RepoCapture>),
}

impl Shape<'_> {
    /// (cache file name, download extension, content type)
    fn names(&self) -> (String, &'static str, &'static str) {
        match self {
            Shape::Bundle(r) => (format!("{}.bundle", r.key), "bundle", BUNDLE_TYPE),
            Shape::RepoTar(r) => (format!("{}.tar.gz", r.key), "tar.gz", TAR_GZ_TYPE),
            Shape::Zip(r) => (format!("{}.zip", r.key), "zip", ZIP_TYPE),
            Shape::Each(DownloadFormat::Bundle) => {
                ("all.bundles.tar".into(), "bundles.tar", TAR_TYPE)
            }
            Shape::Each(DownloadFormat::Zip) => ("all.zips.tar".into(), "zips.tar", TAR_TYPE),
            Shape::Each(DownloadFormat::TarGz) => ("all.tar.gz".into(), "tar.gz", TAR_GZ_TYPE),
            Shape::Site(Some(r)) => (format!("{}.site.zip", r.key), "site.zip", ZIP_TYPE),
            Shape::Site(None) | Shape::Each(DownloadFormat::Site) => {
                ("all.site.zip".into(), "site.zip", ZIP_TYPE)
            }
        }
    }
}

impl Engine {
    /// Produces (or reuses) a download artifact for a snapshot; see the module docs for formats.
    /// `repo` selects one repository by full name (case-insensitive) or key; without it a
    /// snapshot of one repository gives that repository's file, and a snapshot of several the
    /// archive of [`Engine::export_each`].
    pub async fn export(
        &self,
        manifest: &Manifest,
        format: DownloadFormat,
        repo: Option<&str>,
    ) -> Result<Artifact, EngineError> {
        self.export_as_of(manifest, None, format, repo).await
    }

    /// [`Engine::export`] of a snapshot taken at `taken_at` as the caller recorded it (the
    /// database row), which dates the download's name and the site's "taken" line. Without it
    /// the manifest's modification time in the storage stands in, which is right only while
    /// the manifest was never rewritten (`storage migrate` writes it again).
    pub async fn export_as_of(
        &self,
        manifest: &Manifest,
        taken_at: Option<DateTime<Utc>>,
        format: DownloadFormat,
        repo: Option<&str>,
    ) -> Result<Artifact, EngineError> {
        validate_manifest(manifest)?;
        let selected: Vec<&RepoCapture> = match repo {
            Some(wanted) => {
                let found = manifest
                    .repos
                    .iter()
                    .find(|r| r.full_name.eq_ignore_ascii_case(wanted) || r.key == wanted);
                vec![found.ok_or_else(|| {
                    EngineError::not_found(format!("repository {wanted} is not in this snapshot"))
                })?]
            }
            None => manifest.repos.iter().collect(),
        };
        match selected.as_slice() {
            [] => Err(EngineError::not_found("this snapshot holds no repository")),
            [one] => {
                let shape = match format {
                    DownloadFormat::Bundle => Shape::Bundle(one),
                    DownloadFormat::TarGz => Shape::RepoTar(one),
                    DownloadFormat::Zip => Shape::Zip(one),
                    DownloadFormat::Site => Shape::Site(Some(one)),
                };
                self.export_shape(manifest, taken_at, shape, &selected)
                    .await
            }
            _ => self.export_each_as_of(manifest, taken_at, format).await,
        }
    }

    /// One archive holding one file per repository of the snapshot, however many there are
    /// (what an account job downloads without choosing a repository); see the module docs.
    pub async fn export_each(
        &self,
        manifest: &Manifest,
        format: DownloadFormat,
    ) -> Result<Artifact, EngineError> {
        self.export_each_as_of(manifest, None, format).await
    }

    /// [`Engine::export_each`] dated as in [`Engine::export_as_of`].
    pub async fn export_each_as_of(
        &self,
        manifest: &Manifest,
        taken_at: Option<DateTime<Utc>>,
        format: DownloadFormat,
    ) -> Result<Artifact, EngineError> {
        validate_manifest(manifest)?;
        if manifest.repos.is_empty() {
            return Err(EngineError::not_found("this snapshot holds no repository"));
        }
        let all: Vec<&RepoCapture> = manifest.repos.iter().collect();
        let shape = match format {
            DownloadFormat::Site => Shape::Site(None),
            other => Shape::Each(other),
        };
        self.export_shape(manifest, taken_at, shape, &all).await
    }

    async fn export_shape(
        &self,
        manifest: &Manifest,
        taken_at: Option<DateTime<Utc>>,
        shape: Shape<'_>,
        selected: &[&RepoCapture],
    ) -> Result<Artifact> {
        let (cache_name, ext, content_type) = shape.names();
        let single = match shape {
            Shape::Bundle(r) | Shape::RepoTar(r) | Shape::Zip(r) | Shape::Site(Some(r)) => Some(r),
            Shape::Each(_) | Shape::Site(None) => None,
        };
        let taken_at = match taken_at {
            Some(t) => t,
            None => self
                .storage()
                .modified(&Engine::manifest_key(&manifest.snapshot_key))
                .await
                .unwrap_or_else(|_| Utc::now()),
        };
        let file_name = self.download_name(manifest, taken_at, single, ext);
        let dir = self.artifacts_dir(&manifest.snapshot_key);
        let dest = dir.join(&cache_name);
        let lock = self.build_lock(&dest);
        let _building = lock.lock().await;
        if let Ok(meta) = tokio::fs::metadata(&dest).await {
            let size = meta.len();
            let sha256 = cached_digest(dest.clone(), size).await?;
            return Ok(Artifact {
                path: dest,
                size,
                file_name,
                content_type,
                sha256,
            });
        }

        // Objects of these mirrors must stay while scratch repositories borrow them.
        let mut keys: Vec<&str> = selected.iter().map(|r| r.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        // Shared storage: a cold cache is filled first (mirrors and metadata folders).
        for key in &keys {
            self.hydrate(key).await?;
        }
        for repo in selected {
            self.hydrate_metadata(repo).await?;
        }
        let mut guards = Vec::with_capacity(keys.len());
        for key in keys {
            guards.push(self.locks(key).gc.clone().read_owned().await);
        }
        let out = self.scratch("artifact");
        let built = match shape {
            Shape::Bundle(r) => self.build_bundle(r, &out).await,
            Shape::RepoTar(r) => self.build_repo_tar(manifest, r, &out).await,
            Shape::Zip(r) => self.build_zip(r, &out).await,
            Shape::Site(_) | Shape::Each(DownloadFormat::Site) => {
                let folder = file_name.strip_suffix(".zip").unwrap_or(&file_name);
                self.build_site(manifest, taken_at, selected, folder, &out)
                    .await
            }
            Shape::Each(format) => self.build_each(manifest, selected, format, &out).await,
        };
        drop(guards);
        if let Err(e) = built {
            let _ = tokio::fs::remove_file(&out).await;
            return Err(e);
        }
        let publish_dest = dest.clone();
        let (size, sha256) = blocking(move || {
            let published = (|| {
                let (size, sha256) = sha256_file(&out)?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| EngineError::io("create artifacts dir", e))?;
                // The digest first: an artifact is never visible without the digest of its bytes.
                fsutil::write_atomic(
                    &digest_path(&publish_dest),
                    format!("{} {size}\n", hex::encode(sha256)).as_bytes(),
                )?;
                fsutil::publish(&out, &publish_dest)?;
                Ok((size, sha256))
            })();
            if published.is_err() {
                let _ = std::fs::remove_file(&out);
            }
            published
        })
        .await?;
        Ok(Artifact {
            path: dest,
            size,
            file_name,
            content_type,
            sha256,
        })
    }

    /// A bundle of the snapshot's branches and tags, verified.
    async fn build_bundle(&self, repo: &RepoCapture, out: &Path) -> Result<()> {
        let refs = heads_and_tags(repo);
        if refs.is_empty() {
            return Err(EngineError::not_found(format!(
                "the snapshot of {} has no branch or tag",
                repo.full_name
            )));
        }
        let scratch = self.scratch_repo(repo, &refs).await?;
        let result = self.bundle_from(&scratch, out).await;
        remove_scratch(scratch).await;
        result
    }

    async fn bundle_from(&self, scratch: &Path, out: &Path) -> Result<()> {
        Git::new(self.git())
            .dir(scratch)
            .args(["bundle", "create", "--quiet"])
            .arg(out)
            .arg("--all")
            .run()
            .await?;
        Git::new(self.git())
            .dir(scratch)
            .args(["bundle", "verify", "--quiet"])
            .arg(out)
            .run()
            .await?;
        Ok(())
    }

    /// `{name}.git/` (self-contained bare repository) + metadata + `snapshot.json`.
    async fn build_repo_tar(
        &self,
        manifest: &Manifest,
        repo: &RepoCapture,
        out: &Path,
    ) -> Result<()> {
        let scratch = self.scratch_repo(repo, &repo.refs).await?;
        let result = async {
            if !repo.refs.is_empty() {
                Git::new(self.git())
                    .dir(&scratch)
                    .args(["repack", "-a", "-d", "-q"])
                    .run()
                    .await?;
            }
            tokio::fs::remove_file(scratch.join("objects/info/alternates"))
                .await
                .map_err(|e| EngineError::io("detach scratch repository", e))?;
            if !repo.refs.is_empty() {
                Git::new(self.git())
                    .dir(&scratch)
                    .args([
                        "fsck",
                        "--connectivity-only",
                        "--no-dangling",
                        "--no-progress",
                    ])
                    .run()
                    .await?;
            }
            let name = repo_name(&repo.full_name);
            let mut entries = vec![(format!("{name}.git"), scratch.clone())];
            if let Some(meta) = self.metadata_path(repo) {
                entries.push((format!("{name}.metadata"), meta));
            }
            let summary = snapshot_summary(manifest, &[repo])?;
            let out = out.to_path_buf();
            blocking(move || write_tar(&out, &entries, &summary, true)).await
        }
        .await;
        remove_scratch(scratch).await;
        result
    }

    /// The archive of every repository in `repos`: per repository a bundle (bundle, tar.gz) or a
    /// zip (zip), with tar.gz also its metadata folder; plus `snapshot.json`.
    async fn build_each(
        &self,
        manifest: &Manifest,
        repos: &[&RepoCapture],
        format: DownloadFormat,
        out: &Path,
    ) -> Result<()> {
        let work = self.scratch("multi");
        tokio::fs::create_dir_all(&work)
            .await
            .map_err(|e| EngineError::io("create scratch dir", e))?;
        let result = async {
            let mut entries = Vec::new();
            for (i, repo) in repos.iter().enumerate() {
                let safe = safe_full_name(&repo.full_name);
                if format == DownloadFormat::Zip {
                    // A repository without a branch has no files to archive; snapshot.json lists it.
                    if default_branch(repo).is_some() {
                        let zip = work.join(format!("{i}.zip"));
                        self.build_zip(repo, &zip).await?;
                        entries.push((format!("{safe}.zip"), zip));
                    }
                    continue;
                }
                let refs = heads_and_tags(repo);
                if !refs.is_empty() {
                    let bundle = work.join(format!("{i}.bundle"));
                    let scratch = self.scratch_repo(repo, &refs).await?;
                    let built = self.bundle_from(&scratch, &bundle).await;
                    remove_scratch(scratch).await;
                    built?;
                    entries.push((format!("{safe}.bundle"), bundle));
                }
                if format == DownloadFormat::TarGz {
                    if let Some(meta) = self.metadata_path(repo) {
                        entries.push((format!("{safe}.metadata"), meta));
                    }
                }
            }
            let summary = snapshot_summary(manifest, repos)?;
            let out = out.to_path_buf();
            let gzip = format == DownloadFormat::TarGz;
            blocking(move || write_tar(&out, &entries, &summary, gzip)).await
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&work).await;
        result
    }

    /// `git archive --format=zip` of the default branch, straight from the mirror.
    async fn build_zip(&self, repo: &RepoCapture, out: &Path) -> Result<()> {
        let (branch_ref, sha) = default_branch(repo).ok_or_else(|| {
            EngineError::not_found(format!("the snapshot of {} has no branch", repo.full_name))
        })?;
        let branch = branch_ref
            .trim_start_matches("refs/heads/")
            .replace('/', "-");
        let prefix = format!("{}-{branch}/", repo_name(&repo.full_name));
        let mirror = self.mirror_path(&repo.key);
        Git::new(self.git())
            .dir(&mirror)
            .args(["archive", "--format=zip"])
            .arg(format!("--prefix={prefix}"))
            .arg("-o")
            .arg(out)
            .arg(sha)
            .run()
            .await?;
        Ok(())
    }

    /// A bare repository in `tmp/` that borrows the mirror's objects and holds `refs`.
    async fn scratch_repo(
        &self,
        repo: &RepoCapture,
        refs: &BTreeMap<String, String>,
    ) -> Result<PathBuf> {
        let mirror_objects = self.mirror_path(&repo.key).join("objects");
        if !mirror_objects.is_dir() {
            // The snapshot lists it, so the mirror should be there: lost on the server's side
            // (removed by hand, a lost disk), not something the caller asked wrongly.
            return Err(EngineError::permanent(format!(
                "no mirror for {} ({})",
                repo.full_name, repo.key
            )));
        }
        let scratch = self.scratch("repo");
        Git::new(self.git())
            .args(["init", "--bare", "--quiet", "--template="])
            .arg(&scratch)
            .run()
            .await?;
        // The refs file is written directly (no header: git sorts it on load); names and shas come
        // from a validated manifest, and the pack step fails loudly on any missing object.
        let mut packed = String::new();
        for (name, sha) in refs {
            if !name.starts_with("refs/")
                || name.contains(char::is_whitespace)
                || !sha.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(EngineError::permanent(format!(
                    "bad ref {name:?} in manifest"
                )));
            }
            packed.push_str(&format!("{sha} {name}\n"));
        }
        let head = default_branch(repo).map(|(name, _)| name.to_owned());
        let dir = scratch.clone();
        blocking(move || {
            let io = |e| EngineError::io("prepare scratch repository", e);
            std::fs::create_dir_all(dir.join("objects/info")).map_err(io)?;
            std::fs::write(
                dir.join("objects/info/alternates"),
                format!("{}\n", mirror_objects.display()),
            )
            .map_err(io)?;
            std::fs::write(dir.join("packed-refs"), packed).map_err(io)?;
            if let Some(head) = head {
                std::fs::write(dir.join("HEAD"), format!("ref: {head}\n")).map_err(io)?;
            }
            Ok(())
        })
        .await?;
        Ok(scratch)
    }

    /// The repository's metadata folder, if the manifest names one that exists.
    pub(crate) fn metadata_path(&self, repo: &RepoCapture) -> Option<PathBuf> {
        let raw = repo.metadata_dir.as_deref()?;
        let path = Path::new(raw);
        if path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            tracing::warn!(repo = %repo.full_name, "ignoring metadata folder with '..' in its path");
            return None;
        }
        let full = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.data_dir().join(path)
        };
        if full.is_dir() {
            Some(full)
        } else {
            tracing::warn!(repo = %repo.full_name, "metadata folder of the snapshot is missing; exporting without it");
            None
        }
    }

    /// `owner-name-2026-11-26.ext` (or `owner-2026-11-26.tar.gz` for a whole account), dated by
    /// the manifest file, which is written when the snapshot is committed.
    fn download_name(
        &self,
        manifest: &Manifest,
        taken_at: DateTime<Utc>,
        single: Option<&RepoCapture>,
        ext: &str,
    ) -> String {
        let date = taken_at.format("%Y-%m-%d");
        let stem = match single {
            Some(repo) => safe_full_name(&repo.full_name).replace('/', "-"),
            None => {
                let owners: std::collections::BTreeSet<&str> = manifest
                    .repos
                    .iter()
                    .map(|r| r.full_name.split('/').next().unwrap_or(""))
                    .collect();
                match owners.into_iter().collect::<Vec<_>>().as_slice() {
                    [one] if !one.is_empty() => safe_component(one),
                    _ => "snapshot".to_owned(),
                }
            }
        };
        format!("{stem}-{date}.{ext}")
    }
}

/// The snapshot's `refs/heads/*` and `refs/tags/*`.
fn heads_and_tags(repo: &RepoCapture) -> BTreeMap<String, String> {
    repo.refs
        .iter()
        .filter(|(name, _)| name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect()
}

/// The default branch's ref and sha: the recorded default branch, else `main`, `master`, else the
/// first branch.
pub(crate) fn default_branch(repo: &RepoCapture) -> Option<(&str, &str)> {
    let lookup = |branch: &str| {
        repo.refs
            .get_key_value(&format!("refs/heads/{branch}"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    };
    repo.default_branch
        .as_deref()
        .and_then(lookup)
        .or_else(|| lookup("main"))
        .or_else(|| lookup("master"))
        .or_else(|| {
            repo.refs
                .iter()
                .find(|(k, _)| k.starts_with("refs/heads/"))
                .map(|(k, v)| (k.as_str(), v.as_str()))
        })
}

fn repo_name(full_name: &str) -> String {
    safe_component(full_name.rsplit('/').next().unwrap_or(full_name))
}

/// `owner/name` with each part restricted to `[A-Za-z0-9._-]` (GitHub's own alphabet) and never
/// `.` or `..`, so archive entry names cannot escape the extraction folder.
fn safe_full_name(full_name: &str) -> String {
    let parts: Vec<String> = full_name
        .split('/')
        .filter(|p| !p.is_empty())
        .map(safe_component)
        .collect();
    if parts.is_empty() {
        "repository".to_owned()
    } else {
        parts.join("/")
    }
}

fn safe_component(part: &str) -> String {
    let clean: String = part
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        "repository".to_owned()
    } else {
        clean
    }
}

/// `snapshot.json` inside archives: the snapshot key and what each included repository held.
fn snapshot_summary(manifest: &Manifest, repos: &[&RepoCapture]) -> Result<Vec<u8>> {
    let summary = Manifest {
        snapshot_key: manifest.snapshot_key.clone(),
        repos: repos.iter().map(|r| (*r).clone()).collect(),
    };
    serde_json::to_vec_pretty(&summary)
        .map_err(|e| EngineError::permanent(format!("serialise manifest: {e}")))
}

/// Writes a tar (gzip'd when `gzip`) of `entries` (archive name, file or folder on disk) plus
/// `snapshot.json`. Fast compression: packs and bundles are already compressed.
fn write_tar(out: &Path, entries: &[(String, PathBuf)], summary: &[u8], gzip: bool) -> Result<()> {
    use flate2::{write::GzEncoder, Compression};
    let io = |e| EngineError::io("write tar", e);
    let file = std::io::BufWriter::new(std::fs::File::create(out).map_err(io)?);
    let file = if gzip {
        let gz = GzEncoder::new(file, Compression::fast());
        let gz = append_all(tar::Builder::new(gz), entries, summary)?;
        gz.finish().map_err(io)?
    } else {
        append_all(tar::Builder::new(file), entries, summary)?
    };
    let file = file.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)
}

/// `snapshot.json` then `entries` into `tar`; returns the finished inner writer.
fn append_all<W: std::io::Write>(
    mut tar: tar::Builder<W>,
    entries: &[(String, PathBuf)],
    summary: &[u8],
) -> Result<W> {
    let io = |e| EngineError::io("write tar", e);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    let mut header = tar::Header::new_gnu();
    header.set_size(summary.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.append_data(&mut header, "snapshot.json", summary)
        .map_err(io)?;
    for (name, path) in entries {
        if path.is_dir() {
            tar.append_dir_all(name, path).map_err(io)?;
        } else {
            tar.append_path_with_name(path, name).map_err(io)?;
        }
    }
    tar.into_inner().map_err(io)
}

/// `artifact.sha256` next to `artifact`.
fn digest_path(artifact: &Path) -> PathBuf {
    let mut name = artifact.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    artifact.with_file_name(name)
}

/// (size, SHA-256) of a file, read once.
fn sha256_file(path: &Path) -> Result<(u64, [u8; 32])> {
    fsutil::sha256_file(path).map_err(|e| EngineError::io("hash artifact", e))
}

/// The digest recorded next to a published artifact of `size` bytes; an artifact published
/// before digests were kept (or whose digest file is unreadable or of another size) is hashed
/// now, once, and its digest file written.
async fn cached_digest(artifact: PathBuf, size: u64) -> Result<[u8; 32]> {
    blocking(move || {
        let sidecar = digest_path(&artifact);
        if let Some(digest) = std::fs::read_to_string(&sidecar)
            .ok()
            .and_then(|text| parse_digest_file(&text, size))
        {
            return Ok(digest);
        }
        let (hashed_size, digest) = sha256_file(&artifact)?;
        fsutil::write_atomic(
            &sidecar,
            format!("{} {hashed_size}\n", hex::encode(digest)).as_bytes(),
        )?;
        Ok(digest)
    })
    .await
}

/// `HEX SIZE` → the digest, when SIZE is `size`.
fn parse_digest_file(text: &str, size: u64) -> Option<[u8; 32]> {
    let (hex_digest, recorded) = text.trim().split_once(' ')?;
    if recorded.trim().parse::<u64>().ok()? != size {
        return None;
    }
    hex::decode(hex_digest).ok()?.try_into().ok()
}

async fn remove_scratch(path: PathBuf) {
    let _ = tokio::fs::remove_dir_all(path).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(refs: &[(&str, &str)], default: Option<&str>) -> RepoCapture {
        RepoCapture {
            key: "r1".into(),
            full_name: "o/n".into(),
            default_branch: default.map(Into::into),
            refs: refs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            metadata_dir: None,
            carried: None,
        }
    }

    #[test]
    fn default_branch_falls_back() {
        let r = capture(
            &[("refs/heads/dev", "1"), ("refs/heads/main", "2")],
            Some("dev"),
        );
        assert_eq!(default_branch(&r), Some(("refs/heads/dev", "1")));
        let r = capture(
            &[("refs/heads/dev", "1"), ("refs/heads/main", "2")],
            Some("gone"),
        );
        assert_eq!(default_branch(&r), Some(("refs/heads/main", "2")));
        let r = capture(&[("refs/heads/dev", "1"), ("refs/tags/v1", "2")], None);
        assert_eq!(default_branch(&r), Some(("refs/heads/dev", "1")));
        assert_eq!(
            default_branch(&capture(&[("refs/tags/v1", "2")], None)),
            None
        );
    }

    #[test]
    fn archive_names_cannot_escape() {
        assert_eq!(safe_full_name("octo/hello.world"), "octo/hello.world");
        assert_eq!(safe_full_name("../.."), "repository/repository");
        assert_eq!(safe_full_name("a b/c"), "a-b/c");
    }
}
