//! Where the client keeps its settings and API keys, and which server it talks to.
//!
//! The folder is `$GHBS_CONFIG_DIR` when set (tests use it for isolation), else
//! `<platform config dir>/github-backup-scheduler/`. It holds `config.toml` (the default server)
//! and `credentials.json` (server URL → API key). Both are written with mode 0600 in a folder with
//! mode 0700, through a temporary file and a rename so that a crash never leaves half a file.
//! Loading never writes.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exit::{CliError, CliResult};

/// The server used when neither `--server`, `GHBS_SERVER` nor the config file names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:3000";

/// Environment variable that overrides the configuration folder.
pub const CONFIG_DIR_ENV: &str = "GHBS_CONFIG_DIR";

/// `config.toml`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Server URL used when no flag or environment variable gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// CA certificate (PEM) trusted for the server's HTTPS (`--ca-cert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

/// One API key as stored by `login`. Not `Debug`, so that the key cannot leak into a log line.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredKey {
    pub api_key: String,
    pub key_id: i64,
    pub login: String,
}

/// `credentials.json`: API keys per normalized server URL.
#[derive(Default, Clone, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    pub servers: BTreeMap<String, StoredKey>,
}

/// The configuration folder.
#[derive(Debug, Clone)]
pub struct ConfigDir {
    path: PathBuf,
}

impl ConfigDir {
    /// Finds the folder from the environment, without creating it.
    pub fn locate() -> CliResult<Self> {
        if let Some(dir) = std::env::var_os(CONFIG_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(ConfigDir {
                path: PathBuf::from(dir),
            });
        }
        let base = dirs::config_dir().ok_or_else(|| {
            CliError::usage(format!(
                "cannot find a configuration folder for this user: set {CONFIG_DIR_ENV}"
            ))
        })?;
        Ok(ConfigDir {
            path: base.join("github-backup-scheduler"),
        })
    }

    #[cfg(test)]
    pub fn at(path: impl Into<PathBuf>) -> Self {
        ConfigDir { path: path.into() }
    }

    /// The folder itself (restore journals live under it, in `restores/`).
    pub fn dir(&self) -> &Path {
        &self.path
    }

    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.toml")
    }

    pub fn credentials_path(&self) -> PathBuf {
        self.path.join("credentials.json")
    }

    /// Reads `config.toml`; a missing file is an empty configuration.
    pub fn load_config(&self) -> CliResult<FileConfig> {
        let path = self.config_path();
        let Some(text) = read_optional(&path)? else {
            return Ok(FileConfig::default());
        };
        toml::from_str(&text).map_err(|e| {
            CliError::usage(format!(
                "the configuration file {} is not valid ({}): fix it or delete it",
                path.display(),
                e.message()
            ))
        })
    }

    pub fn save_config(&self, config: &FileConfig) -> CliResult {
        let text = toml::to_string(config)
            .map_err(|e| CliError::failed(format!("cannot write the configuration: {e}")))?;
        self.write_private(&self.config_path(), text.as_bytes())
    }

    /// Reads `credentials.json`; a missing file holds no keys.
    pub fn load_credentials(&self) -> CliResult<Credentials> {
        let path = self.credentials_path();
        let Some(text) = read_optional(&path)? else {
            return Ok(Credentials::default());
        };
        serde_json::from_str(&text).map_err(|_| {
            CliError::usage(format!(
                "the credentials file {} is damaged: delete it and run `github-backup-scheduler login`",
                path.display()
            ))
        })
    }

    pub fn save_credentials(&self, creds: &Credentials) -> CliResult {
        let text = serde_json::to_vec_pretty(creds)
            .map_err(|e| CliError::failed(format!("cannot write the credentials: {e}")))?;
        self.write_private(&self.credentials_path(), &text)
    }

    /// Writes a file only its owner can read: folder 0700, file 0600, via a temporary name.
    fn write_private(&self, path: &Path, bytes: &[u8]) -> CliResult {
        let fail =
            |e: std::io::Error| CliError::failed(format!("cannot write {}: {e}", path.display()));
        create_private_dir(&self.path).map_err(fail)?;
        let tmp = path.with_extension("tmp");
        let _ = fs::remove_file(&tmp);
        let mut file = private_options().open(&tmp).map_err(fail)?;
        file.write_all(bytes).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        drop(file);
        fs::rename(&tmp, path).map_err(fail)
    }
}

fn read_optional(path: &Path) -> CliResult<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::failed(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(unix)]
fn private_options() -> fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true).mode(0o600);
    o
}

#[cfg(not(unix))]
fn private_options() -> fs::OpenOptions {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    o
}

#[cfg(unix)]
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

#[cfg(not(unix))]
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    fs::create_dir_all(path)
}

/// Picks the server: `--server` or `GHBS_SERVER` (clap has already preferred the flag), then the
/// config file, then [`DEFAULT_SERVER`]; and normalizes it so that credentials match.
pub fn resolve_server(flag_or_env: Option<&str>, file: &FileConfig) -> CliResult<String> {
    let chosen = flag_or_env
        .filter(|s| !s.trim().is_empty())
        .or(file.server.as_deref())
        .unwrap_or(DEFAULT_SERVER);
    normalize_server(chosen)
}

/// Checks that `url` is an http(s) URL without query or fragment and drops trailing slashes.
pub fn normalize_server(url: &str) -> CliResult<String> {
    let url = url.trim();
    let bad = |why: &str| {
        CliError::usage(format!(
            "the server URL `{url}` is not valid ({why}): use a URL such as {DEFAULT_SERVER}"
        ))
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("only http and https are supported"));
    }
    if parsed.host_str().is_none() {
        return Err(bad("it has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("it must not carry credentials"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_or_env_beats_file_beats_default() {
        let file = FileConfig {
            server: Some("http://file:1".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve_server(Some("http://flag:2/"), &file).unwrap(),
            "http://flag:2"
        );
        assert_eq!(resolve_server(None, &file).unwrap(), "http://file:1");
        assert_eq!(
            resolve_server(None, &FileConfig::default()).unwrap(),
            DEFAULT_SERVER
        );
    }

    #[test]
    fn bad_server_urls_are_usage_errors() {
        for url in ["ftp://x", "not a url", "http://x?y=1", "http://u:p@x"] {
            assert_eq!(normalize_server(url).unwrap_err().exit_code(), 2, "{url}");
        }
    }

    #[test]
    fn files_are_private_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ConfigDir::at(dir.path().join("nested"));
        let mut creds = Credentials::default();
        creds.servers.insert(
            "http://x".into(),
            StoredKey {
                api_key: "k".into(),
                key_id: 1,
                login: "me".into(),
            },
        );
        cfg.save_credentials(&creds).unwrap();
        cfg.save_credentials(&creds).unwrap();
        cfg.save_config(&FileConfig {
            server: Some("http://x".into()),
            ca_cert: Some("/etc/ghbs/ca.pem".into()),
        })
        .unwrap();
        assert_eq!(
            cfg.load_config().unwrap().ca_cert,
            Some(PathBuf::from("/etc/ghbs/ca.pem"))
        );
        assert_eq!(
            cfg.load_credentials().unwrap().servers["http://x"].api_key,
            "k"
        );
        assert_eq!(
            cfg.load_config().unwrap().server.as_deref(),
            Some("http://x")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&cfg.credentials_path()), 0o600);
            assert_eq!(mode(&cfg.config_path()), 0o600);
            assert_eq!(mode(&dir.path().join("nested")), 0o700);
        }
    }

    #[test]
    fn damaged_files_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ConfigDir::at(dir.path());
        fs::write(cfg.config_path(), "server = [").unwrap();
        assert!(cfg
            .load_config()
            .unwrap_err()
            .to_string()
            .contains("fix it or delete it"));
        fs::write(cfg.credentials_path(), "{").unwrap();
        assert!(cfg
            .load_credentials()
            .err()
            .unwrap()
            .to_string()
            .contains("login"));
    }
}
