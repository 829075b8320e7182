//! Control methods tests use to shape the fake GitHub: accounts, tokens, repositories, git
//! history, rate limits. Git work runs outside the state lock so the server keeps answering.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rand::distributions::Alphanumeric;
use rand::{Rng, RngCore};

use crate::gitcli::{command, git, git_try, init_bare, FastImport, IDENT};
use crate::metadata::Meta;
use crate::world::{now, Account, Bucket, Caller, Repo, TokenEntry, World, TOKEN_LIMIT};
use crate::{GitHubStandIn, RepoOptions};

fn new_token() -> String {
    let suffix: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(36)
        .map(char::from)
        .collect();
    format!("ghp_{suffix}")
}

/// Size of a directory tree in KiB (GitHub reports repository size in KiB).
fn size_kb(path: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(p) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                _ => e.metadata().map(|m| m.len()).unwrap_or(0),
            })
            .sum()
    }
    walk(path) / 1024
}

/// Refreshes what GitHub derives from a change to a repository's git data.
pub(crate) fn touched(w: &mut World, id: i64, wiki: bool) {
    let path = w.bare_path(id, false);
    if let Some(repo) = w.repos.get_mut(&id) {
        let t = repo.bump();
        if !wiki {
            repo.pushed_at = t;
            repo.size_kb = size_kb(&path);
        }
    }
}

impl GitHubStandIn {
    /// Creates a user and a first token for it; returns (GitHub id, token).
    pub fn add_user(&self, login: &str) -> (i64, String) {
        let mut w = self.shared.world();
        let key = login.to_lowercase();
        assert!(
            !w.accounts.contains_key(&key),
            "stand-in: account {login} already exists"
        );
        let id = w.next_id();
        w.accounts.insert(
            key.clone(),
            Account {
                id,
                login: login.to_owned(),
                is_org: false,
                members: Vec::new(),
            },
        );
        let token = new_token();
        w.tokens.insert(
            token.clone(),
            TokenEntry {
                login: key,
                revoked: false,
            },
        );
        (id, token)
    }

    /// Another valid token for an existing user.
    pub fn add_token(&self, login: &str) -> String {
        let mut w = self.shared.world();
        let key = login.to_lowercase();
        assert!(
            w.accounts.get(&key).is_some_and(|a| !a.is_org),
            "stand-in: no user {login}"
        );
        let token = new_token();
        w.tokens.insert(
            token.clone(),
            TokenEntry {
                login: key,
                revoked: false,
            },
        );
        token
    }

    /// From now on the token gets `401 Bad credentials`.
    pub fn revoke_token(&self, token: &str) {
        if let Some(e) = self.shared.world().tokens.get_mut(token) {
            e.revoked = true;
        }
    }

    /// Creates an organization with these members (logins); returns its id.
    pub fn add_org(&self, login: &str, members: &[&str]) -> i64 {
        let mut w = self.shared.world();
        let key = login.to_lowercase();
        assert!(
            !w.accounts.contains_key(&key),
            "stand-in: account {login} already exists"
        );
        let id = w.next_id();
        let members = members.iter().map(|m| m.to_lowercase()).collect();
        w.accounts.insert(
            key,
            Account {
                id,
                login: login.to_owned(),
                is_org: true,
                members,
            },
        );
        id
    }

    /// Adds a member to an existing organization.
    pub fn add_org_member(&self, org: &str, login: &str) {
        let mut w = self.shared.world();
        let a = w.accounts.get_mut(&org.to_lowercase()).filter(|a| a.is_org);
        let a = a.unwrap_or_else(|| panic!("stand-in: no organization {org}"));
        a.members.push(login.to_lowercase());
    }

    /// Creates an empty repository (no commits yet) owned by a user or organization.
    pub fn create_repo(&self, owner: &str, name: &str, opts: RepoOptions) -> i64 {
        let mut w = self.shared.world();
        let owner_key = owner.to_lowercase();
        assert!(
            w.accounts.contains_key(&owner_key),
            "stand-in: no account {owner}"
        );
        let full = format!("{owner_key}/{}", name.to_lowercase());
        assert!(
            !w.names.contains_key(&full),
            "stand-in: repository {owner}/{name} already exists"
        );
        let id = w.next_id();
        init_bare(&w.bare_path(id, false), &opts.default_branch);
        let t = now();
        w.repos.insert(
            id,
            Repo {
                id,
                owner: owner_key,
                name: name.to_owned(),
                private: opts.private,
                fork: opts.fork,
                archived: opts.archived,
                has_wiki: opts.has_wiki,
                has_issues: opts.has_issues,
                default_branch: opts.default_branch,
                created_at: t,
                updated_at: t,
                pushed_at: t,
                size_kb: 0,
                meta: Meta::default(),
            },
        );
        w.old_names.remove(&full);
        w.names.insert(full, id);
        id
    }

    /// The bare repository on disk; `owner/name.wiki` names the wiki repository.
    pub fn bare_path(&self, full_name: &str) -> PathBuf {
        let (id, wiki) = self.resolve(full_name);
        self.shared.world().bare_path(id, wiki)
    }

    /// `owner/name` or `owner/name.wiki` to (repo id, is wiki); the wiki is created on demand.
    fn resolve(&self, full_name: &str) -> (i64, bool) {
        let mut w = self.shared.world();
        if let Some(id) = w.repo_id(full_name) {
            return (id, false);
        }
        let base = full_name
            .strip_suffix(".wiki")
            .unwrap_or_else(|| panic!("stand-in: no repository {full_name}"));
        let repo = w.expect_repo(base);
        repo.has_wiki = true;
        let id = repo.id;
        let path = w.bare_path(id, true);
        if !path.exists() {
            init_bare(&path, "master");
        }
        (id, true)
    }

    /// Runs `f` on the bare repository, then records the change (pushed_at, size).
    fn change<T>(&self, full_name: &str, f: impl FnOnce(&Path) -> T) -> T {
        let (id, wiki) = self.resolve(full_name);
        let path = self.shared.world().bare_path(id, wiki);
        let out = f(&path);
        touched(&mut self.shared.world(), id, wiki);
        out
    }

    /// Where a new commit on `branch` starts: its tip, or else the default branch's tip (as when
    /// a branch is created on GitHub), or nothing in an empty repository.
    fn parent_for(bare: &Path, branch: &str) -> Option<String> {
        git_try(
            bare,
            &[
                "rev-parse",
                "--verify",
                "-q",
                &format!("refs/heads/{branch}^{{commit}}"),
            ],
        )
        .or_else(|| git_try(bare, &["rev-parse", "--verify", "-q", "HEAD^{commit}"]))
    }

    /// Commits `files` (path, content) on `branch`, creating the branch if needed; returns the new
    /// head sha. Written with `git fast-import` straight into the bare repository, which has the
    /// same outcome as a clone-commit-push and is several processes cheaper.
    pub fn commit(
        &self,
        full_name: &str,
        branch: &str,
        files: &[(&str, &str)],
        message: &str,
    ) -> String {
        self.change(full_name, |bare| {
            let mut fi = FastImport::start(
                bare,
                &format!("refs/heads/{branch}"),
                Self::parent_for(bare, branch),
            );
            let files: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_bytes())).collect();
            fi.commit(message, &files);
            fi.finish()
        })
    }

    /// `n` small commits on `branch` (each rewrites `history.txt`); returns the new head sha.
    pub fn commits(&self, full_name: &str, branch: &str, n: usize) -> String {
        self.change(full_name, |bare| {
            let parent = Self::parent_for(bare, branch);
            let mut fi = FastImport::start(bare, &format!("refs/heads/{branch}"), parent);
            let nonce = rand::thread_rng().next_u64();
            for i in 0..n {
                let content = format!("commit {i} on {branch} ({nonce:x})\n");
                fi.commit(
                    &format!("Commit {i} on {branch}"),
                    &[("history.txt", content.as_bytes())],
                );
            }
            fi.finish()
        })
    }

    /// `commits` commits on `branch` whose files total about `bytes` bytes of random
    /// (incompressible) data, spread over 64 files so later commits modify earlier ones.
    pub fn generate_history(&self, full_name: &str, branch: &str, commits: usize, bytes: usize) {
        if commits == 0 {
            return;
        }
        self.change(full_name, |bare| {
            let parent = Self::parent_for(bare, branch);
            let mut fi = FastImport::start(bare, &format!("refs/heads/{branch}"), parent);
            let per = bytes / commits;
            let mut rng = rand::thread_rng();
            let mut buf = Vec::new();
            for i in 0..commits {
                let len = if i + 1 == commits {
                    bytes - per * (commits - 1)
                } else {
                    per
                };
                buf.resize(len, 0);
                rng.fill_bytes(&mut buf);
                let path = format!("data/blob-{:02}.bin", i % 64);
                fi.commit(&format!("Generated commit {i}"), &[(path.as_str(), &buf)]);
            }
            fi.finish();
        });
    }

    /// Creates a lightweight tag on a branch (name) or a commit (sha).
    pub fn create_tag(&self, full_name: &str, tag: &str, target: &str) {
        self.change(full_name, |bare| {
            let sha = resolve_target(bare, target);
            git(bare, &["update-ref", &format!("refs/tags/{tag}"), &sha]);
        });
    }

    /// Creates an annotated tag object on a branch (name) or a commit (sha).
    pub fn create_annotated_tag(&self, full_name: &str, tag: &str, target: &str, message: &str) {
        self.change(full_name, |bare| {
            let sha = resolve_target(bare, target);
            git(bare, &["tag", "-a", "-m", message, tag, &sha]);
        });
    }

    /// Deletes a ref such as `refs/heads/x` or `refs/tags/v1`.
    pub fn delete_ref(&self, full_name: &str, refname: &str) {
        self.change(full_name, |bare| {
            git(bare, &["update-ref", "-d", refname]);
        });
    }

    /// Replaces the tip of `branch` by a new commit with the same tree and parent but another
    /// message, as a force-push of an amended commit would; returns the new sha.
    pub fn force_push_rewrite(&self, full_name: &str, branch: &str) -> String {
        self.change(full_name, |bare| {
            let refname = format!("refs/heads/{branch}");
            let old = git(bare, &["rev-parse", &format!("{refname}^{{commit}}")]);
            let tree = format!("{old}^{{tree}}");
            let message = format!("Rewritten {branch} ({:x})", rand::thread_rng().next_u64());
            let mut args = vec!["commit-tree", tree.as_str(), "-m", message.as_str()];
            let parent = git_try(bare, &["rev-parse", "--verify", "-q", &format!("{old}^")]);
            if let Some(p) = &parent {
                args.extend(["-p", p.as_str()]);
            }
            let (name, email) = IDENT.split_once(" <").expect("identity has an email");
            let email = email.trim_end_matches('>');
            let env = [
                ("GIT_AUTHOR_NAME", name),
                ("GIT_AUTHOR_EMAIL", email),
                ("GIT_COMMITTER_NAME", name),
                ("GIT_COMMITTER_EMAIL", email),
            ];
            let out = command(bare, &args, &env)
                .output()
                .expect("run git commit-tree");
            assert!(
                out.status.success(),
                "git commit-tree failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let new = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            git(bare, &["update-ref", &refname, &new, &old]);
            new
        })
    }

    /// Branches and tags with the object each points at.
    pub fn refs(&self, full_name: &str) -> BTreeMap<String, String> {
        crate::refs_of(&self.bare_path(full_name))
    }

    /// Renames a repository; the old name answers 301 to `/repositories/{id}`.
    pub fn rename_repo(&self, full_name: &str, new_name: &str) {
        let mut w = self.shared.world();
        let id = w.expect_repo(full_name).id;
        let owner = w.repos[&id].owner.clone();
        move_repo(&mut w, full_name, id, &owner, new_name);
    }

    /// Moves a repository to another account; the old name answers 301.
    pub fn transfer_repo(&self, full_name: &str, new_owner: &str) {
        let mut w = self.shared.world();
        let id = w.expect_repo(full_name).id;
        let owner = new_owner.to_lowercase();
        assert!(
            w.accounts.contains_key(&owner),
            "stand-in: no account {new_owner}"
        );
        let name = w.repos[&id].name.clone();
        move_repo(&mut w, full_name, id, &owner, &name);
    }

    /// Deletes a repository and its git data; every name it had answers 404.
    pub fn delete_repo(&self, full_name: &str) {
        let mut w = self.shared.world();
        let id = w.expect_repo(full_name).id;
        w.repos.remove(&id);
        w.names.retain(|_, v| *v != id);
        w.old_names.retain(|_, v| *v != id);
        for wiki in [false, true] {
            let _ = std::fs::remove_dir_all(w.bare_path(id, wiki));
        }
    }

    /// Sets a token's primary rate limit window (limit stays 5000). Once `reset` has passed, the
    /// next request starts a fresh window, as on GitHub.
    pub fn set_rate_limit(&self, token: &str, remaining: u32, reset: DateTime<Utc>) {
        let mut w = self.shared.world();
        w.buckets.insert(
            token.to_owned(),
            Bucket {
                limit: TOKEN_LIMIT,
                remaining,
                reset,
            },
        );
    }

    /// Same as [`GitHubStandIn::set_rate_limit`] for anonymous callers (limit 60).
    pub fn set_anonymous_rate_limit(&self, remaining: u32, reset: DateTime<Utc>) {
        let mut w = self.shared.world();
        w.buckets.insert(
            crate::world::ANONYMOUS.to_owned(),
            Bucket {
                limit: crate::world::ANONYMOUS_LIMIT,
                remaining,
                reset,
            },
        );
    }

    /// Remaining primary rate limit of a token (after rolling an expired window).
    pub fn rate_limit_remaining(&self, token: &str) -> u32 {
        let mut w = self.shared.world();
        let caller = Caller::User {
            token: token.to_owned(),
            login: String::new(),
        };
        w.bucket(&caller).remaining
    }
}

fn move_repo(w: &mut World, old_full: &str, id: i64, owner: &str, name: &str) {
    let new_full = format!("{owner}/{}", name.to_lowercase());
    assert!(
        !w.names.contains_key(&new_full),
        "stand-in: repository {new_full} already exists"
    );
    let old_key = old_full.to_lowercase();
    w.names.remove(&old_key);
    w.old_names.insert(old_key, id);
    w.old_names.remove(&new_full);
    w.names.insert(new_full, id);
    let repo = w.repos.get_mut(&id).expect("repo exists");
    repo.owner = owner.to_owned();
    repo.name = name.to_owned();
    repo.bump();
}

fn resolve_target(bare: &Path, target: &str) -> String {
    git_try(
        bare,
        &[
            "rev-parse",
            "--verify",
            "-q",
            &format!("refs/heads/{target}^{{commit}}"),
        ],
    )
    .unwrap_or_else(|| {
        git(
            bare,
            &["rev-parse", "--verify", &format!("{target}^{{commit}}")],
        )
    })
}
