//! Checks a downloaded file before it gets its final name: first the server's SHA-256 digest
//! (`Repr-Digest`, RFC 9530), then the format — a bundle git accepts, a zip or gzip archive, and
//! for the per-repository archive of an account job (an uncompressed tar) every bundle or zip
//! inside it.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ghbs_wire::DownloadFormat;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use sha2::{Digest, Sha256};

use crate::exit::{CliError, CliResult};
use crate::validate;

/// What the server sent: one file for one repository, or one archive holding a file per
/// repository (account jobs without `--repo`), told apart by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Single,
    /// An uncompressed tar of `owner/name.bundle` (bundle) or `owner/name.zip` (zip).
    PerRepository,
}

impl Layout {
    pub fn of(headers: &HeaderMap) -> Layout {
        let per_repo = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().starts_with("application/x-tar"));
        if per_repo {
            Layout::PerRepository
        } else {
            Layout::Single
        }
    }
}

/// What each repository's file is called inside a per-repository archive.
pub fn member_kind(format: DownloadFormat) -> &'static str {
    match format {
        DownloadFormat::Zip => "zip",
        _ => "git bundle",
    }
}

fn member_ext(format: DownloadFormat) -> &'static str {
    match format {
        DownloadFormat::Zip => ".zip",
        _ => ".bundle",
    }
}

/// The SHA-256 the server announced for the whole file: `None` when it sent none, an error when
/// the header is there but unusable.
pub fn announced_digest(headers: &HeaderMap) -> CliResult<Option<[u8; 32]>> {
    let Some(value) = headers.get("repr-digest") else {
        return Ok(None);
    };
    let bad = || {
        CliError::failed(
            "the server sent a Repr-Digest header this client cannot read; the download cannot be verified",
        )
    };
    let text = value.to_str().map_err(|_| bad())?;
    // A dictionary: `sha-256=:B64:, sha-512=:B64:`; only sha-256 is used.
    let Some(b64) = text.split(',').find_map(|item| {
        let (alg, v) = item.trim().split_once('=')?;
        alg.trim()
            .eq_ignore_ascii_case("sha-256")
            .then(|| v.trim().trim_matches(':').to_string())
    }) else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad())?;
    bytes.try_into().map(Some).map_err(|_| bad())
}

/// SHA-256 of a file, read off the async threads.
pub async fn sha256_file(path: &Path) -> CliResult<[u8; 32]> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<[u8; 32]> {
        use std::io::Read;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finalize().into())
    })
    .await
    .map_err(|_| CliError::failed("hashing the download stopped unexpectedly"))?
    .map_err(CliError::from)
}

/// The error for a file whose bytes are not the server's.
pub fn digest_mismatch(expected: &[u8; 32], got: &[u8; 32]) -> CliError {
    CliError::failed(format!(
        "the downloaded file does not match the server's SHA-256 digest (expected {}, got {}); it was deleted — run the same command again to download it whole",
        hex::encode(expected),
        hex::encode(got)
    ))
}

/// Checks that the file is what it claims; returns the repositories (`owner/name`) found in a
/// per-repository archive (empty for a single file).
pub async fn verify(path: &Path, format: DownloadFormat, layout: Layout) -> CliResult<Vec<String>> {
    if layout == Layout::PerRepository {
        if format == DownloadFormat::TarGz {
            return Err(CliError::failed(
                "the server sent a tar archive for a tar.gz download; are client and server the same version?",
            ));
        }
        let scratch = scratch_next_to(path)?;
        let members = unpack_members(path, format, scratch.path()).await?;
        for m in &members {
            check_single(&m.path, format)
                .await
                .map_err(|e| CliError::failed(format!("{} inside the archive: {e}", m.name)))?;
        }
        return Ok(members.into_iter().map(|m| m.name).collect());
    }
    check_single(path, format).await?;
    Ok(Vec::new())
}

async fn check_single(path: &Path, format: DownloadFormat) -> CliResult {
    let mut head = [0u8; 16];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        f.read(&mut head)?
    };
    let head = &head[..n];
    let bad = |what: &str| {
        CliError::failed(format!(
            "the downloaded file is not a valid {what}; it was deleted — try again"
        ))
    };
    match format {
        DownloadFormat::Zip | DownloadFormat::Site
            if !(head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06")) =>
        {
            Err(bad("zip archive"))
        }
        DownloadFormat::TarGz if !head.starts_with(&[0x1f, 0x8b]) => Err(bad("tar.gz archive")),
        DownloadFormat::Bundle => {
            if !head.starts_with(b"# v2 git bundle") && !head.starts_with(b"# v3 git bundle") {
                return Err(bad("git bundle"));
            }
            git_bundle_verify(path).await
        }
        _ => Ok(()),
    }
}

/// A temporary folder beside `path` (same file system, removed when dropped).
pub fn scratch_next_to(path: &Path) -> CliResult<tempfile::TempDir> {
    let abs = std::path::absolute(path)?;
    let parent = abs.parent().unwrap_or(Path::new("."));
    Ok(tempfile::Builder::new()
        .prefix(".ghbs-verify-")
        .tempdir_in(parent)?)
}

/// One repository's file taken out of a per-repository archive.
#[derive(Debug)]
pub struct Member {
    /// `owner/name`, checked to be a repository name.
    pub name: String,
    /// Where it was written (named by position, never by the archive's path).
    pub path: PathBuf,
}

/// Writes every `owner/name.bundle` (or `.zip`) of a per-repository archive into `into`.
/// Entry names are only read, never used as paths; anything but a repository's file and
/// `snapshot.json` is refused.
pub async fn unpack_members(
    archive: &Path,
    format: DownloadFormat,
    into: &Path,
) -> CliResult<Vec<Member>> {
    let archive = archive.to_path_buf();
    let into = into.to_path_buf();
    let ext = member_ext(format);
    tokio::task::spawn_blocking(move || unpack_blocking(&archive, ext, &into))
        .await
        .map_err(|_| CliError::failed("reading the archive stopped unexpectedly"))?
}

fn unpack_blocking(archive: &Path, ext: &str, into: &Path) -> CliResult<Vec<Member>> {
    let broken = |e: std::io::Error| {
        CliError::failed(format!(
            "the downloaded archive cannot be read ({e}); it was deleted — try again"
        ))
    };
    let file = std::fs::File::open(archive)?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let mut members = Vec::new();
    for entry in tar.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        let raw = entry.path().map_err(broken)?.to_string_lossy().into_owned();
        if raw == "snapshot.json" || entry.header().entry_type().is_dir() {
            continue;
        }
        let name = raw
            .strip_suffix(ext)
            .filter(|_| entry.header().entry_type().is_file())
            .and_then(|n| validate::repo_name(n).ok())
            .ok_or_else(|| {
                CliError::failed(format!(
                    "the downloaded archive holds an unexpected entry {raw:?}; it was deleted — are client and server the same version?"
                ))
            })?;
        let path = into.join(format!("{}{ext}", members.len()));
        let mut out = std::fs::File::create(&path)?;
        std::io::copy(&mut entry, &mut out).map_err(broken)?;
        members.push(Member { name, path });
    }
    Ok(members)
}

/// `git bundle verify` checks the header and prerequisites (it needs a repository; an empty one
/// suits a complete bundle) but not the pack itself, so the pack is then indexed with
/// `git bundle unbundle` in a scratch repository next to the file: that checks every object.
async fn git_bundle_verify(path: &Path) -> CliResult {
    let abs = std::path::absolute(path)?;
    let scratch = scratch_next_to(&abs)?;
    let git = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new("git");
        cmd.arg("-C").arg(scratch.path()).args(args).arg(&abs);
        cmd.stdout(std::process::Stdio::null()).kill_on_drop(true);
        cmd
    };
    let init = tokio::process::Command::new("git")
        .args(["init", "--bare", "--quiet"])
        .arg(scratch.path())
        .output()
        .await;
    if !init.is_ok_and(|o| o.status.success()) {
        return Err(CliError::failed(
            "cannot verify the bundle: git is not installed (install git, or use --format tar.gz)",
        ));
    }
    for args in [
        &["bundle", "verify", "--quiet"][..],
        &["bundle", "unbundle"],
    ] {
        let out = git(args).output().await?;
        if !out.status.success() {
            return Err(CliError::failed(format!(
                "git rejected the downloaded bundle ({}); it was deleted — try again",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn digests_are_read_from_repr_digest() {
        let mut h = HeaderMap::new();
        assert!(announced_digest(&h).unwrap().is_none());
        let digest: [u8; 32] = Sha256::digest(b"x").into();
        let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
        h.insert(
            "repr-digest",
            HeaderValue::from_str(&format!("sha-512=:AAAA:, sha-256=:{b64}:")).unwrap(),
        );
        assert_eq!(announced_digest(&h).unwrap(), Some(digest));
        h.insert(
            "repr-digest",
            HeaderValue::from_static("sha-256=:bm90IDMyIGJ5dGVz:"),
        );
        assert!(announced_digest(&h).is_err());
        h.insert("repr-digest", HeaderValue::from_static("sha-256=:%%%:"));
        assert!(announced_digest(&h).is_err());
        h.insert("repr-digest", HeaderValue::from_static("md5=:AAAA:"));
        assert!(announced_digest(&h).unwrap().is_none());
    }

    #[test]
    fn layout_follows_the_content_type() {
        let mut h = HeaderMap::new();
        assert_eq!(Layout::of(&h), Layout::Single);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
        assert_eq!(Layout::of(&h), Layout::PerRepository);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/gzip"));
        assert_eq!(Layout::of(&h), Layout::Single);
    }

    #[tokio::test]
    async fn archives_with_strange_entries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_size(4);
        header.set_mode(0o644);
        header.set_cksum();
        b.append_data(&mut header.clone(), "o/ok.zip", &b"PK\x05\x06"[..])
            .unwrap();
        b.append_data(&mut header, "o/x/y.zip", &b"PK\x05\x06"[..])
            .unwrap();
        b.finish().unwrap();
        drop(b);
        let out = tempfile::tempdir().unwrap();
        let err = unpack_members(&archive, DownloadFormat::Zip, out.path())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("unexpected entry"), "{err}");
    }
}
