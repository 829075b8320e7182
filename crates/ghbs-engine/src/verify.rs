//! Verification: proves that recorded snapshots can still be read back, without the network.
//!
//! For each snapshot (given with the manifest the caller recorded for it):
//! - the manifest in the [`crate::Storage`] exists and equals the recorded one;
//! - in each repository's mirror, the refs `refs/ghbs/snap/{snapshot}/…` are exactly the
//!   manifest's refs;
//! - every object reachable from those refs is present (`git rev-list --objects --missing=print`)
//!   and every object of the mirror is intact (`git fsck`, once per mirror whatever the number of
//!   snapshots; a damaged object is attributed to the snapshots that reach it);
//! - every metadata file of the snapshot hashes to the content-addressed name its index gives
//!   (for a wiki bundle, the ref listing its name is made from).
//!
//! Findings are data ([`SnapshotVerdict`]); an `Err` means verification itself could not run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};
use crate::fsutil::blocking;
use crate::git::list_refs;
use crate::git::Git;
use crate::metadata::MetadataIndex;
use crate::snapshot::validate_manifest;
use crate::storage::StorageErrorKind;
use crate::{snapshot_ref, Engine, Manifest, RepoCapture, INDEX_FILE};

/// What is wrong, as a class (for counting and tests) — the detail says which object or file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProblemKind {
    /// The manifest is not in the storage any more.
    ManifestMissing,
    /// The stored manifest differs from the recorded one (or cannot be parsed).
    ManifestMismatch,
    /// The repository's mirror is gone.
    MirrorMissing,
    /// The snapshot's refs in the mirror differ from the manifest (missing, moved or extra).
    RefsMismatch,
    /// Objects reachable from the snapshot's refs are missing.
    ObjectsMissing,
    /// Objects reachable from the snapshot's refs (or elsewhere in the mirror) are damaged.
    ObjectsCorrupt,
    /// A metadata folder, its index or one of its files is missing.
    MetadataMissing,
    /// A metadata file does not hash to its recorded name.
    MetadataMismatch,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// For a person: which ref, object or file, and what was found.
    pub detail: String,
}

/// One repository of one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoVerdict {
    pub key: String,
    pub full_name: String,
    pub problems: Vec<Problem>,
}

/// One snapshot: problems of the snapshot as a whole (its manifest), then per repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotVerdict {
    pub snapshot_key: String,
    pub problems: Vec<Problem>,
    pub repos: Vec<RepoVerdict>,
}

impl SnapshotVerdict {
    /// Whether nothing is wrong with this snapshot.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.repos.iter().all(|r| r.problems.is_empty())
    }

    /// Every problem with the repository it concerns (`None`: the snapshot's manifest).
    pub fn problems(&self) -> impl Iterator<Item = (Option<&RepoVerdict>, &Problem)> {
        self.problems.iter().map(|p| (None, p)).chain(
            self.repos
                .iter()
                .flat_map(|r| r.problems.iter().map(move |p| (Some(r), p))),
        )
    }
}

/// At most this many object ids are named in one problem's detail.
const NAMED_OBJECTS: usize = 5;

fn problem(kind: ProblemKind, detail: impl Into<String>) -> Problem {
    Problem {
        kind,
        detail: detail.into(),
    }
}

impl Engine {
    /// Verifies the given snapshots (see the module docs). `manifests` are the caller's records
    /// (the database's copy), in the order the verdicts come back.
    pub async fn verify_snapshots(
        &self,
        manifests: &[Manifest],
    ) -> Result<Vec<SnapshotVerdict>, EngineError> {
        for manifest in manifests {
            validate_manifest(manifest)?;
        }
        let mut verdicts = Vec::with_capacity(manifests.len());
        for manifest in manifests {
            verdicts.push(SnapshotVerdict {
                snapshot_key: manifest.snapshot_key.clone(),
                problems: self.check_stored_manifest(manifest).await?,
                repos: manifest
                    .repos
                    .iter()
                    .map(|r| RepoVerdict {
                        key: r.key.clone(),
                        full_name: r.full_name.clone(),
                        problems: Vec::new(),
                    })
                    .collect(),
            });
        }
        // Mirror key -> (snapshot index, repository index): each mirror is examined once.
        let mut by_mirror: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
        for (s, manifest) in manifests.iter().enumerate() {
            for (r, repo) in manifest.repos.iter().enumerate() {
                by_mirror.entry(repo.key.as_str()).or_default().push((s, r));
            }
        }
        for (key, places) in by_mirror {
            // Shared storage: what is verified is the storage's copy, through a hydrated cache.
            self.hydrate(key).await?;
            for &(s, r) in &places {
                self.hydrate_metadata(&manifests[s].repos[r]).await?;
            }
            let captures: Vec<(&str, &RepoCapture)> = places
                .iter()
                .map(|&(s, r)| (manifests[s].snapshot_key.as_str(), &manifests[s].repos[r]))
                .collect();
            let found = self.check_mirror(key, &captures).await?;
            for (&(s, r), problems) in places.iter().zip(found) {
                verdicts[s].repos[r].problems.extend(problems);
            }
        }
        for (s, manifest) in manifests.iter().enumerate() {
            for (r, repo) in manifest.repos.iter().enumerate() {
                if let Some(dir) = &repo.metadata_dir {
                    let problems = self.check_metadata(&manifest.snapshot_key, dir).await?;
                    verdicts[s].repos[r].problems.extend(problems);
                }
            }
        }
        Ok(verdicts)
    }

    async fn check_stored_manifest(&self, recorded: &Manifest) -> Result<Vec<Problem>> {
        let bytes = match self
            .storage()
            .get(&Engine::manifest_key(&recorded.snapshot_key))
            .await
        {
            Ok(bytes) => bytes,
            Err(e) if e.kind == StorageErrorKind::NotFound => {
                return Ok(vec![problem(
                    ProblemKind::ManifestMissing,
                    "the manifest file is missing from the storage",
                )]);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(stored) if &stored == recorded => Vec::new(),
            Ok(_) => vec![problem(
                ProblemKind::ManifestMismatch,
                "the stored manifest differs from the recorded one",
            )],
            Err(e) => vec![problem(
                ProblemKind::ManifestMismatch,
                format!("the stored manifest cannot be read: {e}"),
            )],
        })
    }

    /// The problems of each capture (same order) in mirror `key`.
    async fn check_mirror(
        &self,
        key: &str,
        captures: &[(&str, &RepoCapture)],
    ) -> Result<Vec<Vec<Problem>>> {
        let mut found: Vec<Vec<Problem>> = vec![Vec::new(); captures.len()];
        let mirror = self.mirror_path(key);
        // Exports and verification read; pruning (which deletes objects) waits for both.
        let locks = self.locks(key);
        let _gc = locks.gc.read().await;
        if !mirror.is_dir() {
            for problems in &mut found {
                problems.push(problem(
                    ProblemKind::MirrorMissing,
                    "the git mirror is gone",
                ));
            }
            return Ok(found);
        }
        let live = list_refs(self.git(), &mirror, &["refs/ghbs/snap/"]).await?;
        for ((snapshot, capture), problems) in captures.iter().zip(&mut found) {
            if let Some(p) = refs_problem(snapshot, capture, &live) {
                problems.push(p);
            }
        }
        let damaged = self.fsck(&mirror).await?;
        // Snapshots of one repository often share every tip: walk each set of tips once.
        let mut walks: BTreeMap<BTreeSet<&str>, Vec<Problem>> = BTreeMap::new();
        for ((_, capture), problems) in captures.iter().zip(&mut found) {
            let tips: BTreeSet<&str> = capture.refs.values().map(String::as_str).collect();
            if tips.is_empty() {
                continue;
            }
            if !walks.contains_key(&tips) {
                let walked = self.walk(&mirror, &tips, damaged.as_ref()).await?;
                walks.insert(tips.clone(), walked);
            }
            problems.extend(walks[&tips].iter().cloned());
        }
        // Damage no snapshot reaches (an object of a live ref, a broken pack) still says the
        // disk lost data: every snapshot of this mirror reports it.
        if let Some(damage) = &damaged {
            if found.iter().all(|p| {
                !p.iter().any(|p| {
                    matches!(
                        p.kind,
                        ProblemKind::ObjectsCorrupt | ProblemKind::ObjectsMissing
                    )
                })
            }) {
                for problems in &mut found {
                    problems.push(problem(
                        ProblemKind::ObjectsCorrupt,
                        format!("git fsck found damage in the mirror: {}", damage.summary),
                    ));
                }
            }
        }
        Ok(found)
    }

    /// `git fsck` of the whole mirror: `None` when it found no damage. Complaints about the
    /// form of otherwise intact objects (old commits with odd dates or modes, common on GitHub)
    /// are not damage and are ignored.
    async fn fsck(&self, mirror: &Path) -> Result<Option<Damage>> {
        let result = Git::new(self.git())
            .dir(mirror)
            .args(["fsck", "--no-dangling", "--no-reflogs", "--no-progress"])
            .report_stdout()
            .run()
            .await;
        let message = match result {
            Ok(_) => return Ok(None),
            Err(e) => e.message,
        };
        let lines: Vec<&str> = message.lines().filter(|l| is_damage(l)).collect();
        if lines.is_empty() {
            return Ok(None);
        }
        let objects = lines.iter().flat_map(|l| object_ids(l)).collect();
        Ok(Some(Damage {
            objects,
            summary: lines
                .iter()
                .take(3)
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join("; "),
        }))
    }

    /// Lists every object reachable from `tips`: missing ones, damaged ones (fsck's findings),
    /// or a walk that breaks on an unreadable commit or tree.
    async fn walk(
        &self,
        mirror: &Path,
        tips: &BTreeSet<&str>,
        damaged: Option<&Damage>,
    ) -> Result<Vec<Problem>> {
        let input: String = tips.iter().map(|t| format!("{t}\n")).collect();
        let walked = Git::new(self.git())
            .dir(mirror)
            .args([
                "rev-list",
                "--objects",
                "--no-object-names",
                "--missing=print",
                "--stdin",
            ])
            .stdin(input.into_bytes())
            .run()
            .await;
        let out = match walked {
            Ok(out) => out.text(),
            Err(e) => {
                return Ok(vec![problem(
                    ProblemKind::ObjectsCorrupt,
                    format!("the objects cannot be walked: {}", last_line(&e.message)),
                )]);
            }
        };
        let mut missing = Vec::new();
        let mut corrupt = Vec::new();
        for line in out.lines() {
            let line = line.trim();
            if let Some(id) = line.strip_prefix('?') {
                missing.push(id.to_owned());
            } else if damaged.is_some_and(|d| d.objects.contains(line)) {
                corrupt.push(line.to_owned());
            }
        }
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(problem(
                ProblemKind::ObjectsMissing,
                format!(
                    "{} missing object(s): {}",
                    missing.len(),
                    name_some(&missing)
                ),
            ));
        }
        if !corrupt.is_empty() {
            problems.push(problem(
                ProblemKind::ObjectsCorrupt,
                format!(
                    "{} damaged object(s): {}",
                    corrupt.len(),
                    name_some(&corrupt)
                ),
            ));
        }
        Ok(problems)
    }

    /// Every file in the snapshot's metadata folder `dir` (as the manifest names it) against
    /// its index.
    async fn check_metadata(&self, snapshot_key: &str, dir: &str) -> Result<Vec<Problem>> {
        let root = self.data_dir().join("metadata/snap").join(snapshot_key);
        let folder = if Path::new(dir).is_absolute() {
            PathBuf::from(dir)
        } else {
            self.data_dir().join(dir)
        };
        if !folder.starts_with(&root) || dir.split('/').any(|c| c == "..") {
            return Ok(vec![problem(
                ProblemKind::MetadataMismatch,
                "the manifest names a metadata folder outside the snapshot",
            )]);
        }
        let index = match tokio::fs::read(folder.join(INDEX_FILE)).await {
            Ok(bytes) => match serde_json::from_slice::<MetadataIndex>(&bytes) {
                Ok(index) => index,
                Err(e) => {
                    return Ok(vec![problem(
                        ProblemKind::MetadataMismatch,
                        format!("the metadata index cannot be read: {e}"),
                    )])
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(vec![problem(
                    ProblemKind::MetadataMissing,
                    "the metadata folder or its index is missing",
                )]);
            }
            Err(e) => return Err(EngineError::io("read metadata index", e)),
        };
        let mut problems = Vec::new();
        for (path, entry) in &index.files {
            let Some((hash, ext)) = entry.object.split_once('.') else {
                problems.push(problem(
                    ProblemKind::MetadataMismatch,
                    format!("{path}: no content hash in the index"),
                ));
                continue;
            };
            let file = folder.join(path);
            if path.split('/').any(|c| c == ".." || c.is_empty()) {
                problems.push(problem(
                    ProblemKind::MetadataMismatch,
                    format!("{path}: not a file name"),
                ));
                continue;
            }
            let actual = match ext {
                "bundle" => self.bundle_listing_hash(&file).await,
                _ => {
                    let file = file.clone();
                    blocking(move || sha256_file(&file)).await
                }
            };
            match actual {
                Ok(Some(actual)) if actual == hash => {}
                Ok(Some(actual)) => problems.push(problem(
                    ProblemKind::MetadataMismatch,
                    format!("{path}: content hash {actual} instead of {hash}"),
                )),
                Ok(None) => problems.push(problem(
                    ProblemKind::MetadataMissing,
                    format!("{path}: the file is missing"),
                )),
                Err(e) => problems.push(problem(
                    ProblemKind::MetadataMismatch,
                    format!("{path}: {}", last_line(&e.message)),
                )),
            }
        }
        Ok(problems)
    }

    /// The SHA-256 of a wiki bundle's ref listing (what its object is named after), read with
    /// `git bundle list-heads`; `None` when the file is missing.
    async fn bundle_listing_hash(&self, file: &Path) -> Result<Option<String>> {
        if !tokio::fs::try_exists(file).await.unwrap_or(false) {
            return Ok(None);
        }
        let out = Git::new(self.git())
            .dir(self.data_dir())
            .args(["bundle", "list-heads"])
            .arg(file)
            .run()
            .await?;
        let listing: BTreeMap<String, String> = crate::git::parse_ref_lines(&out.text())
            .into_iter()
            .filter(|(name, _)| name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
            .collect();
        let text: String = listing.iter().map(|(n, s)| format!("{s} {n}\n")).collect();
        Ok(Some(hex::encode(Sha256::digest(text.as_bytes()))))
    }
}

/// What `git fsck` reported as damage.
struct Damage {
    objects: BTreeSet<String>,
    summary: String,
}

/// The snapshot's refs in the mirror against the manifest's.
fn refs_problem(
    snapshot_key: &str,
    capture: &RepoCapture,
    live: &BTreeMap<String, String>,
) -> Option<Problem> {
    let prefix = format!("refs/ghbs/snap/{snapshot_key}/");
    let mut expected = BTreeMap::new();
    for (name, sha) in &capture.refs {
        match snapshot_ref(snapshot_key, name) {
            Some(target) => {
                expected.insert(target, sha);
            }
            None => {
                return Some(problem(
                    ProblemKind::RefsMismatch,
                    format!("the manifest holds {name:?}, which is not under refs/"),
                ))
            }
        }
    }
    let mut notes = Vec::new();
    for (target, sha) in &expected {
        let name = target.strip_prefix(&prefix).unwrap_or(target);
        match live.get(target) {
            None => notes.push(format!("{name} is missing")),
            Some(actual) if &actual != sha => {
                notes.push(format!("{name} points at {actual} instead of {sha}"))
            }
            Some(_) => {}
        }
    }
    for target in live.keys().filter(|r| r.starts_with(&prefix)) {
        if !expected.contains_key(target) {
            let name = target.strip_prefix(&prefix).unwrap_or(target);
            notes.push(format!("{name} is not in the manifest"));
        }
    }
    if notes.is_empty() {
        return None;
    }
    let more = notes.len().saturating_sub(NAMED_OBJECTS);
    let mut detail = notes
        .into_iter()
        .take(NAMED_OBJECTS)
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        detail.push_str(&format!(" and {more} more"));
    }
    Some(problem(
        ProblemKind::RefsMismatch,
        format!("snapshot refs differ from the manifest: {detail}"),
    ))
}

/// Lines of fsck's output that mean lost or damaged data (as opposed to complaints about the
/// form of intact objects, such as `badTimezone`).
fn is_damage(line: &str) -> bool {
    const MARKS: &[&str] = &[
        "missing ",
        "broken link",
        "corrupt",
        "hash mismatch",
        "sha1 mismatch",
        "inflate",
        "unable to unpack",
        "bad object",
        "packfile",
        "index file",
        "invalid sha1 pointer",
        "unreadable",
    ];
    let lower = line.to_ascii_lowercase();
    MARKS.iter().any(|m| lower.contains(m))
}

/// Hex object ids (40 or 64 digits) in a line.
fn object_ids(line: &str) -> Vec<String> {
    line.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 40 || w.len() == 64)
        .map(str::to_ascii_lowercase)
        .collect()
}

fn name_some(ids: &[String]) -> String {
    let mut text = ids
        .iter()
        .take(NAMED_OBJECTS)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > NAMED_OBJECTS {
        text.push_str(", …");
    }
    text
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
}

/// Hex SHA-256 of a file; `None` when it does not exist.
fn sha256_file(path: &Path) -> Result<Option<String>> {
    match crate::fsutil::sha256_file(path) {
        Ok((_, digest)) => Ok(Some(hex::encode(digest))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::io("read metadata file", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsck_damage_lines_are_told_from_format_complaints() {
        assert!(is_damage(
            "missing blob ce013625030ba8dba906f756967f9e9ca394464a"
        ));
        assert!(is_damage(
            "error: ce013625030ba8dba906f756967f9e9ca394464a: object corrupt or missing: ./objects/ce/0136"
        ));
        assert!(is_damage(
            "broken link from    tree 87c9da4bbac768329fcff3d3fc80964f5f574e02"
        ));
        assert!(!is_damage(
            "error in commit 87c9da4bbac768329fcff3d3fc80964f5f574e02: badTimezone: invalid author/committer line - bad time zone"
        ));
        assert_eq!(
            object_ids("to    blob ce013625030ba8dba906f756967f9e9ca394464a"),
            vec!["ce013625030ba8dba906f756967f9e9ca394464a"]
        );
    }
}
