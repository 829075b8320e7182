//! URLs: building them under the API base, reading `Link` headers, and refusing to follow a link
//! or redirect to another origin (which would send the token to a host we were not configured for).

use reqwest::Url;

/// The page size we ask for; GitHub's maximum for list endpoints.
pub(crate) const PER_PAGE: usize = 100;

/// True when `a` and `b` share scheme, host and port.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Joins `path_and_query` (which must start with `/`) under the API base URL, keeping the base's
/// own path (`/api/v3` on GitHub Enterprise).
pub(crate) fn join(base: &Url, path_and_query: &str) -> Option<Url> {
    if !path_and_query.starts_with('/') || path_and_query.starts_with("//") {
        return None;
    }
    let prefix = base.as_str().trim_end_matches('/');
    let url = Url::parse(&format!("{prefix}{path_and_query}")).ok()?;
    same_origin(base, &url).then_some(url)
}

/// Adds `per_page=100` unless the caller chose a page size.
pub(crate) fn with_per_page(mut url: Url) -> Url {
    if !url.query_pairs().any(|(k, _)| k == "per_page") {
        url.query_pairs_mut()
            .append_pair("per_page", &PER_PAGE.to_string());
    }
    url
}

/// The `per_page` the URL asks for (GitHub's default of 30 when absent).
pub(crate) fn per_page_of(url: &Url) -> usize {
    url.query_pairs()
        .find(|(k, _)| k == "per_page")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(30)
}

/// The URL of the page after `url`, by page number. Used only when a `304` answer came without a
/// `Link` header: the cached page was full, so there may be more.
pub(crate) fn next_page_number(url: &Url) -> Url {
    let current: u64 = url
        .query_pairs()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1);
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut next = url.clone();
    {
        let mut pairs = next.query_pairs_mut();
        pairs.clear();
        for (k, v) in &kept {
            pairs.append_pair(k, v);
        }
        pairs.append_pair("page", &(current + 1).to_string());
    }
    next
}

/// The `rel="next"` target of a `Link` header value, resolved against `current`.
pub(crate) fn next_link(header: &str, current: &Url) -> Option<Url> {
    header.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let target = pieces.next()?.trim();
        let target = target.strip_prefix('<')?.strip_suffix('>')?;
        let is_next = pieces.any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .map(|v| v.trim_matches('"').split_whitespace().any(|r| r == "next"))
                .unwrap_or(false)
        });
        if is_next {
            current.join(target).ok()
        } else {
            None
        }
    })
}

/// The path of `url` below the API base, for messages (`/repos/o/r` rather than a full URL).
pub(crate) fn display_path(base: &Url, url: &Url) -> String {
    let base_path = base.path().trim_end_matches('/');
    let path = url.path();
    path.strip_prefix(base_path)
        .filter(|p| p.starts_with('/'))
        .unwrap_or(path)
        .to_owned()
}

/// True for owner and repository names GitHub can have; anything else is refused before it can
/// change the shape of a URL.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn finds_next_among_several_relations() {
        let cur = url("https://h/api/v3/user/repos?per_page=100");
        let header = r#"<https://h/api/v3/user/repos?per_page=100&page=1>; rel="prev", <https://h/api/v3/user/repos?per_page=100&page=3>; rel="next", <https://h/api/v3/user/repos?per_page=100&page=5>; rel="last""#;
        assert_eq!(
            next_link(header, &cur).unwrap().as_str(),
            "https://h/api/v3/user/repos?per_page=100&page=3"
        );
        assert_eq!(next_link(r#"<https://h/x>; rel="last""#, &cur), None);
    }

    #[test]
    fn joins_under_the_enterprise_prefix_and_refuses_escapes() {
        let base = url("http://127.0.0.1:8080/api/v3");
        assert_eq!(
            join(&base, "/repos/o/r").unwrap().as_str(),
            "http://127.0.0.1:8080/api/v3/repos/o/r"
        );
        assert_eq!(join(&base, "repos/o/r"), None);
        assert_eq!(join(&base, "//evil.example/x"), None);
        assert_eq!(join(&base, "@evil.example/x"), None);
    }

    #[test]
    fn origin_compares_scheme_host_and_port() {
        assert!(same_origin(&url("https://h/a"), &url("https://h:443/b")));
        assert!(!same_origin(&url("https://h/a"), &url("http://h/a")));
        assert!(!same_origin(&url("https://h/a"), &url("https://g/a")));
        assert!(!same_origin(&url("http://h:1/a"), &url("http://h:2/a")));
    }

    #[test]
    fn per_page_is_added_once_and_page_numbers_advance() {
        let u = with_per_page(url("https://h/user/repos?affiliation=owner"));
        assert_eq!(
            u.as_str(),
            "https://h/user/repos?affiliation=owner&per_page=100"
        );
        assert_eq!(with_per_page(u.clone()), u);
        assert_eq!(per_page_of(&u), 100);
        let two = next_page_number(&u);
        assert_eq!(
            two.as_str(),
            "https://h/user/repos?affiliation=owner&per_page=100&page=2"
        );
        assert!(next_page_number(&two).as_str().ends_with("&page=3"));
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("my-repo.rs_2"));
        assert!(!valid_name(".."));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("a?b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn display_path_strips_the_base() {
        let base = url("http://h/api/v3");
        assert_eq!(
            display_path(&base, &url("http://h/api/v3/repos/o/r?x=1")),
            "/repos/o/r"
        );
    }
}
