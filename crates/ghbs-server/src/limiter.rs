//! The failed-authentication limiter, per client address. State of the node, not of a
//! request: it lives in [`crate::state::AppState`] and imports nothing of the server but the
//! error type.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use ghbs_wire::codes;

use crate::error::ApiError;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
