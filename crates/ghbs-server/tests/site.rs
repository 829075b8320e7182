//! The `site` download end to end: a backup of a repository with issues, a pull request with
//! reviews and review comments, a release, a wiki and a hostile issue, downloaded as `site`
//! through the router, unzipped, and read two ways: as files (every page there, every link
//! resolving to a file of the export) and in a real browser (headless Chromium opens the pages
//! from disk: titles, comment counts and links in the DOM, no injected script ran). The unzipped
//! site and screenshots are kept in `target/test-artifacts/site/`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use axum::http::StatusCode;
use chrono::Duration;
use common::TestApp;
use ghbs_testkit::RepoOptions;
use serde_json::json;

/// The hostile issue: a script, an event handler and a `javascript:` link that each try to change
/// the page (its title, a new element) if they ever run.
const HOSTILE: &str = "Innocent words.\n\n<script>document.title='pwned'</script>\n\n\
<img src=x onerror=\"document.title='pwned';document.body.appendChild(document.createElement('pwned-img'))\">\n\n\
<a href=\"javascript:document.title='pwned'\">click</a> <svg onload=\"document.title='pwned'\"></svg>\n\n\
<iframe srcdoc=\"<script>parent.document.title='pwned'</script>\"></iframe>";

struct Backup {
    app: TestApp,
    key: String,
    snapshot: i64,
    hostile: u64,
    issue: u64,
    pull: u64,
    /// The release asset the backup stored (the other one is listed, not stored).
    asset: i64,
}

/// A repository `site/proj` with everything the site shows, backed up once with metadata and
/// wiki on; one release asset stored by the backup, one GitHub lists but no longer serves.
async fn backup() -> Backup {
    let app = TestApp::new().await;
    let (key, _) = app.login("site").await;
    let repo = "site/proj";
    app.gh.create_repo("site", "proj", RepoOptions::default());
    app.gh.commit(
        repo,
        "main",
        &[(
            "README.md",
            "# Project Proj\n\nA *fine* project. <script>document.title='pwned'</script>\n",
        )],
        "first",
    );
    app.gh.create_label(repo, "bug", "d73a4a");
    app.gh.create_milestone(repo, "v1 planning");
    let issue = app
        .gh
        .create_issue(repo, "Broken thing", "It **breaks** when `x` is set.");
    app.gh.add_label_to(repo, issue, "bug");
    app.gh.add_issue_comment(repo, issue, "I see it too");
    app.gh.add_issue_comment(repo, issue, "Fixed in main?");
    let hostile = app.gh.create_issue(repo, "Hostile <b>title</b>", HOSTILE);
    app.gh.add_issue_comment(repo, hostile, HOSTILE);
    app.gh.edit_issue(
        repo,
        hostile,
        json!({"state": "closed", "closed_at": "2026-03-01T10:00:00Z"}),
    );
    app.gh
        .commit(repo, "feature", &[("f.txt", "feature\n")], "feature work");
    let pull = app.gh.create_pull(repo, "Add feature", "feature", "main");
    app.gh.add_issue_comment(repo, pull, "pr conversation");
    app.gh
        .add_review(repo, pull, "APPROVED", "looks good to me");
    app.gh
        .add_review_comment(repo, pull, "f.txt", "nit: trailing newline");
    app.gh.create_tag(repo, "v1.0", "main");
    app.gh.create_release(repo, "v1.0", "First release");
    app.gh.edit_release(
        repo,
        "v1.0",
        json!({"body": "Release **notes**", "assets": [
            {"id": 9002, "name": "proj-big.iso", "size": 3_000_000_000u64, "browser_download_url": "https://example.invalid/big.iso"}
        ]}),
    );
    app.gh.commit(
        "site/proj.wiki",
        "master",
        &[
            ("Home.md", "# Welcome\n\nSee [[Setup Guide]].\n"),
            ("Setup-Guide.md", "Steps.\n\nBack to [Home](Home).\n"),
        ],
        "wiki",
    );
    let asset = app
        .gh
        .add_release_asset(repo, "v1.0", "proj-linux.tar.gz", b"bytes");
    let (status, body) = app
        .post(
            "/api/v1/jobs",
            &key,
            json!({"target": repo, "schedule": "daily at 09:00", "timezone": "UTC",
                   "options": {"metadata": true, "wiki": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let job = body["id"].as_i64().unwrap();
    app.clock.advance(Duration::days(1));
    assert_eq!(app.backup_scheduler().run_due_once().await, 1);
    let (_, snaps) = app
        .get(&format!("/api/v1/jobs/{job}/snapshots"), &key)
        .await;
    let snapshot = snaps["snapshots"][0]["id"].as_i64().expect("a snapshot");
    let (_, runs) = app.get(&format!("/api/v1/jobs/{job}/runs"), &key).await;
    assert_eq!(
        runs["runs"][0]["status"], "succeeded",
        "an asset GitHub no longer serves is skipped, not a failure: {runs}"
    );
    Backup {
        app,
        key,
        snapshot,
        hostile,
        issue,
        pull,
        asset,
    }
}

/// Downloads the site and unzips it into a fresh `target/test-artifacts/site/{name}/`; returns
/// the site's folder (the one folder inside the zip).
async fn export(b: &Backup, name: &str) -> PathBuf {
    let bytes = b.app.download(&b.key, b.snapshot, "site").await;
    assert!(bytes.starts_with(b"PK\x03\x04"), "a zip");
    let out = artifacts().join(name);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut tops = BTreeSet::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let rel = entry
            .enclosed_name()
            .expect("entry names stay inside the folder");
        tops.insert(rel.components().next().unwrap().as_os_str().to_owned());
        let dest = out.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let mut file = std::fs::File::create(&dest).unwrap();
        std::io::copy(&mut entry, &mut file).unwrap();
    }
    assert_eq!(tops.len(), 1, "one folder in the zip: {tops:?}");
    let top = out.join(tops.into_iter().next().unwrap());
    assert!(
        top.file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with(".site"),
        "{top:?}"
    );
    top
}

fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts/site")
}

fn read(site: &Path, rel: &str) -> String {
    std::fs::read_to_string(site.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `href` and `src` values of an HTML text.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        for piece in html.split(attr).skip(1) {
            out.push(piece[..piece.find('"').unwrap()].replace("&amp;", "&"));
        }
    }
    out
}

/// Every link of `page` that is not a web address is relative and names a file of the site.
fn assert_links_resolve(site: &Path, page: &Path, html: &str) -> usize {
    let mut local = 0;
    for link in links(html) {
        if link.starts_with("https://")
            || link.starts_with("http://")
            || link.starts_with('#')
            || link.starts_with("mailto:")
        {
            continue;
        }
        assert!(
            !link.starts_with('/') && !link.contains(':'),
            "{page:?}: not relative: {link}"
        );
        let path = link.split('#').next().unwrap();
        let target = page.parent().unwrap().join(path);
        let target = std::fs::canonicalize(&target)
            .unwrap_or_else(|_| panic!("{page:?}: {link} names no file of the export"));
        assert!(
            target.starts_with(std::fs::canonicalize(site).unwrap()),
            "{page:?}: {link} leaves the site"
        );
        local += 1;
    }
    local
}

#[tokio::test]
async fn site_pages_are_complete_and_links_resolve() {
    let b = backup().await;
    let site = export(&b, "files").await;
    let repo = site.join("site/proj");
    for rel in [
        "index.html",
        "style.css",
        "site/proj/index.html",
        "site/proj/issues.html",
        "site/proj/pulls.html",
        "site/proj/releases.html",
        "site/proj/wiki/index.html",
        "site/proj/wiki/Home.html",
        "site/proj/wiki/Setup-Guide.html",
    ] {
        assert!(site.join(rel).is_file(), "{rel} missing");
    }
    let issue_page = format!("site/proj/issues/{}.html", b.issue);
    let pull_page = format!("site/proj/pulls/{}.html", b.pull);
    let hostile_page = format!("site/proj/issues/{}.html", b.hostile);

    let issues = read(&site, "site/proj/issues.html");
    assert!(
        issues.contains("Broken thing") && issues.contains("Hostile &lt;b&gt;title&lt;/b&gt;"),
        "{issues}"
    );
    assert!(issues.contains(&format!("data-number=\"{}\"", b.issue)));
    assert!(
        issues.contains("data-comments=\"2\""),
        "two comments on the issue: {issues}"
    );
    assert!(
        issues.contains("background:#d73a4a") && issues.contains(">bug<"),
        "the label: {issues}"
    );
    let page = read(&site, &issue_page);
    assert!(
        page.contains("<strong>breaks</strong>")
            && page.contains("I see it too")
            && page.contains("Fixed in main?"),
        "{page}"
    );
    let pull = read(&site, &pull_page);
    for want in [
        "pr conversation",
        "approved these changes",
        "looks good to me",
        "nit: trailing newline",
        "<code>f.txt</code>",
        "feature work",
        "data-reviews=\"1\"",
    ] {
        assert!(pull.contains(want), "{want} not on the pull request's page");
    }
    let releases = read(&site, "site/proj/releases.html");
    assert!(
        releases.contains("First release") && releases.contains("<strong>notes</strong>"),
        "{releases}"
    );
    assert!(
        releases.contains(&format!(
            "href=\"../../site/proj/assets/{}/proj-linux.tar.gz\"",
            b.asset
        )),
        "the stored asset is linked: {releases}"
    );
    assert_eq!(
        std::fs::read(repo.join(format!("assets/{}/proj-linux.tar.gz", b.asset))).unwrap(),
        b"bytes"
    );
    assert!(
        releases.contains("proj-big.iso") && releases.contains("not stored in this backup"),
        "{releases}"
    );
    assert!(read(&site, "site/proj/wiki/Home.html").contains("href=\"Setup-Guide.html\""));
    assert!(read(&site, "site/proj/index.html").contains("<h1>Project Proj</h1>"));

    // Every page: links resolve, nothing executable survived, the CSP forbids scripts anyway.
    let mut pages = 0;
    let mut checked = 0;
    for entry in walk(&site) {
        if entry.extension().is_some_and(|e| e == "html") {
            let html = std::fs::read_to_string(&entry).unwrap();
            checked += assert_links_resolve(&site, &entry, &html);
            let lower = html.to_ascii_lowercase();
            for bad in [
                "<script",
                "onerror",
                "onload",
                "javascript:",
                "<iframe",
                "<svg",
            ] {
                assert!(!lower.contains(bad), "{bad} in {entry:?}");
            }
            assert!(lower.contains("default-src 'none'"), "{entry:?} has no CSP");
            pages += 1;
        }
    }
    assert!(
        pages >= 10 && checked > 50,
        "{pages} pages, {checked} links"
    );
    assert!(read(&site, &hostile_page).contains("Innocent words."));

    // Built once: the same bytes (and digest) again.
    let again = b.app.download(&b.key, b.snapshot, "site").await;
    assert_eq!(again, b.app.download(&b.key, b.snapshot, "site").await);
}

#[tokio::test]
async fn unknown_format_is_refused_with_the_list() {
    let b = backup().await;
    let (status, body) = b
        .app
        .get(
            &format!("/api/v1/snapshots/{}/download?format=html", b.snapshot),
            &b.key,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("zip or site"),
        "{body}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Debian's `chromium` (or `GHBS_CHROMIUM`), if installed.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GHBS_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Runs headless Chromium on a file of the export with `args` (`--dump-dom`, `--screenshot=…`);
/// returns its standard output. A private profile per call: other sessions' browsers never
/// share it. Scripts would get a virtual-time budget to run before the DOM is dumped.
fn browse(chromium: &Path, page: &Path, args: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--virtual-time-budget=3000",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    // A safety bound, not a timing assertion: a browser stuck for two minutes fails the test.
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish with {page:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out
}

fn title_of(dom: &str) -> String {
    let start = dom.find("<title>").expect("a title") + "<title>".len();
    let end = dom[start..].find("</title>").unwrap();
    dom[start..start + end].to_owned()
}

#[tokio::test]
async fn site_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        eprintln!("SKIPPED site_in_a_real_browser: Chromium is not installed (Debian: apt-get install chromium; or set GHBS_CHROMIUM)");
        return;
    };
    let b = backup().await;
    let site = export(&b, "browser").await;
    let shots = artifacts();

    // The top index: the repository and its counts; its links resolve to files of the export.
    let index = site.join("index.html");
    let dom = browse(&chromium, &index, &["--dump-dom".into()]);
    assert!(dom.contains("site/proj"), "{dom}");
    assert!(
        dom.contains("3 issues") || dom.contains("2 issues"),
        "issue count on the index: {dom}"
    );
    assert!(assert_links_resolve(&site, &index, &dom) >= 2);

    // The issue list as the browser built it: titles and comment counts.
    let list = site.join("site/proj/issues.html");
    let dom = browse(&chromium, &list, &["--dump-dom".into()]);
    assert!(dom.contains("Broken thing"), "{dom}");
    assert!(
        dom.contains("Hostile &lt;b&gt;title&lt;/b&gt;"),
        "the title is text, not markup: {dom}"
    );
    assert!(dom.contains("2 comments"), "{dom}");
    assert!(!dom.contains("<b>title</b>"));
    assert!(assert_links_resolve(&site, &list, &dom) >= 4);

    // The hostile issue: nothing it carries ran.
    let hostile = site.join(format!("site/proj/issues/{}.html", b.hostile));
    let dom = browse(&chromium, &hostile, &["--dump-dom".into()]);
    assert!(dom.contains("Innocent words."), "{dom}");
    let title = title_of(&dom);
    assert!(
        !title.contains("pwned") && title.contains(&format!("#{}", b.hostile)),
        "the title was changed: {title}"
    );
    assert!(
        !dom.contains("pwned-img") && !dom.contains("<script") && !dom.contains("<iframe"),
        "{dom}"
    );
    let dom = browse(
        &chromium,
        &site.join("site/proj/index.html"),
        &["--dump-dom".into()],
    );
    assert!(
        title_of(&dom) == "site/proj" && dom.contains("Project Proj"),
        "the README's script did not run either"
    );

    // The pull request page: reviews and review comments; links back resolve.
    let pull = site.join(format!("site/proj/pulls/{}.html", b.pull));
    let dom = browse(&chromium, &pull, &["--dump-dom".into()]);
    assert!(
        dom.contains("looks good to me") && dom.contains("nit: trailing newline"),
        "{dom}"
    );
    assert!(assert_links_resolve(&site, &pull, &dom) >= 4);

    // Screenshots, desktop, phone and dark scheme (`preferredColorScheme=0` is dark), kept for a
    // person to look at.
    let repo_index = site.join("site/proj/index.html");
    for (name, page, size, dark) in [
        ("index.png", &index, "1200,900", false),
        ("repo-dark.png", &repo_index, "1200,900", true),
        ("issues.png", &list, "1200,900", false),
        ("pull.png", &pull, "1200,1400", false),
        ("pull-phone.png", &pull, "390,844", false),
        ("hostile.png", &hostile, "1200,900", false),
    ] {
        let shot = shots.join(name);
        let _ = std::fs::remove_file(&shot);
        let mut args = vec![
            format!("--screenshot={}", shot.display()),
            format!("--window-size={size}"),
        ];
        if dark {
            args.push("--blink-settings=preferredColorScheme=0".into());
        }
        browse(&chromium, page, &args);
        let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot {shot:?}: {e}"));
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{shot:?} is not a real picture"
        );
    }
    eprintln!("site and screenshots in {}", shots.display());
}
