//! git's smart HTTP protocol, served by running `git http-backend` as a CGI program: the request
//! body streams into its stdin, its CGI headers become the response head, and the rest of its
//! stdout streams back. Access rules mirror GitHub's: public repositories are readable by anyone,
//! private ones by the owner or organization members, pushes need such a user's token.

use std::process::Stdio;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use http::{HeaderName, HeaderValue, StatusCode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::control::touched;
use crate::server::{cut_body, Ctx};
use crate::world::Caller;

enum Access {
    NotFound,
    Challenge,
    Forbidden,
    Serve { id: i64, project: String },
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp
}

pub(crate) async fn serve(ctx: Ctx, req: Request, drop_mid_body: bool) -> Response {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let mut parts = path["/git/".len()..].splitn(3, '/');
    let owner = parts.next().unwrap_or("");
    let repo_seg = parts.next().unwrap_or("");
    let tail = parts.next().unwrap_or("").to_owned();
    let name = repo_seg.strip_suffix(".git").unwrap_or(repo_seg);
    let (name, wiki) = match name.strip_suffix(".wiki") {
        Some(n) => (n, true),
        None => (name, false),
    };
    let push = tail == "git-receive-pack"
        || (tail == "info/refs" && query.contains("service=git-receive-pack"));

    let access = if tail.split('/').any(|s| s == ".." || s.is_empty()) && !tail.is_empty() {
        Access::NotFound
    } else {
        decide(&ctx, owner, name, wiki, push)
    };
    let (id, project) = match access {
        Access::NotFound => {
            ctx.record(404, false, false);
            return text(StatusCode::NOT_FOUND, "Repository not found.\n");
        }
        Access::Forbidden => {
            ctx.record(403, false, false);
            return text(StatusCode::FORBIDDEN, "Permission denied.\n");
        }
        Access::Challenge => {
            ctx.record(401, false, false);
            let mut resp = text(StatusCode::UNAUTHORIZED, "Authentication required.\n");
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"GitHub\""),
            );
            return resp;
        }
        Access::Serve { id, project } => (id, project),
    };

    let is_push_post = push && tail == "git-receive-pack";
    if is_push_post {
        touched(&mut ctx.shared.world(), id, wiki);
    }
    match run_backend(&ctx, req, &format!("/{project}/{tail}"), &query).await {
        Ok((status, headers, stdout, child)) => {
            ctx.record(status.as_u16(), false, false);
            let after = move |shared: &crate::Shared| {
                if is_push_post {
                    touched(&mut shared.world(), id, wiki);
                }
            };
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = status;
            *resp.headers_mut() = headers;
            if drop_mid_body {
                let full = read_all(stdout, child).await;
                after(&ctx.shared);
                cut_body(resp, full)
            } else {
                *resp.body_mut() = Body::from_stream(stream_stdout(stdout, child, ctx, after));
                resp
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "git http-backend failed");
            ctx.record(500, false, false);
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "git http-backend failed.\n",
            )
        }
    }
}

fn decide(ctx: &Ctx, owner: &str, name: &str, wiki: bool, push: bool) -> Access {
    let w = ctx.shared.world();
    let login = match &ctx.caller {
        Caller::BadCredentials => return Access::Challenge,
        c => c.login(),
    };
    let Some(repo) = w
        .repo_id(&format!("{owner}/{name}"))
        .and_then(|id| w.repos.get(&id))
    else {
        return Access::NotFound;
    };
    if !w.can_read(repo, login) {
        return if login.is_none() {
            Access::Challenge
        } else {
            Access::NotFound
        };
    }
    if push {
        match login {
            None => return Access::Challenge,
            Some(l) if !w.can_write(repo, l) || repo.archived => return Access::Forbidden,
            Some(_) => {}
        }
    }
    if wiki && !w.bare_path(repo.id, true).exists() {
        return Access::NotFound;
    }
    let project = if wiki {
        format!("{}.wiki.git", repo.id)
    } else {
        format!("{}.git", repo.id)
    };
    Access::Serve {
        id: repo.id,
        project,
    }
}

type Head = (StatusCode, http::HeaderMap, BufReader<ChildStdout>, Child);

/// Starts `git http-backend`, feeds it the request body, and parses its CGI response headers.
async fn run_backend(
    ctx: &Ctx,
    req: Request,
    path_info: &str,
    query: &str,
) -> std::io::Result<Head> {
    let (root, home) = {
        let w = ctx.shared.world();
        (w.repos_root.clone(), ctx.shared.home.clone())
    };
    let mut cmd = Command::new("git");
    cmd.arg("http-backend").env_clear();
    if let Some(p) = std::env::var_os("PATH") {
        cmd.env("PATH", p);
    }
    cmd.env("HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", path_info)
        .env("QUERY_STRING", query)
        .env("REQUEST_METHOD", req.method().as_str())
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1");
    if let Some(login) = ctx.caller.login() {
        cmd.env("REMOTE_USER", login);
    }
    for (var, name) in [
        ("CONTENT_TYPE", "content-type"),
        ("CONTENT_LENGTH", "content-length"),
        ("HTTP_CONTENT_ENCODING", "content-encoding"),
        ("HTTP_GIT_PROTOCOL", "git-protocol"),
    ] {
        if let Some(v) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
            cmd.env(var, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;

    let mut stdin = child.stdin.take().expect("piped stdin");
    let body = req
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    tokio::spawn(async move {
        let mut reader = tokio_util::io::StreamReader::new(body);
        // A client that goes away mid-upload just ends the backend's input.
        let _ = tokio::io::copy(&mut reader, &mut stdin).await;
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    tokio::spawn(async move {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err).await;
        if !err.trim().is_empty() {
            tracing::debug!(stderr = %err.trim_end(), "git http-backend");
        }
    });

    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut status = StatusCode::OK;
    let mut headers = http::HeaderMap::new();
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "no CGI headers",
            ));
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            let code = v
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    Ok((status, headers, stdout, child))
}

async fn read_all(mut stdout: BufReader<ChildStdout>, mut child: Child) -> Bytes {
    let mut all = Vec::new();
    let _ = stdout.read_to_end(&mut all).await;
    let _ = child.wait().await;
    Bytes::from(all)
}

/// Streams the backend's output; the body ends only after the process exited and `after` ran,
/// so a client that saw the whole response also sees its effects (e.g. `pushed_at`).
fn stream_stdout(
    stdout: BufReader<ChildStdout>,
    child: Child,
    ctx: Ctx,
    after: impl FnOnce(&crate::Shared) + Send + 'static,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    let state = Some((stdout, child, ctx, after));
    futures_util::stream::unfold(state, |state| async move {
        let (mut stdout, mut child, ctx, after) = state?;
        let mut buf = vec![0u8; 64 * 1024];
        match stdout.read(&mut buf).await {
            Ok(0) => {
                let status = child.wait().await;
                if !status.as_ref().is_ok_and(|s| s.success()) {
                    tracing::debug!(?status, "git http-backend exited unsuccessfully");
                }
                after(&ctx.shared);
                None
            }
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some((stdout, child, ctx, after))))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}
