//! A snapshot's repositories as a static HTML site that a person reads offline: per repository
//! an index with the README, issue and pull-request lists, a page per issue and pull request
//! (comments, reviews, review comments, commits), releases (linking the assets the snapshot
//! stored) and the wiki; and a top index for the snapshot.
//!
//! The crate does no I/O of its own: the caller (the engine's `site` export) reads the snapshot
//! and hands each repository over as a [`RepoInput`], and every page comes back through a
//! [`Sink`] as `(relative path, bytes)`. Layout of the site:
//!
//! ```text
//! index.html                       the snapshot: every repository with its counts
//! style.css                        the one stylesheet (light and dark, narrow screens)
//! {owner}/{name}/index.html        README, labels, milestones, links to the rest
//! {owner}/{name}/issues.html       open and closed issues, with labels and comment counts
//! {owner}/{name}/issues/{n}.html   one issue and its conversation
//! {owner}/{name}/pulls.html        pull requests, likewise
//! {owner}/{name}/pulls/{n}.html    one pull request: conversation, reviews, review comments, commits
//! {owner}/{name}/releases.html     releases, notes, assets ([`asset_path`] for stored ones)
//! {owner}/{name}/wiki/index.html   the wiki's pages; one `wiki/{page}.html` each
//! ```
//!
//! Every link is relative, so the folder opens from the file system in any browser; pages load
//! nothing but `style.css` and forbid scripts outright (Content-Security-Policy). What came from
//! GitHub is sanitised ([`markdown`]) and everything else is escaped by the templates
//! (minijinja, auto-escaping `.html` templates; the templates are files under `templates/`,
//! embedded at build time).

pub mod markdown;
mod pages;
mod view;

use std::collections::BTreeMap;

use serde_json::Value;

pub use pages::Site;

/// Where the pages go: the engine writes them into a zip archive, tests into a map.
pub trait Sink {
    /// Stores `bytes` at `path` (relative, `/`-separated, already safe to use as a file name).
    fn put(&mut self, path: &str, bytes: &[u8]) -> std::io::Result<()>;
}

impl Sink for BTreeMap<String, Vec<u8>> {
    fn put(&mut self, path: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.insert(path.to_owned(), bytes.to_vec());
        Ok(())
    }
}

/// Why a site could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// A template failed to render (a bug in a template, not in the data).
    #[error("site template {name}: {source}")]
    Template {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("writing the site: {0}")]
    Io(#[from] std::io::Error),
}

/// The snapshot the site shows.
#[derive(Debug, Clone, Default)]
pub struct SnapshotInfo {
    /// The snapshot's key (a uuid), shown so the site can be matched with `snapshots`.
    pub key: String,
    /// When it was taken, as an ISO 8601 time (`2026-12-02T14:00:00Z`).
    pub taken_at: String,
}

/// A text file of the repository (its README) or of its wiki.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The path inside its repository (`README.md`, `Guides/Setup.md`).
    pub path: String,
    pub text: String,
}

/// Everything the site shows of one repository; the JSON is GitHub's REST shape as the metadata
/// backup stores it (docs/metadata.md), read leniently: a missing field shows as absent.
#[derive(Debug, Clone, Default)]
pub struct RepoInput {
    pub full_name: String,
    pub default_branch: Option<String>,
    pub branches: usize,
    pub tags: usize,
    /// Set when the snapshot carries this repository's last good copy from an earlier run:
    /// when that copy was captured (ISO 8601).
    pub carried_from: Option<String>,
    /// The default branch's README, if it has one.
    pub readme: Option<Document>,
    /// Whether the snapshot holds metadata for it at all (a job without `--metadata` has none;
    /// the pages then say so instead of showing empty lists).
    pub has_metadata: bool,
    /// `issues/{n}.json` documents: `{"issue": …, "comments": […]}`.
    pub issues: Vec<Value>,
    /// `pulls/{n}.json` documents: `{"issue", "pull", "comments", "reviews", "review_comments", "commits"}`.
    pub pulls: Vec<Value>,
    pub labels: Vec<Value>,
    pub milestones: Vec<Value>,
    pub releases: Vec<Value>,
    /// Release assets the snapshot stores: asset id → the path the caller wrote it to, relative
    /// to the repository's folder (see [`asset_path`]). An asset not in here is listed with a
    /// note that the backup does not hold it.
    pub assets: BTreeMap<i64, String>,
    /// The wiki's text pages.
    pub wiki: Vec<Document>,
}

/// What the top index shows of a repository, returned by [`Site::render_repo`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepoSummary {
    pub full_name: String,
    /// `{owner}/{name}/index.html`.
    pub href: String,
    pub default_branch: Option<String>,
    pub has_metadata: bool,
    pub carried_from: Option<String>,
    pub issues_open: usize,
    pub issues: usize,
    pub pulls_open: usize,
    pub pulls: usize,
    pub releases: usize,
    pub wiki_pages: usize,
}

/// The folder of a repository inside the site: `owner/name`, each part reduced to GitHub's own
/// alphabet `[A-Za-z0-9._-]` and never `.` or `..`, so no path can leave the site.
pub fn repo_dir(full_name: &str) -> String {
    let parts: Vec<String> = full_name
        .split('/')
        .filter(|p| !p.is_empty())
        .map(safe_component)
        .collect();
    match parts.as_slice() {
        [] => "repository/repository".to_owned(),
        [one] => format!("repository/{one}"),
        _ => parts.join("/"),
    }
}

/// Where a stored release asset goes, relative to its repository's folder:
/// `assets/{asset id}/{file name}`.
pub fn asset_path(asset_id: i64, name: &str) -> String {
    format!("assets/{asset_id}/{}", safe_component(name))
}

/// One path component from untrusted text: `[A-Za-z0-9._-]`, other characters as `-`, at most
/// 100 bytes, never empty, `.` or `..`.
pub fn safe_component(part: &str) -> String {
    let mut clean: String = part
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    clean.truncate(100);
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        "_".to_owned()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests;
