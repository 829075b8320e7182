//! The stand-in's in-memory state: accounts, tokens, repositories, rate-limit buckets, injected
//! faults and the request log. One `std::sync::Mutex<World>` guards it; no lock is ever held
//! across an `.await` or a git process, so control methods and handlers never wait on each other
//! for long.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde_json::{json, Value};

use crate::metadata::Meta;
use crate::{Fault, FaultKind, RequestRecord};

/// GitHub's primary limit for an authenticated token.
pub(crate) const TOKEN_LIMIT: u32 = 5000;
/// GitHub's primary limit for anonymous callers.
pub(crate) const ANONYMOUS_LIMIT: u32 = 60;
/// Bucket key of anonymous callers (a real token is never empty).
pub(crate) const ANONYMOUS: &str = "";

/// Current time truncated to whole seconds, as GitHub reports timestamps.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// GitHub's timestamp format (`2011-01-26T19:06:43Z`).
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(crate) struct Account {
    pub id: i64,
    pub login: String,
    pub is_org: bool,
    /// Lower-cased logins of the members (organizations only).
    pub members: Vec<String>,
}

impl Account {
    pub fn kind(&self) -> &'static str {
        if self.is_org {
            "Organization"
        } else {
            "User"
        }
    }

    pub fn owner_json(&self, base: &str) -> Value {
        json!({
            "login": self.login,
            "id": self.id,
            "node_id": format!("U_{}", self.id),
            "type": self.kind(),
            "site_admin": false,
            "html_url": format!("{base}/{}", self.login),
            "url": format!("{base}/api/v3/users/{}", self.login),
        })
    }
}

pub(crate) struct TokenEntry {
    /// Lower-cased login of the token's user.
    pub login: String,
    pub revoked: bool,
}

/// One primary rate-limit window.
pub(crate) struct Bucket {
    pub limit: u32,
    pub remaining: u32,
    pub reset: DateTime<Utc>,
}

impl Bucket {
    pub fn fresh(limit: u32) -> Bucket {
        Bucket {
            limit,
            remaining: limit,
            reset: now() + Duration::hours(1),
        }
    }

    /// Starts a new window once the reset time has passed, as GitHub does.
    pub fn roll(&mut self) {
        if Utc::now() >= self.reset {
            *self = Bucket::fresh(self.limit);
        }
    }

    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("x-ratelimit-limit", self.limit.to_string()),
            ("x-ratelimit-remaining", self.remaining.to_string()),
            ("x-ratelimit-reset", self.reset.timestamp().to_string()),
            (
                "x-ratelimit-used",
                (self.limit.saturating_sub(self.remaining)).to_string(),
            ),
            ("x-ratelimit-resource", "core".to_owned()),
        ]
    }
}

pub(crate) struct Repo {
    pub id: i64,
    /// Lower-cased login of the owning account.
    pub owner: String,
    pub name: String,
    pub private: bool,
    pub fork: bool,
    pub archived: bool,
    pub has_wiki: bool,
    pub has_issues: bool,
    pub default_branch: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub pushed_at: DateTime<Utc>,
    /// Size of the bare repository in KiB, refreshed after every change to its git data.
    pub size_kb: u64,
    pub meta: Meta,
}

impl Repo {
    /// Moves `updated_at` forward, strictly, so that two changes within one second still change
    /// the JSON (and its ETag): tests run much faster than GitHub's one-second timestamps.
    pub fn bump(&mut self) -> DateTime<Utc> {
        let t = now().max(self.updated_at + Duration::seconds(1));
        self.updated_at = t;
        t
    }
}

/// Who is calling, decided from the `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    Anonymous,
    /// A valid token: the token itself (rate-limit key) and its user's lower-cased login.
    User {
        token: String,
        login: String,
    },
    BadCredentials,
}

impl Caller {
    pub fn login(&self) -> Option<&str> {
        match self {
            Caller::User { login, .. } => Some(login),
            _ => None,
        }
    }
}

pub(crate) struct World {
    pub base_url: String,
    pub repos_root: PathBuf,
    pub accounts: BTreeMap<String, Account>,
    pub tokens: HashMap<String, TokenEntry>,
    pub buckets: HashMap<String, Bucket>,
    pub repos: BTreeMap<i64, Repo>,
    /// Lower-cased `owner/name` of live repositories.
    pub names: HashMap<String, i64>,
    /// Lower-cased former `owner/name`s of renamed or transferred repositories.
    pub old_names: HashMap<String, i64>,
    pub faults: Vec<Fault>,
    /// How many more REST writes succeed; `None`: no limit (see `fail_writes_after`).
    pub write_budget: Option<u32>,
    /// Whether `POST /repos/{o}/{r}/import/issues` exists (see `offer_issue_import`).
    pub issue_import: bool,
    pub log: Vec<RequestRecord>,
    next_id: i64,
}

impl World {
    pub fn new(base_url: String, repos_root: PathBuf) -> World {
        World {
            base_url,
            repos_root,
            accounts: BTreeMap::new(),
            tokens: HashMap::new(),
            buckets: HashMap::new(),
            repos: BTreeMap::new(),
            names: HashMap::new(),
            old_names: HashMap::new(),
            faults: Vec::new(),
            write_budget: None,
            issue_import: false,
            log: Vec::new(),
            next_id: 1000,
        }
    }

    /// Ids are unique across every kind of object, which is all tests need.
    pub fn next_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn caller(&self, token: Option<&str>) -> Caller {
        match token {
            None => Caller::Anonymous,
            Some(t) => match self.tokens.get(t) {
                Some(e) if !e.revoked => Caller::User {
                    token: t.to_owned(),
                    login: e.login.clone(),
                },
                _ => Caller::BadCredentials,
            },
        }
    }

    /// The rate-limit bucket of a caller (bad credentials share the anonymous one).
    pub fn bucket(&mut self, caller: &Caller) -> &mut Bucket {
        let (key, limit) = match caller {
            Caller::User { token, .. } => (token.as_str(), TOKEN_LIMIT),
            _ => (ANONYMOUS, ANONYMOUS_LIMIT),
        };
        let b = self
            .buckets
            .entry(key.to_owned())
            .or_insert_with(|| Bucket::fresh(limit));
        b.roll();
        b
    }

    /// Takes one use of the first fault matching this request, in injection order.
    pub fn take_fault(&mut self, path_and_query: &str) -> Option<FaultKind> {
        let i = self
            .faults
            .iter()
            .position(|f| f.times > 0 && path_and_query.contains(&f.path_contains))?;
        let f = &mut self.faults[i];
        f.times -= 1;
        let kind = f.kind.clone();
        if f.times == 0 {
            self.faults.remove(i);
        }
        Some(kind)
    }

    pub fn account(&self, login: &str) -> Option<&Account> {
        self.accounts.get(&login.to_lowercase())
    }

    pub fn is_member(&self, org: &str, login: &str) -> bool {
        self.accounts
            .get(org)
            .is_some_and(|a| a.is_org && a.members.iter().any(|m| m == login))
    }

    /// Whether `login` may see a repository (public, owned, or a member of the owning org).
    pub fn can_read(&self, repo: &Repo, login: Option<&str>) -> bool {
        !repo.private || login.is_some_and(|l| self.can_write(repo, l))
    }

    pub fn can_write(&self, repo: &Repo, login: &str) -> bool {
        repo.owner == login || self.is_member(&repo.owner, login)
    }

    /// A live repository by `owner/name`, case-insensitively.
    pub fn repo_id(&self, full_name: &str) -> Option<i64> {
        self.names.get(&full_name.to_lowercase()).copied()
    }

    /// Like [`World::repo_id`] but panics with a helpful message: control methods are called by
    /// tests, where a typo should fail loudly.
    pub fn expect_repo(&mut self, full_name: &str) -> &mut Repo {
        let id = self
            .repo_id(full_name)
            .unwrap_or_else(|| panic!("stand-in: no repository {full_name}"));
        self.repos
            .get_mut(&id)
            .expect("name index points at a live repo")
    }

    pub fn bare_path(&self, id: i64, wiki: bool) -> PathBuf {
        let suffix = if wiki { ".wiki.git" } else { ".git" };
        self.repos_root.join(format!("{id}{suffix}"))
    }

    pub fn full_name(&self, repo: &Repo) -> String {
        let owner = self
            .accounts
            .get(&repo.owner)
            .map(|a| a.login.as_str())
            .unwrap_or(&repo.owner);
        format!("{owner}/{}", repo.name)
    }

    pub fn owner_json(&self, login: &str) -> Value {
        match self.accounts.get(login) {
            Some(a) => a.owner_json(&self.base_url),
            None => json!({ "login": login, "id": 0, "type": "User" }),
        }
    }

    pub fn repo_json(&self, repo: &Repo) -> Value {
        let base = &self.base_url;
        let full = self.full_name(repo);
        json!({
            "id": repo.id,
            "node_id": format!("R_{}", repo.id),
            "name": repo.name,
            "full_name": full,
            "owner": self.owner_json(&repo.owner),
            "private": repo.private,
            "visibility": if repo.private { "private" } else { "public" },
            "description": null,
            "fork": repo.fork,
            "archived": repo.archived,
            "disabled": false,
            "has_wiki": repo.has_wiki,
            "has_issues": repo.has_issues,
            "default_branch": repo.default_branch,
            "clone_url": format!("{base}/git/{full}.git"),
            "html_url": format!("{base}/{full}"),
            "url": format!("{base}/api/v3/repos/{full}"),
            "created_at": ts(repo.created_at),
            "pushed_at": ts(repo.pushed_at),
            "updated_at": ts(repo.updated_at),
            "size": repo.size_kb,
        })
    }
}
