//! The REST v3 side: authentication, the primary rate limit, ETags and 304s, and the user,
//! account-listing and repository endpoints. Metadata lists live in `metadata.rs`.

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::http_util::{etag_matches, etag_of, paginate, Query};
use crate::metadata;
use crate::server::{cut_body, json_response, Ctx};
use crate::world::{Caller, Repo, World};

/// What a route produced, before ETag, rate-limit headers and counting are applied.
pub(crate) struct Out {
    pub status: StatusCode,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

impl Out {
    pub fn ok(body: Value) -> Out {
        Out {
            status: StatusCode::OK,
            body,
            headers: Vec::new(),
        }
    }

    pub fn message(status: StatusCode, message: &str) -> Out {
        Out {
            status,
            body: json!({ "message": message, "documentation_url": "https://docs.github.com/rest" }),
            headers: Vec::new(),
        }
    }

    pub fn not_found() -> Out {
        Out::message(StatusCode::NOT_FOUND, "Not Found")
    }
}

/// The pieces of a request that list endpoints need to paginate.
pub(crate) struct ListReq<'a> {
    pub query: Query,
    pub raw_query: Option<&'a str>,
    pub path: &'a str,
}

impl ListReq<'_> {
    pub fn page(&self, w: &World, items: Vec<Value>) -> Out {
        let (body, link) = paginate(items, &self.query, &w.base_url, self.path, self.raw_query);
        let mut out = Out::ok(body);
        if let Some(link) = link {
            out.headers.push(("link", link));
        }
        out
    }
}

pub(crate) async fn serve(ctx: Ctx, req: Request, drop_mid_body: bool) -> Response {
    let (parts, body) = req.into_parts();
    // Uploads (release assets) are the largest writes; 64 MiB is plenty for tests.
    let body = if parts.method == Method::GET || parts.method == Method::HEAD {
        Bytes::new()
    } else {
        axum::body::to_bytes(body, 64 << 20)
            .await
            .unwrap_or_default()
    };
    if ctx.caller == Caller::BadCredentials {
        let headers = ctx.shared.world().bucket(&ctx.caller).headers();
        ctx.record(401, false, false);
        let body = json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"});
        return json_response(
            StatusCode::UNAUTHORIZED,
            headers,
            Bytes::from(body.to_string()),
        );
    }
    let path = parts.uri.path();
    let segs: Vec<&str> = path["/api/v3".len()..]
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let list = ListReq {
        query: Query::parse(parts.uri.query()),
        raw_query: parts.uri.query(),
        path,
    };

    // `/rate_limit` is free on GitHub and is how clients learn their budget.
    if segs == ["rate_limit"] {
        let mut w = ctx.shared.world();
        let b = w.bucket(&ctx.caller);
        let core = json!({"limit": b.limit, "remaining": b.remaining, "reset": b.reset.timestamp(),
            "used": b.limit - b.remaining, "resource": "core"});
        let headers = b.headers();
        drop(w);
        ctx.record(200, false, false);
        let body = json!({"resources": {"core": core}, "rate": core});
        return json_response(StatusCode::OK, headers, Bytes::from(body.to_string()));
    }

    let out = {
        let mut w = ctx.shared.world();
        let b = w.bucket(&ctx.caller);
        if b.remaining == 0 {
            let headers = b.headers();
            let who = match ctx.caller.login().and_then(|l| w.account(l)) {
                Some(a) => format!("user ID {}", a.id),
                None => "127.0.0.1".to_owned(),
            };
            drop(w);
            ctx.record(403, false, false);
            let body = json!({
                "message": format!("API rate limit exceeded for {who}. (But here's the good news: Authenticated requests get a higher rate limit.)"),
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            });
            return json_response(
                StatusCode::FORBIDDEN,
                headers,
                Bytes::from(body.to_string()),
            );
        }
        if parts.method == Method::GET || parts.method == Method::HEAD {
            route(&w, ctx.caller.login(), &segs, &list)
        } else {
            write_route(
                &mut w,
                ctx.caller.login(),
                &segs,
                &parts.method,
                &list,
                &body,
            )
        }
    };

    let body = Bytes::from(serde_json::to_vec(&out.body).expect("serialize JSON"));
    let etag = etag_of(&body);
    if out.status == StatusCode::OK && etag_matches(&parts.headers, &etag) {
        let mut headers = ctx.shared.world().bucket(&ctx.caller).headers();
        headers.push(("etag", etag));
        ctx.record(304, true, false);
        let mut resp = json_response(StatusCode::NOT_MODIFIED, headers, Bytes::new());
        resp.headers_mut().remove(http::header::CONTENT_TYPE);
        return resp;
    }
    let mut headers = {
        let mut w = ctx.shared.world();
        let b = w.bucket(&ctx.caller);
        b.remaining = b.remaining.saturating_sub(1);
        b.headers()
    };
    headers.push(("etag", etag));
    headers.extend(out.headers);
    ctx.record(out.status.as_u16(), false, true);
    let resp = json_response(out.status, headers, body.clone());
    if drop_mid_body {
        cut_body(resp, body)
    } else {
        resp
    }
}

fn route(w: &World, login: Option<&str>, segs: &[&str], list: &ListReq<'_>) -> Out {
    match segs {
        ["user"] => match login.and_then(|l| w.account(l)) {
            Some(a) => Out::ok(user_json(w, a.login.as_str())),
            None => Out::message(StatusCode::UNAUTHORIZED, "Requires authentication"),
        },
        ["user", "orgs"] => match login {
            Some(l) => {
                let mut orgs: Vec<&str> = w
                    .accounts
                    .values()
                    .filter(|a| a.is_org && a.members.iter().any(|m| m == l))
                    .map(|a| a.login.as_str())
                    .collect();
                orgs.sort_unstable();
                let items = orgs.into_iter().map(|o| user_json(w, o)).collect();
                list.page(w, items)
            }
            None => Out::message(StatusCode::UNAUTHORIZED, "Requires authentication"),
        },
        ["users", u] | ["orgs", u] => match w.account(u) {
            Some(a) if segs[0] == "users" || a.is_org => Out::ok(user_json(w, &a.login)),
            _ => Out::not_found(),
        },
        ["user", "repos"] => match login {
            Some(l) => {
                let mine = |r: &Repo| r.owner == l || w.is_member(&r.owner, l);
                let visibility = list.query.get("visibility").unwrap_or("all");
                let vis = |r: &Repo| match visibility {
                    "public" => !r.private,
                    "private" => r.private,
                    _ => true,
                };
                repo_list(w, list, |r| mine(r) && vis(r), false)
            }
            None => Out::message(StatusCode::UNAUTHORIZED, "Requires authentication"),
        },
        ["users", u, "repos"] => match w.account(u) {
            Some(a) => {
                let owner = a.login.to_lowercase();
                let is_self = login == Some(owner.as_str());
                repo_list(
                    w,
                    list,
                    |r| r.owner == owner && (is_self || !r.private),
                    false,
                )
            }
            None => Out::not_found(),
        },
        ["orgs", o, "repos"] => match w.account(o) {
            Some(a) if a.is_org => {
                let owner = a.login.to_lowercase();
                let member = login.is_some_and(|l| w.is_member(&owner, l));
                repo_list(
                    w,
                    list,
                    |r| r.owner == owner && (member || !r.private),
                    true,
                )
            }
            _ => Out::not_found(),
        },
        ["repos", o, r, rest @ ..] => {
            let key = format!("{o}/{r}").to_lowercase();
            if let Some(id) = w.names.get(&key) {
                return repo_route(w, login, &w.repos[id], rest, list);
            }
            match w.old_names.get(&key).and_then(|id| w.repos.get(id)) {
                Some(repo) if w.can_read(repo, login) => moved(w, repo.id, rest),
                _ => Out::not_found(),
            }
        }
        ["repositories", id, rest @ ..] => {
            match id.parse::<i64>().ok().and_then(|id| w.repos.get(&id)) {
                Some(repo) => repo_route(w, login, repo, rest, list),
                None => Out::not_found(),
            }
        }
        _ => Out::not_found(),
    }
}

/// A write (POST, PATCH) to a repository by a user who may write to it. When a write budget is
/// set (see `fail_writes_after`) and spent, the write is refused with a 500 and not applied, as
/// if GitHub went down between two requests.
fn write_route(
    w: &mut World,
    login: Option<&str>,
    segs: &[&str],
    method: &Method,
    list: &ListReq<'_>,
    body: &Bytes,
) -> Out {
    let Some(login) = login else {
        return Out::message(StatusCode::UNAUTHORIZED, "Requires authentication");
    };
    let ["repos", o, r, rest @ ..] = segs else {
        return Out::not_found();
    };
    let Some(id) = w.repo_id(&format!("{o}/{r}")) else {
        return Out::not_found();
    };
    let repo = &w.repos[&id];
    if !w.can_read(repo, Some(login)) {
        return Out::not_found();
    }
    if !w.can_write(repo, login) || repo.archived {
        return Out::message(
            StatusCode::FORBIDDEN,
            "Must have admin rights to Repository.",
        );
    }
    match &mut w.write_budget {
        Some(0) => {
            return Out::message(StatusCode::INTERNAL_SERVER_ERROR, "Injected write failure")
        }
        Some(n) => *n -= 1,
        None => {}
    }
    crate::writes::write(w, login, id, rest, method, &list.query, body)
}

fn user_json(w: &World, login: &str) -> Value {
    let mut v = w.owner_json(&login.to_lowercase());
    v["name"] = json!(format!("{login} (stand-in)"));
    v
}

fn repo_list(w: &World, list: &ListReq<'_>, keep: impl Fn(&Repo) -> bool, by_created: bool) -> Out {
    let mut repos: Vec<&Repo> = w.repos.values().filter(|r| keep(r)).collect();
    if !by_created {
        repos.sort_by_key(|r| w.full_name(r).to_lowercase());
    }
    let items = repos.into_iter().map(|r| w.repo_json(r)).collect();
    list.page(w, items)
}

fn moved(w: &World, id: i64, rest: &[&str]) -> Out {
    let mut url = format!("{}/api/v3/repositories/{id}", w.base_url);
    for s in rest {
        url.push('/');
        url.push_str(s);
    }
    Out {
        status: StatusCode::MOVED_PERMANENTLY,
        body: json!({ "message": "Moved Permanently", "url": url, "documentation_url": "https://docs.github.com/rest" }),
        headers: vec![("location", url)],
    }
}

fn repo_route(
    w: &World,
    login: Option<&str>,
    repo: &Repo,
    rest: &[&str],
    list: &ListReq<'_>,
) -> Out {
    if !w.can_read(repo, login) {
        return Out::not_found();
    }
    match rest {
        [] => Out::ok(w.repo_json(repo)),
        _ => metadata::route(w, repo, rest, list),
    }
}
