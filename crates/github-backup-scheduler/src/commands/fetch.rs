//! `fetch`: download a snapshot with progress, resume and verification.
//!
//! Bytes go to `NAME.part` first; an existing `.part` is resumed with `Range: bytes=LEN-` when the
//! server answers 206 (otherwise it starts over). Only a complete, verified file is renamed to its
//! final name, so a file without `.part` is always whole.

use std::path::{Path, PathBuf};

use ghbs_wire::{DownloadFormat, Snapshot};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::{HeaderMap, ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_RANGE};
use reqwest::{Response, StatusCode};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::Ctx;
use crate::api::Api;
use crate::cli::FetchArgs;
use crate::exit::{CliError, CliResult};
use crate::validate;

/// Where the download goes.
pub enum Dest {
    /// The server's file name in this folder.
    Dir(PathBuf),
    /// Exactly this file.
    File(PathBuf),
    /// Standard output, unverified and not resumable.
    Stdout,
}

impl Dest {
    pub fn from_output(output: Option<&Path>) -> Dest {
        match output {
            None => Dest::Dir(PathBuf::from(".")),
            Some(p) if p == Path::new("-") => Dest::Stdout,
            Some(p) if p.is_dir() => Dest::Dir(p.to_path_buf()),
            Some(p) => Dest::File(p.to_path_buf()),
        }
    }
}

pub async fn fetch(ctx: &Ctx, args: &FetchArgs) -> CliResult {
    let repo = args.repo.as_deref().map(validate::repo_name).transpose()?;
    let dest = Dest::from_output(args.output.as_deref());
    let api = ctx.api()?;
    let snapshot = pick_snapshot(&api, args.id, args.snapshot).await?;
    if let Dest::Stdout = dest {
        return to_stdout(&api, snapshot.id, args.format, repo.as_deref()).await;
    }
    let (path, bytes) =
        download(ctx, &api, snapshot.id, args.format, repo.as_deref(), dest).await?;
    let shown = json!({
        "path": path, "bytes": bytes, "snapshot_id": snapshot.id, "format": args.format,
    });
    if !ctx.out.json(&shown) {
        ctx.out.line(path.display().to_string());
    }
    Ok(())
}

/// The snapshot asked for (checked to belong to `job`), or the job's newest.
pub async fn pick_snapshot(api: &Api, job: i64, snapshot: Option<i64>) -> CliResult<Snapshot> {
    if let Some(id) = snapshot {
        let snap = api.snapshot(id).await?;
        if snap.job_id != job {
            return Err(CliError::NotFound(format!(
                "snapshot {id} is not a snapshot of job {job}: list them with `github-backup-scheduler snapshots {job}`"
            )));
        }
        return Ok(snap);
    }
    api.snapshots(job).await?.snapshots.into_iter().next().ok_or_else(|| {
        CliError::NotFound(format!(
            "job {job} has no snapshots yet: start a backup with `github-backup-scheduler run {job} --wait`"
        ))
    })
}

async fn to_stdout(
    api: &Api,
    snapshot: i64,
    format: DownloadFormat,
    repo: Option<&str>,
) -> CliResult {
    let mut resp = api.download(snapshot, format, repo, 0).await?;
    let mut out = tokio::io::stdout();
    while let Some(chunk) = resp.chunk().await.map_err(|e| api.body_error(&e))? {
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    Ok(())
}

/// Downloads into `dest` (resuming a `.part`), verifies, renames; returns the path and size.
pub async fn download(
    ctx: &Ctx,
    api: &Api,
    snapshot: i64,
    format: DownloadFormat,
    repo: Option<&str>,
    dest: Dest,
) -> CliResult<(PathBuf, u64)> {
    let (mut resp, path, mut from) = match dest {
        Dest::File(path) => {
            let from = part_len(&path);
            (
                api.download(snapshot, format, repo, from).await?,
                path,
                from,
            )
        }
        Dest::Dir(dir) => {
            let resp = api.download(snapshot, format, repo, 0).await?;
            let name =
                filename(resp.headers()).unwrap_or_else(|| default_name(snapshot, format, repo));
            let path = dir.join(name);
            let existing = part_len(&path);
            if existing > 0 && accepts_ranges(resp.headers()) {
                drop(resp);
                (
                    api.download(snapshot, format, repo, existing).await?,
                    path,
                    existing,
                )
            } else {
                (resp, path, 0)
            }
        }
        Dest::Stdout => unreachable_stdout()?,
    };
    let part = part_path(&path);

    // Resume only when the server sends exactly the bytes after what we have.
    let resumed = resp.status() == StatusCode::PARTIAL_CONTENT
        && content_range(resp.headers()).is_some_and(|(start, _)| start == from);
    if from > 0 && !resumed {
        if resp.status() != StatusCode::OK {
            drop(resp);
            resp = api.download(snapshot, format, repo, 0).await?;
        }
        from = 0;
    }
    if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
        return Err(CliError::failed(
            "the server refused the download range; delete the .part file and try again",
        ));
    }
    let total = if resumed {
        content_range(resp.headers()).and_then(|(_, total)| total)
    } else {
        resp.content_length()
    };

    let written = write_part(ctx, api, &mut resp, &part, from, total).await?;
    if let Some(total) = total {
        if written != total {
            return Err(CliError::failed(format!(
                "the download stopped after {written} of {total} bytes: run the same command again to resume"
            )));
        }
    }
    if let Err(e) = verify(&part, format).await {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, &path).map_err(|e| {
        CliError::failed(format!(
            "cannot rename {} to {}: {e}",
            part.display(),
            path.display()
        ))
    })?;
    Ok((path, written))
}

fn unreachable_stdout<T>() -> CliResult<T> {
    Err(CliError::failed(
        "internal: standard output is not a download file",
    ))
}

/// Appends (from > 0) or writes the body into `part`, with a progress bar; returns its new length.
async fn write_part(
    ctx: &Ctx,
    api: &Api,
    resp: &mut Response,
    part: &Path,
    from: u64,
    total: Option<u64>,
) -> CliResult<u64> {
    let cannot =
        |e: std::io::Error| CliError::failed(format!("cannot write {}: {e}", part.display()));
    let mut options = tokio::fs::OpenOptions::new();
    if from > 0 {
        options.append(true);
    } else {
        options.write(true).create(true).truncate(true);
    }
    let mut file = options.open(part).await.map_err(cannot)?;
    let bar = if ctx.out.progress() {
        let bar = ProgressBar::new(total.unwrap_or(0));
        let template = if total.is_some() {
            "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
        } else {
            "{spinner} {bytes} {bytes_per_sec}"
        };
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(from);
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut written = from;
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        CliError::failed(format!(
            "{} — run the same command again to resume",
            api.body_error(&e)
        ))
    })? {
        file.write_all(&chunk).await.map_err(cannot)?;
        written += chunk.len() as u64;
        bar.set_position(written);
    }
    file.sync_all().await.map_err(cannot)?;
    bar.finish_and_clear();
    Ok(written)
}

/// Checks that the file is what it claims: a bundle git accepts, or a zip / gzip archive.
pub async fn verify(path: &Path, format: DownloadFormat) -> CliResult {
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
        DownloadFormat::Zip
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

/// `git bundle verify` checks the header and prerequisites (it needs a repository; an empty one
/// suits a complete bundle) but not the pack itself, so the pack is then indexed with
/// `git bundle unbundle` in a scratch repository next to the file: that checks every object.
async fn git_bundle_verify(path: &Path) -> CliResult {
    let abs = std::path::absolute(path)?;
    let parent = abs.parent().unwrap_or(Path::new("."));
    let scratch = tempfile::Builder::new()
        .prefix(".ghbs-verify-")
        .tempdir_in(parent)?;
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

fn part_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    path.with_file_name(name)
}

fn part_len(path: &Path) -> u64 {
    std::fs::metadata(part_path(path))
        .map(|m| m.len())
        .unwrap_or(0)
}

fn accepts_ranges(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT_RANGES)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("bytes"))
}

/// `Content-Range: bytes START-END/TOTAL` → (START, TOTAL when known).
fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// The file name from `Content-Disposition`, reduced to a safe base name.
fn filename(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(CONTENT_DISPOSITION)?.to_str().ok()?;
    let raw = v
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("filename="))?;
    safe_name(raw.trim_matches('"'))
}

fn safe_name(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next()?.trim();
    let ok = !base.is_empty()
        && !base.starts_with('.')
        && !base.chars().any(|c| c.is_control())
        && base.len() <= 200;
    ok.then(|| base.to_string())
}

fn default_name(snapshot: i64, format: DownloadFormat, repo: Option<&str>) -> String {
    let repo = repo
        .map(|r| format!("-{}", r.replace('/', "-")))
        .unwrap_or_default();
    format!("snapshot-{snapshot}{repo}.{}", format.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn names_from_headers_are_made_safe() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"o-r-3.bundle\""),
        );
        assert_eq!(filename(&h).as_deref(), Some("o-r-3.bundle"));
        h.insert(
            CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"../../etc/passwd\""),
        );
        assert_eq!(filename(&h).as_deref(), Some("passwd"));
        h.insert(
            CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"..\""),
        );
        assert_eq!(filename(&h), None);
        assert_eq!(
            default_name(3, DownloadFormat::TarGz, Some("o/r")),
            "snapshot-3-o-r.tar.gz"
        );
    }

    #[test]
    fn content_ranges() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 100-199/200"));
        assert_eq!(content_range(&h), Some((100, Some(200))));
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 5-9/*"));
        assert_eq!(content_range(&h), Some((5, None)));
        assert_eq!(
            part_path(Path::new("a/x.zip")),
            PathBuf::from("a/x.zip.part")
        );
    }

    #[tokio::test]
    async fn verification_checks_magic_bytes_and_git() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"<html>oops</html>").unwrap();
        for f in [
            DownloadFormat::Zip,
            DownloadFormat::TarGz,
            DownloadFormat::Bundle,
        ] {
            assert_eq!(verify(&junk, f).await.unwrap_err().exit_code(), 1);
        }
        let zip = dir.path().join("z");
        std::fs::write(&zip, b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0").unwrap();
        verify(&zip, DownloadFormat::Zip).await.unwrap();

        let repo = dir.path().join("repo");
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .status()
                .unwrap()
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q", repo.to_str().unwrap()]);
        git(&[
            "-C",
            repo.to_str().unwrap(),
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ]);
        let bundle = dir.path().join("b.bundle");
        git(&[
            "-C",
            repo.to_str().unwrap(),
            "bundle",
            "create",
            "-q",
            bundle.to_str().unwrap(),
            "--all",
        ]);
        verify(&bundle, DownloadFormat::Bundle).await.unwrap();
        // A truncated bundle keeps its header (which `git bundle verify` alone accepts).
        let bytes = std::fs::read(&bundle).unwrap();
        std::fs::write(&bundle, &bytes[..bytes.len() - 10]).unwrap();
        assert!(verify(&bundle, DownloadFormat::Bundle).await.is_err());
    }
}
