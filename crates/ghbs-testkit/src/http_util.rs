//! Small HTTP helpers shared by the REST and git front ends: query strings, credentials,
//! pagination links and ETags. Hand-written because the needs are tiny and a URL crate would be
//! one more dependency for every test binary.

use base64::Engine as _;
use http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Decoded `key=value` pairs of a query string, in order.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Query(pairs)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A positive integer parameter, or `default` when absent or malformed (GitHub ignores junk).
    pub fn number(&self, key: &str, default: usize) -> usize {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The token a request carries: `token T`, `Bearer T`, or HTTP Basic with the token as password
/// (what git sends after asking its askpass helper) or as user name (`T:x-oauth-basic`).
pub(crate) fn token_from(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "token" | "bearer" => Some(rest.to_owned()),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (user, pass) = decoded.split_once(':').unwrap_or((&decoded, ""));
            if pass.is_empty() || pass == "x-oauth-basic" {
                Some(user.to_owned())
            } else {
                Some(pass.to_owned())
            }
        }
        _ => Some(String::new()),
    }
}

/// GitHub-style weak ETag of a body.
pub(crate) fn etag_of(body: &[u8]) -> String {
    format!("W/\"{}\"", hex::encode(Sha256::digest(body)))
}

/// Whether an `If-None-Match` header names this ETag (weak comparison, lists and `*` allowed).
pub(crate) fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    let strip = |s: &str| {
        s.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    let want = strip(etag);
    headers
        .get_all(http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim() == "*" || strip(v) == want)
}

/// One page of a list plus the `Link` header GitHub would send with it.
pub(crate) fn paginate(
    items: Vec<Value>,
    query: &Query,
    url_base: &str,
    path: &str,
    raw_query: Option<&str>,
) -> (Value, Option<String>) {
    let per_page = query.number("per_page", 30).min(100);
    let page = query.number("page", 1);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let start = (page - 1).saturating_mul(per_page).min(total);
    let end = (start + per_page).min(total);
    let slice: Vec<Value> = items.into_iter().skip(start).take(end - start).collect();

    let link_to = |n: usize| {
        let mut parts: Vec<String> = raw_query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("page="))
            .map(str::to_owned)
            .collect();
        parts.push(format!("page={n}"));
        format!("<{url_base}{path}?{}>", parts.join("&"))
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", link_to((page - 1).min(last))));
    }
    if page < last {
        links.push(format!("{}; rel=\"next\"", link_to(page + 1)));
        links.push(format!("{}; rel=\"last\"", link_to(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", link_to(1)));
    }
    let link = (!links.is_empty()).then(|| links.join(", "));
    (Value::Array(slice), link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_and_plus() {
        let q = Query::parse(Some("since=2024-01-01T00%3A00%3A00Z&a=b+c&bad=%zz"));
        assert_eq!(q.get("since"), Some("2024-01-01T00:00:00Z"));
        assert_eq!(q.get("a"), Some("b c"));
        assert_eq!(q.get("bad"), Some("%zz"));
    }

    #[test]
    fn basic_auth_takes_password_as_token() {
        let mut h = HeaderMap::new();
        let b = base64::engine::general_purpose::STANDARD.encode("git:ghp_x");
        h.insert(
            http::header::AUTHORIZATION,
            format!("Basic {b}").parse().unwrap(),
        );
        assert_eq!(token_from(&h).as_deref(), Some("ghp_x"));
    }
}
