//! Shared fixtures: a GitHub stand-in with one user, an engine on a temporary data dir, and
//! helpers that inspect results with the real git CLI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ghbs_core::Secret;
use ghbs_engine::{Engine, EngineConfig, Fetched, Manifest, RepoCapture, RepoSource, Storage};
use ghbs_testkit::{GitHubStandIn, RepoOptions};

pub const OWNER: &str = "octo";

pub struct World {
    pub gh: GitHubStandIn,
    pub token: Secret,
    pub dir: tempfile::TempDir,
    pub engine: Engine,
}

impl World {
    pub async fn start() -> World {
        World::start_with_storage(None).await
    }

    /// Like [`World::start`] with manifests in the given storage.
    pub async fn start_with_storage(storage: Option<Storage>) -> World {
        let gh = GitHubStandIn::start().await;
        let (_, token) = gh.add_user(OWNER);
        let dir = tempfile::Builder::new()
            .prefix("ghbs-engine-test-")
            .tempdir()
            .unwrap();
        let engine = Engine::new(EngineConfig {
            data_dir: dir.path().to_path_buf(),
            git_timeout: Duration::from_secs(300),
            ca_cert: None,
            disk_full_flag: None,
            storage,
            storage_gc_grace: ghbs_engine::DEFAULT_STORAGE_GC_GRACE,
        })
        .expect("engine");
        World {
            gh,
            token: Secret::new(token),
            dir,
            engine,
        }
    }

    /// Creates `octo/{name}` (private) with `main` holding one commit.
    pub fn repo(&self, name: &str) -> String {
        self.gh.create_repo(
            OWNER,
            name,
            RepoOptions {
                private: true,
                ..Default::default()
            },
        );
        let full = format!("{OWNER}/{name}");
        self.gh
            .commit(&full, "main", &[("README.md", "hello\n")], "Initial commit");
        full
    }

    pub fn source(&self, key: &str, full_name: &str) -> RepoSource {
        RepoSource {
            key: key.to_owned(),
            full_name: full_name.to_owned(),
            clone_url: self.gh.clone_url(full_name),
            pull_refs: false,
        }
    }

    pub async fn fetch(&self, key: &str, full_name: &str) -> Fetched {
        self.engine
            .fetch(&self.source(key, full_name), Some(&self.token))
            .await
            .expect("fetch")
    }

    /// Fetches and commits a one-repository snapshot of what was fetched.
    pub async fn snapshot(&self, key: &str, full_name: &str) -> Manifest {
        let fetched = self.fetch(key, full_name).await;
        let manifest = manifest_of(vec![capture(key, full_name, fetched.refs)]);
        self.engine
            .commit_snapshot(&manifest)
            .await
            .expect("commit snapshot");
        manifest
    }

    pub fn mirror(&self, key: &str) -> PathBuf {
        self.engine
            .data_dir()
            .join("mirrors")
            .join(format!("{key}.git"))
    }

    pub fn scratch(&self) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("ghbs-engine-out-")
            .tempdir()
            .unwrap()
    }
}

pub fn engine_with_timeout(dir: &Path, git_timeout: Duration) -> Engine {
    Engine::new(EngineConfig {
        data_dir: dir.to_path_buf(),
        git_timeout,
        ca_cert: None,
        disk_full_flag: None,
        storage: None,
        storage_gc_grace: ghbs_engine::DEFAULT_STORAGE_GC_GRACE,
    })
    .expect("engine")
}

pub fn capture(key: &str, full_name: &str, refs: BTreeMap<String, String>) -> RepoCapture {
    RepoCapture {
        key: key.to_owned(),
        full_name: full_name.to_owned(),
        default_branch: Some("main".to_owned()),
        refs,
        metadata_dir: None,
        carried: None,
    }
}

pub fn manifest_of(repos: Vec<RepoCapture>) -> Manifest {
    Manifest {
        snapshot_key: uuid::Uuid::new_v4().to_string(),
        repos,
    }
}

/// `git` in `dir` (hermetic, panics on failure), stdout trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    ghbs_testkit::git(dir, args)
}

/// Branches and tags of a repository on disk.
pub use ghbs_testkit::refs_of;

/// Only the branches and tags of a ref map.
pub fn heads_and_tags(refs: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    refs.iter()
        .filter(|(k, _)| k.starts_with("refs/heads/") || k.starts_with("refs/tags/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `git clone --mirror` of a bundle or repository into `into/name`; returns the clone and
/// checks it with `git fsck`.
pub fn clone_mirror(source: &Path, into: &Path, name: &str) -> PathBuf {
    let dest = into.join(name);
    git(
        into,
        &[
            "clone",
            "--quiet",
            "--mirror",
            source.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
    );
    git(&dest, &["fsck", "--no-dangling", "--no-progress"]);
    dest
}

/// Every file under `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Extracts a .tar.gz into `into`.
pub fn untar(archive: &Path, into: &Path) {
    let file = std::fs::File::open(archive).unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(into)
        .unwrap();
}

/// Unpacks an uncompressed tar (the per-repository archives of account snapshots).
pub fn unpack_plain_tar(archive: &Path, into: &Path) {
    let file = std::fs::File::open(archive).unwrap();
    tar::Archive::new(file).unpack(into).unwrap();
}

/// The SHA-256 of a file's bytes, as hex.
pub fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// Reads a zip archive's entries (name -> content) through its central directory; enough of the
/// format for what `git archive` writes (stored or deflated entries).
pub fn read_zip(path: &Path) -> BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let data = std::fs::read(path).unwrap();
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u32_at =
        |o: usize| u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]) as usize;
    let eocd = (0..=data.len() - 22)
        .rev()
        .find(|&o| u32_at(o) == 0x0605_4b50)
        .expect("zip end record");
    let count = u16_at(eocd + 10);
    let mut at = u32_at(eocd + 16);
    let mut out = BTreeMap::new();
    for _ in 0..count {
        assert_eq!(u32_at(at), 0x0201_4b50, "central directory entry");
        let method = u16_at(at + 10);
        let csize = u32_at(at + 20);
        let (name_len, extra_len, comment_len) =
            (u16_at(at + 28), u16_at(at + 30), u16_at(at + 32));
        let local = u32_at(at + 42);
        let name = String::from_utf8(data[at + 46..at + 46 + name_len].to_vec()).unwrap();
        let start = local + 30 + u16_at(local + 26) + u16_at(local + 28);
        let raw = &data[start..start + csize];
        let content = match method {
            0 => raw.to_vec(),
            8 => {
                let mut v = Vec::new();
                flate2::read::DeflateDecoder::new(raw)
                    .read_to_end(&mut v)
                    .unwrap();
                v
            }
            m => panic!("unexpected zip method {m}"),
        };
        out.insert(name, content);
        at += 46 + name_len + extra_len + comment_len;
    }
    out
}
