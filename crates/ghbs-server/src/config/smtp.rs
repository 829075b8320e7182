//! Server-wide SMTP settings for e-mail notifications, resolved from the merged settings.
//! Sending lives in `notify::smtp`.

use ghbs_core::Secret;
use lettre::message::Mailbox;

use super::{ConfigError, ServerArgs};

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only to a relay on this machine.
    None,
}

impl SmtpTls {
    pub(crate) fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// Resolved SMTP settings. `password` is a [`Secret`]: it prints as `[redacted]`.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: Mailbox,
    pub tls: SmtpTls,
}

impl SmtpConfig {
    /// From the merged settings (flags over environment over file); the password only from `GHBS_SMTP_PASSWORD` or the
    /// file `GHBS_SMTP_PASSWORD_FILE` names (never a flag or the config file, so it shows
    /// neither in `ps` nor in a clear-text config). `None` when no host is set.
    pub fn load(
        args: &ServerArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<SmtpConfig>, ConfigError> {
        let Some(host) = args.smtp_host.clone() else {
            return Ok(None);
        };
        let host = host.trim().to_owned();
        if host.is_empty() {
            return Ok(None);
        }
        let tls = match args.smtp_tls.clone().as_deref().map(str::trim) {
            None | Some("starttls") => SmtpTls::StartTls,
            Some("tls") => SmtpTls::Tls,
            Some("none") => SmtpTls::None,
            Some(other) => {
                return Err(ConfigError(format!(
                    "--smtp-tls {other:?}: use starttls, tls or none"
                )))
            }
        };
        if tls == SmtpTls::None && !is_local(&host) {
            return Err(ConfigError(format!(
                "--smtp-tls none sends mail (and any password) in clear text: it is accepted \
                 only for a relay on this machine, not {host:?}; use starttls or tls"
            )));
        }
        let from = args.smtp_from.clone().ok_or_else(|| {
            ConfigError(
                "--smtp-host is set without --smtp-from: give the sender address, e.g. \
                 --smtp-from 'Backups <backups@example.com>'"
                    .into(),
            )
        })?;
        let from = from.trim().parse::<Mailbox>().map_err(|_| {
            ConfigError(format!(
                "--smtp-from {from:?} is not an address: use backups@example.com or \
                 'Backups <backups@example.com>'"
            ))
        })?;
        let password = match (env("GHBS_SMTP_PASSWORD"), env("GHBS_SMTP_PASSWORD_FILE")) {
            (Some(p), _) => Some(Secret::new(p)),
            (None, Some(path)) => Some(Secret::new(
                std::fs::read_to_string(&path)
                    .map_err(|e| {
                        ConfigError(format!("cannot read GHBS_SMTP_PASSWORD_FILE {path}: {e}"))
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            )),
            (None, None) => None,
        };
        let username = args.smtp_username.clone().filter(|u| !u.trim().is_empty());
        if password.is_some() && username.is_none() {
            return Err(ConfigError(
                "an SMTP password is set without --smtp-username".into(),
            ));
        }
        Ok(Some(SmtpConfig {
            port: args.smtp_port.unwrap_or(tls.default_port()),
            host,
            username,
            password,
            from,
            tls,
        }))
    }
}

fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServerArgs {
        ServerArgs {
            smtp_host: Some("smtp.example.com".into()),
            smtp_from: Some("Backups <backups@example.com>".into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_and_password_from_the_environment_only() {
        let env = |k: &str| (k == "GHBS_SMTP_PASSWORD").then(|| "hunter2".to_string());
        let a = ServerArgs {
            smtp_username: Some("mailer".into()),
            ..args()
        };
        let cfg = SmtpConfig::load(&a, &env).unwrap().unwrap();
        assert_eq!(cfg.port, 587);
        assert_eq!(cfg.tls, SmtpTls::StartTls);
        assert_eq!(cfg.password.as_ref().unwrap().expose(), "hunter2");
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert!(SmtpConfig::load(&ServerArgs::default(), &|_| None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn password_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let p = path.display().to_string();
        let env = move |k: &str| (k == "GHBS_SMTP_PASSWORD_FILE").then(|| p.clone());
        let a = ServerArgs {
            smtp_username: Some("mailer".into()),
            ..args()
        };
        let cfg = SmtpConfig::load(&a, &env).unwrap().unwrap();
        assert_eq!(cfg.password.unwrap().expose(), "s3cret");
    }

    #[test]
    fn file_below_flags() {
        let file = ServerArgs {
            smtp_host: Some("file.example.com".into()),
            smtp_port: Some(2525),
            smtp_tls: Some("tls".into()),
            smtp_from: Some("f@example.com".into()),
            ..Default::default()
        };
        let cfg = SmtpConfig::load(&args().over(file), &|_| None)
            .unwrap()
            .unwrap();
        assert_eq!(cfg.host, "smtp.example.com");
        assert_eq!(cfg.port, 2525);
        assert_eq!(cfg.tls, SmtpTls::Tls);
        assert_eq!(cfg.from.email.to_string(), "backups@example.com");
    }

    #[test]
    fn bad_settings_are_explained() {
        let cases = [
            (
                ServerArgs {
                    smtp_tls: Some("ssl".into()),
                    ..args()
                },
                "use starttls, tls or none",
            ),
            (
                ServerArgs {
                    smtp_tls: Some("none".into()),
                    ..args()
                },
                "only for a relay on this machine",
            ),
            (
                ServerArgs {
                    smtp_from: None,
                    ..args()
                },
                "without --smtp-from",
            ),
            (
                ServerArgs {
                    smtp_from: Some("not an address".into()),
                    ..args()
                },
                "is not an address",
            ),
        ];
        for (a, needle) in cases {
            let err = SmtpConfig::load(&a, &|_| None).unwrap_err();
            assert!(err.0.contains(needle), "{err}");
        }
        let env = |k: &str| (k == "GHBS_SMTP_PASSWORD").then(|| "hunter2".to_string());
        let err = SmtpConfig::load(&args(), &env).unwrap_err();
        assert!(err.0.contains("without --smtp-username"), "{err}");
        assert!(!err.0.contains("hunter2"));
        let local = ServerArgs {
            smtp_host: Some("127.0.0.1".into()),
            smtp_tls: Some("none".into()),
            ..args()
        };
        let cfg = SmtpConfig::load(&local, &|_| None).unwrap().unwrap();
        assert_eq!(cfg.port, 25);
    }
}
