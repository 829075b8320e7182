//! [`GitHub`]: the shared, cheap-to-clone client that hands out per-token [`Session`]s.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ghbs_core::{Clock, Secret};
use reqwest::Url;

use crate::cache::ValidatorCache;
use crate::config::{ClientConfig, DEFAULT_REQUEST_TIMEOUT};
use crate::error::GitHubError;
use crate::progress::Progress;
use crate::ratelimit::TokenState;
use crate::session::Session;

/// The GitHub REST client of one server. Clones share the connection pool and the per-token
/// rate-limit state.
#[derive(Clone)]
pub struct GitHub {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) cfg: ClientConfig,
    pub(crate) base: Url,
    pub(crate) clock: Arc<dyn Clock>,
    /// Per-token state, keyed by a keyed hash of the token so that the map never holds tokens.
    tokens: Mutex<HashMap<u64, Arc<TokenState>>>,
    hasher: RandomState,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("api_url", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

impl GitHub {
    /// A client for the API at `cfg.api_url`, with the default per-request timeout.
    pub fn new(cfg: ClientConfig, clock: Arc<dyn Clock>) -> Result<GitHub, GitHubError> {
        GitHub::with_request_timeout(cfg, clock, DEFAULT_REQUEST_TIMEOUT)
    }

    /// Like [`GitHub::new`], with the time one HTTP exchange may take before it counts as a
    /// transient failure (tests use a short one to exercise slow answers).
    pub fn with_request_timeout(
        cfg: ClientConfig,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Result<GitHub, GitHubError> {
        let base = Url::parse(cfg.api_url.trim()).map_err(|e| {
            GitHubError::permanent(
                None,
                format!(
                    "the GitHub API URL {:?} is not a valid URL: {e}",
                    cfg.api_url
                ),
            )
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(GitHubError::permanent(
                None,
                format!(
                    "the GitHub API URL {:?} must be an http:// or https:// URL with a host",
                    cfg.api_url
                ),
            ));
        }
        if base.query().is_some() || !base.username().is_empty() || base.password().is_some() {
            return Err(GitHubError::permanent(
                None,
                "the GitHub API URL must not carry a query or credentials",
            ));
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(cfg.user_agent.clone())
            // Redirects are followed by hand: only to the same origin (the token must not travel
            // elsewhere) and so that a renamed repository can be reported.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30).min(timeout))
            .timeout(timeout);
        if let Some(path) = &cfg.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                GitHubError::permanent(
                    None,
                    format!("cannot read the CA certificate {}: {e}", path.display()),
                )
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                GitHubError::permanent(
                    None,
                    format!("{} is not a PEM certificate: {e}", path.display()),
                )
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| {
            GitHubError::permanent(None, format!("cannot set up the HTTP client: {e}"))
        })?;
        Ok(GitHub {
            inner: Arc::new(Inner {
                http,
                cfg,
                base,
                clock,
                tokens: Mutex::new(HashMap::new()),
                hasher: RandomState::new(),
            }),
        })
    }

    /// The API base URL this client talks to.
    pub fn api_url(&self) -> &str {
        self.inner.base.as_str()
    }

    /// A handle for one token and one run: counts its requests, applies the per-token
    /// concurrency bound and waits for rate limits, reporting waits to `progress`.
    pub fn session(
        &self,
        token: Secret,
        cache: Arc<dyn ValidatorCache>,
        progress: Arc<dyn Progress>,
    ) -> Session {
        let key = self.inner.hasher.hash_one(token.expose());
        let state = {
            let mut tokens = self.inner.tokens.lock().unwrap_or_else(|e| e.into_inner());
            tokens
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(TokenState::new(self.inner.cfg.max_concurrent_per_token))
                })
                .clone()
        };
        Session::new(self.clone(), token, state, cache, progress)
    }
}
