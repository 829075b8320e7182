//! Repository metadata (issues, pull requests, comments, reviews, labels, milestones, releases):
//! storage as GitHub-shaped JSON values, the list endpoints, and the control methods that create
//! and edit them. Items are kept as `serde_json::Value` because the stand-in only stores and
//! replays them; filters read `state` and `updated_at` back out.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use http::StatusCode;
use serde_json::{json, Value};

use crate::rest::{ListReq, Out};
use crate::world::{ts, Repo, World};
use crate::GitHubStandIn;

#[derive(Default)]
pub(crate) struct Meta {
    pub(crate) next_number: u64,
    pub(crate) next_milestone: u64,
    /// Issues and pull requests (pull requests carry a `pull_request` key), by number.
    pub(crate) issues: BTreeMap<u64, Value>,
    pub(crate) pulls: BTreeMap<u64, Value>,
    pub(crate) issue_comments: BTreeMap<u64, Vec<Value>>,
    pub(crate) reviews: BTreeMap<u64, Vec<Value>>,
    pub(crate) review_comments: BTreeMap<u64, Vec<Value>>,
    /// The commits of each pull request (`base..head` when it was opened), as GitHub lists them.
    pub(crate) pull_commits: BTreeMap<u64, Vec<Value>>,
    pub(crate) labels: Vec<Value>,
    pub(crate) milestones: BTreeMap<u64, Value>,
    pub(crate) releases: Vec<Value>,
    /// The bytes of each uploaded release asset, by asset id.
    pub(crate) asset_bytes: BTreeMap<i64, Vec<u8>>,
    /// Issue imports by id, as `GET /import/issues/{id}` shows them.
    pub(crate) imports: BTreeMap<i64, Value>,
}

fn updated_at(v: &Value) -> Option<DateTime<Utc>> {
    v["updated_at"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Applies GitHub's `state`, `since`, `sort` and `direction` parameters.
fn filter(
    items: Vec<&Value>,
    list: &ListReq<'_>,
    default_state: Option<&str>,
    default_desc: bool,
) -> Vec<Value> {
    let state = list.query.get("state").or(default_state);
    let since = list
        .query
        .get("since")
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    let mut out: Vec<Value> = items
        .into_iter()
        .filter(|v| match state {
            Some("all") | None => true,
            Some(s) => v["state"].as_str() == Some(s),
        })
        .filter(|v| since.is_none_or(|s| updated_at(v).is_some_and(|u| u >= s)))
        .cloned()
        .collect();
    if list.query.get("sort") == Some("updated") {
        out.sort_by_key(updated_at);
    }
    let desc = match list.query.get("direction") {
        Some("asc") => false,
        Some("desc") => true,
        _ => default_desc,
    };
    if desc {
        out.reverse();
    }
    out
}

pub(crate) fn route(w: &World, repo: &Repo, rest: &[&str], list: &ListReq<'_>) -> Out {
    let m = &repo.meta;
    let num = |s: &str| s.parse::<u64>().ok();
    if !repo.has_issues && matches!(rest, ["issues"] | ["issues", _]) {
        return Out::message(StatusCode::GONE, "Issues are disabled for this repo");
    }
    let items = match rest {
        ["issues"] => filter(m.issues.values().collect(), list, Some("open"), true),
        ["issues", "comments"] => filter(
            m.issue_comments.values().flatten().collect(),
            list,
            None,
            false,
        ),
        ["issues", n] => return single(num(n).and_then(|n| m.issues.get(&n))),
        ["issues", n, "comments"] => filter(
            num(n)
                .and_then(|n| m.issue_comments.get(&n))
                .into_iter()
                .flatten()
                .collect(),
            list,
            None,
            false,
        ),
        ["pulls"] => filter(m.pulls.values().collect(), list, Some("open"), true),
        ["pulls", "comments"] => filter(
            m.review_comments.values().flatten().collect(),
            list,
            None,
            false,
        ),
        ["pulls", n] => return single(num(n).and_then(|n| m.pulls.get(&n))),
        ["pulls", n, "reviews"] => filter(
            num(n)
                .and_then(|n| m.reviews.get(&n))
                .into_iter()
                .flatten()
                .collect(),
            list,
            None,
            false,
        ),
        ["pulls", n, "commits"] => match num(n).and_then(|n| m.pull_commits.get(&n)) {
            Some(commits) => commits.clone(),
            None => return Out::not_found(),
        },
        ["pulls", n, "comments"] => filter(
            num(n)
                .and_then(|n| m.review_comments.get(&n))
                .into_iter()
                .flatten()
                .collect(),
            list,
            None,
            false,
        ),
        ["labels"] => m.labels.clone(),
        ["milestones"] => filter(m.milestones.values().collect(), list, Some("open"), false),
        ["releases"] => filter(m.releases.iter().collect(), list, None, true),
        ["import", "issues", id] if w.issue_import => {
            return single(id.parse::<i64>().ok().and_then(|id| m.imports.get(&id)))
        }
        // As GitHub does for `Accept: application/octet-stream` (the only way the server asks):
        // a redirect to a signed URL on another host, here `localhost` instead of `127.0.0.1`,
        // so a client that follows it with its token shows up in the request log.
        ["releases", "assets", id] => {
            let Some(id) = id
                .parse::<i64>()
                .ok()
                .filter(|id| m.asset_bytes.contains_key(id))
            else {
                return Out::not_found();
            };
            let host = w.base_url.replacen("127.0.0.1", "localhost", 1);
            let mut out = Out::ok(json!({}));
            out.status = StatusCode::FOUND;
            out.headers.push((
                "location",
                format!("{host}/_assets/{}/{id}?signature=stand-in", repo.id),
            ));
            return out;
        }
        _ => return Out::not_found(),
    };
    list.page(w, items)
}

fn single(v: Option<&Value>) -> Out {
    v.map_or_else(Out::not_found, |v| Out::ok(v.clone()))
}

/// Runs `f` on a repository's metadata with the author JSON and URLs it needs, and bumps the
/// repository's `updated_at` as GitHub does when issues change.
fn with_meta<T>(s: &GitHubStandIn, full_name: &str, f: impl FnOnce(&mut Meta, Ctx) -> T) -> T {
    let mut w = s.shared.world();
    let id = w.expect_repo(full_name).id;
    let next_id = w.next_id();
    // Every change gets the repository's strictly increasing time, so that two changes within
    // one second still order (and `since` still finds them) as GitHub's would a second apart.
    let t = w.repos.get_mut(&id).expect("repo exists").bump();
    let repo = &w.repos[&id];
    let ctx = Ctx {
        id: next_id,
        user: w.owner_json(&repo.owner),
        html: format!("{}/{}", w.base_url, w.full_name(repo)),
        api: format!("{}/api/v3/repos/{}", w.base_url, w.full_name(repo)),
        now: ts(t),
    };
    let repo = w.repos.get_mut(&id).expect("repo exists");
    f(&mut repo.meta, ctx)
}

struct Ctx {
    id: i64,
    user: Value,
    html: String,
    api: String,
    now: String,
}

impl GitHubStandIn {
    /// The bytes uploaded as release asset `asset_id` of a repository, if any.
    pub fn release_asset_bytes(&self, full_name: &str, asset_id: i64) -> Option<Vec<u8>> {
        let mut w = self.shared.world();
        w.expect_repo(full_name)
            .meta
            .asset_bytes
            .get(&asset_id)
            .cloned()
    }

    /// Opens an issue; returns its number (shared with pull requests, as on GitHub).
    pub fn create_issue(&self, full_name: &str, title: &str, body: &str) -> u64 {
        with_meta(self, full_name, |m, c| {
            m.next_number += 1;
            let n = m.next_number;
            m.issues.insert(n, issue_json(&c, n, title, body, "issues"));
            n
        })
    }

    /// Opens a pull request from `head` into `base`; it also appears in the issue list.
    pub fn create_pull(&self, full_name: &str, title: &str, head: &str, base: &str) -> u64 {
        let refs = self.refs(full_name);
        let both = [head, base]
            .iter()
            .all(|b| refs.contains_key(&format!("refs/heads/{b}")));
        let log = if both {
            let range = format!("refs/heads/{base}..refs/heads/{head}");
            crate::git(
                &self.bare_path(full_name),
                &["log", "--reverse", "--format=%H%x09%s", &range, "--"],
            )
        } else {
            String::new()
        };
        let sha_of = |b: &str| refs.get(&format!("refs/heads/{b}")).cloned();
        let (head_sha, base_sha) = (sha_of(head), sha_of(base));
        let commits: Vec<Value> = log
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(sha, msg)| json!({ "sha": sha, "commit": { "message": msg } }))
            .collect();
        let number = with_meta(self, full_name, |m, c| {
            m.next_number += 1;
            let n = m.next_number;
            let mut issue = issue_json(&c, n, title, "", "pull");
            issue["pull_request"] = json!({ "url": format!("{}/pulls/{n}", c.api), "html_url": format!("{}/pull/{n}", c.html) });
            let mut pull = issue_json(&c, n, title, "", "pull");
            pull["head"] = json!({ "ref": head, "label": head, "sha": head_sha });
            pull["base"] = json!({ "ref": base, "label": base, "sha": base_sha });
            pull["merged_at"] = Value::Null;
            m.issues.insert(n, issue);
            m.pulls.insert(n, pull);
            m.pull_commits.insert(n, commits);
            n
        });
        // GitHub keeps every pull request's head as `refs/pull/N/head` in the base repository.
        if let Some(sha) = head_sha {
            crate::git(
                &self.bare_path(full_name),
                &["update-ref", &format!("refs/pull/{number}/head"), &sha],
            );
        }
        number
    }

    /// Merges `patch`'s top-level fields into an issue or pull request (e.g.
    /// `{"state": "closed"}`) and bumps its `updated_at`.
    pub fn edit_issue(&self, full_name: &str, number: u64, patch: Value) {
        with_meta(self, full_name, |m, c| {
            let mut found = false;
            for v in [m.issues.get_mut(&number), m.pulls.get_mut(&number)]
                .into_iter()
                .flatten()
            {
                found = true;
                if let (Some(obj), Some(p)) = (v.as_object_mut(), patch.as_object()) {
                    for (k, val) in p {
                        obj.insert(k.clone(), val.clone());
                    }
                    obj.insert("updated_at".into(), json!(c.now));
                    if p.get("state").and_then(Value::as_str) == Some("closed") {
                        obj.insert("closed_at".into(), json!(c.now));
                    }
                }
            }
            assert!(found, "stand-in: no issue #{number} in {full_name}");
        })
    }

    pub fn add_issue_comment(&self, full_name: &str, number: u64, body: &str) -> i64 {
        with_meta(self, full_name, |m, c| {
            let v = json!({
                "id": c.id, "body": body, "user": c.user, "created_at": c.now, "updated_at": c.now,
                "html_url": format!("{}/issues/{number}#issuecomment-{}", c.html, c.id),
                "issue_url": format!("{}/issues/{number}", c.api),
            });
            m.issue_comments.entry(number).or_default().push(v);
            let total = m.issue_comments[&number].len();
            m.touch(number, &c.now, Some(total));
            c.id
        })
    }

    /// Edits a comment's body as GitHub does: the comment's `updated_at` moves, the issue's
    /// listing does not change.
    pub fn edit_issue_comment(&self, full_name: &str, id: i64, body: &str) {
        with_meta(self, full_name, |m, c| {
            let comment = m
                .issue_comments
                .values_mut()
                .flatten()
                .find(|v| v["id"] == id)
                .unwrap_or_else(|| panic!("stand-in: no comment {id} in {full_name}"));
            comment["body"] = json!(body);
            comment["updated_at"] = json!(c.now);
        })
    }

    /// Deletes a comment: it leaves every listing and the issue's `comments` count drops, but
    /// the issue's `updated_at` does not move (nothing in a `since` listing shows the deletion).
    pub fn delete_issue_comment(&self, full_name: &str, id: i64) {
        with_meta(self, full_name, |m, _| {
            let (number, list) = m
                .issue_comments
                .iter_mut()
                .find(|(_, l)| l.iter().any(|v| v["id"] == id))
                .unwrap_or_else(|| panic!("stand-in: no comment {id} in {full_name}"));
            list.retain(|v| v["id"] != id);
            let (number, total) = (*number, list.len());
            for v in [m.issues.get_mut(&number), m.pulls.get_mut(&number)]
                .into_iter()
                .flatten()
            {
                v["comments"] = json!(total);
            }
        })
    }

    /// Adds a review (`state` like `APPROVED`, `COMMENTED`, `CHANGES_REQUESTED`).
    pub fn add_review(&self, full_name: &str, number: u64, state: &str, body: &str) -> i64 {
        with_meta(self, full_name, |m, c| {
            let v = json!({
                "id": c.id, "body": body, "state": state, "user": c.user, "submitted_at": c.now,
                "updated_at": c.now, "html_url": format!("{}/pull/{number}#pullrequestreview-{}", c.html, c.id),
            });
            m.reviews.entry(number).or_default().push(v);
            m.touch(number, &c.now, None);
            c.id
        })
    }

    pub fn add_review_comment(&self, full_name: &str, number: u64, path: &str, body: &str) -> i64 {
        with_meta(self, full_name, |m, c| {
            let v = json!({
                "id": c.id, "body": body, "path": path, "user": c.user, "created_at": c.now, "updated_at": c.now,
                "html_url": format!("{}/pull/{number}#discussion_r{}", c.html, c.id),
                "pull_request_url": format!("{}/pulls/{number}", c.api),
            });
            m.review_comments.entry(number).or_default().push(v);
            m.touch(number, &c.now, None);
            c.id
        })
    }

    pub fn create_label(&self, full_name: &str, name: &str, color: &str) -> i64 {
        with_meta(self, full_name, |m, c| {
            m.labels.push(json!({
                "id": c.id, "name": name, "color": color, "description": null, "default": false,
                "url": format!("{}/labels/{name}", c.api),
            }));
            c.id
        })
    }

    /// Creates an open milestone; returns its number.
    pub fn create_milestone(&self, full_name: &str, title: &str) -> u64 {
        with_meta(self, full_name, |m, c| {
            m.next_milestone += 1;
            let n = m.next_milestone;
            m.milestones.insert(
                n,
                json!({
                    "id": c.id, "number": n, "title": title, "state": "open", "description": null,
                    "creator": c.user, "created_at": c.now, "updated_at": c.now,
                    "html_url": format!("{}/milestone/{n}", c.html),
                }),
            );
            n
        })
    }

    /// Renames a label: the label list and every issue carrying it change, as on GitHub, but no
    /// issue's `updated_at` moves.
    pub fn rename_label(&self, full_name: &str, old: &str, new: &str) {
        with_meta(self, full_name, |m, _| {
            let mut found = false;
            for label in m.labels.iter_mut().filter(|l| l["name"] == old) {
                label["name"] = json!(new);
                found = true;
            }
            assert!(found, "stand-in: no label {old} in {full_name}");
            for item in m.issues.values_mut().chain(m.pulls.values_mut()) {
                for label in item["labels"].as_array_mut().into_iter().flatten() {
                    if label["name"] == old {
                        label["name"] = json!(new);
                    }
                }
            }
        })
    }

    /// Puts a label (by name, as listed) on an issue or pull request and bumps its `updated_at`.
    pub fn add_label_to(&self, full_name: &str, number: u64, name: &str) {
        with_meta(self, full_name, |m, c| {
            let label = m
                .labels
                .iter()
                .find(|l| l["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("stand-in: no label {name} in {full_name}"));
            for v in [m.issues.get_mut(&number), m.pulls.get_mut(&number)]
                .into_iter()
                .flatten()
            {
                if let Some(labels) = v["labels"].as_array_mut() {
                    labels.push(label.clone());
                }
                v["updated_at"] = json!(c.now);
            }
        })
    }

    /// Merges `patch` into the release of `tag` and bumps its `updated_at`.
    pub fn edit_release(&self, full_name: &str, tag: &str, patch: Value) {
        with_meta(self, full_name, |m, c| {
            let release = m
                .releases
                .iter_mut()
                .find(|r| r["tag_name"] == tag)
                .unwrap_or_else(|| panic!("stand-in: no release {tag} in {full_name}"));
            if let (Some(obj), Some(p)) = (release.as_object_mut(), patch.as_object()) {
                for (k, v) in p {
                    obj.insert(k.clone(), v.clone());
                }
                obj.insert("updated_at".into(), json!(c.now));
            }
        })
    }

    /// Attaches an asset named `name` holding `bytes` to the release of `tag` (whose
    /// `updated_at` moves, as an upload moves it on GitHub); returns the asset's id.
    pub fn add_release_asset(&self, full_name: &str, tag: &str, name: &str, bytes: &[u8]) -> i64 {
        with_meta(self, full_name, |m, c| {
            let release = m
                .releases
                .iter_mut()
                .find(|r| r["tag_name"] == tag)
                .unwrap_or_else(|| panic!("stand-in: no release {tag} in {full_name}"));
            release["assets"]
                .as_array_mut()
                .expect("assets is a list")
                .push(json!({
                    "id": c.id, "name": name, "label": null, "state": "uploaded",
                    "content_type": "application/octet-stream", "size": bytes.len(),
                    "download_count": 0, "uploader": c.user, "created_at": c.now, "updated_at": c.now,
                    "url": format!("{}/releases/assets/{}", c.api, c.id),
                    "browser_download_url": format!("{}/releases/download/{tag}/{name}", c.html),
                }));
            release["updated_at"] = json!(c.now);
            m.asset_bytes.insert(c.id, bytes.to_vec());
            c.id
        })
    }

    /// Publishes a release for `tag` (the tag itself is not created; see `create_tag`).
    pub fn create_release(&self, full_name: &str, tag: &str, name: &str) -> i64 {
        with_meta(self, full_name, |m, c| {
            m.releases.push(json!({
                "id": c.id, "tag_name": tag, "name": name, "body": "", "draft": false, "prerelease": false,
                "author": c.user, "created_at": c.now, "published_at": c.now, "updated_at": c.now, "assets": [],
                "html_url": format!("{}/releases/tag/{tag}", c.html),
            }));
            c.id
        })
    }
}

impl Meta {
    /// The label objects for a request's `labels` (names), as GitHub puts them on an issue; an
    /// unknown name is created on the fly by GitHub, which a restore never relies on: refused.
    pub(crate) fn labels_named(&self, names: &Value) -> Result<Vec<Value>, Out> {
        let mut out = Vec::new();
        for name in names.as_array().into_iter().flatten() {
            match self.labels.iter().find(|l| l["name"] == *name) {
                Some(l) => out.push(l.clone()),
                None => {
                    return Err(Out::message(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Validation Failed: unknown label",
                    ))
                }
            }
        }
        Ok(out)
    }

    /// What GitHub does to an issue or pull request when something is added to it: `updated_at`
    /// moves, and the conversation count follows when `comments` is given.
    fn touch(&mut self, number: u64, now: &str, comments: Option<usize>) {
        for v in [self.issues.get_mut(&number), self.pulls.get_mut(&number)]
            .into_iter()
            .flatten()
        {
            v["updated_at"] = json!(now);
            if let Some(n) = comments {
                v["comments"] = json!(n);
            }
        }
    }
}

fn issue_json(c: &Ctx, n: u64, title: &str, body: &str, kind: &str) -> Value {
    json!({
        "id": c.id, "number": n, "title": title, "body": body, "state": "open", "user": c.user,
        "labels": [], "comments": 0, "created_at": c.now, "updated_at": c.now, "closed_at": null,
        "html_url": format!("{}/{kind}/{n}", c.html),
        "url": format!("{}/{}/{n}", c.api, if kind == "pull" { "pulls" } else { "issues" }),
    })
}

/// The asset host's side of a download: `/_assets/{repo id}/{asset id}`, no token needed (the
/// signature in the URL stands for it). Not an API request: nothing is counted.
pub(crate) fn serve_asset(
    ctx: &crate::server::Ctx,
    rest: &str,
    drop_mid_body: bool,
) -> axum::response::Response {
    let ids: Vec<i64> = rest.split('/').filter_map(|s| s.parse().ok()).collect();
    let bytes = match ids[..] {
        [repo, asset] => ctx
            .shared
            .world()
            .repos
            .get(&repo)
            .and_then(|r| r.meta.asset_bytes.get(&asset).cloned()),
        _ => None,
    };
    let Some(bytes) = bytes else {
        ctx.record(404, false, false);
        return crate::server::json_response(
            StatusCode::NOT_FOUND,
            Vec::new(),
            crate::server::not_found_body(),
        );
    };
    ctx.record(200, false, false);
    let bytes = bytes::Bytes::from(bytes);
    let mut resp = axum::response::Response::new(axum::body::Body::from(bytes.clone()));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    if drop_mid_body {
        crate::server::cut_body(resp, bytes)
    } else {
        resp
    }
}
