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

use super::{conversations, github_failure};
use crate::executor::ExecOutcome;

/// Metadata is fetched in full (conditionally) at least every this many runs.
pub const FULL_SYNC_EVERY: u32 = 7;

/// Issues listed per page; the first page doubles as the "anything changed?" probe.
const PAGE: usize = 100;

/// Items whose remaining parts are fetched at the same time (a pull request's reviews, and its
/// commits when they cannot be read from the mirror).
const ITEM_CONCURRENCY: usize = 4;

/// Small lists stored whole, each fetched with its ETag every run: (file, API path, kind).
const LISTS: [(&str, &str, &str); 3] = [
    ("labels.json", "labels", "labels"),
    ("milestones.json", "milestones?state=all", "milestones"),
    ("releases.json", "releases", "releases"),
];

const WIKI_FILE: &str = "wiki.bundle";

/// Where release asset files go in a metadata folder: `assets/{asset id}` (what restore and the
/// site export read).
const ASSETS_DIR: &str = "assets/";

/// A wiki found absent (GitHub's default `has_wiki` without a page) is asked about again after
/// this long, not at every run.
const WIKI_ABSENT_RECHECK: chrono::Duration = chrono::Duration::days(7);

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
    /// When the wiki was last found absent (RFC 3339); it is not asked about again before
    /// [`WIKI_ABSENT_RECHECK`] has passed. `None` once a wiki exists.
    pub wiki_absent_at: Option<String>,
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
    /// With `metadata`: also store the files of release assets.
    pub release_assets: bool,
    /// The mirror holds `refs/pull/*`: pull-request commit lists are read from it with git.
    pub pull_refs: bool,
    /// The run's clock reading (when an absent wiki is asked about again).
    pub now: DateTime<Utc>,
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
    let full = !has_base || prev.since.is_none() || prev.runs_since_full + 1 >= FULL_SYNC_EVERY;
    let wants_wiki = job.wiki && job.gh.has_wiki;
    // The conditional requests that tell whether anything changed (the three lists, the first
    // issue page, the wiki's ref advertisement) go out together; the per-token bound in
    // ghbs-github decides how many are in flight.
    let (lists, listed, wiki) = {
        let c = &c;
        tokio::join!(
            async move {
                match job.metadata {
                    true => Some(c.fetch_lists().await),
                    false => None,
                }
            },
            async move {
                match job.metadata {
                    true => Some(c.list_issues(full, prev.since.as_deref()).await),
                    false => None,
                }
            },
            async move {
                match wants_wiki {
                    true => Some(c.check_wiki(prev).await),
                    false => None,
                }
            },
        )
    };
    if let (Some(lists), Some(listed)) = (lists, listed) {
        c.store_lists(lists).await?;
        let since = c.issues(listed, full, prev.since.as_deref()).await?;
        if c.complete {
            state.since = since;
            state.runs_since_full = if full { 0 } else { prev.runs_since_full + 1 };
        }
    } else {
        state.since = None;
        state.runs_since_full = 0;
    }
    let bytes = match wiki {
        Some(check) => c.wiki(check, &mut state).await?,
        None => 0,
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

    /// Labels, milestones and releases: whole lists, conditional requests, all three at once.
    async fn fetch_lists(&self) -> Vec<Result<Vec<Value>, GitHubError>> {
        futures_util::future::join_all(LISTS.map(|(_, rest, _)| async move {
            let path = self.repo_path(rest);
            self.job
                .session
                .get_json_pages(&path)
                .await
                .map(|f| f.value)
        }))
        .await
    }

    /// Stores what [`Capture::fetch_lists`] got, in the order of [`LISTS`].
    async fn store_lists(
        &mut self,
        fetched: Vec<Result<Vec<Value>, GitHubError>>,
    ) -> Result<(), ExecOutcome> {
        for ((file, _, kind), result) in LISTS.into_iter().zip(fetched) {
            match result {
                Ok(f) => {
                    let n = f.len();
                    let list = Value::Array(f);
                    self.writer
                        .put_json(file, &list, None, counts(&[(kind, n)]))
                        .await
                        .map_err(|e| internal(&e))?;
                    if kind == "releases" {
                        self.release_assets(&list).await?;
                    }
                }
                Err(e) if gone(&e) => {}
                Err(e) => {
                    self.failed(e, &format!("listing {kind}"), &[file]).await?;
                    if kind == "releases" {
                        // The carried list names the carried files.
                        let stored: Vec<String> = self
                            .base
                            .files
                            .keys()
                            .filter(|p| p.starts_with(ASSETS_DIR))
                            .cloned()
                            .collect();
                        for path in stored {
                            self.carry(&path).await?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The files of the releases' assets, at `assets/{asset id}` (docs/metadata.md): carried
    /// from the previous snapshot while the asset's size and `updated_at` are unchanged (no
    /// request), downloaded otherwise. A failed download keeps the previous snapshot's copy,
    /// if any, and is a problem of the run (partial), never a lost file.
    async fn release_assets(&mut self, releases: &Value) -> Result<(), ExecOutcome> {
        if !self.job.release_assets {
            return Ok(());
        }
        let assets: Vec<&Value> = releases
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["assets"].as_array())
            .flatten()
            .collect();
        for asset in assets {
            let Some(id) = asset["id"].as_i64() else {
                continue;
            };
            let path = format!("{ASSETS_DIR}{id}");
            let size = asset["size"].as_u64();
            let version = format!(
                "{}:{}",
                size.unwrap_or(0),
                asset["updated_at"].as_str().unwrap_or_default()
            );
            let base = self.base.files.get(&path);
            if base.is_some_and(|e| e.version.as_deref() == Some(version.as_str())) {
                let entry = base.cloned().expect("checked");
                if self
                    .writer
                    .carry(&path, &entry)
                    .await
                    .map_err(|e| internal(&e))?
                {
                    continue;
                }
            }
            let name = asset["name"].as_str().unwrap_or("?");
            let scratch = self.writer.scratch_file("asset");
            let got = self
                .job
                .session
                .download_release_asset(&self.job.gh.full_name, id, &scratch, size)
                .await;
            match got {
                Ok(_) => {
                    self.writer
                        .put_file(
                            &path,
                            scratch,
                            Some(version),
                            counts(&[("release_assets", 1)]),
                        )
                        .await
                        .map_err(|e| internal(&e))?;
                }
                Err(e) => {
                    let _ = tokio::fs::remove_file(&scratch).await;
                    if gone(&e) {
                        // Deleted since the listing (the next listing will not name it): not a
                        // problem of the run, and a copy an earlier snapshot holds is kept.
                        tracing::info!(asset = id, "release asset gone upstream; skipped");
                        self.carry(&path).await?;
                        continue;
                    }
                    if e.kind == FailureKind::StorageFull {
                        return Err(ExecOutcome::failed_as(
                            FailureKind::StorageFull,
                            "the server's disk is full; release assets could not be stored",
                        ));
                    }
                    let what = format!("downloading release asset {name} ({id})");
                    self.failed(e, &what, &[path.as_str()]).await?;
                }
            }
        }
        Ok(())
    }

    /// The listing [`Capture::issues`] works from: issues (pull requests included) by most
    /// recent update, or with issues disabled (GitHub answers the issue endpoints with 410) the
    /// pull requests' own listing.
    async fn list_issues(
        &self,
        full: bool,
        since: Option<&str>,
    ) -> Result<Vec<Value>, GitHubError> {
        let source = if self.job.gh.has_issues {
            "issues"
        } else {
            "pulls"
        };
        self.list_updated(source, full, since).await
    }

    /// The issues (pull requests included) that changed, or all of them on a full sync, from
    /// the listing of [`Capture::list_issues`]. Returns the new checkpoint.
    async fn issues(
        &mut self,
        listed: Result<Vec<Value>, GitHubError>,
        full: bool,
        since: Option<&str>,
    ) -> Result<Option<String>, ExecOutcome> {
        let mut checkpoint = since.and_then(parse_time);
        let has_issues = self.job.gh.has_issues;
        let source = if has_issues { "issues" } else { "pulls" };
        let listed = match listed {
            Ok(items) => Some(items),
            Err(e) if gone(&e) => Some(Vec::new()),
            Err(e) => {
                self.failed(e, &format!("listing {source}"), &[]).await?;
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
            let pull = !has_issues || item.get("pull_request").is_some_and(|v| !v.is_null());
            let path = format!("{}/{number}.json", if pull { "pulls" } else { "issues" });
            let version = version_of(&item);
            paths.insert(path.clone());
            let same = self
                .base
                .files
                .get(&path)
                .is_some_and(|e| e.version.as_deref() == Some(version.as_str()));
            if full || !same {
                todo.push(Todo {
                    number,
                    pull,
                    path,
                    version,
                    issue: has_issues.then_some(item.clone()),
                    pull_listing: (!has_issues).then_some(item),
                });
            }
        }
        if !todo.is_empty() {
            self.fetch_items(todo, full, since).await?;
        }
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

    /// The full list of `issues` or `pulls` by most recent update, or (incremental) its probe
    /// page plus, when all of that page is newer than the checkpoint, the rest: `since` for
    /// issues, further pages for pull requests (their listing has no `since`).
    async fn list_updated(
        &self,
        what: &str,
        full: bool,
        since: Option<&str>,
    ) -> Result<Vec<Value>, GitHubError> {
        let session = self.job.session;
        let probe = self.repo_path(&format!(
            "{what}?state=all&sort=updated&direction=desc&per_page={PAGE}"
        ));
        if full {
            return Ok(session.get_json_pages(&probe).await?.value);
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
            return Ok(page);
        }
        let path = match (what, since) {
            ("issues", Some(since)) => self.repo_path(&format!(
                "issues?state=all&sort=updated&direction=desc&since={since}"
            )),
            _ => probe,
        };
        Ok(session.get_json_pages(&path).await?.value)
    }

    /// The pull requests' listing entries for `wanted` numbers: the first page by most recent
    /// update when that shows them all (incremental runs), else every page.
    async fn pull_listings(
        &self,
        wanted: &BTreeSet<u64>,
        full: bool,
    ) -> Result<BTreeMap<u64, Value>, GitHubError> {
        let session = self.job.session;
        let path = self.repo_path(&format!(
            "pulls?state=all&sort=updated&direction=desc&per_page={PAGE}"
        ));
        let mut items = if full {
            Vec::new()
        } else {
            match session.get_json(&path).await?.value {
                Value::Array(items) => items,
                _ => Vec::new(),
            }
        };
        let found = |items: &[Value]| {
            let have: BTreeSet<u64> = items.iter().filter_map(|i| i["number"].as_u64()).collect();
            wanted.is_subset(&have)
        };
        if full || (!found(&items) && items.len() >= PAGE) {
            items = session.get_json_pages(&path).await?.value;
        }
        let mut out = BTreeMap::new();
        for item in items {
            if let Some(n) = item["number"].as_u64().filter(|n| wanted.contains(n)) {
                out.entry(n).or_insert(item);
            }
        }
        Ok(out)
    }

    /// A repository-wide comment listing (`issues/comments` or `pulls/comments`), only what was
    /// updated since the checkpoint on incremental runs, grouped by issue or pull number.
    async fn comments_by_number(
        &self,
        what: &str,
        field: &str,
        since: Option<&str>,
    ) -> Result<BTreeMap<u64, Vec<Value>>, GitHubError> {
        let mut rest = format!("{what}?sort=created&direction=asc&per_page={PAGE}");
        if let Some(since) = since {
            rest.push_str(&format!("&since={since}"));
        }
        let path = self.repo_path(&rest);
        match self.job.session.get_json_pages(&path).await {
            Ok(f) => Ok(conversations::group(f.value, field)),
            Err(e) if gone(&e) => Ok(BTreeMap::new()),
            Err(e) => Err(e),
        }
    }

    /// The previous snapshot's document of `path`, to merge a `since` listing into.
    async fn previous(&self, path: &str) -> Option<Value> {
        let entry = self.base.files.get(path)?;
        match self.job.engine.read_metadata(entry).await {
            Ok(doc) => doc,
            Err(e) => {
                tracing::warn!(error = %e, path, "previous metadata unreadable; asking GitHub");
                None
            }
        }
    }

    /// Fetches and stores the changed items with as few requests as their listings allow: one
    /// repository-wide listing for issue comments and one for review comments (nothing when no
    /// changed item can have any), the pull-request listing instead of one detail request each,
    /// commit lists from the mirrored pull refs, and per pull request only its reviews.
    async fn fetch_items(
        &mut self,
        todo: Vec<Todo>,
        full: bool,
        since: Option<&str>,
    ) -> Result<(), ExecOutcome> {
        let since = if full { None } else { since };
        let mut todo = todo;
        // What the listings cannot give fails the items that need it (they are carried).
        let mut failed: BTreeSet<u64> = BTreeSet::new();
        let pulls: BTreeSet<u64> = todo
            .iter()
            .filter(|t| t.pull && t.pull_listing.is_none())
            .map(|t| t.number)
            .collect();
        // An issue whose listing says `comments: 0` has none to ask for. Without an issue
        // listing (issues disabled) the count is unknown.
        let wants_comments = |t: &Todo| {
            t.issue
                .as_ref()
                .is_none_or(|i| i["comments"].as_u64().is_none_or(|n| n > 0))
        };
        let need_comments = todo.iter().any(wants_comments);
        let need_review_comments = todo.iter().any(|t| t.pull);
        // The three repository-wide listings are independent: asked at once.
        let (listed_pulls, listed_comments, listed_review_comments) = tokio::join!(
            async {
                match pulls.is_empty() {
                    true => None,
                    false => Some(self.pull_listings(&pulls, full).await),
                }
            },
            async {
                match need_comments {
                    true => Some(
                        self.comments_by_number("issues/comments", "issue_url", since)
                            .await,
                    ),
                    false => None,
                }
            },
            async {
                match need_review_comments {
                    true => Some(
                        self.comments_by_number("pulls/comments", "pull_request_url", since)
                            .await,
                    ),
                    false => None,
                }
            },
        );
        match listed_pulls {
            None => {}
            Some(Ok(mut listed)) => {
                for t in todo.iter_mut().filter(|t| t.pull) {
                    if let Some(l) = listed.remove(&t.number) {
                        t.pull_listing = Some(l);
                    }
                }
            }
            Some(Err(e)) => {
                self.failed(e, "listing pull requests", &[]).await?;
                failed.extend(&pulls);
            }
        }
        let mut comments = BTreeMap::new();
        match listed_comments {
            None => {}
            Some(Ok(c)) => comments = c,
            Some(Err(e)) => {
                self.failed(e, "listing comments", &[]).await?;
                failed.extend(todo.iter().filter(|t| wants_comments(t)).map(|t| t.number));
            }
        }
        let mut review_comments = BTreeMap::new();
        match listed_review_comments {
            None => {}
            Some(Ok(c)) => review_comments = c,
            Some(Err(e)) => {
                self.failed(e, "listing review comments", &[]).await?;
                failed.extend(todo.iter().filter(|t| t.pull).map(|t| t.number));
            }
        }
        let mut ready = Vec::new();
        for t in todo {
            if failed.contains(&t.number) {
                continue;
            }
            let previous = match since {
                Some(_) => self.previous(&t.path).await,
                None => None,
            };
            let old = |field: &str| -> Vec<Value> {
                previous
                    .as_ref()
                    .and_then(|d| d[field].as_array().cloned())
                    .unwrap_or_default()
            };
            let listed = comments.remove(&t.number).unwrap_or_default();
            let merged = conversations::merge(&old("comments"), &listed);
            // A deleted comment or one `since` missed: the count tells, the item's own
            // listing settles it.
            let expected = t.issue.as_ref().and_then(|i| i["comments"].as_u64());
            let comments = if !wants_comments(&t) {
                Some(Vec::new())
            } else if expected.is_none_or(|n| n == merged.len() as u64) {
                Some(merged)
            } else {
                None
            };
            let listed = review_comments.remove(&t.number).unwrap_or_default();
            let review_comments = conversations::merge(&old("review_comments"), &listed);
            ready.push((t, comments, review_comments));
        }
        let job = self.job;
        let mut fetched = stream::iter(ready.into_iter().map(
            |(t, comments, review_comments)| async move {
                let doc = finish_item(job, &t, comments, review_comments).await;
                (t, doc)
            },
        ))
        .buffer_unordered(ITEM_CONCURRENCY);
        while let Some((t, doc)) = fetched.next().await {
            match doc {
                Ok((doc, counts)) => self
                    .writer
                    .put_json(&t.path, &doc, Some(t.version), counts)
                    .await
                    .map_err(|e| internal(&e))?,
                Err(e) => self.failed(e, &format!("issue #{}", t.number), &[]).await?,
            }
        }
        Ok(())
    }

    /// Whether the wiki changed since the last run, with one request: its ref advertisement
    /// compared with the refs its mirror holds. A wiki found absent less than
    /// [`WIKI_ABSENT_RECHECK`] ago is not asked about at all.
    async fn check_wiki(&self, prev: &MetaState) -> WikiCheck {
        let absent_at = prev.wiki_absent_at.as_deref().and_then(parse_time);
        if absent_at.is_some_and(|at| self.job.now - at < WIKI_ABSENT_RECHECK) {
            return WikiCheck::KnownAbsent;
        }
        let engine = self.job.engine;
        let url = wiki_url(&self.job.gh.clone_url);
        let advertised = match engine.remote_refs(&url, Some(self.job.token)).await {
            Ok(refs) if refs.is_empty() => return WikiCheck::Absent,
            Ok(refs) => refs,
            Err(e) if e.kind == FailureKind::NotFound => return WikiCheck::Absent,
            Err(e) => return WikiCheck::Failed(e),
        };
        let stored = engine.mirror_refs(&wiki_key(self.job.key)).await.ok();
        if stored.as_ref() == Some(&advertised) && self.base.files.contains_key(WIKI_FILE) {
            WikiCheck::Unchanged
        } else {
            WikiCheck::Changed
        }
    }

    /// Puts the wiki into the folder as [`Capture::check_wiki`] found it: the previous bundle
    /// when unchanged (a hard link, no git), a fetch and a new bundle when changed, nothing
    /// when absent (not an error). Records when it was found absent in `state`.
    async fn wiki(&mut self, check: WikiCheck, state: &mut MetaState) -> Result<u64, ExecOutcome> {
        match check {
            WikiCheck::KnownAbsent => return Ok(0),
            WikiCheck::Absent => {
                state.wiki_absent_at = Some(self.job.now.to_rfc3339());
                return Ok(0);
            }
            WikiCheck::Failed(e) => {
                tracing::warn!(error = %e, repo = %self.job.gh.full_name, "wiki check failed");
                self.problems.push(format!("wiki: {}", e.message));
                self.carry(WIKI_FILE).await?;
                return Ok(0);
            }
            WikiCheck::Unchanged | WikiCheck::Changed => state.wiki_absent_at = None,
        }
        if matches!(check, WikiCheck::Unchanged) {
            if let Some(entry) = self.base.files.get(WIKI_FILE) {
                if self
                    .writer
                    .carry(WIKI_FILE, entry)
                    .await
                    .map_err(|e| internal(&e))?
                {
                    return Ok(0);
                }
            }
            // The previous bundle is gone: made again from the mirror below.
        }
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
            Err(e) if e.kind == FailureKind::NotFound => {
                state.wiki_absent_at = Some(self.job.now.to_rfc3339());
                return Ok(0);
            }
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

/// What one ref advertisement said about a wiki.
enum WikiCheck {
    /// Found absent recently: not asked.
    KnownAbsent,
    /// GitHub has no wiki (404) or an empty one.
    Absent,
    /// The advertised refs are the mirror's, and the previous snapshot holds its bundle.
    Unchanged,
    Changed,
    Failed(ghbs_engine::EngineError),
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

/// A changed issue or pull request, with what its listings said.
struct Todo {
    number: u64,
    pull: bool,
    path: String,
    version: String,
    /// As the issue listing shows it (`None` when issues are disabled).
    issue: Option<Value>,
    /// As the pull-request listing shows it (pull requests only; `None` if it was not found).
    pull_listing: Option<Value>,
}

/// The commit list of a pull request: from the mirrored `refs/pull/N/head` when the job mirrors
/// pull refs and the listing names both ends, else `GET /pulls/N/commits`.
async fn pull_commits(
    job: &Job<'_>,
    number: u64,
    listing: Option<&Value>,
) -> Result<Value, GitHubError> {
    if job.pull_refs {
        if let Some(base) = listing.and_then(|l| l["base"]["sha"].as_str()) {
            let head = listing.and_then(|l| l["head"]["sha"].as_str());
            match job.engine.pull_commits(job.key, number, base, head).await {
                Ok(Some(commits)) => return Ok(Value::Array(commits)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, number, "pull commits from git failed; asking GitHub")
                }
            }
        }
    }
    let path = format!("/repos/{}/pulls/{number}/commits", job.gh.full_name);
    sub_list(job.session, path).await
}

/// One issue with its comments, or one pull request with its conversation, reviews, review
/// comments and commits, plus the counts it adds to the snapshot. `comments` is `None` when the
/// merged listing disagreed with the issue's count: the item's own list is asked then.
async fn finish_item(
    job: &Job<'_>,
    t: &Todo,
    comments: Option<Vec<Value>>,
    review_comments: Vec<Value>,
) -> Result<(Value, BTreeMap<String, u64>), GitHubError> {
    let base = format!("/repos/{}", job.gh.full_name);
    let number = t.number;
    let comments = async {
        match comments {
            Some(c) => Ok(Value::Array(c)),
            None => sub_list(job.session, format!("{base}/issues/{number}/comments")).await,
        }
    };
    let issue = t.issue.clone().unwrap_or(Value::Null);
    if !t.pull {
        let comments = comments.await?;
        let n = counts(&[("issues", 1), ("comments", len(&comments))]);
        return Ok((json!({ "issue": issue, "comments": comments }), n));
    }
    // Not in the listing (it moved between pages, or the listing failed over): its detail.
    let detail = async {
        match &t.pull_listing {
            Some(l) => Ok(l.clone()),
            None => match job
                .session
                .get_json(&format!("{base}/pulls/{number}"))
                .await
            {
                Ok(f) => Ok(f.value),
                Err(e) if gone(&e) => Ok(Value::Null),
                Err(e) => Err(e),
            },
        }
    };
    let (comments, detail, reviews) = tokio::join!(
        comments,
        detail,
        sub_list(job.session, format!("{base}/pulls/{number}/reviews")),
    );
    let (comments, detail, reviews) = (comments?, detail?, reviews?);
    let commits = pull_commits(job, number, Some(&detail).filter(|d| !d.is_null())).await?;
    let review_comments = Value::Array(review_comments);
    let n = counts(&[
        ("pulls", 1),
        ("comments", len(&comments)),
        ("reviews", len(&reviews)),
        ("review_comments", len(&review_comments)),
        ("pull_commits", len(&commits)),
    ]);
    let doc = json!({
        "issue": issue,
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
