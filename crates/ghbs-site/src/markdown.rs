//! Markdown (and raw HTML) from GitHub to HTML that is safe to open.
//!
//! Everything here came from strangers: issue bodies, comments, release notes, wiki pages and
//! READMEs are rendered with pulldown-cmark (CommonMark plus GitHub's tables, strikethrough,
//! task lists and footnotes) and the result, raw HTML included, goes through ammonia's
//! allow-list: no `<script>`, no `on*=` handlers, no `javascript:` URLs, no `<iframe>`, `<form>`
//! or `<style>`. The pages also carry a Content-Security-Policy without any script source, a
//! second wall should the first ever let something through.

use std::collections::HashSet;
use std::sync::OnceLock;

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};

/// Markdown to sanitised HTML.
pub fn render(text: &str) -> String {
    render_with(text, &|_| None)
}

/// Markdown to sanitised HTML; `relink` may replace a link's destination (wiki pages link each
/// other by page name, which becomes a file of the exported site).
pub fn render_with(text: &str, relink: &dyn Fn(&str) -> Option<String>) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let parser = Parser::new_ext(text, options).map(|event| match event {
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let dest_url = relink(&dest_url).map(CowStr::from).unwrap_or(dest_url);
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            })
        }
        other => other,
    });
    let mut html = String::with_capacity(text.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, parser);
    sanitise(&html)
}

/// Any HTML from GitHub, through the allow-list.
pub fn sanitise(html: &str) -> String {
    cleaner().clean(html).to_string()
}

/// Plain text as a sanitised preformatted block (a README or wiki page in a markup this site
/// does not render: reStructuredText, AsciiDoc, ...).
pub fn preformatted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str("<pre>");
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out.push_str("</pre>");
    out
}

/// ammonia's defaults (a conservative allow-list, `rel="noopener noreferrer"` on links) plus
/// the task-list checkboxes pulldown-cmark writes, disabled as GitHub shows them.
fn cleaner() -> &'static ammonia::Builder<'static> {
    static CLEANER: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    CLEANER.get_or_init(|| {
        let mut b = ammonia::Builder::default();
        b.add_tags(["input"]);
        b.add_tag_attributes("input", ["type", "checked"]);
        b.set_tag_attribute_value("input", "disabled", "");
        b.attribute_filter(|element, attribute, value| {
            if element == "input" && attribute == "type" && value != "checkbox" {
                return None;
            }
            Some(value.into())
        });
        b.url_schemes(HashSet::from(["http", "https", "mailto"]));
        b.url_relative(ammonia::UrlRelative::Custom(Box::new(keep_relative)));
        b
    })
}

/// Relative URLs in GitHub's text point into the repository (`docs/setup.md`, an image on the
/// default branch), which the site does not hold: they are dropped (the link's text stays), so
/// nothing in the site points at a file that is not there. Kept: anchors within the page
/// (footnotes) and the `Page.html` links [`render_with`] made for wiki pages.
fn keep_relative(url: &str) -> Option<std::borrow::Cow<'_, str>> {
    let (path, _fragment) = url.split_once('#').unwrap_or((url, ""));
    let wiki_page = path.strip_suffix(".html").is_some_and(|stem| {
        !stem.is_empty()
            && !stem.starts_with('.')
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    });
    (path.is_empty() || wiki_page).then_some(std::borrow::Cow::Borrowed(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_and_handlers_never_survive() {
        let hostile = "Hi <script>document.title='pwned'</script>\n\n\
            <img src=x onerror=\"document.title='pwned'\">\n\n\
            [click](javascript:alert(1)) <a href=\"javascript:alert(2)\">a</a>\n\n\
            <iframe src=\"https://evil.example\"></iframe><style>body{display:none}</style>\n\n\
            <svg onload=alert(3)></svg><form action=x><input type=submit></form>";
        let html = render(hostile);
        let lower = html.to_ascii_lowercase();
        for bad in [
            "<script",
            "onerror",
            "onload",
            "javascript:",
            "<iframe",
            "<style",
            "<form",
            "<svg",
            "type=\"submit\"",
        ] {
            assert!(!lower.contains(bad), "{bad} survived in {html}");
        }
        assert!(html.contains("Hi"), "{html}");
    }

    #[test]
    fn github_flavoured_markdown() {
        let html = render("| a | b |\n|---|---|\n| 1 | 2 |\n\n- [x] done\n- [ ] todo\n\n~~old~~\n\n```rust\nfn x() {}\n```\n");
        assert!(html.contains("<table>"), "{html}");
        assert!(
            html.contains("checked=\"\"") && html.contains("disabled"),
            "{html}"
        );
        assert!(html.contains("<del>old</del>"), "{html}");
        assert!(html.contains("<pre><code"), "{html}");
        assert!(
            render("[x](https://example.com)").contains("rel=\"noopener noreferrer\""),
            "links do not leak the opener"
        );
    }

    #[test]
    fn links_can_be_redirected() {
        let html = render_with("[Home](Home) [out](https://example.com)", &|d| {
            (d == "Home").then(|| "Home.html".to_owned())
        });
        assert!(html.contains("href=\"Home.html\""), "{html}");
        assert!(html.contains("href=\"https://example.com\""), "{html}");
    }

    #[test]
    fn links_into_the_repository_are_dropped() {
        let html =
            render("[setup](docs/setup.md) ![logo](logo.png) [up](../x.html) [^1]\n\n[^1]: note\n");
        assert!(
            !html.contains("docs/setup.md") && !html.contains("logo.png"),
            "{html}"
        );
        assert!(!html.contains("../x.html"), "{html}");
        assert!(
            html.contains("setup") && html.contains("href=\"#"),
            "{html}"
        );
    }

    #[test]
    fn preformatted_text_is_escaped() {
        assert_eq!(
            preformatted("<b>&\"</b>"),
            "<pre>&lt;b&gt;&amp;&quot;&lt;/b&gt;</pre>"
        );
    }
}
