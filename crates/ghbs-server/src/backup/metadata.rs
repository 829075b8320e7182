//! One repository's metadata for one snapshot: issues with comments, pull requests with their
//! reviews, review comments and commit lists, labels, milestones, releases, and the wiki as a git
//! bundle. Layout: docs/metadata.md.
//!
//! Incremental: the first page of the issue list sorted by most recent update is asked
//! conditionally each run; when GitHub answers 304 nothing changed and the whole repository costs
//! no counted request. Otherwise only items whose listing differs from the previous snapshot's
//! (compared by a hash of the listed item) are fetched again, and a `since` query over the
//! checkpoint reaches further back when more than one page changed. Everything else is carried
//! over from the previous snapshot's folder (hard links, no copy). Every
//! [`FULL_SYNC_EVERY`]th run fetches everything again (conditionally, so unchanged items cost a
//! 304), which catches what `since` misses (edited comments, deleted issues).
//!
//! The checkpoint only moves when every changed item was stored; it is saved by the caller after
//! the snapshot row exists. A partial failure keeps what was fetched and the old checkpoint, so
//! the next run fetches what was missed.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use ghbs_core::{FailureKind, Secret};
use ghbs_engine::{Engine, MetadataIndex, MetadataWriter, RepoSource};
use ghbs_github::{GhRepo, GitHubError, Session};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::github_failure;
use crate::scheduler::ExecOutcome;

/// Metadata is fetched in full (conditionally) at least every this many runs.
pub const FULL_SYNC_EVERY: u32 = 7;

/// Issues listed per page; the first page doubles as the "anything changed?" probe.
const PAGE: usize = 100;

/// Items whose details are fetched at the same time (each pull request is five requests).
const ITEM_CONCURRENCY: usize = 4;

/// Small lists stored whole, each fetched with its ETag every run: (file, API path, kind).
const LISTS: [(&str, &str, &str); 3] = [
    ("labels.json", "labels", "labels"),
    ("milestones.json", "milestones?state=all", "milestones"),
    ("releases.json", "releases", "releases"),
];

const WIKI_FILE: &str = "wiki.bundle";

/// What a repository remembers about its metadata between runs (part of the job-repo state).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(super) struct MetaState {
    /// The snapshot whose folder the next run carries unchanged items from.
    pub base: Option<String>,
    /// Latest `updated_at` among stored issues and pull requests (RFC 3339); `None` forces a
    /// full sync.
    pub since: Option<String>,
    pub runs_since_full: u32,
}

/// What to capture for one repository.
pub(super) struct Job<'a> {
    pub engine: &'a Engine,
    pub session: &'a Session,
    pub token: &'a Secret,
    pub gh: &'a GhRepo,
    /// The repository's mirror key.
    pub key: &'a str,
    pub snapshot_key: &'a str,
    pub metadata: bool,
    pub wiki: bool,
}

/// The outcome for one repository.
pub(super) struct Captured {
    /// For `RepoCapture::metadata_dir`.
    pub dir: String,
    pub counts: BTreeMap<String, u64>,
    /// State to save once the snapshot row exists.
    pub state: MetaState,
    /// What could not be fetched this time (already carried over from the previous snapshot).
    pub problems: Vec<String>,
    /// Bytes the wiki fetch added.
    pub bytes: u64,
}

/// The `{key}-wiki` mirror of a repository's wiki.
pub fn wiki_key(key: &str) -> String {
    format!("{key}-wiki")
}

fn internal(e: &dyn std::fmt::Display) -> ExecOutcome {
    tracing::error!(error = %e, "storing metadata failed");
    ExecOutcome::failed_as(
        FailureKind::Transient,
        "the server could not store this backup's metadata (disk error); it will be retried",
    )
}

/// Collects problems and carries base entries over when a part cannot be fetched.
struct Capture<'a> {
    job: &'a Job<'a>,
    writer: MetadataWriter,
    base: MetadataIndex,
    problems: Vec<String>,
    /// Every changed item was stored: the checkpoint may move.
    complete: bool,
    /// A carried object was missing: the next run must sync in full.
    lost: bool,
}

pub(super) async fn capture(job: &Job<'_>, prev: &MetaState) -> Result<Captured, ExecOutcome> {
    let base = match &prev.base {
        Some(snapshot) => match job.engine.metadata_index(snapshot, job.key).await {
            Ok(index) => index,
            Err(e) => {
                tracing::warn!(error = %e, "previous metadata unreadable; syncing in full");
                None
            }
        },
        None => None,
    };
    let has_base = base.is_some();
    let writer = job
        .engine
        .metadata_writer(job.snapshot_key, job.key)
        .await
        .map_err(|e| internal(&e))?;
    let mut c = Capture {
        job,
        writer,
        base: base.unwrap_or_default(),
        problems: Vec::new(),
        complete: true,
        lost: false,
    };
    let mut state = prev.clone();
    if job.metadata {
        let full = !has_base || prev.since.is_none() || prev.runs_since_full + 1 >= FULL_SYNC_EVERY;
        c.lists().await?;
        let since = c.issues(full, prev.since.as_deref()).await?;
        if c.complete {
            state.since = since;
            state.runs_since_full = if full { 0 } else { prev.runs_since_full + 1 };
        }
    } else {
        state.since = None;
        state.runs_since_full = 0;
    }
    let bytes = if job.wiki && job.gh.has_wiki {
        c.wiki().await?
    } else {
        0
    };
    if c.lost {
        state.since = None;
    }
    let folder = c.writer.finish().await.map_err(|e| internal(&e))?;
    state.base = Some(job.snapshot_key.to_owned());
    Ok(Captured {
        dir: folder.dir,
        counts: folder.counts,
        state,
        problems: c.problems,
        bytes,
    })
}

/// GitHub says the feature is off or the thing vanished: 404, or 410 for disabled issues.
fn gone(e: &GitHubError) -> bool {
    e.kind == FailureKind::NotFound || e.status == Some(410)
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, u64> {
    pairs
        .iter()
        .map(|(k, n)| ((*k).to_owned(), *n as u64))
        .collect()
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn updated_at(item: &Value) -> Option<DateTime<Utc>> {
    item["updated_at"].as_str().and_then(parse_time)
}

/// The change marker of a listed issue: any edit GitHub shows in the listing changes it, even
/// one within the same second as the previous backup.
fn version_of(item: &Value) -> String {
    let bytes = serde_json::to_vec(item).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

impl Capture<'_> {
    fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}/{rest}", self.job.gh.full_name)
    }

    /// Records a failed part and keeps the previous snapshot's `carry` files instead. A rejected
    /// token fails the whole run.
    async fn failed(
        &mut self,
        e: GitHubError,
        what: &str,
        carry: &[&str],
    ) -> Result<(), ExecOutcome> {
        if e.kind == FailureKind::Unauthorized {
            return Err(github_failure(e, what));
        }
        tracing::warn!(error = %e, repo = %self.job.gh.full_name, "metadata part failed");
        self.problems.push(format!("{what}: {}", e.message));
        self.complete = false;
        for path in carry {
            self.carry(path).await?;
        }
        Ok(())
    }

    async fn carry(&mut self, path: &str) -> Result<(), ExecOutcome> {
        let Some(entry) = self.base.files.get(path) else {
            return Ok(());
        };
        let carried = self
            .writer
            .carry(path, entry)
            .await
            .map_err(|e| internal(&e))?;
        if !carried {
            tracing::warn!(path, "metadata object missing; the next run syncs in full");
            self.lost = true;
        }
        Ok(())
    }

    /// Labels, milestones and releases: whole lists, conditional requests.
    async fn lists(&mut self) -> Result<(), ExecOutcome> {
        for (file, rest, kind) in LISTS {
            let path = self.repo_path(rest);
            match self.job.session.get_json_pages(&path).await {
                Ok(f) => {
                    let n = f.value.len();
                    self.writer
                        .put_json(file, &Value::Array(f.value), None, counts(&[(kind, n)]))
                        .await
                        .map_err(|e| internal(&e))?;
                }
                Err(e) if gone(&e) => {}
                Err(e) => self.failed(e, &format!("listing {kind}"), &[file]).await?,
            }
        }
        Ok(())
    }

    /// The issues (pull requests included) that changed, or all of them on a full sync. Returns
    /// the new checkpoint.
    async fn issues(
        &mut self,
        full: bool,
        since: Option<&str>,
    ) -> Result<Option<String>, ExecOutcome> {
        let mut checkpoint = since.and_then(parse_time);
        let listed = match self.list_issues(full, since).await {
            Ok(items) => items,
            Err(e) if gone(&e) => Some(Vec::new()),
            Err(e) => {
                self.failed(e, "listing issues", &[]).await?;
                None
            }
        };
        // Newest first; an item met twice (it moved while pages were read) keeps its first,
        // newest listing.
        let mut items: BTreeMap<u64, Value> = BTreeMap::new();
        for item in listed.iter().flatten() {
            let Some(number) = item["number"].as_u64() else {
                continue;
            };
            if let Some(t) = updated_at(item) {
                checkpoint = Some(checkpoint.map_or(t, |c| c.max(t)));
            }
            items.entry(number).or_insert_with(|| item.clone());
        }
        let mut paths = BTreeSet::new();
        let mut todo = Vec::new();
        for (number, item) in items {
            let pull = item.get("pull_request").is_some_and(|v| !v.is_null());
            let path = format!("{}/{number}.json", if pull { "pulls" } else { "issues" });
            let version = version_of(&item);
            paths.insert(path.clone());
            let same = self
                .base
                .files
                .get(&path)
                .is_some_and(|e| e.version.as_deref() == Some(version.as_str()));
            if full || !same {
                todo.push((number, pull, path, version, item));
            }
        }
        let session = self.job.session;
        let full_name = self.job.gh.full_name.as_str();
        let mut fetched = stream::iter(todo.into_iter().map(
            |(number, pull, path, version, item)| async move {
                let doc = fetch_item(session, full_name, number, pull, item).await;
                (number, path, version, doc)
            },
        ))
        .buffer_unordered(ITEM_CONCURRENCY);
        while let Some((number, path, version, doc)) = fetched.next().await {
            match doc {
                Ok((doc, counts)) => self
                    .writer
                    .put_json(&path, &doc, Some(version), counts)
                    .await
                    .map_err(|e| internal(&e))?,
                Err(e) => self.failed(e, &format!("issue #{number}"), &[]).await?,
            }
        }
        drop(fetched);
        // Unchanged (or failed) items come from the previous snapshot. A full listing is
        // authoritative: what it no longer shows was deleted or transferred upstream.
        let carried: Vec<String> = self
            .base
            .files
            .keys()
            .filter(|p| p.starts_with("issues/") || p.starts_with("pulls/"))
            .filter(|p| !self.writer.contains(p))
            .filter(|p| !(full && listed.is_some()) || paths.contains(*p))
            .cloned()
            .collect();
        for path in carried {
            self.carry(&path).await?;
        }
        Ok(checkpoint.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
    }

    /// The full list, or the probe page plus (when all of it is newer than the checkpoint) the
    /// `since` list.
    async fn list_issues(
        &self,
        full: bool,
        since: Option<&str>,
    ) -> Result<Option<Vec<Value>>, GitHubError> {
        let session = self.job.session;
        let probe = self.repo_path(&format!(
            "issues?state=all&sort=updated&direction=desc&per_page={PAGE}"
        ));
        if full {
            return Ok(Some(session.get_json_pages(&probe).await?.value));
        }
        let page = match session.get_json(&probe).await?.value {
            Value::Array(items) => items,
            _ => Vec::new(),
        };
        let checkpoint = since.and_then(parse_time);
        let more = page.len() >= PAGE
            && match (page.last().and_then(updated_at), checkpoint) {
                (Some(oldest), Some(c)) => oldest >= c,
                _ => true,
            };
        if !more {
            return Ok(Some(page));
        }
        let since = since.unwrap_or_default();
        let path = self.repo_path(&format!(
            "issues?state=all&sort=updated&direction=desc&since={since}"
        ));
        Ok(Some(session.get_json_pages(&path).await?.value))
    }

    /// Fetches the wiki mirror (a missing wiki is not an error) and bundles it into the folder.
    async fn wiki(&mut self) -> Result<u64, ExecOutcome> {
        let gh = self.job.gh;
        let key = wiki_key(self.job.key);
        let src = RepoSource {
            key: key.clone(),
            full_name: format!("{}.wiki", gh.full_name),
            clone_url: wiki_url(&gh.clone_url),
            pull_refs: false,
        };
        let fetched = match self.job.engine.fetch(&src, Some(self.job.token)).await {
            Ok(f) => f,
            Err(e) if e.kind == FailureKind::NotFound => return Ok(0),
            Err(e) => {
                tracing::warn!(error = %e, repo = %gh.full_name, "wiki fetch failed");
                self.problems.push(format!("wiki: {}", e.message));
                self.carry(WIKI_FILE).await?;
                return Ok(0);
            }
        };
        match self.writer.put_wiki(&key, WIKI_FILE).await {
            Ok(_) => Ok(fetched.bytes_fetched),
            Err(e) => Err(internal(&e)),
        }
    }
}

/// `https://host/o/r.git` -> `https://host/o/r.wiki.git`.
fn wiki_url(clone_url: &str) -> String {
    match clone_url.strip_suffix(".git") {
        Some(stem) => format!("{stem}.wiki.git"),
        None => format!("{clone_url}.wiki.git"),
    }
}

/// A sub-list, or `null` when GitHub answers 404 (the part vanished, or the server lacks it).
async fn sub_list(session: &Session, path: String) -> Result<Value, GitHubError> {
    match session.get_json_pages(&path).await {
        Ok(f) => Ok(Value::Array(f.value)),
        Err(e) if gone(&e) => Ok(Value::Null),
        Err(e) => Err(e),
    }
}

fn len(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

/// One issue with its comments, or one pull request with its conversation, reviews, review
/// comments and commits, plus the counts it adds to the snapshot.
async fn fetch_item(
    session: &Session,
    full_name: &str,
    number: u64,
    pull: bool,
    item: Value,
) -> Result<(Value, BTreeMap<String, u64>), GitHubError> {
    let base = format!("/repos/{full_name}");
    let comments = sub_list(session, format!("{base}/issues/{number}/comments"));
    if !pull {
        let comments = comments.await?;
        let n = counts(&[("issues", 1), ("comments", len(&comments))]);
        return Ok((json!({ "issue": item, "comments": comments }), n));
    }
    let detail = async {
        match session.get_json(&format!("{base}/pulls/{number}")).await {
            Ok(f) => Ok(f.value),
            Err(e) if gone(&e) => Ok(Value::Null),
            Err(e) => Err(e),
        }
    };
    let (comments, detail, reviews, review_comments, commits) = tokio::join!(
        comments,
        detail,
        sub_list(session, format!("{base}/pulls/{number}/reviews")),
        sub_list(session, format!("{base}/pulls/{number}/comments")),
        sub_list(session, format!("{base}/pulls/{number}/commits")),
    );
    let (comments, detail, reviews, review_comments, commits) =
        (comments?, detail?, reviews?, review_comments?, commits?);
    let n = counts(&[
        ("pulls", 1),
        ("comments", len(&comments)),
        ("reviews", len(&reviews)),
        ("review_comments", len(&review_comments)),
        ("pull_commits", len(&commits)),
    ]);
    let doc = json!({
        "issue": item,
        "pull": detail,
        "comments": comments,
        "reviews": reviews,
        "review_comments": review_comments,
        "commits": commits,
    });
    Ok((doc, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiki_urls() {
        assert_eq!(
            wiki_url("https://github.com/o/r.git"),
            "https://github.com/o/r.wiki.git"
        );
        assert_eq!(wiki_url("http://h/git/o/r"), "http://h/git/o/r.wiki.git");
    }

    #[test]
    fn versions_see_same_second_edits() {
        let a = json!({"number": 1, "updated_at": "2026-03-02T08:00:00Z", "body": "a"});
        let b = json!({"number": 1, "updated_at": "2026-03-02T08:00:00Z", "body": "b"});
        assert_ne!(version_of(&a), version_of(&b));
        assert_eq!(version_of(&a), version_of(&a.clone()));
    }
}
