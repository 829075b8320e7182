//! The backup engine: bare git mirrors updated incrementally, snapshots as refs under
//! `refs/ghbs/snap/{snapshot}/…` inside each mirror (so snapshots share git's object store and a
//! force-push upstream cannot drop what an older snapshot captured), exports (bundle, tar.gz,
//! zip, and a static HTML site), restore by push, and pruning.
//!
//! Layout under `data_dir`:
//! - `mirrors/{key}.git` — one bare mirror per repository (`key` is an internal id, `[a-z0-9_-]`).
//! - `manifests/{snapshot}.json` — what a snapshot holds, one whole-object put at commit, in the
//!   [`Storage`] (by default `file://{data_dir}`, i.e. this very path; or an S3 bucket).
//! - `artifacts/{snapshot}/…` — cached downloads, each published by rename when complete, each
//!   with its SHA-256 in `{file}.sha256`.
//! - `metadata/` — issues, pull requests, ... as JSON and wiki bundles, shared between
//!   snapshots through hard links (see the `metadata` module).
//! - `pending/{snapshot}` — marks a snapshot committed but not yet confirmed by the caller (see
//!   the `pending` module).
//! - `tmp/` — scratch repositories and half-built artifacts; never read as results.
//! - `askpass.sh` — answers git's credential prompts from `$GHBS_GIT_TOKEN`.
//!
//! Concurrency: one [`Engine`] per `data_dir`. Operations that change a mirror (fetch, commit,
//! drop, remove) are serialised per mirror; exports run concurrently with fetches but not with
//! the garbage collection of a drop.

mod error;
mod export;
mod fetch;
mod fsutil;
mod git;
mod metadata;
mod metadata_sync;
mod packs;
mod pending;
mod pull_commits;
mod refs;
mod restore;
mod site_export;
mod snapshot;
pub mod storage;
mod storage_gc;
mod verify;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::{is_storage_full, EngineError, DISK_FULL};
pub use metadata::{MetadataEntry, MetadataFolder, MetadataIndex, MetadataWriter, INDEX_FILE};
/// Retry policy of a [`Storage`] on S3 (object_store's), so callers need not depend on it.
pub use object_store::RetryConfig;
pub use packs::{cache_counts, Hydration, PackIndex};
pub use restore::{restore, restore_with, RestoreOptions};
pub use storage::{Storage, StorageError, StorageErrorKind, StorageLocation, MULTIPART_THRESHOLD};
pub use storage_gc::StorageGc;
pub use verify::{Problem, ProblemKind, RepoVerdict, SnapshotVerdict};

use error::Result;
use git::GitEnv;

/// Where the engine keeps its data and how it runs git.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// Upper bound for any single git command; the whole process tree is killed past it.
    pub git_timeout: Duration,
    /// Extra CA bundle for HTTPS remotes (GitHub Enterprise with a private CA).
    pub ca_cert: Option<PathBuf>,
    /// Testing hook: while this file exists the engine behaves as on a full disk (fetches fail
    /// with ENOSPC, [`Engine::free_space`] answers 0), so tests run without a small filesystem.
    pub disk_full_flag: Option<PathBuf>,
    /// Where manifests go (see the `storage` module); `None` is `file://{data_dir}`, today's
    /// layout. Git mirrors, metadata, artifacts, markers and scratch stay under `data_dir`.
    pub storage: Option<Storage>,
    /// How long an unreferenced object stays in shared storage before the garbage collection
    /// may remove it ([`Engine::gc_storage`]); a run refreshes any object it reuses that is
    /// older than half of it, so this is also the longest a commit may take.
    pub storage_gc_grace: Duration,
}

/// [`EngineConfig::storage_gc_grace`] unless configured: a day.
pub const DEFAULT_STORAGE_GC_GRACE: Duration = Duration::from_secs(24 * 3600);

impl EngineConfig {
    /// A config with the default one-hour git timeout and no extra CA.
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            git_timeout: Duration::from_secs(3600),
            ca_cert: None,
            disk_full_flag: None,
            storage: None,
            storage_gc_grace: DEFAULT_STORAGE_GC_GRACE,
        }
    }
}

/// A repository to mirror.
#[derive(Clone, Debug)]
pub struct RepoSource {
    /// Internal id, only `[a-z0-9_-]` (e.g. `r42`); the mirror is `data_dir/mirrors/{key}.git`.
    pub key: String,
    pub full_name: String,
    /// Clean URL, without credentials; set as the mirror's `origin` at every fetch.
    pub clone_url: String,
    /// Also mirror `refs/pull/*`.
    pub pull_refs: bool,
}

/// The outcome of a fetch.
#[derive(Clone, Debug, PartialEq)]
pub struct Fetched {
    /// refname -> sha for `refs/heads/*`, `refs/tags/*` (and `refs/pull/*` when asked for).
    pub refs: BTreeMap<String, String>,
    /// Size of the packs this fetch added.
    pub bytes_fetched: u64,
}

/// What one repository contributed to a snapshot.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RepoCapture {
    pub key: String,
    pub full_name: String,
    pub default_branch: Option<String>,
    pub refs: BTreeMap<String, String>,
    /// Folder of metadata JSON files for this repository in this snapshot: relative to
    /// `data_dir` (or absolute); exports include it.
    pub metadata_dir: Option<String>,
    /// Set when this snapshot's run could not capture the repository (its fetch failed, or it
    /// is gone upstream): the refs and metadata are the last good copy, carried forward from an
    /// earlier snapshot. Retention counts only captures without it as a repository's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<Carried>,
}

/// Where a carried-forward repository's copy comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Carried {
    /// The snapshot whose run captured these refs (the original capture, however many
    /// snapshots carried it since).
    pub captured_in: String,
    /// When that run captured them.
    pub captured_at: chrono::DateTime<chrono::Utc>,
}

/// What a snapshot holds; the lead stores it as JSON in the database, the engine also keeps a
/// copy in `data_dir/manifests/`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Manifest {
    /// A uuid.
    pub snapshot_key: String,
    pub repos: Vec<RepoCapture>,
}

/// A finished download, stable on disk (safe for Range requests and resumes).
#[derive(Clone, Debug, PartialEq)]
pub struct Artifact {
    pub path: PathBuf,
    pub size: u64,
    /// Suggested download name, e.g. `owner-name-2026-11-26.bundle`.
    pub file_name: String,
    pub content_type: &'static str,
    /// SHA-256 of the file, computed once when it was built (kept in `{path}.sha256`).
    pub sha256: [u8; 32],
}

impl Artifact {
    /// The digest as lower-case hex (what `sha256sum` prints).
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// A strong entity tag for HTTP: the quoted hex digest, so equal tags mean equal bytes.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.sha256_hex())
    }
}

/// The engine; cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: EngineConfig,
    git: GitEnv,
    storage: Storage,
    locks: Mutex<HashMap<String, Arc<MirrorLocks>>>,
    /// One builder at a time per artifact file, so an artifact and its digest file always belong
    /// together.
    builds: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// Manifests read from shared storage by hydration, by snapshot key. A manifest is written
    /// once and never changed, so a cached one is never stale; hydrating many repositories of
    /// one account job would otherwise read the same few manifests once per repository.
    /// Bounded by [`MANIFEST_CACHE_ENTRIES`] (emptied when full: simple, and rare).
    manifests: Mutex<HashMap<String, Arc<Manifest>>>,
    /// Pack objects this engine uploaded right after a fetch (`preupload_packs`) and when; the
    /// commit that lists them skips uploading them again and removes the entry.
    uploads: Mutex<HashMap<String, std::time::Instant>>,
}

/// Manifests kept by [`Inner::manifests`].
const MANIFEST_CACHE_ENTRIES: usize = 256;

/// Per-mirror locks: `ops` serialises writers; `gc` is taken exclusively by object pruning and
/// shared by exports, whose scratch repositories borrow the mirror's objects.
#[derive(Default)]
pub(crate) struct MirrorLocks {
    pub ops: tokio::sync::Mutex<()>,
    pub gc: Arc<tokio::sync::RwLock<()>>,
}

impl Engine {
    /// Creates the directory layout and the askpass script, and clears scratch space left by a
    /// previous process.
    pub fn new(cfg: EngineConfig) -> Result<Engine, EngineError> {
        let data_dir = &cfg.data_dir;
        for sub in ["mirrors", "manifests", "artifacts", "tmp"] {
            std::fs::create_dir_all(data_dir.join(sub)).map_err(|e| {
                EngineError::io(format!("create {}", data_dir.join(sub).display()), e)
            })?;
        }
        let data_dir =
            std::fs::canonicalize(data_dir).map_err(|e| EngineError::io("resolve data_dir", e))?;
        let askpass = git::install_askpass(&data_dir)?;
        // Scratch entries belong to operations of a process that is gone (one engine per dir).
        if let Ok(entries) = std::fs::read_dir(data_dir.join("tmp")) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
        let git = GitEnv {
            askpass: Some(askpass),
            ca_cert: cfg.ca_cert.clone(),
            timeout: Some(cfg.git_timeout),
            wrapper: git::death_wrapper(),
        };
        let storage = match &cfg.storage {
            Some(storage) => storage.clone(),
            None => Storage::local(&data_dir)?,
        };
        let cfg = EngineConfig { data_dir, ..cfg };
        Ok(Engine {
            inner: Arc::new(Inner {
                cfg,
                git,
                storage,
                locks: Mutex::new(HashMap::new()),
                builds: Mutex::new(HashMap::new()),
                manifests: Mutex::new(HashMap::new()),
                uploads: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The (canonical) data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.cfg.data_dir
    }

    /// `data_dir/mirrors/{key}.git` (the key must already be validated).
    pub(crate) fn mirror_path(&self, key: &str) -> PathBuf {
        self.data_dir().join("mirrors").join(format!("{key}.git"))
    }

    /// The storage manifests live in.
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// Whether the storage answers (for a readiness probe): `Ok` or a classified error.
    pub async fn storage_ready(&self) -> Result<(), EngineError> {
        self.inner.storage.ready().await.map_err(Into::into)
    }

    /// The storage key of a snapshot's manifest (the key must already be validated).
    pub(crate) fn manifest_key(snapshot_key: &str) -> String {
        format!("manifests/{snapshot_key}.json")
    }

    pub(crate) fn artifacts_dir(&self, snapshot_key: &str) -> PathBuf {
        self.data_dir().join("artifacts").join(snapshot_key)
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.data_dir().join("tmp")
    }

    /// A fresh scratch path under `data_dir/tmp` (not created).
    pub(crate) fn scratch(&self, prefix: &str) -> PathBuf {
        self.tmp_dir()
            .join(format!("{prefix}-{}", uuid::Uuid::new_v4()))
    }

    /// Bytes an unprivileged writer may still use on the data folder's filesystem.
    pub fn free_space(&self) -> std::io::Result<u64> {
        if self.disk_full_injected() {
            return Ok(0);
        }
        let st = rustix::fs::statvfs(self.data_dir())?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// "disk full on the server: N MiB free in DATA_DIR": the run's owner learns what happened
    /// and how bad it is, never where the data folder is.
    pub fn disk_full_message(&self) -> String {
        match self.free_space() {
            Ok(free) => format!("{DISK_FULL}: {} MiB free in DATA_DIR", free >> 20),
            Err(_) => DISK_FULL.to_owned(),
        }
    }

    /// Gives a full-disk error the free space (operations call this on what they return).
    pub(crate) fn explain(&self, e: EngineError) -> EngineError {
        if e.kind == ghbs_core::FailureKind::StorageFull {
            EngineError::new(e.kind, self.disk_full_message())
        } else {
            e
        }
    }

    pub(crate) fn disk_full_injected(&self) -> bool {
        self.inner
            .cfg
            .disk_full_flag
            .as_deref()
            .is_some_and(Path::exists)
    }

    pub(crate) fn git(&self) -> &GitEnv {
        &self.inner.git
    }

    pub(crate) fn build_lock(&self, artifact: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.inner.builds.lock().unwrap_or_else(|e| e.into_inner());
        // Forget locks nobody holds any more (the map only ever holds artifacts being built).
        map.retain(|_, lock| Arc::strong_count(lock) > 1);
        map.entry(artifact.to_path_buf()).or_default().clone()
    }

    pub(crate) fn manifest_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Manifest>>> {
        self.inner
            .manifests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn uploads(&self) -> std::sync::MutexGuard<'_, HashMap<String, std::time::Instant>> {
        self.inner.uploads.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn locks(&self, key: &str) -> Arc<MirrorLocks> {
        let mut map = self.inner.locks.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.to_owned()).or_default().clone()
    }
}

/// The ref under which a snapshot keeps an original ref: `refs/heads/main` of snapshot `S`
/// becomes `refs/ghbs/snap/S/heads/main`.
pub(crate) fn snapshot_ref(snapshot_key: &str, refname: &str) -> Option<String> {
    refname
        .strip_prefix("refs/")
        .map(|rest| format!("refs/ghbs/snap/{snapshot_key}/{rest}"))
}
