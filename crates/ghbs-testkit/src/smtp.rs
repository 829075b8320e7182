//! A tiny SMTP sink for tests: accepts mail on loopback over plain SMTP and keeps it.
//!
//! Hand-written (about a hundred lines over tokio) rather than a crate or Python's aiosmtpd:
//! tests need only the happy dialogue (EHLO, MAIL, RCPT, DATA, QUIT) and what was received,
//! and this keeps CI free of another dependency. No STARTTLS and no AUTH are offered.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One message as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpMessage {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body as sent, dot-unstuffed, lines joined with `\r\n`.
    pub data: String,
}

/// The running sink. Dropping it stops accepting connections.
pub struct SmtpSink {
    port: u16,
    messages: Arc<Mutex<Vec<SmtpMessage>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind SMTP sink");
        let port = listener.local_addr().expect("SMTP sink address").port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let store = messages.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, store.clone()));
            }
        });
        SmtpSink {
            port,
            messages,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<SmtpMessage> {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(stream: TcpStream, store: Arc<Mutex<Vec<SmtpMessage>>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut from = String::new();
    let mut to = Vec::new();
    if write
        .write_all(b"220 ghbs-testkit SMTP sink\r\n")
        .await
        .is_err()
    {
        return;
    }
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-ghbs-testkit\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("HELO") {
            b"250 ghbs-testkit\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = addr(&line["MAIL FROM:".len()..]);
            to.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(addr(&line["RCPT TO:".len()..]));
            b"250 OK\r\n"
        } else if upper == "DATA" {
            if write
                .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                .await
                .is_err()
            {
                return;
            }
            let mut data = Vec::new();
            loop {
                match lines.next_line().await {
                    Ok(Some(l)) if l == "." => break,
                    Ok(Some(l)) => data.push(l.strip_prefix('.').map(str::to_owned).unwrap_or(l)),
                    _ => return,
                }
            }
            store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(SmtpMessage {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    data: data.join("\r\n"),
                });
            b"250 OK queued\r\n"
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 OK\r\n"
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"502 command not implemented\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// `<user@example.com> SIZE=…` → `user@example.com`.
fn addr(arg: &str) -> String {
    let arg = arg.trim();
    let inner = arg
        .strip_prefix('<')
        .and_then(|a| a.split_once('>'))
        .map(|(a, _)| a)
        .unwrap_or(arg);
    inner.to_owned()
}
