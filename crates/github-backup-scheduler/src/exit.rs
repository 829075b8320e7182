//! The one place where errors become exit codes.
//!
//! Scripts may rely on these codes; they are part of the product:
//!
//! | Code | Meaning |
//! | ---- | ------- |
//! | 0 | Success. |
//! | 1 | Failure: the server refused or a backup, download, verification or restore failed. |
//! | 2 | Usage: a malformed argument (target, schedule, timezone, format, ...) or a question that needs a terminal. |
//! | 3 | Not logged in, or the server rejected the API key or the GitHub token: run `github-backup-scheduler login`. |
//! | 4 | Not found: no such job, run, snapshot or key among yours. |
//! | 5 | The server is not reachable. |
//!
//! Every error is printed once, as `error: <message>` on standard error, and the message says
//! what to do next.

use thiserror::Error;

/// Every way a command can fail, each mapped to one exit code by [`CliError::exit_code`].
#[derive(Debug, Error)]
pub enum CliError {
    /// The user's input is malformed; retrying without changing it cannot help.
    #[error("{0}")]
    Usage(String),
    /// No API key stored for this server.
    #[error("you are not logged in to {server}: run `github-backup-scheduler login{flag}`", flag = server_flag(server))]
    NotLoggedIn { server: String },
    /// The server answered 401 to our API key (revoked, or the server's database was reset).
    #[error("the server at {server} rejected the stored API key (revoked or expired): run `github-backup-scheduler login{flag}`", flag = server_flag(server))]
    KeyRejected { server: String },
    /// GitHub rejected the token given at login.
    #[error("{0}")]
    TokenRejected(String),
    /// A job, run, snapshot or key that does not exist (or is someone else's).
    #[error("{0}")]
    NotFound(String),
    /// Nothing answered at the server URL.
    #[error("the server at {server} is not reachable ({reason}) — is `github-backup-scheduler server` running? Choose another one with --server or GHBS_SERVER")]
    Unreachable { server: String, reason: String },
    /// Anything else that went wrong, phrased for a person.
    #[error("{0}")]
    Failed(String),
    /// The user left a prompt (Esc or Ctrl-C).
    #[error("cancelled")]
    Cancelled,
}

/// Suggests repeating `--server` in the login hint when the server is not the built-in default,
/// so that copying the hint logs in to the right place.
fn server_flag(server: &str) -> String {
    if server == crate::config::DEFAULT_SERVER {
        String::new()
    } else {
        format!(" --server {server}")
    }
}

impl CliError {
    /// The process exit code for this error; see the module documentation for the table.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) | CliError::Cancelled => 1,
            CliError::Usage(_) => 2,
            CliError::NotLoggedIn { .. }
            | CliError::KeyRejected { .. }
            | CliError::TokenRejected(_) => 3,
            CliError::NotFound(_) => 4,
            CliError::Unreachable { .. } => 5,
        }
    }

    pub fn usage(msg: impl Into<String>) -> Self {
        CliError::Usage(msg.into())
    }

    pub fn failed(msg: impl Into<String>) -> Self {
        CliError::Failed(msg.into())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Failed(e.to_string())
    }
}

impl From<inquire::InquireError> for CliError {
    fn from(e: inquire::InquireError) -> Self {
        use inquire::InquireError as E;
        match e {
            E::OperationCanceled | E::OperationInterrupted => CliError::Cancelled,
            E::NotTTY => CliError::Usage(
                "this question needs a terminal; use the command's flags instead (see --help)"
                    .into(),
            ),
            other => CliError::Failed(format!("could not ask on the terminal: {other}")),
        }
    }
}

/// Result type of every command.
pub type CliResult<T = ()> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        let s = "http://127.0.0.1:3000".to_string();
        assert_eq!(CliError::failed("x").exit_code(), 1);
        assert_eq!(CliError::usage("x").exit_code(), 2);
        assert_eq!(CliError::NotLoggedIn { server: s.clone() }.exit_code(), 3);
        assert_eq!(CliError::KeyRejected { server: s.clone() }.exit_code(), 3);
        assert_eq!(CliError::NotFound("x".into()).exit_code(), 4);
        let e = CliError::Unreachable {
            server: s,
            reason: "connection refused".into(),
        };
        assert_eq!(e.exit_code(), 5);
        assert!(e.to_string().contains("is not reachable"));
    }

    #[test]
    fn login_hint_names_a_non_default_server() {
        let e = CliError::NotLoggedIn {
            server: "http://10.0.0.1:3000".into(),
        };
        assert!(e
            .to_string()
            .contains("login --server http://10.0.0.1:3000"));
        let e = CliError::NotLoggedIn {
            server: crate::config::DEFAULT_SERVER.into(),
        };
        assert!(e.to_string().ends_with("scheduler login`"));
    }
}
