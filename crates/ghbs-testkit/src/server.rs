//! The HTTP front door: one fallback handler that identifies the caller, applies injected faults,
//! and hands the request to the REST or git side. Routing is done by hand on path segments because
//! GitHub's paths (`{repo}.git`, nested `repos/{o}/{r}/...`) are awkward for a route table and the
//! fault and logging logic must wrap every request the same way.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::http_util::token_from;
use crate::world::Caller;
use crate::{git_http, rest, FaultKind, RequestRecord, Shared};

pub(crate) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let app = Router::new().fallback(handle).with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "GitHub stand-in server stopped");
    }
}

/// What every front end needs to know about a request before serving it.
pub(crate) struct Ctx {
    pub shared: Arc<Shared>,
    pub method: String,
    pub path_and_query: String,
    pub caller: Caller,
    pub git: bool,
}

impl Ctx {
    pub fn record(&self, status: u16, conditional_hit: bool, counted: bool) {
        self.shared.world().log.push(RequestRecord {
            method: self.method.clone(),
            path: self.path_and_query.clone(),
            status,
            token_login: self.caller.login().map(str::to_owned),
            conditional_hit,
            counted,
            git: self.git,
        });
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or(path.clone());
    let token = token_from(req.headers());
    let (caller, fault) = {
        let mut w = shared.world();
        (w.caller(token.as_deref()), w.take_fault(&path_and_query))
    };
    let fault = match fault {
        Some(FaultKind::Delay(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        other => other,
    };
    let git = path.starts_with("/git/");
    let ctx = Ctx {
        shared,
        method: req.method().to_string(),
        path_and_query,
        caller,
        git,
    };
    match fault {
        Some(FaultKind::Status(code)) => return fault_status(&ctx, code),
        Some(FaultKind::SecondaryRateLimit { retry_after_secs }) => {
            return secondary_limit(&ctx, retry_after_secs)
        }
        _ => {}
    }
    let drop_mid_body = fault == Some(FaultKind::DropMidBody);
    if git {
        git_http::serve(ctx, req, drop_mid_body).await
    } else if path == "/api/v3" || path.starts_with("/api/v3/") {
        rest::serve(ctx, req, drop_mid_body).await
    } else if let Some(rest) = path.strip_prefix("/_assets/") {
        crate::metadata::serve_asset(&ctx, rest, drop_mid_body)
    } else {
        ctx.record(404, false, false);
        json_response(StatusCode::NOT_FOUND, Vec::new(), not_found_body())
    }
}

pub(crate) fn not_found_body() -> Bytes {
    Bytes::from(
        json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
            .to_string(),
    )
}

fn rate_headers(ctx: &Ctx) -> Vec<(&'static str, String)> {
    if ctx.git {
        return Vec::new();
    }
    ctx.shared.world().bucket(&ctx.caller).headers()
}

fn fault_status(ctx: &Ctx, code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = status.canonical_reason().unwrap_or("Injected fault");
    ctx.record(status.as_u16(), false, false);
    json_response(
        status,
        rate_headers(ctx),
        Bytes::from(json!({ "message": message }).to_string()),
    )
}

fn secondary_limit(ctx: &Ctx, retry_after_secs: u64) -> Response {
    let body = json!({
        "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
    });
    let mut headers = rate_headers(ctx);
    headers.push(("retry-after", retry_after_secs.to_string()));
    ctx.record(403, false, false);
    json_response(
        StatusCode::FORBIDDEN,
        headers,
        Bytes::from(body.to_string()),
    )
}

/// A complete JSON response.
pub(crate) fn json_response(
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.append(name, v);
        }
    }
    resp
}

/// Replaces a body by its first half followed by an error, so hyper closes the connection after
/// having promised (via `Content-Length`) the whole thing. The error is held back briefly so that
/// hyper flushes the head and the first half before it sees the failure.
pub(crate) fn cut_body(mut resp: Response, full: Bytes) -> Response {
    let half = full.slice(..full.len() / 2);
    let len = full.len();
    let stream = futures_util::stream::unfold(0u8, move |step| {
        let half = half.clone();
        async move {
            match step {
                0 => Some((Ok(half), 1)),
                1 => {
                    tokio::task::yield_now().await;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionAborted,
                            "injected DropMidBody",
                        )),
                        2,
                    ))
                }
                _ => None,
            }
        }
    });
    *resp.body_mut() = Body::from_stream(stream);
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}
