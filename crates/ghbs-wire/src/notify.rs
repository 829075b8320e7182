//! Notification targets under `/api/v1/notifications` (issue 11).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// Event names a target can subscribe to, in the order listings show them.
pub const NOTIFY_EVENTS: &[&str] = &["failed", "partial", "recovered", "needs-login", "stale"];

/// Subscribes a target to every event in [`NOTIFY_EVENTS`], including ones added later.
pub const NOTIFY_ALL_EVENTS: &str = "all";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    Webhook,
    Email,
}

/// The body a webhook receives: this product's JSON, or a Slack- or Discord-compatible message.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    #[default]
    Json,
    Slack,
    Discord,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Discord => "discord",
        }
    }

    pub fn parse(s: &str) -> Option<WebhookFormat> {
        match s {
            "json" => Some(WebhookFormat::Json),
            "slack" => Some(WebhookFormat::Slack),
            "discord" => Some(WebhookFormat::Discord),
            _ => None,
        }
    }
}

/// `POST /api/v1/notifications`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NotifyTargetCreate {
    pub kind: NotifyKind,
    /// Webhooks: the URL (`https://…`, or `http://` to a loopback address). Treated as a
    /// secret: stored sealed, never logged, shown masked.
    #[serde(default)]
    pub url: Option<String>,
    /// E-mail: the recipient address.
    #[serde(default)]
    pub address: Option<String>,
    /// Events to send (see [`NOTIFY_EVENTS`]); absent or `["all"]` for every event.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Webhooks: the body's shape [default: json].
    #[serde(default)]
    pub format: Option<WebhookFormat>,
}

/// The newest delivery attempt to a target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct NotifyDelivery {
    pub at: DateTime<Utc>,
    pub event: String,
    pub ok: bool,
    /// Why it failed (never the URL).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct NotifyTarget {
    pub id: i64,
    pub kind: NotifyKind,
    /// Webhooks only.
    pub format: Option<WebhookFormat>,
    /// The webhook URL masked to its scheme and host, or the e-mail address.
    pub destination: String,
    /// Subscribed events; `["all"]` for every event.
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_delivery: Option<NotifyDelivery>,
}

/// Answer to `POST /api/v1/notifications`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct NotifyTargetCreated {
    pub target: NotifyTarget,
    /// Webhooks: the HMAC-SHA256 signing secret. Shown once; the server keeps it sealed.
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct NotifyTargetList {
    pub targets: Vec<NotifyTarget>,
}

/// Answer to `POST /api/v1/notifications/{id}/test`: the test event was sent at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct NotifyTestResult {
    pub delivered: bool,
    pub error: Option<String>,
}
