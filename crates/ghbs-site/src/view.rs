//! What the templates see: small structs read leniently out of GitHub's JSON. A field GitHub
//! did not send (or a stand-in left out) shows as absent, never as an error: a backup is read
//! years later, by which time the shapes will have moved.

use serde::Serialize;
use serde_json::Value;

use crate::markdown;

pub(crate) fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn opt_text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn login(v: &Value) -> String {
    v.get("user")
        .or_else(|| v.get("author"))
        .and_then(|u| u.get("login"))
        .and_then(Value::as_str)
        .unwrap_or("ghost")
        .to_owned()
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A time as GitHub writes it (`2026-12-02T14:03:09Z`), for people: `2026-12-02 14:03`.
#[derive(Serialize, Clone, Debug, Default)]
pub(crate) struct When {
    pub iso: String,
    pub shown: String,
}

impl When {
    pub fn of(v: &Value, key: &str) -> Option<When> {
        opt_text(v, key).map(|iso| When::parse(&iso))
    }

    pub fn parse(iso: &str) -> When {
        let shown = match (iso.get(..10), iso.get(11..16)) {
            (Some(day), Some(time)) if iso.as_bytes().get(10) == Some(&b'T') => {
                format!("{day} {time}")
            }
            _ => iso.to_owned(),
        };
        When {
            iso: iso.to_owned(),
            shown,
        }
    }
}

#[derive(Serialize, Clone, Debug)]
pub(crate) struct Label {
    pub name: String,
    /// `#rrggbb` when GitHub's colour is six hex digits, else empty (no colour, never raw CSS).
    pub bg: String,
    pub fg: &'static str,
}

impl Label {
    pub fn of(v: &Value) -> Label {
        let color = text(v, "color");
        let valid = color.len() == 6 && color.bytes().all(|b| b.is_ascii_hexdigit());
        let (bg, fg) = if valid {
            let channel = |i: usize| u32::from_str_radix(&color[i..i + 2], 16).unwrap_or(0);
            // Perceived brightness (ITU-R BT.601): dark text on light labels.
            let light = channel(0) * 299 + channel(2) * 587 + channel(4) * 114 > 150_000;
            (
                format!("#{color}"),
                if light { "#1f2328" } else { "#ffffff" },
            )
        } else {
            (String::new(), "")
        };
        Label {
            name: text(v, "name").to_owned(),
            bg,
            fg,
        }
    }
}

/// Issue or pull request, as its list row and its page's header.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct Item {
    pub number: u64,
    pub title: String,
    /// `open`, `closed`, `merged` or `draft` (CSS class and words).
    pub state: &'static str,
    pub author: String,
    pub created: Option<When>,
    pub closed: Option<When>,
    pub labels: Vec<Label>,
    pub milestone: Option<String>,
    pub assignees: Vec<String>,
    /// Conversation comments plus review comments.
    pub comments: usize,
    pub reviews: usize,
    /// `issues/12.html` (relative to the repository's folder).
    pub href: String,
    pub html_url: Option<String>,
    pub head: Option<String>,
    pub base: Option<String>,
}

impl Item {
    /// From an `issues/{n}.json` (`pull == false`) or `pulls/{n}.json` document; `None` when it
    /// names no number.
    pub fn of(doc: &Value, pull: bool) -> Option<Item> {
        let issue = doc.get("issue").filter(|v| v.is_object());
        let pr = doc.get("pull").filter(|v| v.is_object());
        // The pull request's own listing knows its state best; the issue listing the rest.
        let main = if pull { pr.or(issue) } else { issue }?;
        let number = main.get("number").and_then(Value::as_u64)?;
        let merged = pr.is_some_and(|p| opt_text(p, "merged_at").is_some());
        let draft = pr.is_some_and(|p| p.get("draft").and_then(Value::as_bool) == Some(true));
        let state = match text(main, "state") {
            _ if merged => "merged",
            "closed" => "closed",
            _ if draft => "draft",
            _ => "open",
        };
        let labels = list(main, "labels").iter().map(Label::of).collect();
        let milestone = main
            .get("milestone")
            .and_then(|m| m.get("title"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let assignees = list(main, "assignees")
            .iter()
            .filter_map(|a| a.get("login").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        let branch = |side: &str| {
            pr.and_then(|p| p.get(side))
                .and_then(|s| s.get("label").or_else(|| s.get("ref")))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Some(Item {
            number,
            title: text(main, "title").to_owned(),
            state,
            author: login(main),
            created: When::of(main, "created_at"),
            closed: When::of(main, if merged { "merged_at" } else { "closed_at" }),
            labels,
            milestone,
            assignees,
            comments: list(doc, "comments").len() + list(doc, "review_comments").len(),
            reviews: list(doc, "reviews").len(),
            href: format!("{}/{number}.html", if pull { "pulls" } else { "issues" }),
            html_url: opt_text(main, "html_url"),
            head: branch("head"),
            base: branch("base"),
        })
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, "open" | "draft")
    }
}

/// One entry of an issue's or pull request's timeline.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct Entry {
    /// `comment`, `review` or `review-comment`.
    pub kind: &'static str,
    pub author: String,
    pub when: Option<When>,
    /// Sanitised HTML (minijinja's safe string when handed to a template).
    pub body: String,
    /// A review's verdict (`APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`), in words.
    pub verdict: Option<String>,
    /// A review comment's file and the diff lines it is about.
    pub path: Option<String>,
    pub hunk: Option<String>,
    pub id: String,
}

impl Entry {
    fn of(kind: &'static str, v: &Value) -> Entry {
        let body = opt_text(v, "body").map(|b| markdown::render(&b));
        let verdict = (kind == "review").then(|| match text(v, "state") {
            "APPROVED" => "approved these changes".to_owned(),
            "CHANGES_REQUESTED" => "requested changes".to_owned(),
            "DISMISSED" => "reviewed (dismissed)".to_owned(),
            "PENDING" => "started a review".to_owned(),
            _ => "reviewed".to_owned(),
        });
        let when = When::of(v, "submitted_at").or_else(|| When::of(v, "created_at"));
        Entry {
            kind,
            author: login(v),
            when,
            body: body.unwrap_or_default(),
            verdict,
            path: opt_text(v, "path"),
            hunk: opt_text(v, "diff_hunk"),
            id: v
                .get("id")
                .map(|id| format!("{kind}-{id}"))
                .unwrap_or_default(),
        }
    }

    /// The conversation, reviews and review comments of a document, oldest first.
    pub fn timeline(doc: &Value) -> Vec<Entry> {
        let mut entries: Vec<Entry> = list(doc, "comments")
            .iter()
            .map(|c| Entry::of("comment", c))
            .chain(list(doc, "reviews").iter().map(|r| Entry::of("review", r)))
            .chain(
                list(doc, "review_comments")
                    .iter()
                    .map(|c| Entry::of("review-comment", c)),
            )
            // A review without words is kept: its verdict is worth a line.
            .collect();
        entries.sort_by(|a, b| {
            let key = |e: &Entry| e.when.as_ref().map(|w| w.iso.clone()).unwrap_or_default();
            key(a).cmp(&key(b))
        });
        entries
    }
}

#[derive(Serialize, Clone, Debug)]
pub(crate) struct Commit {
    pub sha: String,
    pub short: String,
    pub subject: String,
    pub author: String,
}

impl Commit {
    pub fn list(doc: &Value) -> Vec<Commit> {
        list(doc, "commits")
            .iter()
            .map(|c| {
                let sha = text(c, "sha").to_owned();
                let commit = c.get("commit").cloned().unwrap_or(Value::Null);
                let message = text(&commit, "message");
                Commit {
                    short: sha.chars().take(7).collect(),
                    sha,
                    subject: message.lines().next().unwrap_or("").to_owned(),
                    author: commit
                        .get("author")
                        .and_then(|a| a.get("name"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                }
            })
            .collect()
    }
}

#[derive(Serialize, Clone, Debug)]
pub(crate) struct Asset {
    pub name: String,
    pub size: String,
    pub downloads: u64,
    /// Relative to the repository's folder, when the snapshot stores the file.
    pub href: Option<String>,
    pub url: Option<String>,
}

#[derive(Serialize, Clone, Debug)]
pub(crate) struct Release {
    pub name: String,
    pub tag: String,
    pub draft: bool,
    pub prerelease: bool,
    pub author: String,
    pub when: Option<When>,
    pub body: String,
    pub assets: Vec<Asset>,
    pub anchor: String,
}

impl Release {
    pub fn of(v: &Value, stored: &std::collections::BTreeMap<i64, String>) -> Release {
        let tag = text(v, "tag_name").to_owned();
        let assets = list(v, "assets")
            .iter()
            .map(|a| {
                let id = a.get("id").and_then(Value::as_i64);
                Asset {
                    name: text(a, "name").to_owned(),
                    size: human_size(a.get("size").and_then(Value::as_u64).unwrap_or(0)),
                    downloads: a.get("download_count").and_then(Value::as_u64).unwrap_or(0),
                    href: id.and_then(|id| stored.get(&id).cloned()),
                    url: opt_text(a, "browser_download_url"),
                }
            })
            .collect();
        Release {
            name: opt_text(v, "name").unwrap_or_else(|| tag.clone()),
            anchor: crate::safe_component(&tag),
            tag,
            draft: v.get("draft").and_then(Value::as_bool) == Some(true),
            prerelease: v.get("prerelease").and_then(Value::as_bool) == Some(true),
            author: login(v),
            when: When::of(v, "published_at").or_else(|| When::of(v, "created_at")),
            body: opt_text(v, "body")
                .map(|b| markdown::render(&b))
                .unwrap_or_default(),
            assets,
        }
    }
}

#[derive(Serialize, Clone, Debug)]
pub(crate) struct Milestone {
    pub title: String,
    pub state: String,
    pub open: u64,
    pub closed: u64,
    pub due: Option<When>,
}

impl Milestone {
    pub fn of(v: &Value) -> Milestone {
        Milestone {
            title: text(v, "title").to_owned(),
            state: text(v, "state").to_owned(),
            open: v.get("open_issues").and_then(Value::as_u64).unwrap_or(0),
            closed: v.get("closed_issues").and_then(Value::as_u64).unwrap_or(0),
            due: When::of(v, "due_on"),
        }
    }
}

pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
