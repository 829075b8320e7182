//! Sending one notification e-mail with lettre (the SMTP settings are `config::smtp`).

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::smtp::{SmtpConfig, SmtpTls};

impl SmtpConfig {
    /// The transport for these settings; built per delivery (cheap: no connection is opened
    /// until a message is sent).
    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let builder = match self.tls {
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.host),
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&self.host),
            SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &self.host,
            )),
        }
        .map_err(|_| "the SMTP settings are not usable (check --smtp-host)".to_owned())?;
        let mut builder = builder
            .port(self.port)
            .timeout(Some(super::deliver::DELIVERY_TIMEOUT));
        if let Some(user) = &self.username {
            let password = self
                .password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(builder.build())
    }

    /// Send one plain-text message. The error says what failed (never the password) and
    /// whether retrying can help.
    pub async fn send(
        &self,
        to: &str,
        subject: &str,
        body: String,
    ) -> Result<(), super::deliver::SendError> {
        use super::deliver::SendError;
        let to: Mailbox = to
            .parse()
            .map_err(|_| SendError::permanent("the stored e-mail address is not usable"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|_| SendError::permanent("the notification e-mail could not be built"))?;
        let transport = self.transport().map_err(SendError::permanent)?;
        match transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::permanent(format!(
                "the SMTP server refused the message{}",
                code_suffix(&e)
            ))),
            Err(e) if e.is_transient() => Err(SendError::transient(format!(
                "the SMTP server deferred the message{}",
                code_suffix(&e)
            ))),
            Err(e) if e.is_timeout() => Err(SendError::transient("the SMTP server timed out")),
            Err(e) if e.is_tls() => Err(SendError::transient(
                "TLS with the SMTP server failed (STARTTLS missing or certificate not trusted)",
            )),
            Err(_) => Err(SendError::transient("could not talk to the SMTP server")),
        }
    }
}

fn code_suffix(e: &lettre::transport::smtp::Error) -> String {
    e.status()
        .map(|c| format!(" (code {c})"))
        .unwrap_or_default()
}
