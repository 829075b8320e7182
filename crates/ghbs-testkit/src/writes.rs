//! The REST writes a restore makes: labels, milestones, issues (created, then edited), issue
//! comments, releases and release-asset uploads, in GitHub's request and response shapes. What
//! is written lands in the same [`Meta`] the list endpoints read, so a backup of a restored
//! repository sees it as GitHub would. Pull requests, reviews and review comments cannot be
//! written (a restore recreates them as issues and comments, which is the documented fallback).
//!
//! [`Meta`]: crate::metadata::Meta

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::http_util::Query;
use crate::rest::Out;
use crate::world::{ts, World};

/// GitHub's 422 for a request that breaks a rule (an existing label name, a missing title).
fn invalid(code: &str, field: &str) -> Out {
    Out {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        body: json!({"message": "Validation Failed",
            "errors": [{"resource": "Issue", "code": code, "field": field}],
            "documentation_url": "https://docs.github.com/rest"}),
        headers: Vec::new(),
    }
}

fn created(body: Value) -> Out {
    Out {
        status: StatusCode::CREATED,
        body,
        headers: Vec::new(),
    }
}

/// The label objects and the milestone object a new issue names (`labels`: names,
/// `milestone`: a number), or the 422 GitHub gives for an unknown one.
fn labels_and_milestone(
    m: &crate::metadata::Meta,
    issue: &Value,
) -> Result<(Vec<Value>, Value), Out> {
    let labels = m.labels_named(&issue["labels"])?;
    let milestone = match issue["milestone"].as_u64() {
        None => Value::Null,
        Some(n) => match m.milestones.get(&n) {
            Some(v) => v.clone(),
            None => return Err(invalid("invalid", "milestone")),
        },
    };
    Ok((labels, milestone))
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v[key].as_str()
}

/// Serves one write to the repository `id` by `login` (who may write to it).
pub(crate) fn write(
    w: &mut World,
    login: &str,
    id: i64,
    rest: &[&str],
    method: &Method,
    query: &Query,
    body: &Bytes,
) -> Out {
    let json: Value = if rest.last() == Some(&"assets") {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Out::message(StatusCode::BAD_REQUEST, "Problems parsing JSON"),
        }
    };
    let next_id = w.next_id();
    // Ids for the comments of an issue import, taken before the repository is borrowed.
    let comment_ids: Vec<i64> = (0..json["comments"].as_array().map_or(0, Vec::len))
        .map(|_| w.next_id())
        .collect();
    let issue_import = w.issue_import;
    let user = w.owner_json(login);
    let t = ts(w.repos.get_mut(&id).expect("repo exists").bump());
    let repo = &w.repos[&id];
    let full = w.full_name(repo);
    let html = format!("{}/{full}", w.base_url);
    let api = format!("{}/api/v3/repos/{full}", w.base_url);
    let m = &mut w.repos.get_mut(&id).expect("repo exists").meta;
    let num = |s: &str| s.parse::<u64>().ok();
    match (method.clone(), rest) {
        (Method::POST, ["labels"]) => {
            let Some(name) = text(&json, "name") else {
                return invalid("missing_field", "name");
            };
            if m.labels.iter().any(|l| {
                l["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            }) {
                return invalid("already_exists", "name");
            }
            let label = json!({"id": next_id, "name": name,
                "color": text(&json, "color").unwrap_or("ededed"),
                "description": json.get("description").cloned().unwrap_or(Value::Null),
                "default": false, "url": format!("{api}/labels/{name}")});
            m.labels.push(label.clone());
            created(label)
        }
        (Method::PATCH, ["labels", name]) => {
            let Some(label) = m.labels.iter_mut().find(|l| l["name"] == *name) else {
                return Out::not_found();
            };
            for key in ["color", "description"] {
                if let Some(v) = json.get(key) {
                    label[key] = v.clone();
                }
            }
            Out::ok(label.clone())
        }
        (Method::POST, ["milestones"]) => {
            let Some(title) = text(&json, "title") else {
                return invalid("missing_field", "title");
            };
            m.next_milestone += 1;
            let n = m.next_milestone;
            let state = text(&json, "state").unwrap_or("open");
            let v = json!({"id": next_id, "number": n, "title": title, "state": state,
                "description": json.get("description").cloned().unwrap_or(Value::Null),
                "due_on": json.get("due_on").cloned().unwrap_or(Value::Null),
                "creator": user, "created_at": t, "updated_at": t,
                "closed_at": if state == "closed" { json!(t) } else { Value::Null },
                "html_url": format!("{html}/milestone/{n}")});
            m.milestones.insert(n, v.clone());
            created(v)
        }
        (Method::POST, ["issues"]) => {
            let Some(title) = text(&json, "title") else {
                return invalid("missing_field", "title");
            };
            let (labels, milestone) = match labels_and_milestone(m, &json) {
                Ok(v) => v,
                Err(out) => return out,
            };
            m.next_number += 1;
            let n = m.next_number;
            let v = json!({"id": next_id, "number": n, "title": title,
                "body": json.get("body").cloned().unwrap_or(Value::Null),
                "state": "open", "state_reason": null, "user": user, "labels": labels,
                "milestone": milestone, "comments": 0, "created_at": t, "updated_at": t,
                "closed_at": null, "html_url": format!("{html}/issues/{n}"),
                "url": format!("{api}/issues/{n}")});
            m.issues.insert(n, v.clone());
            created(v)
        }
        // GitHub's issue import (a preview API): one request per issue with its comments, times
        // kept. Applied at once here; the answer says "pending" and the status URL "imported".
        (Method::POST, ["import", "issues"]) if issue_import => {
            let issue = &json["issue"];
            let Some(title) = text(issue, "title") else {
                return invalid("missing_field", "title");
            };
            let (labels, milestone) = match labels_and_milestone(m, issue) {
                Ok(v) => v,
                Err(out) => return out,
            };
            let at = |key: &str| issue[key].as_str().map_or(json!(t), |s| json!(s));
            let closed = issue["closed"].as_bool().unwrap_or(false);
            m.next_number += 1;
            let n = m.next_number;
            let comments: Vec<Value> = json["comments"]
                .as_array()
                .into_iter()
                .flatten()
                .zip(&comment_ids)
                .map(|(c, id)| {
                    let at = c["created_at"].as_str().map_or(json!(t), |s| json!(s));
                    json!({"id": id, "body": c["body"], "user": user, "created_at": at,
                        "updated_at": at, "html_url": format!("{html}/issues/{n}#issuecomment-{id}"),
                        "issue_url": format!("{api}/issues/{n}")})
                })
                .collect();
            let v = json!({"id": next_id, "number": n, "title": title,
                "body": issue.get("body").cloned().unwrap_or(Value::Null),
                "state": if closed { "closed" } else { "open" }, "state_reason": null,
                "user": user, "labels": labels, "milestone": milestone,
                "comments": comments.len(), "created_at": at("created_at"),
                "updated_at": at("updated_at"),
                "closed_at": if closed { at("closed_at") } else { Value::Null },
                "html_url": format!("{html}/issues/{n}"), "url": format!("{api}/issues/{n}")});
            m.issues.insert(n, v);
            if !comments.is_empty() {
                m.issue_comments.insert(n, comments);
            }
            let url = format!("{api}/import/issues/{next_id}");
            m.imports.insert(
                next_id,
                json!({"id": next_id, "status": "imported", "url": url,
                    "issue_url": format!("{api}/issues/{n}"), "created_at": t, "updated_at": t}),
            );
            Out {
                status: StatusCode::ACCEPTED,
                body: json!({"id": next_id, "status": "pending", "url": url,
                    "import_issues_url": format!("{api}/import/issues"),
                    "repository_url": api, "created_at": t, "updated_at": t}),
                headers: Vec::new(),
            }
        }
        (Method::PATCH, ["issues", n]) => {
            let Some(issue) = num(n).and_then(|n| m.issues.get_mut(&n)) else {
                return Out::not_found();
            };
            for key in ["title", "body", "state_reason"] {
                if let Some(v) = json.get(key) {
                    issue[key] = v.clone();
                }
            }
            if let Some(state) = text(&json, "state") {
                if issue["state"] != state {
                    issue["closed_at"] = if state == "closed" {
                        json!(t)
                    } else {
                        Value::Null
                    };
                }
                issue["state"] = json!(state);
            }
            issue["updated_at"] = json!(t);
            Out::ok(issue.clone())
        }
        (Method::POST, ["issues", n, "comments"]) => {
            let Some(n) = num(n).filter(|n| m.issues.contains_key(n)) else {
                return Out::not_found();
            };
            let Some(body) = text(&json, "body") else {
                return invalid("missing_field", "body");
            };
            let v = json!({"id": next_id, "body": body, "user": user, "created_at": t,
                "updated_at": t, "html_url": format!("{html}/issues/{n}#issuecomment-{next_id}"),
                "issue_url": format!("{api}/issues/{n}")});
            let list = m.issue_comments.entry(n).or_default();
            list.push(v.clone());
            let total = list.len();
            let issue = m.issues.get_mut(&n).expect("checked above");
            issue["comments"] = json!(total);
            issue["updated_at"] = json!(t);
            created(v)
        }
        (Method::POST, ["releases"]) => {
            let Some(tag) = text(&json, "tag_name") else {
                return invalid("missing_field", "tag_name");
            };
            if m.releases.iter().any(|r| r["tag_name"] == tag) {
                return invalid("already_exists", "tag_name");
            }
            let v = json!({"id": next_id, "tag_name": tag,
                "name": json.get("name").cloned().unwrap_or(Value::Null),
                "body": json.get("body").cloned().unwrap_or(Value::Null),
                "draft": json["draft"].as_bool().unwrap_or(false),
                "prerelease": json["prerelease"].as_bool().unwrap_or(false),
                "target_commitish": text(&json, "target_commitish").unwrap_or("main"),
                "author": user, "created_at": t, "published_at": t, "updated_at": t, "assets": [],
                "html_url": format!("{html}/releases/tag/{tag}"),
                "upload_url": format!("{api}/releases/{next_id}/assets{{?name,label}}")});
            m.releases.push(v.clone());
            created(v)
        }
        (Method::POST, ["releases", rid, "assets"]) => {
            let Some(release) = m
                .releases
                .iter_mut()
                .find(|r| r["id"].as_i64().is_some_and(|i| i.to_string() == *rid))
            else {
                return Out::not_found();
            };
            let Some(name) = query.get("name") else {
                return invalid("missing_field", "name");
            };
            let tag = release["tag_name"].as_str().unwrap_or_default().to_owned();
            let assets = release["assets"].as_array_mut().expect("assets is a list");
            if assets.iter().any(|a| a["name"] == name) {
                return invalid("already_exists", "name");
            }
            let v = json!({"id": next_id, "name": name, "label": query.get("label"),
                "content_type": "application/octet-stream", "state": "uploaded",
                "size": body.len(), "download_count": 0, "uploader": user,
                "created_at": t, "updated_at": t,
                "browser_download_url": format!("{html}/releases/download/{tag}/{name}")});
            assets.push(v.clone());
            m.asset_bytes.insert(next_id, body.to_vec());
            created(v)
        }
        _ => Out::not_found(),
    }
}
