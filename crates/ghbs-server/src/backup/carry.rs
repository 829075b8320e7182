//! The last good copy of a repository a run could not capture.
//!
//! A repository whose fetch failed, or that is gone upstream (deleted, made private,
//! transferred, or now outside the job's filters), is not left out of the run's snapshot: the
//! snapshot carries forward the refs and metadata of the newest earlier snapshot that holds it,
//! marked with when they were captured. So the newest snapshot always holds every repository
//! the job knows, downloads and restores of it are complete, and retention (which also pins
//! each repository's newest own capture, see `retention`) never ages a repository out just
//! because GitHub stopped serving it.

use chrono::{DateTime, Utc};
use ghbs_engine::{Carried, Engine, Manifest, RepoCapture};
use ghbs_store::{Store, StoreResult};
use ghbs_wire::{CaptureState, SnapshotRepo};

/// A job's recorded snapshots, newest first, with their manifests (rows whose manifest cannot be
/// read are skipped: they cannot be carried from).
pub(super) struct History {
    snapshots: Vec<(DateTime<Utc>, Manifest)>,
}

/// Where a repository's last good copy is.
pub(super) struct LastCopy<'a> {
    /// The snapshot to copy from (its refs exist in the mirror, its metadata folder on disk).
    from: &'a Manifest,
    capture: &'a RepoCapture,
    /// The original capture (the same as `from` unless `from` itself carried it).
    pub carried: Carried,
}

impl LastCopy<'_> {
    /// The repository's name when this copy was captured.
    pub fn capture_name(&self) -> &str {
        &self.capture.full_name
    }

    /// The commits (and tags) its refs point at.
    pub fn shas(&self) -> impl Iterator<Item = &String> {
        self.capture.refs.values()
    }

    /// The repository's mirror key.
    pub fn key(&self) -> &str {
        &self.capture.key
    }
}

impl History {
    pub async fn load(store: &dyn Store, job_id: i64) -> StoreResult<History> {
        let rows = store.job_snapshots(job_id).await?;
        let mut snapshots: Vec<(DateTime<Utc>, Manifest)> = rows
            .into_iter()
            .filter_map(|row| {
                let manifest = serde_json::from_value(row.manifest).ok()?;
                Some((row.created_at, manifest))
            })
            .collect();
        snapshots.sort_by_key(|s| std::cmp::Reverse(s.0));
        Ok(History { snapshots })
    }

    /// The newest snapshot holding repository `key` (mirror key), and when its refs were captured.
    pub fn last_copy(&self, key: &str) -> Option<LastCopy<'_>> {
        self.snapshots.iter().find_map(|(created_at, manifest)| {
            let capture = manifest.repos.iter().find(|r| r.key == key)?;
            let carried = capture.carried.clone().unwrap_or_else(|| Carried {
                captured_in: manifest.snapshot_key.clone(),
                captured_at: *created_at,
            });
            Some(LastCopy {
                from: manifest,
                capture,
                carried,
            })
        })
    }
}

/// Why a repository is carried forward (or failed with nothing to carry).
pub(super) enum Missing {
    /// This run's fetch failed: the error, phrased for a person.
    Failed(String),
    /// Not on GitHub as this job sees it, since then.
    Gone(DateTime<Utc>),
}

impl Missing {
    fn status(&self) -> String {
        match self {
            Missing::Failed(error) => error.clone(),
            Missing::Gone(since) => format!("gone upstream since {}", since.format("%Y-%m-%d")),
        }
    }

    fn gone_since(&self) -> Option<DateTime<Utc>> {
        match self {
            Missing::Failed(_) => None,
            Missing::Gone(since) => Some(*since),
        }
    }
}

/// The run's line for a repository it could not capture.
pub(super) fn problem_line(full_name: &str, why: &Missing, copy: Option<&Carried>) -> String {
    let kept = match copy {
        Some(c) => format!(
            "its copy of {} is kept",
            c.captured_at.format("%Y-%m-%d %H:%M UTC")
        ),
        None => "no earlier copy exists".to_owned(),
    };
    match why {
        // Git's errors span lines; the run prints one line per repository.
        Missing::Failed(error) => format!(
            "{full_name}: not captured, {kept}: {}",
            error
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" / ")
        ),
        Missing::Gone(since) => format!(
            "{full_name}: gone upstream since {} (deleted, made private, transferred, or excluded \
             by the job's filters); {kept} until `job forget-repo` removes it",
            since.format("%Y-%m-%d")
        ),
    }
}

/// Carries `copy` into snapshot `snapshot_key`: the same refs (the engine records them under
/// the new snapshot, so they stay reachable whatever happens to the old one) and a hard-linked
/// copy of its metadata folder.
pub(super) async fn carry(
    engine: &Engine,
    snapshot_key: &str,
    full_name: &str,
    copy: &LastCopy<'_>,
    why: &Missing,
) -> Result<(RepoCapture, SnapshotRepo), ghbs_engine::EngineError> {
    let folder = match copy.capture.metadata_dir {
        Some(_) => {
            engine
                .carry_metadata(&copy.from.snapshot_key, snapshot_key, &copy.capture.key)
                .await?
        }
        None => None,
    };
    let summary = SnapshotRepo {
        full_name: full_name.to_owned(),
        default_branch: copy.capture.default_branch.clone(),
        refs: copy.capture.refs.len() as u64,
        status: why.status(),
        metadata: folder
            .as_ref()
            .map(|f| f.counts.clone())
            .unwrap_or_default(),
        capture: CaptureState::CarriedForward,
        captured_at: Some(copy.carried.captured_at),
        gone_since: why.gone_since(),
    };
    let capture = RepoCapture {
        key: copy.capture.key.clone(),
        full_name: full_name.to_owned(),
        default_branch: copy.capture.default_branch.clone(),
        refs: copy.capture.refs.clone(),
        metadata_dir: folder.map(|f| f.dir),
        carried: Some(copy.carried.clone()),
    };
    Ok((capture, summary))
}

/// The summary of a repository that failed with nothing earlier to carry.
pub(super) fn failed_summary(
    full_name: &str,
    default_branch: Option<String>,
    why: &Missing,
) -> SnapshotRepo {
    SnapshotRepo {
        full_name: full_name.to_owned(),
        default_branch,
        refs: 0,
        status: why.status(),
        capture: CaptureState::Failed,
        gone_since: why.gone_since(),
        ..SnapshotRepo::default()
    }
}
