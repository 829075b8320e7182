//! One module per command group. Each command takes the shared [`Ctx`] and its parsed arguments.

pub mod check;
pub mod download_check;
pub mod fetch;
pub mod jobs;
pub mod login;
pub mod notify;
pub mod restore;
pub mod restore_metadata;
pub mod run;
pub mod schedule;

use crate::api::Api;
use crate::config::{ConfigDir, StoredKey};
use crate::exit::{CliError, CliResult};
use crate::output::Printer;

/// What every command needs: where to print, where the configuration lives, which server.
pub struct Ctx {
    pub out: Printer,
    pub config: ConfigDir,
    /// Normalized server URL.
    pub server: String,
    /// `--insecure-http`: credentials may go to a remote plain-HTTP server (see `transport`).
    pub insecure_http: bool,
    /// `--ca-cert` (or the config file's `ca_cert`): extra CA for the server's HTTPS.
    pub ca_cert: Option<std::path::PathBuf>,
}

impl Ctx {
    /// The stored key for this server, if any.
    pub fn stored_key(&self) -> CliResult<Option<StoredKey>> {
        Ok(self.config.load_credentials()?.servers.remove(&self.server))
    }

    /// Refuses (or, with `--insecure-http`, warns about) sending credentials to this server
    /// over plain HTTP off loopback. Called before a token is even asked for.
    pub fn check_transport(&self) -> CliResult {
        if let Some(warning) = crate::transport::check(&self.server, self.insecure_http)? {
            eprintln!("{warning}");
        }
        Ok(())
    }

    /// A client that sends no key (login, which sends a GitHub token: checked like a key).
    pub fn anonymous_api(&self) -> CliResult<Api> {
        crate::transport::check(&self.server, self.insecure_http)?;
        Api::new(&self.server, None, self.ca_cert.as_deref())
    }

    /// A client with this server's API key; fails with "not logged in" before any request.
    pub fn api(&self) -> CliResult<Api> {
        let key = self.stored_key()?.ok_or_else(|| CliError::NotLoggedIn {
            server: self.server.clone(),
        })?;
        self.check_transport()?;
        Api::new(&self.server, Some(key.api_key), self.ca_cert.as_deref())
    }
}

/// Runs a blocking terminal prompt off the async runtime's worker threads.
pub async fn prompt<T, F>(f: F) -> CliResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, inquire::InquireError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| CliError::failed("the prompt stopped unexpectedly"))?
        .map_err(CliError::from)
}
