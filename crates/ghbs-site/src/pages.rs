//! Rendering: the templates (files under `templates/`, embedded at build time) filled with the
//! views of [`crate::view`], one page at a time into the [`Sink`].

use std::collections::BTreeMap;

use minijinja::{context, Environment, Value as Tpl};
use serde_json::Value;

use crate::view::{Commit, Entry, Item, Label, Milestone, Release, When};
use crate::{markdown, repo_dir, Document, RepoInput, RepoSummary, Sink, SiteError, SnapshotInfo};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("snapshot.html", include_str!("../templates/snapshot.html")),
    ("repo.html", include_str!("../templates/repo.html")),
    ("items.html", include_str!("../templates/items.html")),
    ("item.html", include_str!("../templates/item.html")),
    ("releases.html", include_str!("../templates/releases.html")),
    (
        "wiki_index.html",
        include_str!("../templates/wiki_index.html"),
    ),
    (
        "wiki_page.html",
        include_str!("../templates/wiki_page.html"),
    ),
    ("tabs.html", include_str!("../templates/tabs.html")),
    ("label.html", include_str!("../templates/label.html")),
];

const STYLE: &str = include_str!("../templates/style.css");

/// The site renderer: holds the parsed templates; cheap to reuse for every repository.
pub struct Site {
    env: Environment<'static>,
}

impl Default for Site {
    fn default() -> Self {
        Site::new()
    }
}

/// A wiki page as the site names it.
struct WikiPage<'a> {
    doc: &'a Document,
    /// Gollum's page name (`Setup Guide` for `Setup-Guide.md`).
    title: String,
    /// `wiki/{slug}.html`.
    slug: String,
}

impl Site {
    pub fn new() -> Site {
        let mut env = Environment::new();
        env.set_formatter(html_formatter);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name} does not parse: {e}"));
        }
        Site { env }
    }

    fn page(
        &self,
        sink: &mut dyn Sink,
        template: &str,
        path: &str,
        ctx: Tpl,
    ) -> Result<(), SiteError> {
        let depth = path.matches('/').count();
        let root = "../".repeat(depth);
        let full = context! { root => root, ..ctx };
        let html = self
            .env
            .get_template(template)
            .and_then(|t| t.render(full))
            .map_err(|source| SiteError::Template {
                name: template.to_owned(),
                source,
            })?;
        sink.put(path, html.as_bytes())?;
        Ok(())
    }

    /// Writes `style.css` and the top `index.html` listing `repos`.
    pub fn render_index(
        &self,
        snapshot: &SnapshotInfo,
        repos: &[RepoSummary],
        sink: &mut dyn Sink,
    ) -> Result<(), SiteError> {
        sink.put("style.css", STYLE.as_bytes())?;
        self.page(
            sink,
            "snapshot.html",
            "index.html",
            context! {
                snapshot_key => snapshot.key,
                taken => When::parse(&snapshot.taken_at),
                repos => repos,
            },
        )
    }

    /// Writes every page of one repository under [`repo_dir`]; returns what the top index shows.
    pub fn render_repo(
        &self,
        repo: &RepoInput,
        sink: &mut dyn Sink,
    ) -> Result<RepoSummary, SiteError> {
        let dir = repo_dir(&repo.full_name);
        let mut issues: Vec<(Item, &Value)> = repo
            .issues
            .iter()
            .filter_map(|d| Item::of(d, false).map(|i| (i, d)))
            .collect();
        let mut pulls: Vec<(Item, &Value)> = repo
            .pulls
            .iter()
            .filter_map(|d| Item::of(d, true).map(|i| (i, d)))
            .collect();
        issues.sort_by_key(|i| std::cmp::Reverse(i.0.number));
        pulls.sort_by_key(|i| std::cmp::Reverse(i.0.number));
        let mut releases: Vec<Release> = repo
            .releases
            .iter()
            .map(|r| Release::of(r, &repo.assets))
            .collect();
        releases.sort_by(|a, b| {
            let when = |r: &Release| r.when.as_ref().map(|w| w.iso.clone()).unwrap_or_default();
            when(b).cmp(&when(a))
        });
        let wiki = wiki_pages(&repo.wiki);

        let common = context! {
            full_name => repo.full_name,
            full_name_dir => format!("{dir}/"),
            has_metadata => repo.has_metadata,
            carried_from => repo.carried_from.as_deref().map(When::parse),
            n_issues => issues.len(),
            n_pulls => pulls.len(),
            n_releases => releases.len(),
            n_wiki => wiki.len(),
        };

        let readme = repo
            .readme
            .as_ref()
            .map(|d| Tpl::from_safe_string(render_document(d, &|_| None)));
        let labels: Vec<Label> = repo.labels.iter().map(Label::of).collect();
        let milestones: Vec<Milestone> = repo.milestones.iter().map(Milestone::of).collect();
        self.page(
            sink,
            "repo.html",
            &format!("{dir}/index.html"),
            context! {
                default_branch => repo.default_branch,
                branches => repo.branches,
                tags => repo.tags,
                readme => readme,
                readme_name => repo.readme.as_ref().map(|d| d.path.clone()),
                labels => labels,
                milestones => milestones,
                tab => "code",
                ..common.clone()
            },
        )?;

        for (kind, items, title) in [
            ("issues", &issues, "Issues"),
            ("pulls", &pulls, "Pull requests"),
        ] {
            let (open, closed): (Vec<&Item>, Vec<&Item>) =
                items.iter().map(|(i, _)| i).partition(|i| i.is_open());
            self.page(
                sink,
                "items.html",
                &format!("{dir}/{kind}.html"),
                context! { kind => kind, title => title, open => open, closed => closed, tab => kind, ..common.clone() },
            )?;
            for (item, doc) in items.iter() {
                let entries: Vec<Tpl> = Entry::timeline(doc)
                    .into_iter()
                    .map(|e| {
                        let body = Tpl::from_safe_string(e.body.clone());
                        context! { body => body, ..Tpl::from_serialize(&e) }
                    })
                    .collect();
                let main = if kind == "pulls" {
                    doc.get("pull")
                        .filter(|v| v.is_object())
                        .or(doc.get("issue"))
                } else {
                    doc.get("issue")
                };
                let body = main
                    .and_then(|m| crate::view::opt_text(m, "body"))
                    .map(|b| Tpl::from_safe_string(markdown::render(&b)));
                self.page(
                    sink,
                    "item.html",
                    &format!("{dir}/{}", item.href),
                    context! {
                        kind => kind,
                        title => title,
                        item => item,
                        body => body,
                        entries => entries,
                        commits => Commit::list(doc),
                        ..common.clone()
                    },
                )?;
            }
        }

        let releases: Vec<Tpl> = releases
            .iter()
            .map(|r| {
                let body = Tpl::from_safe_string(r.body.clone());
                context! { body => body, ..Tpl::from_serialize(r) }
            })
            .collect();
        self.page(
            sink,
            "releases.html",
            &format!("{dir}/releases.html"),
            context! { releases => releases, tab => "releases", ..common.clone() },
        )?;

        let relink = wiki_linker(&wiki);
        let index: Vec<Tpl> = wiki
            .iter()
            .map(|p| context! { title => p.title, href => format!("{}.html", p.slug), path => p.doc.path })
            .collect();
        self.page(
            sink,
            "wiki_index.html",
            &format!("{dir}/wiki/index.html"),
            context! { pages => index, tab => "wiki", ..common.clone() },
        )?;
        for page in &wiki {
            let html = Tpl::from_safe_string(render_document(page.doc, &relink));
            self.page(
                sink,
                "wiki_page.html",
                &format!("{dir}/wiki/{}.html", page.slug),
                context! { page_title => page.title, path => page.doc.path, html => html, ..common.clone() },
            )?;
        }

        Ok(RepoSummary {
            full_name: repo.full_name.clone(),
            href: format!("{dir}/index.html"),
            default_branch: repo.default_branch.clone(),
            has_metadata: repo.has_metadata,
            carried_from: repo.carried_from.clone(),
            issues_open: issues.iter().filter(|(i, _)| i.is_open()).count(),
            issues: issues.len(),
            pulls_open: pulls.iter().filter(|(i, _)| i.is_open()).count(),
            pulls: pulls.len(),
            releases: releases.len(),
            wiki_pages: wiki.len(),
        })
    }
}

/// minijinja's auto-escaping, less its escaping of `/` (`&#x2f;` is valid, but makes every
/// path in the pages unreadable), and `none` shown as nothing rather than the word.
fn html_formatter(
    out: &mut minijinja::Output<'_>,
    state: &minijinja::State<'_, '_>,
    value: &Tpl,
) -> Result<(), minijinja::Error> {
    if value.is_none() || value.is_undefined() {
        return Ok(());
    }
    if value.is_safe() || !matches!(state.auto_escape(), minijinja::AutoEscape::Html) {
        return minijinja::escape_formatter(out, state, value);
    }
    let text = value.to_string();
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            c => escaped.push(c),
        }
    }
    out.write_str(&escaped)
        .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "writing a page"))
}

/// Markdown files are rendered, anything else is shown as text.
fn render_document(doc: &Document, relink: &dyn Fn(&str) -> Option<String>) -> String {
    let lower = doc.path.to_ascii_lowercase();
    let is_markdown = [".md", ".markdown", ".mdown", ".mkdn", ".mkd"]
        .iter()
        .any(|ext| lower.ends_with(ext));
    if is_markdown {
        markdown::render_with(&gollum_links(&doc.text), relink)
    } else {
        markdown::preformatted(&doc.text)
    }
}

/// The wiki's pages, named as GitHub names them (the file name without extension, dashes as
/// spaces), each with a unique file name; `_Sidebar` and `_Footer` are parts, not pages.
fn wiki_pages(docs: &[Document]) -> Vec<WikiPage<'_>> {
    let mut taken = std::collections::BTreeSet::new();
    taken.insert("index".to_owned());
    let mut pages: Vec<WikiPage> = docs
        .iter()
        .filter_map(|doc| {
            let base = doc.path.rsplit('/').next().unwrap_or(&doc.path);
            let stem = base.rsplit_once('.').map_or(base, |(s, _)| s);
            if stem.starts_with('_') || stem.is_empty() {
                return None;
            }
            let mut slug = crate::safe_component(stem);
            let mut n = 2;
            while !taken.insert(slug.to_ascii_lowercase()) {
                slug = format!("{}-{n}", crate::safe_component(stem));
                n += 1;
            }
            Some(WikiPage {
                doc,
                title: stem.replace('-', " "),
                slug,
            })
        })
        .collect();
    // Home first, as GitHub shows it; the rest by name.
    pages.sort_by_key(|p| (p.title != "Home", p.title.to_ascii_lowercase()));
    pages
}

/// Links between wiki pages name the page (`Setup-Guide`, `Setup Guide`, `./Setup-Guide.md`):
/// they point at its file in the site.
fn wiki_linker<'a>(pages: &'a [WikiPage<'a>]) -> impl Fn(&str) -> Option<String> + 'a {
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for p in pages {
        // Two pages of one name in different folders: GitHub links the first.
        by_name
            .entry(page_key(&p.title))
            .or_insert_with(|| format!("{}.html", p.slug));
    }
    move |dest: &str| {
        if dest.contains(':') || dest.starts_with('#') || dest.starts_with('/') {
            return None;
        }
        let (path, anchor) = dest.split_once('#').map_or((dest, ""), |(p, a)| (p, a));
        let last = path.trim_start_matches("./").rsplit('/').next()?;
        let stem = last.rsplit_once('.').map_or(last, |(s, _)| s);
        let file = by_name.get(&page_key(stem))?;
        Some(if anchor.is_empty() {
            file.clone()
        } else {
            format!("{file}#{anchor}")
        })
    }
}

fn page_key(name: &str) -> String {
    name.replace(['-', ' '], " ").to_lowercase()
}

/// Gollum's `[[Page]]` and `[[Text|Page]]` as Markdown links (GitHub wikis use both).
fn gollum_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[[") {
        let Some(len) = rest[start + 2..].find("]]") else {
            break;
        };
        let inner = &rest[start + 2..start + 2 + len];
        out.push_str(&rest[..start]);
        if inner.contains('\n') || inner.is_empty() {
            out.push_str(&rest[start..start + 4 + len]);
        } else {
            let (label, page) = inner.split_once('|').unwrap_or((inner, inner));
            let target = page.trim().replace(' ', "-");
            out.push_str(&format!("[{}](<{}>)", label.trim(), target));
        }
        rest = &rest[start + 4 + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gollum_links_become_markdown_links() {
        assert_eq!(
            gollum_links("see [[Setup Guide]] and [[the FAQ|FAQ]]."),
            "see [Setup Guide](<Setup-Guide>) and [the FAQ](<FAQ>)."
        );
        assert_eq!(gollum_links("no [[ end"), "no [[ end");
    }

    #[test]
    fn wiki_pages_get_unique_files_and_links() {
        let docs = vec![
            Document {
                path: "Setup-Guide.md".into(),
                text: String::new(),
            },
            Document {
                path: "old/Setup-Guide.md".into(),
                text: String::new(),
            },
            Document {
                path: "Home.md".into(),
                text: String::new(),
            },
            Document {
                path: "_Sidebar.md".into(),
                text: String::new(),
            },
            Document {
                path: "index.md".into(),
                text: String::new(),
            },
        ];
        let pages = wiki_pages(&docs);
        let slugs: Vec<&str> = pages.iter().map(|p| p.slug.as_str()).collect();
        assert_eq!(slugs, ["Home", "index-2", "Setup-Guide", "Setup-Guide-2"]);
        let link = wiki_linker(&pages);
        assert_eq!(link("Setup-Guide").as_deref(), Some("Setup-Guide.html"));
        assert_eq!(
            link("./setup guide.md#step-2").as_deref(),
            Some("Setup-Guide.html#step-2")
        );
        assert_eq!(link("https://example.com/Home"), None);
        assert_eq!(link("Missing"), None);
    }
}
