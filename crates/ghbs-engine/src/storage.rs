//! Where the engine keeps what is not a git mirror: a small interface over the `object_store`
//! crate with the backend chosen by URL.
//!
//! - `file://PATH` — object_store's `LocalFileSystem` rooted at `PATH` (the default is
//!   `DATA_DIR/backups`, so keys map one to one to today's files: `manifests/{snapshot}.json` is
//!   `DATA_DIR/backups/manifests/{snapshot}.json`). Each put is also fsynced (file and folder),
//!   so a committed object survives a power cut as the engine's own files always did.
//! - `s3://BUCKET[/PREFIX]` — object_store's `AmazonS3Builder` configured from the standard AWS
//!   environment variables (`AWS_ENDPOINT_URL` / `AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ALLOW_HTTP`).
//!
//! Every write appears complete or not at all (a rename on local disk; a single PUT, or a
//! multipart upload completed in one request, on S3). Content-addressed keys are written with
//! [`Storage::put_if_absent`], which never overwrites an existing object, or from a file with
//! [`Storage::put_file_if_absent`], which streams large files as a multipart upload so a pack
//! or a release asset of gigabytes never sits in memory ([`Storage::get_to_file`] reads back the
//! same way).
//!
//! Errors carry a [`StorageErrorKind`] so callers choose retry from data; their text never holds
//! the S3 secret key or session token.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig, WriteMultipart};

use crate::error::EngineError;
use ghbs_core::FailureKind;

/// What went wrong, as data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The key does not exist.
    NotFound,
    /// `put_if_absent` found the key already there.
    AlreadyExists,
    /// Retrying later may help (network, timeout, 5xx from the endpoint).
    Transient,
    /// Retrying cannot help (bad URL or configuration, credentials refused, invalid key).
    Permanent,
}

/// A storage failure: a kind and a message safe to log (no secrets).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    pub kind: StorageErrorKind,
    pub message: String,
}

impl StorageError {
    fn new(kind: StorageErrorKind, message: impl Into<String>) -> StorageError {
        StorageError {
            kind,
            message: message.into(),
        }
    }
}

impl From<StorageError> for EngineError {
    fn from(err: StorageError) -> EngineError {
        let kind = match err.kind {
            StorageErrorKind::NotFound => FailureKind::NotFound,
            StorageErrorKind::Transient => FailureKind::Transient,
            StorageErrorKind::AlreadyExists | StorageErrorKind::Permanent => FailureKind::Permanent,
        };
        EngineError::new(kind, err.message)
    }
}

/// The backend behind a [`Storage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageLocation {
    /// A local folder (absolute).
    File(PathBuf),
    /// A bucket and an optional key prefix (without leading or trailing `/`).
    S3 {
        bucket: String,
        prefix: Option<String>,
    },
}

impl StorageLocation {
    /// Parses `file://PATH` or `s3://BUCKET[/PREFIX]`; anything else is a permanent error that
    /// says which forms are accepted.
    pub fn parse(url: &str) -> Result<StorageLocation, StorageError> {
        let bad = |why: &str| {
            StorageError::new(
                StorageErrorKind::Permanent,
                format!(
                    "invalid storage URL {:?}: {why} (expected file:///absolute/path or s3://bucket[/prefix])",
                    redact_url(url)
                ),
            )
        };
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() || !path.starts_with('/') {
                return Err(bad("a file:// URL needs an absolute path"));
            }
            return Ok(StorageLocation::File(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            if rest.contains('@') || rest.contains('?') || rest.contains('#') {
                return Err(bad(
                    "credentials, query strings and fragments do not belong in the URL; use the AWS_* environment variables",
                ));
            }
            let (bucket, prefix) = match rest.split_once('/') {
                Some((bucket, prefix)) => (bucket, prefix.trim_matches('/')),
                None => (rest, ""),
            };
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !valid_bucket {
                return Err(bad(
                    "the bucket name must be 3-63 characters of a-z, 0-9, '-' and '.'",
                ));
            }
            if prefix.split('/').any(|seg| seg == "." || seg == "..") {
                return Err(bad("the prefix must not contain '.' or '..' segments"));
            }
            return Ok(StorageLocation::S3 {
                bucket: bucket.to_owned(),
                prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
            });
        }
        Err(bad("unknown scheme"))
    }
}

/// Never echo whatever follows an `@` (someone may paste `s3://key:secret@bucket`).
fn redact_url(url: &str) -> String {
    match url.split_once('@') {
        Some((head, _)) => match head.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://***@…"),
            None => "***".to_owned(),
        },
        None => url.to_owned(),
    }
}

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub key: String,
    pub size: u64,
    pub modified: chrono::DateTime<chrono::Utc>,
}

/// Files larger than this are uploaded in parts ([`Storage::put_file_if_absent`]).
pub const MULTIPART_THRESHOLD: u64 = 16 << 20;
/// The size of one part of a multipart upload (S3's minimum is 5 MiB).
const PART_SIZE: usize = 8 << 20;
/// Parts of one upload in flight at once: bounds memory to about this many parts.
const PARTS_IN_FLIGHT: usize = 4;

/// Objects by key (`/`-separated, e.g. `manifests/{snapshot}.json`); cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<dyn ObjectStore>,
    location: StorageLocation,
    /// Values that must never appear in an error message.
    secrets: Arc<Vec<String>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// Opens the storage a URL names, reading S3 settings from the process environment.
    pub fn from_url(url: &str) -> Result<Storage, StorageError> {
        Storage::from_url_with(url, std::env::vars(), None)
    }

    /// Local storage rooted at `root` (created if missing).
    pub fn local(root: &Path) -> Result<Storage, StorageError> {
        Storage::open(StorageLocation::File(root.to_path_buf()), Vec::new(), None)
    }

    /// Like [`Storage::from_url`] with explicit `AWS_*` settings (other keys are ignored) and,
    /// optionally, a retry policy (object_store's default retries for up to three minutes).
    pub fn from_url_with(
        url: &str,
        vars: impl IntoIterator<Item = (String, String)>,
        retry: Option<RetryConfig>,
    ) -> Result<Storage, StorageError> {
        let location = StorageLocation::parse(url)?;
        let vars = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .collect();
        Storage::open(location, vars, retry)
    }

    fn open(
        location: StorageLocation,
        vars: Vec<(String, String)>,
        retry: Option<RetryConfig>,
    ) -> Result<Storage, StorageError> {
        let secrets: Vec<String> = vars
            .iter()
            .filter(|(k, v)| {
                (k == "AWS_SECRET_ACCESS_KEY" || k == "AWS_SESSION_TOKEN") && !v.is_empty()
            })
            .map(|(_, v)| v.clone())
            .collect();
        let inner: Arc<dyn ObjectStore> = match &location {
            StorageLocation::File(root) => {
                std::fs::create_dir_all(root).map_err(|e| {
                    StorageError::new(
                        StorageErrorKind::Permanent,
                        format!("create storage folder {}: {e}", root.display()),
                    )
                })?;
                let fs = LocalFileSystem::new_with_prefix(root).map_err(|e| {
                    StorageError::new(
                        StorageErrorKind::Permanent,
                        format!("open storage folder {}: {e}", root.display()),
                    )
                })?;
                Arc::new(fs)
            }
            StorageLocation::S3 { bucket, prefix } => {
                let mut builder = AmazonS3Builder::new();
                for (key, value) in &vars {
                    if let Ok(config_key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                        builder = builder.with_config(config_key, value);
                    }
                }
                builder = builder.with_bucket_name(bucket);
                if let Some(retry) = retry {
                    builder = builder.with_retry(retry);
                }
                let s3 = builder.build().map_err(|e| {
                    StorageError::new(
                        StorageErrorKind::Permanent,
                        scrub(&format!("configure S3 storage: {e}"), &secrets),
                    )
                })?;
                match prefix {
                    Some(prefix) => Arc::new(PrefixStore::new(s3, prefix.as_str())),
                    None => Arc::new(s3),
                }
            }
        };
        Ok(Storage {
            inner,
            location,
            secrets: Arc::new(secrets),
        })
    }

    /// Which backend this is.
    pub fn location(&self) -> &StorageLocation {
        &self.location
    }

    /// Writes a whole object, replacing any earlier one.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.put_mode(key, bytes, PutMode::Overwrite).await
    }

    /// Writes a whole object unless the key exists; returns `false` (and writes nothing) when it
    /// does. For content-addressed keys, where an existing object already has the same bytes.
    pub async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool, StorageError> {
        match self.put_mode(key, bytes, PutMode::Create).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind == StorageErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// [`Storage::put_if_absent`] from a local file. Files up to [`MULTIPART_THRESHOLD`] go as
    /// one put; larger ones, after a check that the key is absent, as a multipart upload of
    /// [`PART_SIZE`] parts with at most [`PARTS_IN_FLIGHT`] in flight (S3's conditional create
    /// does not cover multipart uploads, so two nodes racing on the same content-addressed key
    /// both write identical bytes, which is harmless).
    pub async fn put_file_if_absent(&self, key: &str, file: &Path) -> Result<bool, StorageError> {
        let io = |e| upload_read_error(file, e);
        let size = tokio::fs::metadata(file).await.map_err(io)?.len();
        if size <= MULTIPART_THRESHOLD {
            let bytes = tokio::fs::read(file).await.map_err(io)?;
            return self.put_if_absent(key, Bytes::from(bytes)).await;
        }
        if self.exists(key).await? {
            return Ok(false);
        }
        self.put_multipart_file(key, file).await?;
        Ok(true)
    }

    /// Writes a content-addressed object from a local file unless the storage holds one written
    /// less than `fresh_for` ago; returns whether it wrote. Used for objects a snapshot is about
    /// to reference: the garbage collection sweeps only unreferenced objects older than its grace
    /// period, so writing (refreshing) an old one before referencing it keeps a collection that
    /// listed before our index from deleting it under us. `fresh_for` must be well below that
    /// grace period. Small files are simply rewritten (one PUT, as a conditional create would
    /// cost); large ones are checked first (a HEAD) and rewritten only when old.
    pub async fn put_file_refreshed(
        &self,
        key: &str,
        file: &Path,
        fresh_for: std::time::Duration,
    ) -> Result<bool, StorageError> {
        let io = |e| upload_read_error(file, e);
        let size = tokio::fs::metadata(file).await.map_err(io)?.len();
        if size <= MULTIPART_THRESHOLD {
            let bytes = tokio::fs::read(file).await.map_err(io)?;
            self.put(key, Bytes::from(bytes)).await?;
            return Ok(true);
        }
        match self.modified(key).await {
            Ok(written) => {
                let age = chrono::Utc::now().signed_duration_since(written);
                if age.to_std().map_or(true, |age| age < fresh_for) {
                    return Ok(false);
                }
            }
            Err(e) if e.kind == StorageErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.put_multipart_file(key, file).await?;
        Ok(true)
    }

    /// Streams a local file into `key` as a multipart upload (see [`PART_SIZE`]), aborting the
    /// upload on failure so no partial object is left behind.
    async fn put_multipart_file(&self, key: &str, file: &Path) -> Result<(), StorageError> {
        let io = |e| upload_read_error(file, e);
        let path = object_path(key)?;
        let upload = self
            .inner
            .put_multipart(&path)
            .await
            .map_err(|e| self.classify("put", key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut source = tokio::fs::File::open(file).await.map_err(io)?;
        let mut buf = vec![0u8; 1 << 20];
        let streamed = async {
            loop {
                let n = tokio::io::AsyncReadExt::read(&mut source, &mut buf)
                    .await
                    .map_err(io)?;
                if n == 0 {
                    return Ok(());
                }
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| self.classify("put", key, e))?;
                writer.write(&buf[..n]);
            }
        }
        .await;
        if let Err(e) = streamed {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer
            .finish()
            .await
            .map_err(|e| self.classify("put", key, e))?;
        if let StorageLocation::File(root) = &self.location {
            sync_local(root, key).map_err(|e| {
                StorageError::new(StorageErrorKind::Permanent, format!("fsync {key}: {e}"))
            })?;
        }
        Ok(())
    }

    /// Streams an object into the local file `dest` (created or truncated, fsynced) and returns
    /// its size; memory use does not grow with the object.
    pub async fn get_to_file(&self, key: &str, dest: &Path) -> Result<u64, StorageError> {
        use tokio::io::AsyncWriteExt;
        let path = object_path(key)?;
        let io = |e: std::io::Error| {
            StorageError::new(
                StorageErrorKind::Transient,
                format!("write {} from storage: {e}", dest.display()),
            )
        };
        let mut stream = self
            .inner
            .get(&path)
            .await
            .map_err(|e| self.classify("get", key, e))?
            .into_stream();
        let mut out = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut size = 0u64;
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| self.classify("get", key, e))?
        {
            out.write_all(&chunk).await.map_err(io)?;
            size += chunk.len() as u64;
        }
        out.flush().await.map_err(io)?;
        out.sync_all().await.map_err(io)?;
        Ok(size)
    }

    async fn put_mode(&self, key: &str, bytes: Bytes, mode: PutMode) -> Result<(), StorageError> {
        let path = object_path(key)?;
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        self.inner
            .put_opts(&path, PutPayload::from_bytes(bytes), opts)
            .await
            .map_err(|e| self.classify("put", key, e))?;
        if let StorageLocation::File(root) = &self.location {
            sync_local(root, key).map_err(|e| {
                StorageError::new(StorageErrorKind::Permanent, format!("fsync {key}: {e}"))
            })?;
        }
        Ok(())
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let path = object_path(key)?;
        let result = self
            .inner
            .get(&path)
            .await
            .map_err(|e| self.classify("get", key, e))?;
        result
            .bytes()
            .await
            .map_err(|e| self.classify("get", key, e))
    }

    /// Keys under `prefix` (a folder: `manifests` lists `manifests/…`), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let path = object_path(prefix)?;
        let mut keys: Vec<String> = self
            .inner
            .list(Some(&path))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(|e| self.classify("list", prefix, e))?;
        keys.sort();
        Ok(keys)
    }

    /// Objects under `prefix` with their size and last write, sorted by key (for the garbage
    /// collection and for measuring the bucket).
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<StoredObject>, StorageError> {
        let path = object_path(prefix)?;
        let mut objects: Vec<StoredObject> = self
            .inner
            .list(Some(&path))
            .map_ok(|meta| StoredObject {
                key: meta.location.to_string(),
                size: meta.size,
                modified: meta.last_modified,
            })
            .try_collect()
            .await
            .map_err(|e| self.classify("list", prefix, e))?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Whether a key exists (a HEAD request).
    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self.modified(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind == StorageErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// When an object was last written.
    pub async fn modified(&self, key: &str) -> Result<chrono::DateTime<chrono::Utc>, StorageError> {
        let path = object_path(key)?;
        let meta = self
            .inner
            .head(&path)
            .await
            .map_err(|e| self.classify("head", key, e))?;
        Ok(meta.last_modified)
    }

    /// Deletes an object; deleting a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = object_path(key)?;
        match self.inner.delete(&path).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.classify("delete", key, e)),
        }
    }

    /// Whether the backend answers: a listing of one folder. For a readiness probe.
    pub async fn ready(&self) -> Result<(), StorageError> {
        let path = object_path("manifests")?;
        let mut stream = self.inner.list(Some(&path));
        stream
            .try_next()
            .await
            .map(|_| ())
            .map_err(|e| self.classify("list", "manifests", e))
    }

    fn classify(&self, op: &str, key: &str, err: object_store::Error) -> StorageError {
        use object_store::Error as E;
        let kind = match &err {
            E::NotFound { .. } => StorageErrorKind::NotFound,
            E::AlreadyExists { .. } | E::Precondition { .. } => StorageErrorKind::AlreadyExists,
            E::Generic { .. } | E::JoinError { .. } | E::NotModified { .. } => {
                StorageErrorKind::Transient
            }
            _ => StorageErrorKind::Permanent,
        };
        let message = match kind {
            StorageErrorKind::NotFound => format!("{op} {key}: not found"),
            _ => format!("storage {op} {key}: {err}"),
        };
        StorageError::new(kind, scrub(&message, &self.secrets))
    }
}

/// A local file that was to be uploaded could not be read: passing (the next run reads again).
fn upload_read_error(file: &Path, e: std::io::Error) -> StorageError {
    StorageError::new(
        StorageErrorKind::Transient,
        format!("read {} for upload: {e}", file.display()),
    )
}

/// Keys are relative, `/`-separated, without empty, `.` or `..` segments.
fn object_path(key: &str) -> Result<ObjectPath, StorageError> {
    let invalid = key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if invalid {
        return Err(StorageError::new(
            StorageErrorKind::Permanent,
            format!("invalid storage key {key:?}"),
        ));
    }
    ObjectPath::parse(key).map_err(|e| {
        StorageError::new(
            StorageErrorKind::Permanent,
            format!("invalid storage key {key:?}: {e}"),
        )
    })
}

fn scrub(message: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(message.to_owned(), |m, s| m.replace(s.as_str(), "***"))
}

/// LocalFileSystem renames a finished temporary file into place but does not fsync; do it here
/// so that a put is as durable as the engine's own atomic writes.
fn sync_local(root: &Path, key: &str) -> std::io::Result<()> {
    let path = root.join(key);
    std::fs::File::open(&path)?.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
