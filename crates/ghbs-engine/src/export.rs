//! Download artifacts built from a snapshot.
//!
//! Every export starts from a throwaway bare repository in `data_dir/tmp` whose
//! `objects/info/alternates` points at the mirror and whose refs are the snapshot's, under their
//! original names; no object is copied until git packs what the artifact needs.
//! - Bundle: `git bundle create --all` of the snapshot's branches and tags (HEAD = default branch).
//! - TarGz (one repository): `{name}.git/`, the snapshot as a self-contained bare repository
//!   (`git repack -a -d`, then the alternates link is removed and connectivity checked), plus
//!   `{name}.metadata/` and `snapshot.json`. `git clone name.git` works on the extracted folder,
//!   and [`crate::restore`] accepts it.
//! - TarGz or Bundle of several repositories: `{owner}/{name}.bundle` and
//!   `{owner}/{name}.metadata/` per repository, plus `snapshot.json`.
//! - Zip: `git archive --format=zip` of the default branch's commit.
//!
//! Artifacts are cached in `data_dir/artifacts/{snapshot}/` and appear there only complete
//! (built in `tmp/`, fsynced, renamed), so Range and resumed requests see one stable file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ghbs_wire::DownloadFormat;

use crate::error::{EngineError, Result};
use crate::fsutil::{self, blocking};
use crate::git::Git;
use crate::snapshot::validate_manifest;
use crate::{Artifact, Engine, Manifest, RepoCapture};

const BUNDLE_TYPE: &str = "application/x-git-bundle";
const TAR_GZ_TYPE: &str = "application/gzip";
const ZIP_TYPE: &str = "application/zip";

impl Engine {
    /// Produces (or reuses) a download artifact for a snapshot; see the module docs for formats.
    /// `repo` selects one repository by full name (case-insensitive) or key.
    pub async fn export(
        &self,
        manifest: &Manifest,
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
        if selected.is_empty() {
            return Err(EngineError::not_found("this snapshot holds no repository"));
        }
        let single = (selected.len() == 1).then(|| selected[0]);
        let (cache_name, ext, content_type) = match (format, single) {
            (DownloadFormat::Bundle, Some(r)) => (format!("{}.bundle", r.key), "bundle", BUNDLE_TYPE),
            (DownloadFormat::TarGz, Some(r)) => (format!("{}.tar.gz", r.key), "tar.gz", TAR_GZ_TYPE),
            (DownloadFormat::Zip, Some(r)) => (format!("{}.zip", r.key), "zip", ZIP_TYPE),
            (DownloadFormat::Zip, None) => {
                return Err(EngineError::permanent(
                    "a zip archive holds one repository: choose one repository, or download this snapshot as a bundle or tar.gz",
                ))
            }
            (_, None) => ("all.tar.gz".to_owned(), "tar.gz", TAR_GZ_TYPE),
        };
        let file_name = self.download_name(manifest, single, ext).await;
        let dir = self.artifacts_dir(&manifest.snapshot_key);
        let dest = dir.join(&cache_name);
        if let Ok(meta) = tokio::fs::metadata(&dest).await {
            return Ok(Artifact {
                path: dest,
                size: meta.len(),
                file_name,
                content_type,
            });
        }

        // Objects of these mirrors must stay while scratch repositories borrow them.
        let mut keys: Vec<&str> = selected.iter().map(|r| r.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut guards = Vec::with_capacity(keys.len());
        for key in keys {
            guards.push(self.locks(key).gc.clone().read_owned().await);
        }
        let out = self.scratch("artifact");
        let built = match (format, single) {
            (DownloadFormat::Bundle, Some(r)) => self.build_bundle(r, &out).await,
            (DownloadFormat::TarGz, Some(r)) => self.build_repo_tar(manifest, r, &out).await,
            (DownloadFormat::Zip, Some(r)) => self.build_zip(r, &out).await,
            _ => self.build_multi_tar(manifest, &selected, &out).await,
        };
        drop(guards);
        if let Err(e) = built {
            let _ = tokio::fs::remove_file(&out).await;
            return Err(e);
        }
        let publish_dest = dest.clone();
        let size = blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| EngineError::io("create artifacts dir", e))?;
            fsutil::publish(&out, &publish_dest)?;
            std::fs::metadata(&publish_dest)
                .map(|m| m.len())
                .map_err(|e| EngineError::io("stat artifact", e))
        })
        .await?;
        Ok(Artifact {
            path: dest,
            size,
            file_name,
            content_type,
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
            blocking(move || write_tar_gz(&out, &entries, &summary)).await
        }
        .await;
        remove_scratch(scratch).await;
        result
    }

    /// `{owner}/{name}.bundle` + `{owner}/{name}.metadata/` per repository + `snapshot.json`.
    async fn build_multi_tar(
        &self,
        manifest: &Manifest,
        repos: &[&RepoCapture],
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
                let refs = heads_and_tags(repo);
                if !refs.is_empty() {
                    let bundle = work.join(format!("{i}.bundle"));
                    let scratch = self.scratch_repo(repo, &refs).await?;
                    let built = self.bundle_from(&scratch, &bundle).await;
                    remove_scratch(scratch).await;
                    built?;
                    entries.push((format!("{safe}.bundle"), bundle));
                }
                if let Some(meta) = self.metadata_path(repo) {
                    entries.push((format!("{safe}.metadata"), meta));
                }
            }
            let summary = snapshot_summary(manifest, repos)?;
            let out = out.to_path_buf();
            blocking(move || write_tar_gz(&out, &entries, &summary)).await
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
            return Err(EngineError::not_found(format!(
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
    fn metadata_path(&self, repo: &RepoCapture) -> Option<PathBuf> {
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
    async fn download_name(
        &self,
        manifest: &Manifest,
        single: Option<&RepoCapture>,
        ext: &str,
    ) -> String {
        let written = tokio::fs::metadata(self.manifest_path(&manifest.snapshot_key))
            .await
            .and_then(|m| m.modified());
        let when: chrono::DateTime<chrono::Utc> = written
            .map(Into::into)
            .unwrap_or_else(|_| chrono::Utc::now());
        let date = when.format("%Y-%m-%d");
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

/// Writes a gzip'd tar of `entries` (archive name, file or folder on disk) plus `snapshot.json`.
/// Fast compression: packs and bundles are already compressed.
fn write_tar_gz(out: &Path, entries: &[(String, PathBuf)], summary: &[u8]) -> Result<()> {
    use flate2::{write::GzEncoder, Compression};
    let io = |e| EngineError::io("write tar.gz", e);
    let file = std::fs::File::create(out).map_err(io)?;
    let gz = GzEncoder::new(std::io::BufWriter::new(file), Compression::fast());
    let mut tar = tar::Builder::new(gz);
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
    let gz = tar.into_inner().map_err(io)?;
    let buf = gz.finish().map_err(io)?;
    let file = buf.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)
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
