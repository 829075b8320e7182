//! `fetch`: download a snapshot with progress, resume and verification.
//!
//! Bytes go to `NAME.snapS-FORMAT.part` first (S the snapshot id), with the server's `ETag` of
//! the file beside it in `….part.etag`. An existing part is resumed with `Range: bytes=LEN-` and
//! `If-Range: ETAG`, so the server sends the rest (206) only while its file is still the one the
//! part began; otherwise it sends the whole file (200) and the download starts over. Before the
//! file gets its final name its SHA-256 must equal the server's `Repr-Digest` and its format must
//! check out (see [`super::verify`]), so a file without `.part` is always whole.

use std::path::{Path, PathBuf};

use ghbs_wire::{DownloadFormat, Snapshot};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::{HeaderMap, ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_RANGE, ETAG};
use reqwest::{Response, StatusCode};
use serde_json::json;
use sha2::Digest;
use tokio::io::AsyncWriteExt;

use super::download_check::{self as verify, Layout};
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
    let got = download(ctx, &api, snapshot.id, args.format, repo.as_deref(), dest).await?;
    let per_repository = got.layout == Layout::PerRepository;
    let shown = json!({
        "path": got.path, "bytes": got.bytes, "snapshot_id": snapshot.id, "format": args.format,
        "sha256": got.sha256, "per_repository": per_repository, "repositories": got.repos,
    });
    if !ctx.out.json(&shown) {
        if per_repository {
            ctx.out.note(format!(
                "{} is a tar archive of one {} per repository, each verified ({}): {}",
                got.path.display(),
                verify::member_kind(args.format),
                got.repos.len(),
                got.repos.join(", ")
            ));
        }
        if args.format == DownloadFormat::Site {
            ctx.out.note(site_hint(&got.path));
        }
        ctx.out.line(got.path.display().to_string());
    }
    Ok(())
}

/// How to read a downloaded site: which folder of the zip holds `index.html`. The folder is
/// named after the server's file name, which `-o` may have changed, so it is read from the
/// zip's first entry.
pub fn site_hint(path: &Path) -> String {
    match first_zip_folder(path) {
        Some(folder) => format!(
            "Unzip {} and open {folder}/index.html in any browser: it needs no server and no network",
            path.display()
        ),
        None => format!(
            "Unzip {} and open index.html in the folder it holds, in any browser: it needs no server and no network",
            path.display()
        ),
    }
}

/// The top folder of a zip's first entry, from its local file header (signature, then the
/// name's length at offset 26 and the name at 30; APPNOTE 4.3.7). Read by hand: one field of
/// one header does not warrant the zip crate in the client.
fn first_zip_folder(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 30 + 512];
    let mut file = std::fs::File::open(path).ok()?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]).ok()? {
            0 => break,
            k => n += k,
        }
    }
    let head = &head[..n];
    if !head.starts_with(b"PK\x03\x04") || head.len() < 30 {
        return None;
    }
    let len = u16::from_le_bytes([head[26], head[27]]) as usize;
    let name = std::str::from_utf8(head.get(30..30 + len)?).ok()?;
    let (folder, _) = name.split_once('/')?;
    (!folder.is_empty() && !folder.starts_with('.')).then(|| folder.to_owned())
}

/// A finished, verified download.
#[derive(Debug)]
pub struct Downloaded {
    pub path: PathBuf,
    pub bytes: u64,
    /// Hex SHA-256 of the file, equal to the server's digest (`None`: the server sent none).
    pub sha256: Option<String>,
    pub layout: Layout,
    /// For a per-repository archive: the repositories (`owner/name`) inside, each verified.
    pub repos: Vec<String>,
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
    let mut resp = api.download(snapshot, format, repo, None).await?;
    let expected = verify::announced_digest(resp.headers())?;
    let mut hasher = sha2::Sha256::new();
    let mut out = tokio::io::stdout();
    while let Some(chunk) = resp.chunk().await.map_err(|e| api.body_error(&e))? {
        hasher.update(&chunk);
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    let got: [u8; 32] = hasher.finalize().into();
    match expected {
        Some(want) if want != got => Err(CliError::failed(format!(
            "the bytes written to standard output do not match the server's SHA-256 digest (expected {}, got {}): do not use them",
            hex::encode(want),
            hex::encode(got)
        ))),
        _ => Ok(()),
    }
}

/// Downloads into `dest` (resuming a part of the same file), verifies, renames.
pub async fn download(
    ctx: &Ctx,
    api: &Api,
    snapshot: i64,
    format: DownloadFormat,
    repo: Option<&str>,
    dest: Dest,
) -> CliResult<Downloaded> {
    // `asked`: the (offset, tag) of a part we asked the server to continue.
    let (path, mut resp, asked, stale) = match dest {
        Dest::File(path) => {
            let held = held_part(&part_path(&path, snapshot, format));
            let resume = held.as_ref().map(|(n, tag)| (*n, tag.as_str()));
            let resp = api.download(snapshot, format, repo, resume).await?;
            (path, resp, held, false)
        }
        Dest::Dir(dir) => {
            let resp = api.download(snapshot, format, repo, None).await?;
            let name =
                filename(resp.headers()).unwrap_or_else(|| default_name(snapshot, format, repo));
            let path = dir.join(name);
            match held_part(&part_path(&path, snapshot, format)) {
                Some((n, tag))
                    if accepts_ranges(resp.headers())
                        && etag(resp.headers()).as_deref() == Some(tag.as_str()) =>
                {
                    drop(resp);
                    let resp = api
                        .download(snapshot, format, repo, Some((n, &tag)))
                        .await?;
                    (path, resp, Some((n, tag)), false)
                }
                held => (path, resp, None, held.is_some()),
            }
        }
        Dest::Stdout => unreachable_stdout()?,
    };
    let part = part_path(&path, snapshot, format);
    let tag_file = etag_path(&part);

    // Resume only when the server sends exactly the bytes after ours, of the same file.
    let resumed = asked.as_ref().is_some_and(|(from, tag)| {
        resp.status() == StatusCode::PARTIAL_CONTENT
            && content_range(resp.headers()).is_some_and(|(start, _)| start == *from)
            && etag(resp.headers()).as_deref() == Some(tag.as_str())
    });
    // 200: the server's file is not the one the part began (If-Range did not match).
    let changed = stale || (asked.is_some() && !resumed && resp.status() == StatusCode::OK);
    if asked.is_some() && !resumed && resp.status() != StatusCode::OK {
        ctx.out.note(format!(
            "{} cannot be continued (the server answered {}): downloading the file whole",
            part.display(),
            resp.status()
        ));
        drop(resp);
        resp = api.download(snapshot, format, repo, None).await?;
    }
    if changed {
        ctx.out.note(format!(
            "{} was part of another version of this file: downloading it whole",
            part.display()
        ));
    }
    let from = match (&asked, resumed) {
        (Some((from, _)), true) => {
            ctx.out
                .note(format!("Resuming {} at {from} bytes", part.display()));
            *from
        }
        _ => 0,
    };
    if from == 0 && resp.status() != StatusCode::OK {
        return Err(CliError::failed(format!(
            "the server answered {} to a download of the whole file",
            resp.status()
        )));
    }
    let expected = verify::announced_digest(resp.headers())?;
    let layout = Layout::of(resp.headers());
    if layout == Layout::PerRepository && from == 0 {
        ctx.out.note(format!(
            "This snapshot is of a whole account: the download is one tar archive holding one {} per repository (--repo OWNER/NAME downloads a single one)",
            verify::member_kind(format)
        ));
    }
    let total = if resumed {
        content_range(resp.headers()).and_then(|(_, total)| total)
    } else {
        resp.content_length()
    };
    if from == 0 {
        start_part(&part, &tag_file, etag(resp.headers()).as_deref())?;
    }

    let written = write_part(ctx, api, &mut resp, &part, from, total).await?;
    if let Some(total) = total {
        if written != total {
            return Err(CliError::failed(format!(
                "the download stopped after {written} of {total} bytes: run the same command again to resume"
            )));
        }
    }
    let discard = || {
        let _ = std::fs::remove_file(&part);
        let _ = std::fs::remove_file(&tag_file);
    };
    let sha256 = match expected {
        Some(want) => {
            let got = verify::sha256_file(&part).await?;
            if got != want {
                discard();
                return Err(verify::digest_mismatch(&want, &got));
            }
            Some(hex::encode(got))
        }
        None => {
            ctx.out.note(
                "The server sent no SHA-256 digest (an older server?): only the file's format was checked",
            );
            None
        }
    };
    let repos = match verify::verify(&part, format, layout).await {
        Ok(repos) => repos,
        Err(e) => {
            discard();
            return Err(e);
        }
    };
    std::fs::rename(&part, &path).map_err(|e| {
        CliError::failed(format!(
            "cannot rename {} to {}: {e}",
            part.display(),
            path.display()
        ))
    })?;
    let _ = std::fs::remove_file(&tag_file);
    remove_other_parts(&path);
    Ok(Downloaded {
        path,
        bytes: written,
        sha256,
        layout,
        repos,
    })
}

/// Empties `part` and records the tag of the file about to fill it (or none: not resumable).
/// The tag is written before any byte, so bytes in a part always belong to the tag beside it.
fn start_part(part: &Path, tag_file: &Path, tag: Option<&str>) -> CliResult {
    let cannot = |p: &Path, e: std::io::Error| {
        CliError::failed(format!("cannot write {}: {e}", p.display()))
    };
    std::fs::File::create(part).map_err(|e| cannot(part, e))?;
    match tag.filter(|t| t.starts_with('"')) {
        Some(tag) => std::fs::write(tag_file, format!("{tag}\n")).map_err(|e| cannot(tag_file, e)),
        None => match std::fs::remove_file(tag_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(cannot(tag_file, e)),
            _ => Ok(()),
        },
    }
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

/// `NAME.snapS-FORMAT.part`: a part only ever continues the same snapshot and format.
fn part_path(path: &Path, snapshot: i64, format: DownloadFormat) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".snap{snapshot}-{}.part", format.as_str()));
    path.with_file_name(name)
}

/// Once `path` is complete, parts of it for other snapshots or formats (and an old-style
/// `NAME.part`) can never be resumed into it: they are removed.
fn remove_other_parts(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let ours = format!("{name}.snap");
    let legacy = format!("{name}.part");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let part_of_ours =
            file.starts_with(&ours) && (file.ends_with(".part") || file.ends_with(".part.etag"));
        if (part_of_ours || file == legacy) && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `PART.etag`: the server's tag of the file the part is a beginning of.
fn etag_path(part: &Path) -> PathBuf {
    let mut name = part
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".etag");
    part.with_file_name(name)
}

/// (length, tag) of a non-empty part with a strong tag beside it; without a tag a part cannot
/// be proven to belong to the server's file, so it is not resumed.
fn held_part(part: &Path) -> Option<(u64, String)> {
    let len = std::fs::metadata(part).ok()?.len();
    let tag = std::fs::read_to_string(etag_path(part)).ok()?;
    let tag = tag.trim();
    (len > 0 && tag.starts_with('"') && tag.len() > 2 && tag.is_ascii())
        .then(|| (len, tag.to_string()))
}

/// The response's strong `ETag` (weak tags cannot vouch for bytes).
fn etag(headers: &HeaderMap) -> Option<String> {
    let tag = headers.get(ETAG)?.to_str().ok()?.trim();
    tag.starts_with('"').then(|| tag.to_string())
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
    let ext = match format {
        DownloadFormat::Site => "site.zip",
        other => other.as_str(),
    };
    format!("snapshot-{snapshot}{repo}.{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn the_site_hint_names_the_folder_inside_the_zip_whatever_the_file_is_called() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("renamed-by-o.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        zip.start_file(
            "octo-hello-2026-12-03.site/index.html",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        zip.write_all(b"<html></html>").unwrap();
        zip.finish().unwrap();
        let hint = site_hint(&path);
        assert!(
            hint.contains("renamed-by-o.zip and open octo-hello-2026-12-03.site/index.html"),
            "{hint}"
        );
        let not_zip = dir.path().join("x.zip");
        std::fs::write(&not_zip, b"not a zip").unwrap();
        assert!(site_hint(&not_zip).contains("index.html in the folder it holds"));
    }

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
            part_path(Path::new("a/x.zip"), 7, DownloadFormat::Zip),
            PathBuf::from("a/x.zip.snap7-zip.part")
        );
        assert_eq!(
            etag_path(Path::new("a/x.zip.snap7-zip.part")),
            PathBuf::from("a/x.zip.snap7-zip.part.etag")
        );
    }

    #[test]
    fn parts_resume_only_with_a_strong_tag() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.part");
        assert_eq!(held_part(&part), None);
        std::fs::write(&part, b"abc").unwrap();
        assert_eq!(held_part(&part), None, "no tag beside it");
        std::fs::write(etag_path(&part), "W/\"t\"\n").unwrap();
        assert_eq!(held_part(&part), None, "weak tag");
        std::fs::write(etag_path(&part), "\"t\"\n").unwrap();
        assert_eq!(held_part(&part), Some((3, "\"t\"".to_string())));
        // Starting over empties the part and replaces (or drops) its tag.
        start_part(&part, &etag_path(&part), Some("\"u\"")).unwrap();
        assert_eq!(std::fs::metadata(&part).unwrap().len(), 0);
        assert_eq!(held_part(&part), None, "empty part");
        start_part(&part, &etag_path(&part), None).unwrap();
        assert!(!etag_path(&part).exists());
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
            assert_eq!(
                verify::verify(&junk, f, Layout::Single)
                    .await
                    .unwrap_err()
                    .exit_code(),
                1
            );
        }
        let zip = dir.path().join("z");
        std::fs::write(&zip, b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0").unwrap();
        verify::verify(&zip, DownloadFormat::Zip, Layout::Single)
            .await
            .unwrap();

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
        verify::verify(&bundle, DownloadFormat::Bundle, Layout::Single)
            .await
            .unwrap();
        // A truncated bundle keeps its header (which `git bundle verify` alone accepts).
        let bytes = std::fs::read(&bundle).unwrap();
        std::fs::write(&bundle, &bytes[..bytes.len() - 10]).unwrap();
        assert!(
            verify::verify(&bundle, DownloadFormat::Bundle, Layout::Single)
                .await
                .is_err()
        );
    }
}
