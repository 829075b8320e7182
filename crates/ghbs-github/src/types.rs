//! The few GitHub shapes the rest of the workspace needs, decoded from the REST JSON.
//!
//! Only the fields we use are decoded: GitHub adds fields all the time, and an unknown field must
//! never fail a backup.

use serde::Deserialize;

/// A value from GitHub together with how it was obtained.
#[derive(Clone, Debug)]
pub struct Fetched<T> {
    /// The decoded value (served from the validator cache when GitHub answered 304).
    pub value: T,
    /// True when every request behind this value was answered `304 Not Modified`: nothing changed
    /// since the last call with the same cache.
    pub not_modified: bool,
    /// For a repository that was renamed or transferred: its new `owner/name`.
    pub moved_to: Option<String>,
}

/// The account a token belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct GhUser {
    /// GitHub's numeric user id, stable across renames.
    pub id: i64,
    /// The current login.
    pub login: String,
}

/// One repository as the REST API describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GhRepo {
    /// GitHub's numeric repository id, stable across renames and transfers.
    pub id: i64,
    /// `owner/name`.
    pub full_name: String,
    /// The repository name alone.
    pub name: String,
    /// The owner's login.
    pub owner: String,
    /// Private (or internal) repository.
    pub private: bool,
    /// A fork of another repository.
    pub fork: bool,
    /// Archived (read-only) repository.
    pub archived: bool,
    /// The wiki is enabled (it may still be empty).
    pub has_wiki: bool,
    /// Issues are enabled; when not, GitHub answers the issue listing with 410 and nothing of it
    /// is asked.
    pub has_issues: bool,
    /// `None` for an empty repository.
    pub default_branch: Option<String>,
    /// The HTTPS clone URL. Credentials are never put into it.
    pub clone_url: String,
    /// Last push time as GitHub formats it (RFC 3339); `None` for an empty repository.
    pub pushed_at: Option<String>,
    /// GitHub's size estimate in KiB.
    pub size_kb: i64,
}

/// Request accounting of one session, for the run record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests that got an answer other than 304: GitHub counts these against the rate limit.
    pub counted: u64,
    /// Requests answered `304 Not Modified`, which GitHub does not count.
    pub conditional_hits: u64,
}

#[derive(Deserialize)]
struct RawOwner {
    login: String,
}

/// The REST shape, kept private so that [`GhRepo`] stays flat and stable for callers.
#[derive(Deserialize)]
pub(crate) struct RawRepo {
    id: i64,
    name: String,
    full_name: String,
    owner: RawOwner,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    fork: bool,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    has_wiki: bool,
    /// Absent in some older payloads: assume enabled, which costs one answered request at most.
    #[serde(default = "yes")]
    has_issues: bool,
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    clone_url: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    pushed_at: Option<String>,
    #[serde(default)]
    size: Option<i64>,
}

fn yes() -> bool {
    true
}

impl From<RawRepo> for GhRepo {
    fn from(raw: RawRepo) -> Self {
        let clone_url = raw
            .clone_url
            .or_else(|| raw.html_url.map(|u| format!("{u}.git")))
            .unwrap_or_default();
        GhRepo {
            id: raw.id,
            full_name: raw.full_name,
            name: raw.name,
            owner: raw.owner.login,
            private: raw.private,
            fork: raw.fork,
            archived: raw.archived,
            has_wiki: raw.has_wiki,
            has_issues: raw.has_issues,
            default_branch: raw.default_branch.filter(|b| !b.is_empty()),
            clone_url,
            pushed_at: raw.pushed_at,
            size_kb: raw.size.unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_rest_repository_ignoring_unknown_fields() {
        let json = serde_json::json!({
            "id": 7, "name": "r", "full_name": "o/r", "owner": {"login": "o", "id": 1},
            "private": true, "fork": false, "archived": true, "has_wiki": true,
            "default_branch": "main", "clone_url": "https://github.com/o/r.git",
            "pushed_at": "2024-01-02T03:04:05Z", "size": 42, "topics": ["x"]
        });
        let repo: GhRepo = serde_json::from_value::<RawRepo>(json).unwrap().into();
        assert_eq!(repo.owner, "o");
        assert_eq!(repo.full_name, "o/r");
        assert!(repo.private && repo.archived && repo.has_wiki && !repo.fork);
        assert_eq!(repo.default_branch.as_deref(), Some("main"));
        assert_eq!(repo.size_kb, 42);
    }

    #[test]
    fn empty_repository_has_no_default_branch_or_push_time() {
        let json = serde_json::json!({
            "id": 8, "name": "e", "full_name": "o/e", "owner": {"login": "o"},
            "default_branch": "", "html_url": "https://github.com/o/e", "pushed_at": null
        });
        let repo: GhRepo = serde_json::from_value::<RawRepo>(json).unwrap().into();
        assert_eq!(repo.default_branch, None);
        assert_eq!(repo.pushed_at, None);
        assert_eq!(repo.clone_url, "https://github.com/o/e.git");
    }
}
