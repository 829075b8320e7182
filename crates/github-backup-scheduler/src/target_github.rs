//! The GitHub a metadata restore writes to: a small reqwest client for the handful of REST
//! writes a restore makes, with the target's token in the `Authorization` header only (never in
//! a URL, argv, a log line or an error), and rate limits waited out with progress shown.
//!
//! Not `ghbs-github`: that crate is the service's reader (conditional GETs, validator caches,
//! per-token concurrency for backups). A restore is a slow, strictly ordered sequence of writes
//! that must never be retried blindly (a repeated POST makes a duplicate), which is a different
//! contract; the CLI already talks HTTP with reqwest.

use std::time::Duration;

use ghbs_core::Secret;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::exit::{CliError, CliResult};
use crate::output::Printer;

/// How one request ended, for the caller to decide (e.g. a 422 "already exists" is success for
/// a label).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

pub struct TargetGitHub {
    http: reqwest::Client,
    api: String,
    token: Secret,
    /// Requests sent (each retry counts), for the summary.
    pub requests: u64,
    /// Seconds spent waiting for rate limits.
    pub waited_secs: u64,
}

/// The longest single wait for a rate limit; GitHub's primary limit resets within an hour.
const MAX_WAIT: Duration = Duration::from_secs(3700);

impl TargetGitHub {
    /// `api` is the REST root (`https://api.github.com`, or `https://HOST/api/v3`); a plain
    /// `http://` one is refused off loopback, as the token would travel in clear text.
    pub fn new(api: &str, token: Secret) -> CliResult<Self> {
        let api = api.trim().trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&api).map_err(|_| {
            CliError::usage(format!(
                "`{api}` (--github-api-url) is not a URL: use e.g. https://api.github.com or https://HOST/api/v3"
            ))
        })?;
        let loopback = matches!(
            url.host_str(),
            Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
        );
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(CliError::usage(format!(
                    "--github-api-url {api}: the target's token would be sent without TLS; use https://"
                )))
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .user_agent(concat!(
                "github-backup-scheduler/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| CliError::failed(format!("cannot start the HTTP client: {e}")))?;
        Ok(TargetGitHub {
            http,
            api,
            token,
            requests: 0,
            waited_secs: 0,
        })
    }

    pub fn api_url(&self) -> &str {
        &self.api
    }

    /// A request to `path` under the API root (or to a full URL, e.g. a release's upload URL).
    /// Rate limits (403/429 with `Retry-After` or an exhausted `X-RateLimit-Remaining`) are
    /// waited out and the request sent again; a GET is also retried on a 5xx or a connection
    /// failure. Any other answer is returned for the caller to judge.
    pub async fn send(
        &mut self,
        out: &Printer,
        method: Method,
        path: &str,
        body: Body,
    ) -> CliResult<Answer> {
        self.send_accepting(out, method, path, body, "application/vnd.github+json")
            .await
    }

    /// [`TargetGitHub::send`] with another media type (a preview API's).
    pub async fn send_accepting(
        &mut self,
        out: &Printer,
        method: Method,
        path: &str,
        body: Body,
        accept: &str,
    ) -> CliResult<Answer> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.api)
        };
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            self.requests += 1;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header("accept", accept)
                .header("x-github-api-version", "2022-11-28")
                .header("authorization", format!("Bearer {}", self.token.expose()));
            req = match &body {
                Body::None => req,
                Body::Json(v) => req.json(v),
                Body::Bytes(b) => req
                    .header("content-type", "application/octet-stream")
                    .body(b.clone()),
            };
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if method == Method::GET && attempts < 4 => {
                    tracing::debug!(error = %e.without_url(), "GitHub request failed; retrying");
                    tokio::time::sleep(Duration::from_secs(u64::from(attempts))).await;
                    continue;
                }
                Err(e) => {
                    return Err(CliError::failed(format!(
                        "GitHub at {} did not answer ({})",
                        self.api,
                        e.without_url()
                    )))
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let text = resp.text().await.unwrap_or_default();
            let body_json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if let Some(wait) = rate_limit_wait(status, &headers, &body_json) {
                let wait = wait.min(MAX_WAIT);
                out.note(format!(
                    "GitHub's rate limit was reached: waiting {}s before going on …",
                    wait.as_secs()
                ));
                self.waited_secs += wait.as_secs();
                tokio::time::sleep(wait).await;
                continue;
            }
            if status.is_server_error() && method == Method::GET && attempts < 4 {
                tokio::time::sleep(Duration::from_secs(u64::from(attempts))).await;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED {
                return Err(CliError::TokenRejected(format!(
                    "GitHub at {} rejected the target's token (401): give a token that can write to the target repository",
                    self.api
                )));
            }
            return Ok(Answer {
                status,
                body: body_json,
            });
        }
    }
}

/// What a request sends.
pub enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
}

/// How long GitHub asks us to wait, if this answer is a rate limit.
fn rate_limit_wait(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
) -> Option<Duration> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    if let Some(secs) = header("retry-after") {
        return Some(Duration::from_secs(secs.max(1) as u64));
    }
    if header("x-ratelimit-remaining") == Some(0) {
        let reset = header("x-ratelimit-reset").unwrap_or(0);
        let now = chrono::Utc::now().timestamp();
        return Some(Duration::from_secs((reset - now).max(0) as u64 + 1));
    }
    let message = body["message"].as_str().unwrap_or_default();
    message
        .contains("rate limit")
        .then(|| Duration::from_secs(60))
}

/// GitHub's own words for a failed answer, for an error message.
pub fn message(answer: &Answer) -> String {
    let mut m = answer.body["message"]
        .as_str()
        .unwrap_or("no message")
        .to_string();
    if let Some(errors) = answer.body["errors"].as_array() {
        let codes: Vec<String> = errors
            .iter()
            .filter_map(|e| {
                e["code"]
                    .as_str()
                    .or(e["message"].as_str())
                    .map(str::to_owned)
            })
            .collect();
        if !codes.is_empty() {
            m.push_str(&format!(" ({})", codes.join(", ")));
        }
    }
    format!("{} {m}", answer.status.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn rate_limits_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &h, &Value::Null),
            Some(Duration::from_secs(7))
        );
        assert_eq!(rate_limit_wait(StatusCode::OK, &h, &Value::Null), None);
        let plain = HeaderMap::new();
        assert_eq!(
            rate_limit_wait(
                StatusCode::FORBIDDEN,
                &plain,
                &serde_json::json!({"message": "Must have admin rights"})
            ),
            None
        );
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        assert!(TargetGitHub::new("http://ghe.example.com/api/v3", Secret::new("t")).is_err());
        assert!(TargetGitHub::new("http://127.0.0.1:9/api/v3", Secret::new("t")).is_ok());
        assert!(TargetGitHub::new("not a url", Secret::new("t")).is_err());
    }
}
