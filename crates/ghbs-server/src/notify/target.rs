//! Checking what a user asks to be notified at, and showing it back without its secrets.

use ghbs_store::NotifyTargetRow;
use ghbs_wire::{
    NotifyDelivery, NotifyKind, NotifyTarget, WebhookFormat, NOTIFY_ALL_EVENTS, NOTIFY_EVENTS,
};

/// Longest webhook URL accepted (Slack and Discord URLs are under 200 characters).
const MAX_URL_LEN: usize = 2048;
/// Longest e-mail address (RFC 5321's path limit).
const MAX_ADDRESS_LEN: usize = 254;

/// Why a target cannot be added. Messages never contain the URL (it may carry a credential).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("{0}")]
    Url(&'static str),
    #[error("{0}")]
    Address(String),
    #[error("{0}")]
    Events(String),
}

/// A webhook URL: `https://`, or `http://` only to this machine (a plain-text URL to anywhere
/// else would hand its embedded credential to the network path).
pub fn check_url(raw: &str) -> Result<url::Url, TargetError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(TargetError::Url("the webhook URL is empty"));
    }
    if raw.len() > MAX_URL_LEN {
        return Err(TargetError::Url(
            "the webhook URL is too long (at most 2048 characters)",
        ));
    }
    let url = url::Url::parse(raw).map_err(|_| {
        TargetError::Url("the webhook URL is not a URL: expected https://HOST/PATH")
    })?;
    let Some(host) = url.host() else {
        return Err(TargetError::Url(
            "the webhook URL has no host: expected https://HOST/PATH",
        ));
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&host) => Ok(url),
        "http" => Err(TargetError::Url(
            "the webhook URL must use https:// (plain http:// is accepted only to this machine)",
        )),
        _ => Err(TargetError::Url("the webhook URL must start with https://")),
    }
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// What listings show of a webhook URL: scheme, host and port. Paths, queries and user
/// information often carry the credential (Slack, Discord and most chat hooks do).
pub fn mask_url(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{host}{port}/…", url.scheme())
}

/// An e-mail address as lettre reads it (`user@example.com`, no display name).
pub fn check_address(raw: &str) -> Result<lettre::Address, TargetError> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > MAX_ADDRESS_LEN {
        return Err(TargetError::Address(
            "the e-mail address must be 1 to 254 characters, like user@example.com".into(),
        ));
    }
    raw.parse::<lettre::Address>().map_err(|_| {
        TargetError::Address(format!(
            "{raw:?} is not an e-mail address: expected something like user@example.com"
        ))
    })
}

/// Parse a subscription: none or `["all"]` is every event; otherwise known names, stored in
/// [`NOTIFY_EVENTS`] order as a comma-separated list.
pub fn parse_events(events: Option<&[String]>) -> Result<String, TargetError> {
    let Some(events) = events else {
        return Ok(NOTIFY_ALL_EVENTS.into());
    };
    if events.is_empty() {
        return Err(TargetError::Events(format!(
            "no events given: choose among {} or `all`",
            NOTIFY_EVENTS.join(", ")
        )));
    }
    let mut chosen = Vec::new();
    for e in events {
        let e = e.trim();
        if e == NOTIFY_ALL_EVENTS {
            if events.len() > 1 {
                return Err(TargetError::Events(
                    "`all` cannot be combined with other events".into(),
                ));
            }
            return Ok(NOTIFY_ALL_EVENTS.into());
        }
        if !NOTIFY_EVENTS.contains(&e) {
            let shown: String = e.chars().take(40).collect();
            return Err(TargetError::Events(format!(
                "unknown event {shown:?}: choose among {} or `all`",
                NOTIFY_EVENTS.join(", ")
            )));
        }
        chosen.push(e);
    }
    Ok(NOTIFY_EVENTS
        .iter()
        .filter(|e| chosen.contains(e))
        .copied()
        .collect::<Vec<_>>()
        .join(","))
}

/// The stored row as the API shows it: masked, no secret.
pub fn target_json(row: &NotifyTargetRow) -> NotifyTarget {
    let kind = if row.kind == "email" {
        NotifyKind::Email
    } else {
        NotifyKind::Webhook
    };
    NotifyTarget {
        id: row.id,
        kind,
        format: (kind == NotifyKind::Webhook)
            .then(|| WebhookFormat::parse(&row.format).unwrap_or_default()),
        destination: row.display.clone(),
        events: row.events.split(',').map(str::to_owned).collect(),
        created_at: row.created_at,
        last_delivery: row.last_attempt_at.map(|at| NotifyDelivery {
            at,
            event: row.last_event.clone().unwrap_or_default(),
            ok: row.last_error.is_none(),
            error: row.last_error.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("https://hooks.slack.com/services/T/B/secret").is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("http://localhost/hook").is_ok());
        assert!(check_url("http://[::1]:80/x").is_ok());
        for bad in [
            "",
            "   ",
            "hooks.slack.com/x",
            "ftp://example.com/x",
            "http://example.com/hook?token=s3cr3t",
            "file:///etc/passwd",
            "https://",
        ] {
            let err = check_url(bad).unwrap_err();
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
        }
        assert!(check_url(&format!("https://x.example/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn masking_keeps_only_scheme_host_and_port() {
        let u =
            check_url("https://user:pw@hooks.example.com:8443/services/T/B/s3cr3t?k=v").unwrap();
        assert_eq!(mask_url(&u), "https://hooks.example.com:8443/…");
    }

    #[test]
    fn addresses() {
        assert!(check_address("ops@example.com").is_ok());
        for bad in [
            "",
            "ops",
            "ops@",
            "@example.com",
            "a b@example.com",
            "Ops <ops@example.com>",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events() {
        assert_eq!(parse_events(None).unwrap(), "all");
        assert_eq!(parse_events(Some(&["all".into()])).unwrap(), "all");
        assert_eq!(
            parse_events(Some(&["stale".into(), "failed".into(), "failed".into()])).unwrap(),
            "failed,stale"
        );
        assert!(parse_events(Some(&[])).is_err());
        assert!(parse_events(Some(&["all".into(), "failed".into()])).is_err());
        let err = parse_events(Some(&["exploded".into()])).unwrap_err();
        assert!(
            err.to_string().contains("unknown event \"exploded\""),
            "{err}"
        );
        assert!(err.to_string().contains("needs-login"), "{err}");
    }
}
