//! The `site` download: a zip of the static HTML site `ghbs-site` renders from a snapshot.
//!
//! This module gathers what the renderer shows and packs what it writes; it reads the snapshot
//! through the same doors as the `tar.gz` export ([`Engine::metadata_path`] for the metadata
//! folder, the mirror for git), so a change of where metadata lives reaches both.
//!
//! Per repository: the README of the default branch (`git ls-tree` + `git cat-file` on the
//! mirror), the metadata folder's `issues/`, `pulls/`, `labels.json`, `milestones.json` and
//! `releases.json`, the wiki's text pages (its `wiki.bundle` fetched into a scratch repository,
//! then `git archive` of its default branch), and release assets the folder stores under
//! `assets/` or `release-assets/` as files whose names begin with the asset's id (`{id}`,
//! `{id}.bin`, `{id}-{name}`): those are copied into the site and linked from the releases
//! page; others are listed as not stored. One repository is read and rendered at a time, so
//! memory holds one repository's metadata, never the account's.
//!
//! Inside the zip everything sits in one folder named after the download (`octo-hello-2026-12-02.site/`),
//! with `index.html` at its top. Entries carry no timestamps (zip's 1980 epoch), so the same
//! snapshot always gives the same bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ghbs_site::{Document, RepoInput, RepoSummary, Site, SnapshotInfo};
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::export::default_branch;
use crate::fsutil::blocking;
use crate::git::Git;
use crate::{Engine, Manifest, RepoCapture};

/// READMEs and wiki pages larger than this are left out (a generated file, not a page).
const MAX_PAGE_BYTES: usize = 2 << 20;

type Zip = zip::ZipWriter<std::io::BufWriter<std::fs::File>>;

/// The renderer's [`ghbs_site::Sink`]: every page a deflated entry under `prefix`.
struct ZipSink {
    zip: Zip,
    prefix: String,
}

impl ghbs_site::Sink for ZipSink {
    fn put(&mut self, path: &str, bytes: &[u8]) -> std::io::Result<()> {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o644);
        self.zip
            .start_file(format!("{}{path}", self.prefix), options)
            .map_err(std::io::Error::other)?;
        self.zip.write_all(bytes)
    }
}

impl ZipSink {
    /// A stored asset, copied as it is (assets are mostly compressed already).
    fn copy(&mut self, path: &str, source: &Path) -> std::io::Result<()> {
        let size = std::fs::metadata(source)?.len();
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(size >= u32::MAX as u64)
            .unix_permissions(0o644);
        self.zip
            .start_file(format!("{}{path}", self.prefix), options)
            .map_err(std::io::Error::other)?;
        std::io::copy(&mut std::fs::File::open(source)?, &mut self.zip)?;
        Ok(())
    }
}

/// One repository's input, plus the stored assets to copy: (path in the site, file on disk).
struct Gathered {
    input: RepoInput,
    copies: Vec<(String, PathBuf)>,
}

impl Engine {
    /// Writes the zip of the site of `repos` (in that order) to `out`; `folder` is the folder
    /// inside the zip (the download's name without `.zip`).
    pub(crate) async fn build_site(
        &self,
        manifest: &Manifest,
        taken_at: chrono::DateTime<chrono::Utc>,
        repos: &[&RepoCapture],
        folder: &str,
        out: &Path,
    ) -> Result<()> {
        let taken_at = taken_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let file = std::fs::File::create(out).map_err(|e| EngineError::io("create site", e))?;
        let mut sink = ZipSink {
            zip: zip::ZipWriter::new(std::io::BufWriter::new(file)),
            prefix: format!("{folder}/"),
        };
        let site = Arc::new(Site::new());
        let mut summaries: Vec<RepoSummary> = Vec::with_capacity(repos.len());
        for repo in repos {
            let gathered = self.gather_site_input(repo).await?;
            let site = site.clone();
            let (back, summary) = blocking(move || {
                let summary = site
                    .render_repo(&gathered.input, &mut sink)
                    .map_err(site_error)?;
                let dir = ghbs_site::repo_dir(&gathered.input.full_name);
                for (path, source) in &gathered.copies {
                    sink.copy(&format!("{dir}/{path}"), source)
                        .map_err(|e| EngineError::io("copy a release asset into the site", e))?;
                }
                Ok((sink, summary))
            })
            .await?;
            sink = back;
            summaries.push(summary);
        }
        let info = SnapshotInfo {
            key: manifest.snapshot_key.clone(),
            taken_at,
        };
        blocking(move || {
            site.render_index(&info, &summaries, &mut sink)
                .map_err(site_error)?;
            let writer = sink
                .zip
                .finish()
                .map_err(|e| EngineError::io("write site", std::io::Error::other(e)))?;
            let file = writer
                .into_inner()
                .map_err(|e| EngineError::io("write site", e.into_error()))?;
            file.sync_all()
                .map_err(|e| EngineError::io("write site", e))
        })
        .await
    }

    /// What the site shows of one repository, read from its mirror and metadata folder.
    async fn gather_site_input(&self, repo: &RepoCapture) -> Result<Gathered> {
        let readme = self.readme(repo).await?;
        let meta = self.metadata_path(repo);
        let wiki = match meta.as_ref().map(|m| m.join("wiki.bundle")) {
            Some(bundle) if bundle.is_file() => self.wiki_pages(&bundle).await?,
            _ => Vec::new(),
        };
        let count = |prefix: &str| repo.refs.keys().filter(|r| r.starts_with(prefix)).count();
        let mut input = RepoInput {
            full_name: repo.full_name.clone(),
            default_branch: default_branch(repo)
                .map(|(name, _)| name.trim_start_matches("refs/heads/").to_owned()),
            branches: count("refs/heads/"),
            tags: count("refs/tags/"),
            carried_from: repo.carried.as_ref().map(|c| {
                c.captured_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            }),
            readme,
            wiki,
            ..RepoInput::default()
        };
        let Some(meta) = meta else {
            return Ok(Gathered {
                input,
                copies: Vec::new(),
            });
        };
        let full_name = repo.full_name.clone();
        blocking(move || {
            let has_any = |name: &str| meta.join(name).exists();
            input.has_metadata = [
                "issues",
                "pulls",
                "labels.json",
                "milestones.json",
                "releases.json",
            ]
            .iter()
            .any(|n| has_any(n));
            input.issues = read_folder(&meta.join("issues"), &full_name);
            input.pulls = read_folder(&meta.join("pulls"), &full_name);
            input.labels = read_list(&meta.join("labels.json"), &full_name);
            input.milestones = read_list(&meta.join("milestones.json"), &full_name);
            input.releases = read_list(&meta.join("releases.json"), &full_name);
            let stored = stored_assets(&meta);
            let mut copies = Vec::new();
            for release in &input.releases {
                let assets = release.get("assets").and_then(Value::as_array);
                for asset in assets.into_iter().flatten() {
                    let Some(id) = asset.get("id").and_then(Value::as_i64) else {
                        continue;
                    };
                    if let Some(source) = stored.get(&id) {
                        let name = asset.get("name").and_then(Value::as_str).unwrap_or("asset");
                        let path = ghbs_site::asset_path(id, name);
                        input.assets.insert(id, path.clone());
                        copies.push((path, source.clone()));
                    }
                }
            }
            Ok(Gathered { input, copies })
        })
        .await
    }

    /// The default branch's README (`README.md` first, then any `README*`), from the mirror.
    async fn readme(&self, repo: &RepoCapture) -> Result<Option<Document>> {
        let Some((_, sha)) = default_branch(repo) else {
            return Ok(None);
        };
        let mirror = self.mirror_path(&repo.key);
        if !mirror.is_dir() {
            return Ok(None);
        }
        let listing = Git::new(self.git())
            .dir(&mirror)
            .args(["ls-tree", "-z", "--name-only", sha])
            .run()
            .await?;
        let names: Vec<String> = listing
            .stdout
            .split(|b| *b == 0)
            .filter_map(|n| std::str::from_utf8(n).ok())
            .map(str::to_owned)
            .collect();
        let rank = |name: &str| {
            let lower = name.to_ascii_lowercase();
            match lower.as_str() {
                "readme.md" => Some(0),
                "readme.markdown" => Some(1),
                "readme" | "readme.txt" => Some(2),
                _ if lower.starts_with("readme.") => Some(3),
                _ => None,
            }
        };
        let Some(name) = names
            .iter()
            .filter_map(|n| rank(n).map(|r| (r, n)))
            .min()
            .map(|(_, n)| n.clone())
        else {
            return Ok(None);
        };
        let blob = Git::new(self.git())
            .dir(&mirror)
            .args(["cat-file", "blob"])
            .arg(format!("{sha}:{name}"))
            .run()
            .await;
        // A README that is a submodule or a symlink to elsewhere is simply not shown.
        let Ok(blob) = blob else { return Ok(None) };
        Ok(text_document(name, blob.stdout))
    }

    /// The text pages of a wiki bundle's default branch.
    async fn wiki_pages(&self, bundle: &Path) -> Result<Vec<Document>> {
        let scratch = self.scratch("wiki-site");
        let result = async {
            Git::new(self.git())
                .args(["init", "--bare", "--quiet", "--template="])
                .arg(&scratch)
                .run()
                .await?;
            Git::new(self.git())
                .dir(&scratch)
                .args(["fetch", "--quiet"])
                .arg(bundle)
                .arg("refs/heads/*:refs/heads/*")
                .run()
                .await?;
            let heads = Git::new(self.git())
                .dir(&scratch)
                .args(["for-each-ref", "--format=%(refname:short)", "refs/heads/"])
                .run()
                .await?
                .text();
            let branches: Vec<&str> = heads.lines().collect();
            let Some(branch) = ["master", "main"]
                .into_iter()
                .find(|b| branches.contains(b))
                .or(branches.first().copied())
            else {
                return Ok(Vec::new());
            };
            let tar = Git::new(self.git())
                .dir(&scratch)
                .args(["archive", "--format=tar"])
                .arg(format!("refs/heads/{branch}"))
                .run()
                .await?
                .stdout;
            blocking(move || Ok(tar_documents(&tar))).await
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        result
    }
}

fn site_error(e: ghbs_site::SiteError) -> EngineError {
    match e {
        ghbs_site::SiteError::Io(e) => EngineError::io("write site", e),
        other => EngineError::permanent(other.to_string()),
    }
}

/// A UTF-8 file of reasonable size as a document; anything else is not a page.
fn text_document(path: String, bytes: Vec<u8>) -> Option<Document> {
    if bytes.len() > MAX_PAGE_BYTES {
        return None;
    }
    String::from_utf8(bytes)
        .ok()
        .map(|text| Document { path, text })
}

/// Regular files of a tar (a `git archive`) that are text.
fn tar_documents(tar: &[u8]) -> Vec<Document> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(tar);
    let Ok(entries) = archive.entries() else {
        return out;
    };
    for mut entry in entries.flatten() {
        if !entry.header().entry_type().is_file() || entry.size() > MAX_PAGE_BYTES as u64 {
            continue;
        }
        let Ok(path) = entry.path().map(|p| p.to_string_lossy().into_owned()) else {
            continue;
        };
        let mut bytes = Vec::new();
        if entry.read_to_end(&mut bytes).is_ok() {
            out.extend(text_document(path, bytes));
        }
    }
    out
}

/// Every `*.json` document of a folder (`issues/`, `pulls/`), by number. A file that does not
/// parse is left out of the site (and logged); the `tar.gz` still holds its bytes.
fn read_folder(dir: &Path, repo: &str) -> Vec<Value> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_suffix(".json")?.parse::<u64>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .filter_map(|(_, path)| read_json(&path, repo))
        .collect()
}

/// A JSON array file (`labels.json`, ...); missing or unreadable is empty.
fn read_list(path: &Path, repo: &str) -> Vec<Value> {
    match read_json(path, repo) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

fn read_json(path: &Path, repo: &str) -> Option<Value> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(repo, file = %path.display(), error = %e, "metadata file unreadable; left out of the site");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(repo, file = %path.display(), error = %e, "metadata file is not JSON; left out of the site");
            None
        }
    }
}

/// Asset files the metadata folder stores: `assets/` or `release-assets/` entries whose name
/// starts with the asset's numeric id, by id (see the module docs).
fn stored_assets(meta: &Path) -> BTreeMap<i64, PathBuf> {
    let mut found = BTreeMap::new();
    for dir in ["assets", "release-assets"] {
        for entry in std::fs::read_dir(meta.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
            let rest = &name[digits.len()..];
            let boundary = rest.is_empty() || rest.starts_with(['.', '-', '_']);
            if let (Ok(id), true) = (digits.parse::<i64>(), boundary) {
                found.entry(id).or_insert_with(|| entry.path());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_assets_are_found_by_id() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("assets")).unwrap();
        std::fs::create_dir_all(dir.path().join("release-assets")).unwrap();
        for name in ["12", "34.bin", "56-tool.tar.gz", "789x", "notes.txt"] {
            std::fs::write(dir.path().join("assets").join(name), b"x").unwrap();
        }
        std::fs::write(dir.path().join("release-assets/90_a.zip"), b"x").unwrap();
        let ids: Vec<i64> = stored_assets(dir.path()).into_keys().collect();
        assert_eq!(ids, [12, 34, 56, 90]);
        assert!(stored_assets(&dir.path().join("nothing")).is_empty());
    }

    #[test]
    fn unreadable_metadata_is_left_out_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let issues = dir.path().join("issues");
        std::fs::create_dir_all(&issues).unwrap();
        std::fs::write(issues.join("2.json"), br#"{"issue": {"number": 2}}"#).unwrap();
        std::fs::write(issues.join("1.json"), b"{not json").unwrap();
        std::fs::write(issues.join("notes.txt"), b"x").unwrap();
        std::fs::write(dir.path().join("labels.json"), br#"{"not": "a list"}"#).unwrap();
        let docs = read_folder(&issues, "o/r");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["issue"]["number"], 2);
        assert!(read_list(&dir.path().join("labels.json"), "o/r").is_empty());
        assert!(read_list(&dir.path().join("missing.json"), "o/r").is_empty());
    }

    #[test]
    fn only_text_becomes_a_page() {
        assert!(text_document("a.md".into(), b"# hi".to_vec()).is_some());
        assert!(text_document("logo.png".into(), vec![0x89, b'P', 0xff, 0xfe]).is_none());
        assert!(text_document("big.md".into(), vec![b'a'; MAX_PAGE_BYTES + 1]).is_none());
    }
}
