//! The rendered site of a small repository: every page there, every relative link resolving to a
//! page of the site, and nothing from a hostile issue able to run.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;

const HOSTILE: &str = "Pwn <script>document.title='pwned'</script> \
    <img src=x onerror=\"document.body.appendChild(document.createElement('pwned'))\"> \
    <a href=\"javascript:alert(1)\">x</a>";

fn input() -> RepoInput {
    let user = json!({"login": "alice"});
    RepoInput {
        full_name: "octo/hello".into(),
        default_branch: Some("main".into()),
        branches: 2,
        tags: 1,
        readme: Some(Document {
            path: "README.md".into(),
            text: "# Hello\n\nWelcome <b onclick=\"x()\">bold</b>.\n".into(),
        }),
        has_metadata: true,
        issues: vec![
            json!({"issue": {"number": 1, "title": "Broken <thing>", "state": "open", "user": user,
                "created_at": "2026-11-01T10:20:30Z", "body": "It *breaks*.",
                "labels": [{"name": "bug", "color": "d73a4a"}, {"name": "odd", "color": "red;background:url(x)"}]},
              "comments": [{"id": 7, "user": {"login": "bob"}, "created_at": "2026-11-02T00:00:00Z", "body": "Same here"}]}),
            json!({"issue": {"number": 3, "title": "Hostile", "state": "closed", "user": user, "body": HOSTILE},
              "comments": [{"id": 8, "user": user, "body": HOSTILE}]}),
        ],
        pulls: vec![json!({
            "issue": {"number": 2, "title": "Add feature", "state": "open"},
            "pull": {"number": 2, "title": "Add feature", "state": "open", "user": user, "body": "Adds it",
                     "head": {"label": "octo:feature", "ref": "feature"}, "base": {"label": "octo:main", "ref": "main"},
                     "merged_at": null, "created_at": "2026-11-03T00:00:00Z"},
            "comments": [{"id": 9, "user": user, "body": "conversation", "created_at": "2026-11-03T01:00:00Z"}],
            "reviews": [{"id": 10, "user": {"login": "carol"}, "state": "APPROVED", "body": "looks good", "submitted_at": "2026-11-03T02:00:00Z"}],
            "review_comments": [{"id": 11, "user": {"login": "carol"}, "path": "f.txt", "diff_hunk": "@@ -0,0 +1 @@\n+feature", "body": "nit: newline", "created_at": "2026-11-03T01:30:00Z"}],
            "commits": [{"sha": "0123456789abcdef", "commit": {"message": "feature work\n\nmore", "author": {"name": "Alice"}}}]
        })],
        labels: vec![json!({"name": "bug", "color": "d73a4a"})],
        milestones: vec![
            json!({"title": "v1", "state": "open", "open_issues": 1, "closed_issues": 0}),
        ],
        releases: vec![
            json!({"tag_name": "v1.0", "name": "First", "body": "Notes **bold**", "author": user,
            "published_at": "2026-11-04T00:00:00Z",
            "assets": [{"id": 5, "name": "tool.tar.gz", "size": 2048, "download_count": 3},
                       {"id": 6, "name": "big.iso", "size": 5_000_000_000u64, "browser_download_url": "https://example.com/big.iso"}]}),
        ],
        assets: BTreeMap::from([(5, asset_path(5, "tool.tar.gz"))]),
        wiki: vec![
            Document {
                path: "Home.md".into(),
                text: "Start at [[Setup Guide]].\n".into(),
            },
            Document {
                path: "Setup-Guide.md".into(),
                text: "Back [home](Home).\n".into(),
            },
        ],
        ..RepoInput::default()
    }
}

fn render() -> BTreeMap<String, Vec<u8>> {
    let site = Site::new();
    let mut out = BTreeMap::new();
    let summary = site.render_repo(&input(), &mut out).unwrap();
    assert_eq!(
        (
            summary.issues,
            summary.issues_open,
            summary.pulls,
            summary.releases,
            summary.wiki_pages
        ),
        (2, 1, 1, 1, 2)
    );
    // The stored asset itself is the caller's to write; here a stand-in.
    out.insert("octo/hello/assets/5/tool.tar.gz".into(), b"bytes".to_vec());
    site.render_index(
        &SnapshotInfo {
            key: "k".into(),
            taken_at: "2026-12-02T14:00:00Z".into(),
        },
        &[summary],
        &mut out,
    )
    .unwrap();
    out
}

fn page(site: &BTreeMap<String, Vec<u8>>, path: &str) -> String {
    String::from_utf8(
        site.get(path)
            .unwrap_or_else(|| panic!("{path} not in {:?}", site.keys()))
            .clone(),
    )
    .unwrap()
}

/// Every `href`/`src` of every page: relative, and naming a file of the site.
fn assert_links_resolve(site: &BTreeMap<String, Vec<u8>>) {
    for (path, bytes) in site.iter().filter(|(p, _)| p.ends_with(".html")) {
        let html = String::from_utf8_lossy(bytes);
        for attr in ["href=\"", "src=\""] {
            for piece in html.split(attr).skip(1) {
                let link = &piece[..piece.find('"').unwrap()];
                if link.starts_with("https://")
                    || link.starts_with("http://")
                    || link.starts_with('#')
                    || link.starts_with("mailto:")
                {
                    continue;
                }
                assert!(
                    !link.starts_with('/') && !link.contains("://"),
                    "{path}: absolute link {link}"
                );
                let target = resolve(path, link);
                assert!(
                    site.contains_key(&target),
                    "{path}: {link} -> {target} is not in the site"
                );
            }
        }
    }
}

fn resolve(from: &str, link: &str) -> String {
    let link = link.split('#').next().unwrap();
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for part in link.split('/') {
        match part {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[test]
fn every_page_is_there_and_links_resolve() {
    let site = render();
    for path in [
        "index.html",
        "style.css",
        "octo/hello/index.html",
        "octo/hello/issues.html",
        "octo/hello/issues/1.html",
        "octo/hello/issues/3.html",
        "octo/hello/pulls.html",
        "octo/hello/pulls/2.html",
        "octo/hello/releases.html",
        "octo/hello/wiki/index.html",
        "octo/hello/wiki/Home.html",
        "octo/hello/wiki/Setup-Guide.html",
    ] {
        assert!(
            site.contains_key(path),
            "{path} missing from {:?}",
            site.keys()
        );
    }
    assert_links_resolve(&site);
}

#[test]
fn pages_show_what_github_had() {
    let site = render();
    let issues = page(&site, "octo/hello/issues.html");
    assert!(
        issues.contains("Broken &lt;thing&gt;"),
        "titles are escaped: {issues}"
    );
    assert!(issues.contains("data-comments=\"1\""), "{issues}");
    assert!(issues.contains("background:#d73a4a"), "{issues}");
    assert!(
        !issues.contains("url(x)"),
        "a label colour is never raw CSS"
    );
    let pull = page(&site, "octo/hello/pulls/2.html");
    for want in [
        "approved these changes",
        "looks good",
        "nit: newline",
        "<code>f.txt</code>",
        "+feature",
        "conversation",
        "0123456",
        "feature work",
        "data-comments=\"2\"",
        "data-reviews=\"1\"",
        "octo:feature",
    ] {
        assert!(pull.contains(want), "{want} not in {pull}");
    }
    // Oldest first: the conversation comment, the review comment, then the review.
    let (c, rc, r) = (
        pull.find("conversation").unwrap(),
        pull.find("nit: newline").unwrap(),
        pull.find("looks good").unwrap(),
    );
    assert!(c < rc && rc < r, "timeline order");
    let releases = page(&site, "octo/hello/releases.html");
    assert!(
        releases.contains("href=\"../../octo/hello/assets/5/tool.tar.gz\""),
        "{releases}"
    );
    assert!(releases.contains("not stored in this backup"), "{releases}");
    assert!(releases.contains("<strong>bold</strong>"), "{releases}");
    let home = page(&site, "octo/hello/wiki/Home.html");
    assert!(home.contains("href=\"Setup-Guide.html\""), "{home}");
    let readme = page(&site, "octo/hello/index.html");
    assert!(
        readme.contains("<h1>Hello</h1>") && !readme.contains("onclick"),
        "{readme}"
    );
    let top = page(&site, "index.html");
    assert!(
        top.contains("href=\"octo/hello/index.html\"") && top.contains("2026-12-02 14:00"),
        "{top}"
    );
}

#[test]
fn nothing_from_github_can_run() {
    let site = render();
    for (path, bytes) in &site {
        let html = String::from_utf8_lossy(bytes).to_ascii_lowercase();
        for bad in ["<script", "onerror", "onclick", "javascript:"] {
            assert!(!html.contains(bad), "{bad} in {path}");
        }
        if path.ends_with(".html") {
            assert!(
                html.contains("content-security-policy") && html.contains("default-src 'none'"),
                "{path} has no CSP"
            );
        }
    }
    assert!(page(&site, "octo/hello/issues/3.html").contains("Pwn"));
}

#[test]
fn names_from_github_cannot_leave_the_site() {
    assert_eq!(repo_dir("octo/hello.world"), "octo/hello.world");
    assert_eq!(repo_dir("../.."), "_/_");
    assert_eq!(repo_dir("solo"), "repository/solo");
    assert_eq!(
        asset_path(1, "../../etc/passwd"),
        "assets/1/..-..-etc-passwd"
    );
    assert_eq!(safe_component(""), "_");
}

#[test]
fn a_repository_without_metadata_says_so() {
    let site = Site::new();
    let mut out = BTreeMap::new();
    let repo = RepoInput {
        full_name: "octo/code".into(),
        ..RepoInput::default()
    };
    site.render_repo(&repo, &mut out).unwrap();
    let issues = page(&out, "octo/code/issues.html");
    assert!(issues.contains("does not include metadata"), "{issues}");
    assert!(page(&out, "octo/code/index.html").contains("no README"));
}
