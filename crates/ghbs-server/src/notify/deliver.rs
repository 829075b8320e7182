//! Sending queued deliveries: claim under a lease, send with a timeout, record the result,
//! retry with backoff a bounded number of times.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ghbs_store::{ClaimedDelivery, DeliveryResult, NotifyTargetRow};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::state::AppState;

/// Longest one attempt may take (connect, send, answer) before it counts as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Waits after the 1st, 2nd, … failed attempt; after the last one the delivery is given up,
/// about 3 hours after the event.
const BACKOFF: [i64; 5] = [30, 120, 600, 1800, 7200];
/// Attempts in all (the first plus one per backoff step).
pub const MAX_ATTEMPTS: i64 = BACKOFF.len() as i64 + 1;
/// A claimed delivery is someone else's to retry after this long (the claimer died).
const LEASE: Duration = Duration::from_secs(120);
/// Deliveries in flight at once on this node.
const CONCURRENCY: i64 = 8;
/// How often the loop looks for due deliveries.
const POLL: Duration = Duration::from_secs(2);
/// How often jobs are checked for staleness.
const STALE_EVERY: Duration = Duration::from_secs(15 * 60);

/// Header names of a webhook request, documented in the README.
pub const SIGNATURE_HEADER: &str = "x-ghbs-signature-256";
pub const TIMESTAMP_HEADER: &str = "x-ghbs-timestamp";
pub const DELIVERY_HEADER: &str = "x-ghbs-delivery";
pub const EVENT_HEADER: &str = "x-ghbs-event";

/// Why an attempt failed, and whether another attempt can help (retryability as data).
/// The message never holds the destination URL, address or any secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub message: String,
    pub retryable: bool,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> SendError {
        SendError {
            message: message.into(),
            retryable: true,
        }
    }
    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError {
            message: message.into(),
            retryable: false,
        }
    }
}

/// `sha256=HEX` of HMAC-SHA256 over `body` with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A new signing secret: `whsec_` and 32 random bytes in hex.
pub fn new_secret() -> ghbs_core::Secret {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    ghbs_core::Secret::new(format!("whsec_{}", hex::encode(bytes)))
}

/// When to try again after failed attempt number `attempt` (1-based), or `None` to give up.
pub fn retry_at(attempt: i64, retryable: bool, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !retryable || attempt >= MAX_ATTEMPTS {
        return None;
    }
    let wait = BACKOFF[(attempt.max(1) - 1) as usize];
    Some(now + chrono::Duration::seconds(wait))
}

/// Sends notifications. One per server node, started by [`crate::app::launch`]; tests drive
/// [`Deliverer::deliver_due_once`] and [`super::check_stale`] by hand.
#[derive(Clone)]
pub struct Deliverer {
    state: Arc<AppState>,
    http: reqwest::Client,
}

impl Deliverer {
    pub fn new(state: Arc<AppState>) -> anyhow::Result<Deliverer> {
        let http = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .connect_timeout(DELIVERY_TIMEOUT)
            // A redirect would resend the body elsewhere; the URL the user gave is the one.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "github-backup-scheduler/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|_| anyhow::anyhow!("cannot set up the webhook HTTP client"))?;
        Ok(Deliverer { state, http })
    }

    /// Deliver until `stop` turns true; check for stale jobs every [`STALE_EVERY`]. Each
    /// delivery runs in its own task under [`DELIVERY_TIMEOUT`], so one slow sink delays no
    /// other, and nothing here ever waits on the scheduler or it on this.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        let mut next_stale = tokio::time::Instant::now() + Duration::from_secs(60);
        while !*stop.borrow() {
            while tasks.try_join_next().is_some() {}
            let free = CONCURRENCY - tasks.len() as i64;
            if free > 0 {
                for batch in by_target(self.claim(free).await) {
                    let me = self.clone();
                    tasks.spawn(async move { me.attempt_in_order(batch).await });
                }
            }
            if tokio::time::Instant::now() >= next_stale {
                super::check_stale(&self.state).await;
                next_stale = tokio::time::Instant::now() + STALE_EVERY;
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        // Deliveries in flight are dropped: their leases expire and they are sent again
        // (receivers de-duplicate by the delivery id).
        tasks.abort_all();
    }

    /// Claim and send everything due now, waiting for each attempt. Returns how many attempts
    /// were made.
    pub async fn deliver_due_once(&self) -> usize {
        let mut n = 0;
        loop {
            let claimed = self.claim(CONCURRENCY).await;
            if claimed.is_empty() {
                return n;
            }
            n += claimed.len();
            let mut tasks = JoinSet::new();
            for batch in by_target(claimed) {
                let me = self.clone();
                tasks.spawn(async move { me.attempt_in_order(batch).await });
            }
            while tasks.join_next().await.is_some() {}
        }
    }

    async fn claim(&self, limit: i64) -> Vec<ClaimedDelivery> {
        let now = self.state.clock.now();
        let until = now + chrono::Duration::from_std(LEASE).unwrap_or(chrono::Duration::minutes(2));
        match self.state.store.claim_deliveries(now, until, limit).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim notification deliveries; retrying soon");
                Vec::new()
            }
        }
    }

    /// One target's deliveries one after the other, so a receiver sees `failed` before
    /// `recovered`; different targets proceed side by side.
    async fn attempt_in_order(&self, batch: Vec<ClaimedDelivery>) {
        for claimed in batch {
            self.attempt(claimed).await;
        }
    }

    async fn attempt(&self, claimed: ClaimedDelivery) {
        let d = &claimed.delivery;
        let span = tracing::info_span!(
            "notify",
            delivery.id = d.id,
            target.id = claimed.target.id,
            user.id = claimed.target.user_id,
            event = %d.event,
            attempt = d.attempts
        );
        // Attached, not entered: a guard held across `.await` would label other tasks' lines.
        self.attempt_in_span(claimed).instrument(span).await
    }

    async fn attempt_in_span(&self, claimed: ClaimedDelivery) {
        let d = &claimed.delivery;
        let result = match serde_json::from_str::<Value>(&d.payload) {
            Ok(payload) => self.send(&claimed.target, d.id, &d.event, payload).await,
            Err(_) => Err(SendError::permanent("the queued event is damaged")),
        };
        let now = self.state.clock.now();
        let (ok, error, retry) = match &result {
            Ok(()) => {
                tracing::info!("notification delivered");
                Metrics::add(&self.state.metrics.notifications_delivered, 1);
                (true, None, None)
            }
            Err(e) => {
                Metrics::add(&self.state.metrics.notifications_failed, 1);
                let retry = retry_at(d.attempts, e.retryable, now);
                tracing::warn!(error = %e.message, retry_at = ?retry, "notification not delivered");
                (false, Some(e.message.clone()), retry)
            }
        };
        let written = self
            .state
            .store
            .finish_delivery(DeliveryResult {
                delivery_id: d.id,
                attempt: d.attempts,
                ok,
                error,
                retry_at: retry,
                now,
            })
            .await;
        match written {
            Ok(true) => {}
            Ok(false) => tracing::warn!("delivery result discarded: the claim was taken over"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the delivery result; it will be retried")
            }
        }
    }

    /// Send one event to one target now (also what `notify test` does).
    pub async fn send(
        &self,
        target: &NotifyTargetRow,
        delivery_id: i64,
        event: &str,
        mut payload: Value,
    ) -> Result<(), SendError> {
        let destination = self
            .state
            .sealer
            .open(&target.destination_sealed)
            .map_err(|_| SendError::permanent("the target cannot be decrypted (the server key changed): remove it and add it again"))?;
        if let Some(obj) = payload.as_object_mut() {
            obj.insert("delivery_id".into(), delivery_id.into());
        }
        match target.kind.as_str() {
            "webhook" => {
                let secret = target
                    .secret_sealed
                    .as_deref()
                    .ok_or_else(|| SendError::permanent("the webhook has no signing secret"))
                    .and_then(|s| {
                        self.state.sealer.open(s).map_err(|_| {
                            SendError::permanent(
                                "the signing secret cannot be decrypted (the server key changed)",
                            )
                        })
                    })?;
                let body = webhook_body(&target.format, &payload);
                self.post(
                    destination.expose(),
                    secret.expose(),
                    delivery_id,
                    event,
                    body,
                )
                .await
            }
            "email" => {
                let Some(smtp) = &self.state.cfg.smtp else {
                    return Err(SendError::transient(
                        "this server has no SMTP settings any more (--smtp-host)",
                    ));
                };
                let message = payload["message"].as_str().unwrap_or_default().to_owned();
                let subject = format!("[github-backup-scheduler] {}", subject_for(event, &payload));
                let body = format!(
                    "{message}\n\n--\nEvent: {event}\nDelivery: {delivery_id}\n\n{}\n",
                    serde_json::to_string_pretty(&payload).unwrap_or_default()
                );
                smtp.send(destination.expose(), &subject, body).await
            }
            _ => Err(SendError::permanent("unknown target kind")),
        }
    }

    async fn post(
        &self,
        url: &str,
        secret: &str,
        delivery_id: i64,
        event: &str,
        body: Vec<u8>,
    ) -> Result<(), SendError> {
        let sig = signature(secret, &body);
        let sent = self
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sig)
            .header(
                TIMESTAMP_HEADER,
                self.state.clock.now().timestamp().to_string(),
            )
            .header(DELIVERY_HEADER, delivery_id.to_string())
            .header(EVENT_HEADER, event)
            .body(body)
            .send()
            .await;
        // reqwest's errors name the URL: only fixed texts leave this function.
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(SendError::transient(format!(
                    "the webhook did not answer within {} s",
                    DELIVERY_TIMEOUT.as_secs()
                )))
            }
            Err(e) if e.is_connect() => {
                return Err(SendError::transient("could not connect to the webhook"))
            }
            Err(_) => return Err(SendError::transient("the webhook request failed")),
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let code = status.as_u16();
        if code == 408 || code == 429 || status.is_server_error() {
            Err(SendError::transient(format!(
                "the webhook answered HTTP {code}"
            )))
        } else {
            Err(SendError::permanent(format!(
                "the webhook answered HTTP {code} (not retried: check the URL with `notify test`)"
            )))
        }
    }
}

/// Claimed deliveries grouped by target, each group in claim (queue) order.
fn by_target(claimed: Vec<ClaimedDelivery>) -> Vec<Vec<ClaimedDelivery>> {
    let mut groups: Vec<Vec<ClaimedDelivery>> = Vec::new();
    for c in claimed {
        match groups.iter_mut().find(|g| g[0].target.id == c.target.id) {
            Some(g) => g.push(c),
            None => groups.push(vec![c]),
        }
    }
    groups
}

fn subject_for(event: &str, payload: &Value) -> String {
    let target = payload["job"]["target"].as_str().unwrap_or("");
    match event {
        "failed" => format!("backup of {target} failed"),
        "partial" => format!("backup of {target} is partial"),
        "recovered" => format!("backup of {target} recovered"),
        "needs-login" => "log in again: GitHub rejected the stored token".to_owned(),
        "stale" => format!("backup of {target} is stale"),
        "test" => "test notification".to_owned(),
        other => other.to_owned(),
    }
}

/// The request body for a webhook `format`: the event document itself (`json`), or a
/// Slack (`{"text": …}`) or Discord (`{"content": …}`) message carrying its `message`.
pub fn webhook_body(format: &str, payload: &Value) -> Vec<u8> {
    let message = payload["message"].as_str().unwrap_or_default();
    let doc = match format {
        "slack" => serde_json::json!({ "text": message }),
        // Discord refuses content over 2000 characters.
        "discord" => {
            serde_json::json!({ "content": message.chars().take(2000).collect::<String>() })
        }
        _ => payload.clone(),
    };
    serde_json::to_vec(&doc).expect("a JSON value serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retries_are_bounded_and_back_off() {
        let now = Utc::now();
        assert_eq!(
            retry_at(1, true, now),
            Some(now + chrono::Duration::seconds(30))
        );
        assert_eq!(
            retry_at(2, true, now),
            Some(now + chrono::Duration::seconds(120))
        );
        assert_eq!(
            retry_at(MAX_ATTEMPTS - 1, true, now),
            Some(now + chrono::Duration::seconds(7200))
        );
        assert_eq!(retry_at(MAX_ATTEMPTS, true, now), None);
        assert_eq!(retry_at(1, false, now), None);
    }

    #[test]
    fn slack_and_discord_bodies() {
        let p = serde_json::json!({"event": "failed", "message": "m"});
        assert_eq!(webhook_body("slack", &p), br#"{"text":"m"}"#);
        assert_eq!(webhook_body("discord", &p), br#"{"content":"m"}"#);
        assert_eq!(
            serde_json::from_slice::<Value>(&webhook_body("json", &p)).unwrap(),
            p
        );
    }
}
