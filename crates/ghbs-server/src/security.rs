//! The service's own defences: who the client is (with `--trust-proxy`), the limit on failed
//! authentications per client address, and the security headers on every answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

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
}
