//! The service's own defences: who the client is (with `--trust-proxy`), the limit on failed
//! authentications per client address, and the security headers on every answer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use ghbs_wire::codes;

use crate::app::AppState;
use crate::error::ApiError;

/// The client's address: the TCP peer, or, when the peer is one of the configured reverse
/// proxies, the nearest address in `X-Forwarded-For` that is not itself a trusted proxy.
/// Anyone else's `X-Forwarded-For` is ignored, so a client cannot choose its own address to
/// escape the rate limit or to forge the audit trail. `None` when no peer is known (in-process
/// router tests).
pub fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    // Proxies append the address they saw, so read from the right: the first hop that is not a
    // trusted proxy is the client. A malformed entry stops the walk (everything left of it is
    // the client's own claim).
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => client = ip,
            Ok(ip) => return Some(ip),
            Err(_) => break,
        }
    }
    Some(client)
}

/// `ClientAddr` extractor: [`client_ip`] of the request.
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<Arc<AppState>> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr_of(parts, state)))
    }
}

pub fn client_addr_of(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    client_ip(&parts.headers, peer, &state.cfg.trust_proxy)
}

/// Failed authentications per client address, as a token bucket: `burst` failures at once,
/// then one more every `60 / burst` seconds. Checked before anything costly is done for the
/// request (the `GET /user` a login sends to GitHub, the key lookup), so garbage logins are
/// not relayed to GitHub. Only failures consume; a good login or key costs nothing.
///
/// Hand-written rather than `governor`: it must run on the injected [`ghbs_core::Clock`] (tests
/// never sleep) and count failures, not requests. In memory, per node: with several nodes
/// behind a balancer each node allows its own burst.
pub struct AuthLimiter {
    burst: f64,
    /// Seconds for one failure to be forgiven.
    refill_secs: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: DateTime<Utc>,
}

/// Beyond this many tracked addresses, those whose bucket is full again are dropped.
const MAX_TRACKED: usize = 10_000;

impl AuthLimiter {
    pub fn new(per_minute: u32) -> AuthLimiter {
        let burst = f64::from(per_minute.max(1));
        AuthLimiter {
            burst,
            refill_secs: 60.0 / burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, b: Bucket, now: DateTime<Utc>) -> Bucket {
        let elapsed = (now - b.at).num_milliseconds().max(0) as f64 / 1000.0;
        Bucket {
            tokens: (b.tokens + elapsed / self.refill_secs).min(self.burst),
            at: now,
        }
    }

    /// 429 with `Retry-After` when `ip` has used up its failures; no address, no limit.
    pub fn check(&self, ip: Option<IpAddr>, now: DateTime<Utc>) -> Result<(), ApiError> {
        let Some(ip) = ip else { return Ok(()) };
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = buckets.get(&ip).map(|b| self.refilled(*b, now)) else {
            return Ok(());
        };
        if b.tokens >= 1.0 {
            return Ok(());
        }
        let wait = ((1.0 - b.tokens) * self.refill_secs).ceil().max(1.0) as u64;
        Err(ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            codes::RATE_LIMITED,
            format!(
                "too many failed authentications from this address; try again in {wait} s \
                 (check the GitHub token or API key you are sending)"
            ),
        )
        .with_retry_after(wait))
    }

    /// Count one failed authentication from `ip`.
    pub fn fail(&self, ip: Option<IpAddr>, now: DateTime<Utc>) {
        let Some(ip) = ip else { return };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, b| self.refilled(*b, now).tokens < self.burst);
        }
        let full = Bucket {
            tokens: self.burst,
            at: now,
        };
        let b = self.refilled(*buckets.get(&ip).unwrap_or(&full), now);
        buckets.insert(
            ip,
            Bucket {
                tokens: (b.tokens - 1.0).max(0.0),
                at: now,
            },
        );
    }
}

/// `Content-Security-Policy` of every answer: nothing may load, run or frame it. The API serves
/// JSON and files; a browser that renders any of it (an exported HTML page opened from a
/// download, an error page) gets no scripts, styles from elsewhere, forms or frames.
pub const CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox";

/// Security headers on every answer: `X-Content-Type-Options: nosniff`, the strict [`CSP`],
/// `Referrer-Policy: no-referrer`, and `Cache-Control: no-store` on answers to authenticated
/// requests (a shared cache or the browser's disk must not keep a user's jobs or backups).
/// With TLS, `Strict-Transport-Security` too.
pub async fn security_headers(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let authenticated = req.headers().contains_key(header::AUTHORIZATION);
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if authenticated {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.cfg.tls.is_some() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy = ip("10.0.0.2");
        let trusted = [proxy];
        // From the proxy: the client it saw.
        assert_eq!(
            client_ip(&xff("203.0.113.9"), Some(proxy), &trusted),
            Some(ip("203.0.113.9"))
        );
        // A client-made prefix is skipped: the proxy appended the real peer last.
        assert_eq!(
            client_ip(&xff("1.2.3.4, 203.0.113.9"), Some(proxy), &trusted),
            Some(ip("203.0.113.9"))
        );
        // Not a trusted peer: its header is ignored.
        assert_eq!(
            client_ip(&xff("1.2.3.4"), Some(ip("198.51.100.7")), &trusted),
            Some(ip("198.51.100.7"))
        );
        // Nothing configured: never believed.
        assert_eq!(client_ip(&xff("1.2.3.4"), Some(proxy), &[]), Some(proxy));
        // Garbage from the proxy's side: the proxy itself.
        assert_eq!(
            client_ip(&xff("not-an-ip"), Some(proxy), &trusted),
            Some(proxy)
        );
        assert_eq!(
            client_ip(&HeaderMap::new(), Some(proxy), &trusted),
            Some(proxy)
        );
        assert_eq!(client_ip(&xff("1.2.3.4"), None, &trusted), None);
    }

    #[test]
    fn failures_are_limited_per_address_and_forgiven_over_time() {
        let limiter = AuthLimiter::new(3);
        let t0 = chrono::DateTime::from_timestamp(1_000_000, 0).unwrap();
        let a = Some(ip("192.0.2.1"));
        let b = Some(ip("192.0.2.2"));
        for _ in 0..3 {
            limiter.check(a, t0).unwrap();
            limiter.fail(a, t0);
        }
        let err = limiter.check(a, t0).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.retry_after, Some(20));
        // Another address is not affected; no address is never limited.
        limiter.check(b, t0).unwrap();
        limiter.fail(None, t0);
        limiter.check(None, t0).unwrap();
        // 20 s later one failure is forgiven.
        let later = t0 + chrono::Duration::seconds(20);
        limiter.check(a, later).unwrap();
        limiter.fail(a, later);
        assert!(limiter.check(a, later).is_err());
    }
}
