//! A fault-injecting HTTP proxy in front of the real S3 endpoint: tests point the product's
//! `AWS_ENDPOINT_URL` at it and make chosen requests fail with a 500 (S3's `InternalError`) or
//! hang (so the client's timeout fires), to see that a backup retries or fails cleanly.
//!
//! It forwards each request whole (method, path, query, headers, body) and answers with the
//! endpoint's response; bodies are buffered, which is fine for test-sized objects. The request
//! signature covers the `Host` header, which therefore names the proxy: moto does not check
//! signatures, a real S3 would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use http::StatusCode;

/// What the proxy does with requests of one HTTP method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum S3Fault {
    /// Answer the next `n` matching requests with 500 `InternalError`, then forward again.
    FailNext(u32),
    /// Answer every matching request with 500 until cleared.
    FailAll,
    /// Never answer matching requests (until cleared; a request already hanging stays so).
    Stall,
}

#[derive(Default)]
struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    /// (method, part of the path or `""` for any, fault); the first entry that matches applies.
    faults: Mutex<Vec<(String, String, S3Fault)>>,
    forwarded: AtomicU64,
    /// Requests forwarded, by method.
    by_method: Mutex<std::collections::HashMap<String, u64>>,
    failed: AtomicU64,
    stalled: AtomicU64,
}

/// The proxy; it stops when dropped.
pub struct S3FaultProxy {
    /// `http://127.0.0.1:PORT`: use as `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl S3FaultProxy {
    /// Starts a proxy forwarding to `upstream` (e.g. `http://127.0.0.1:9555`).
    pub async fn start(upstream: &str) -> S3FaultProxy {
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("proxy client"),
            ..ProxyState::default()
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        S3FaultProxy {
            endpoint,
            state,
            task,
        }
    }

    /// Applies `fault` to requests with `method` (`"PUT"`, `"GET"`, …), replacing an earlier
    /// fault of that method.
    pub fn set(&self, method: &str, fault: S3Fault) {
        self.set_for(method, "", fault);
    }

    /// [`S3FaultProxy::set`] for requests whose path contains `path_part` only (e.g.
    /// `"/manifests/"`), replacing an earlier fault of that method and path part.
    pub fn set_for(&self, method: &str, path_part: &str, fault: S3Fault) {
        let mut faults = self.state.faults.lock().unwrap();
        faults.retain(|(m, p, _)| m != method || p != path_part);
        faults.push((method.to_owned(), path_part.to_owned(), fault));
    }

    /// Forwards everything again.
    pub fn clear(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    /// Requests answered with a 500 so far.
    pub fn failed(&self) -> u64 {
        self.state.failed.load(Ordering::SeqCst)
    }

    /// Requests left hanging so far.
    pub fn stalled(&self) -> u64 {
        self.state.stalled.load(Ordering::SeqCst)
    }

    /// Requests forwarded to the endpoint so far.
    pub fn forwarded(&self) -> u64 {
        self.state.forwarded.load(Ordering::SeqCst)
    }

    /// Requests with `method` forwarded to the endpoint so far (request budgets in tests).
    pub fn forwarded_of(&self, method: &str) -> u64 {
        let counts = self.state.by_method.lock().unwrap();
        counts.get(method).copied().unwrap_or(0)
    }

    /// `vars` (an [`crate::S3Bucket`]'s `AWS_*` settings) with the endpoint replaced by this
    /// proxy.
    pub fn vars(&self, vars: &[(String, String)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| {
                if k == "AWS_ENDPOINT_URL" {
                    (k.clone(), self.endpoint.clone())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect()
    }
}

impl Drop for S3FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fault for this request now, consuming one `FailNext`.
fn take_fault(state: &ProxyState, method: &str, path: &str) -> Option<S3Fault> {
    let mut faults = state.faults.lock().unwrap();
    let index = faults
        .iter()
        .position(|(m, p, _)| m == method && path.contains(p.as_str()))?;
    let fault = faults[index].2.clone();
    match fault {
        S3Fault::FailNext(n) if n <= 1 => {
            faults.remove(index);
            Some(S3Fault::FailAll)
        }
        S3Fault::FailNext(n) => {
            faults[index].2 = S3Fault::FailNext(n - 1);
            Some(S3Fault::FailAll)
        }
        other => Some(other),
    }
}

async fn forward(State(state): State<Arc<ProxyState>>, req: Request) -> Response {
    let method = req.method().clone();
    match take_fault(&state, method.as_str(), req.uri().path()) {
        Some(S3Fault::Stall) => {
            state.stalled.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            unreachable!()
        }
        Some(_) => {
            state.failed.fetch_add(1, Ordering::SeqCst);
            // Drain the body so the client sees a response, not a reset, mid-upload.
            let _ = to_bytes(req.into_body(), usize::MAX).await;
            return Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .header("content-type", "application/xml")
                .body(Body::from(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>\
                     <Message>injected by the test proxy</Message></Error>",
                ))
                .unwrap();
        }
        None => {}
    }
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let mut headers = req.headers().clone();
    headers.remove(http::header::HOST);
    // reqwest sets the length of the body it sends itself.
    headers.remove(http::header::CONTENT_LENGTH);
    let body = match to_bytes(req.into_body(), usize::MAX).await {
        Ok(b) => b,
        Err(_) => return status(StatusCode::BAD_REQUEST),
    };
    let method_name = method.as_str().to_owned();
    let upstream = state
        .client
        .request(method, format!("{}{path_and_query}", state.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let Ok(upstream) = upstream else {
        return status(StatusCode::BAD_GATEWAY);
    };
    state.forwarded.fetch_add(1, Ordering::SeqCst);
    *state
        .by_method
        .lock()
        .unwrap()
        .entry(method_name)
        .or_default() += 1;
    let mut response = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if name != http::header::TRANSFER_ENCODING && name != http::header::CONNECTION {
            response = response.header(name, value);
        }
    }
    let bytes = upstream.bytes().await.unwrap_or_default();
    response.body(Body::from(bytes)).unwrap()
}

fn status(code: StatusCode) -> Response {
    Response::builder()
        .status(code)
        .body(Body::empty())
        .unwrap()
}
