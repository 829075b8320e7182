//! What a job backs up: one repository or a whole account.
//!
//! People paste targets in many shapes (`owner/name`, browser URLs, clone URLs); all of them end up
//! as one canonical `owner/name` or `owner`, validated by GitHub's own naming rules so that nothing
//! like `..` or a stray slash ever reaches a file path or an API URL.

use std::fmt;
use std::str::FromStr;

use ghbs_wire::TargetKind;

/// A backup target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// One repository, `owner/name`.
    Repository { owner: String, name: String },
    /// Every repository of a user or organization that the token can see.
    Account { owner: String },
}

/// A target that cannot be understood; the message says what is wrong in words for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

const MAX_OWNER_LEN: usize = 39;
const MAX_NAME_LEN: usize = 100;
const EXPECTED: &str = "expected `owner/name`, `owner`, or a repository URL such as \
                        `https://github.com/owner/name`";

fn err(msg: impl Into<String>) -> TargetError {
    TargetError(msg.into())
}

impl Target {
    /// Accepts `owner/name`, `owner`, `https://github.com/owner/name(.git)(/...)?` (tree/blob paths
    /// after the repository name are ignored), `http(s)://HOST/owner/name` (HOST: see below),
    /// `git@host:owner/name.git` and `ssh://git@host/owner/name.git`. Leading and trailing
    /// whitespace is trimmed; a `.git` suffix on the repository name is stripped.
    ///
    /// As a convenience `github.com/owner/name` (a URL without its scheme) is accepted too.
    ///
    /// A URL must name github.com: `https://gitlab.com/a/b` is refused rather than read as the
    /// GitHub repository `a/b`. Use [`Target::parse_on`] when the server talks to another GitHub.
    pub fn parse(input: &str) -> Result<Target, TargetError> {
        parse_with(input, Hosts::GitHub)
    }

    /// As [`Target::parse`], but a URL may also name `host` (a GitHub Enterprise server, as
    /// [`web_host`] derives it from the configured API URL).
    pub fn parse_on(input: &str, host: &str) -> Result<Target, TargetError> {
        parse_with(input, Hosts::GitHubOr(host))
    }

    /// Syntax only, any host: for a client that does not know which GitHub its server backs up.
    /// The server parses the same text again with [`Target::parse_on`] and has the last word.
    pub fn parse_syntax(input: &str) -> Result<Target, TargetError> {
        parse_with(input, Hosts::Any)
    }

    /// `owner/name` or `owner`.
    pub fn canonical(&self) -> String {
        match self {
            Target::Repository { owner, name } => format!("{owner}/{name}"),
            Target::Account { owner } => owner.clone(),
        }
    }

    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Repository { .. } => TargetKind::Repository,
            Target::Account { .. } => TargetKind::Account,
        }
    }

    /// The account that owns the target.
    pub fn owner(&self) -> &str {
        match self {
            Target::Repository { owner, .. } | Target::Account { owner } => owner,
        }
    }
}

/// Which hosts a URL target may name.
#[derive(Debug, Clone, Copy)]
enum Hosts<'a> {
    GitHub,
    GitHubOr(&'a str),
    Any,
}

impl Hosts<'_> {
    fn check(self, host: &str) -> Result<(), TargetError> {
        let bare = strip_port(host);
        let github =
            bare.eq_ignore_ascii_case("github.com") || bare.eq_ignore_ascii_case("www.github.com");
        let ok = match self {
            Hosts::Any => true,
            Hosts::GitHub => github,
            Hosts::GitHubOr(other) => github || bare.eq_ignore_ascii_case(strip_port(other)),
        };
        if ok {
            return Ok(());
        }
        let served = match self {
            Hosts::GitHubOr(other) if !other.eq_ignore_ascii_case("github.com") => {
                format!("github.com or {other}")
            }
            _ => "github.com".to_string(),
        };
        Err(err(format!(
            "`{host}` is not the GitHub this server backs up ({served}); \
             give `owner/name` or a URL on {served}"
        )))
    }
}

/// `host` without a trailing `:port` (an IPv6 literal keeps its brackets).
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    }
}

/// The web host of the GitHub whose REST API is at `api_url`: `https://api.github.com` →
/// `github.com`, `https://ghe.example.com/api/v3` → `ghe.example.com`,
/// `https://api.acme.ghe.com` → `acme.ghe.com`. The port is kept off.
pub fn web_host(api_url: &str) -> String {
    let rest = api_url.split_once("://").map_or(api_url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = strip_port(authority).to_ascii_lowercase();
    match host.strip_prefix("api.") {
        Some(web) if web.contains('.') => web.to_string(),
        _ => host,
    }
}

fn parse_with(input: &str, hosts: Hosts<'_>) -> Result<Target, TargetError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(err(format!("the target is empty; {EXPECTED}")));
    }
    if s.chars().any(char::is_control) {
        return Err(err("the target contains a control character"));
    }
    if s.chars().any(char::is_whitespace) {
        return Err(err(format!(
            "the target contains a space; {EXPECTED} without spaces"
        )));
    }
    if let Some((scheme, rest)) = s.split_once("://") {
        return parse_url(scheme, rest, hosts);
    }
    if let Some(target) = parse_scp_like(s, hosts)? {
        return Ok(target);
    }
    parse_plain(s)
}

impl FromStr for Target {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::parse(s)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// `scheme://[user@]host[:port]/owner[/name[/...]]`.
fn parse_url(scheme: &str, rest: &str, hosts: Hosts<'_>) -> Result<Target, TargetError> {
    let scheme = scheme.to_ascii_lowercase();
    let allows_subpaths = match scheme.as_str() {
        "http" | "https" => true,
        "ssh" | "git" | "git+ssh" => false,
        _ => {
            return Err(err(format!(
            "unsupported URL scheme `{scheme}://`; use an https:// or ssh:// URL, or `owner/name`"
        )))
        }
    };
    // Query strings and fragments (`?tab=readme`, `#L10`) carry nothing about the target.
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = match authority.rsplit_once('@') {
        // Credentials in an https URL would be a token pasted by mistake: refuse, and do not echo it.
        Some(_) if allows_subpaths => {
            return Err(err(
                "the URL contains credentials (`user@` or a token before the host); \
                 remove them — the server uses the token you logged in with",
            ))
        }
        Some((_, host)) => host,
        None => authority,
    };
    validate_host(host)?;
    hosts.check(host)?;
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() {
        return Err(err(format!(
            "the URL `{scheme}://{host}/` names no owner; {EXPECTED}"
        )));
    }
    let segments: Vec<&str> = path.split('/').collect();
    if !allows_subpaths && segments.len() > 2 {
        return Err(err(format!(
            "the URL path `{path}` has too many parts; expected `owner/name.git`"
        )));
    }
    from_segments(&segments[..segments.len().min(2)], &segments)
}

/// `git@host:owner/name.git` (scp-like syntax, as GitHub shows for SSH clones).
fn parse_scp_like(s: &str, hosts: Hosts<'_>) -> Result<Option<Target>, TargetError> {
    let Some((before, path)) = s.split_once(':') else {
        return Ok(None);
    };
    let Some((_user, host)) = before.split_once('@') else {
        return Err(err(format!(
            "`{s}` is neither `owner/name` nor a URL (a `:` only appears in `git@host:owner/name.git`)"
        )));
    };
    validate_host(host)?;
    hosts.check(host)?;
    let path = path.strip_prefix('/').unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() != 2 {
        return Err(err(format!(
            "`{path}` after `{host}:` must be `owner/name.git`"
        )));
    }
    from_segments(&segments, &segments).map(Some)
}

fn parse_plain(s: &str) -> Result<Target, TargetError> {
    let segments: Vec<&str> = s.split('/').collect();
    if segments.len() == 3 || segments.len() == 4 {
        let host = segments[0].to_ascii_lowercase();
        if host == "github.com" || host == "www.github.com" {
            let path = &segments[1..];
            let path = if path.last() == Some(&"") {
                &path[..path.len() - 1]
            } else {
                path
            };
            return from_segments(path, path);
        }
    }
    if segments.len() > 2 && !segments.contains(&"") {
        return Err(err(format!(
            "`{s}` has too many slashes; {EXPECTED} (paths inside a repository need the full URL)"
        )));
    }
    from_segments(&segments, &segments)
}

/// Builds a target from the first one or two path segments. `all` is the whole path, used only to
/// report empty or `..` segments anywhere in it.
fn from_segments(segments: &[&str], all: &[&str]) -> Result<Target, TargetError> {
    if all.iter().any(|seg| *seg == ".." || *seg == ".") {
        return Err(err(format!(
            "`{}` contains a `.` or `..` path segment, which is not a GitHub owner or repository",
            all.join("/")
        )));
    }
    if let Some(pos) = all.iter().position(|seg| seg.is_empty()) {
        let what = match pos {
            0 => "the owner is empty",
            1 => "the repository name is empty",
            _ => "the path has an empty segment (`//`)",
        };
        return Err(err(format!("{what} in `{}`; {EXPECTED}", all.join("/"))));
    }
    match segments {
        [owner] => {
            validate_owner(owner)?;
            Ok(Target::Account {
                owner: owner.to_string(),
            })
        }
        [owner, name] => {
            validate_owner(owner)?;
            let name = name.strip_suffix(".git").unwrap_or(name);
            validate_name(name)?;
            Ok(Target::Repository {
                owner: owner.to_string(),
                name: name.to_string(),
            })
        }
        _ => Err(err(format!("the target names no owner; {EXPECTED}"))),
    }
}

/// GitHub login rules: 1–39 ASCII letters, digits and `-`, not starting or ending with `-`.
fn validate_owner(owner: &str) -> Result<(), TargetError> {
    if owner.is_empty() {
        return Err(err(format!("the owner is empty; {EXPECTED}")));
    }
    if owner.len() > MAX_OWNER_LEN {
        return Err(err(format!(
            "owner `{owner}` is too long: GitHub logins have at most {MAX_OWNER_LEN} characters"
        )));
    }
    if let Some(bad) = owner
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(err(format!(
            "owner `{owner}` contains `{bad}`: GitHub logins use only letters, digits and `-`"
        )));
    }
    if owner.starts_with('-') || owner.ends_with('-') {
        return Err(err(format!(
            "owner `{owner}` must not start or end with `-`"
        )));
    }
    Ok(())
}

/// GitHub repository names: 1–100 ASCII letters, digits, `-`, `_` and `.`, never `.`, `..`, or
/// anything containing `..` (which would be dangerous in file paths).
fn validate_name(name: &str) -> Result<(), TargetError> {
    if name.is_empty() {
        return Err(err(format!("the repository name is empty; {EXPECTED}")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(err(format!(
            "repository name `{name}` is too long: at most {MAX_NAME_LEN} characters"
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(err(format!(
            "repository name `{name}` contains `{bad}`: only letters, digits, `-`, `_` and `.` are allowed"
        )));
    }
    if name == "." || name.contains("..") {
        return Err(err(format!(
            "repository name `{name}` must not be `.` or contain `..`"
        )));
    }
    Ok(())
}

fn validate_host(host: &str) -> Result<(), TargetError> {
    if host.is_empty() {
        return Err(err("the URL has no host name"));
    }
    let ok = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    if !ok {
        return Err(err(format!("`{host}` is not a valid host name")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(owner: &str, name: &str) -> Target {
        Target::Repository {
            owner: owner.into(),
            name: name.into(),
        }
    }

    /// As a server configured for the GitHub Enterprise host `ghe.example.com` parses.
    fn ok(input: &str) -> Target {
        Target::parse_on(input, "ghe.example.com")
            .unwrap_or_else(|e| panic!("`{input}` refused: {e}"))
    }

    #[test]
    fn a_url_on_another_host_is_not_read_as_a_github_repository() {
        for input in [
            "https://gitlab.com/a/b",
            "http://bitbucket.org/a/b.git",
            "git@gitlab.com:a/b.git",
            "ssh://git@gitlab.com/a/b.git",
            "https://github.com.evil.example/a/b",
            "https://ghe.example.com/a/b",
        ] {
            let e = Target::parse(input).expect_err(input).0;
            assert!(
                e.contains("is not the GitHub this server backs up"),
                "{input}: {e}"
            );
            assert!(e.contains("github.com"), "{input}: {e}");
        }
        let e = Target::parse_on("https://gitlab.com/a/b", "ghe.example.com")
            .unwrap_err()
            .0;
        assert!(e.contains("github.com or ghe.example.com"), "{e}");
        // github.com is always GitHub; the configured host too, with or without a port.
        assert_eq!(
            Target::parse_on("https://GHE.example.com:8443/a/b", "ghe.example.com").unwrap(),
            repo("a", "b")
        );
        assert_eq!(
            Target::parse("https://www.github.com/a/b").unwrap(),
            repo("a", "b")
        );
        // A client that does not know the server's GitHub checks the syntax only.
        assert_eq!(
            Target::parse_syntax("https://gitlab.com/a/b").unwrap(),
            repo("a", "b")
        );
    }

    #[test]
    fn the_web_host_comes_from_the_api_url() {
        assert_eq!(web_host("https://api.github.com"), "github.com");
        assert_eq!(web_host("https://api.github.com/"), "github.com");
        assert_eq!(
            web_host("https://ghe.example.com/api/v3"),
            "ghe.example.com"
        );
        assert_eq!(web_host("https://api.acme.ghe.com"), "acme.ghe.com");
        assert_eq!(web_host("http://127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(
            web_host("https://GHE.Example.com:8443/api/v3"),
            "ghe.example.com"
        );
    }

    fn refused(input: &str) -> String {
        match Target::parse(input) {
            Ok(t) => panic!("`{input}` accepted as {t:?}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn accepts_every_documented_form() {
        let cases = [
            ("octo/hello", repo("octo", "hello")),
            ("  octo/hello.git \n", repo("octo", "hello")),
            ("octo/hello.world", repo("octo", "hello.world")),
            ("my-org/my_repo-2", repo("my-org", "my_repo-2")),
            ("https://github.com/octo/hello", repo("octo", "hello")),
            ("https://github.com/octo/hello/", repo("octo", "hello")),
            ("https://github.com/octo/hello.git", repo("octo", "hello")),
            (
                "https://github.com/octo/hello/tree/main/src",
                repo("octo", "hello"),
            ),
            (
                "https://github.com/octo/hello/blob/main/README.md#L3",
                repo("octo", "hello"),
            ),
            (
                "https://github.com/octo/hello?tab=readme",
                repo("octo", "hello"),
            ),
            ("HTTPS://GitHub.com/octo/hello", repo("octo", "hello")),
            ("http://ghe.example.com/octo/hello", repo("octo", "hello")),
            (
                "https://ghe.example.com:8443/octo/hello.git",
                repo("octo", "hello"),
            ),
            ("git@github.com:octo/hello.git", repo("octo", "hello")),
            ("git@ghe.example.com:octo/hello", repo("octo", "hello")),
            ("ssh://git@github.com/octo/hello.git", repo("octo", "hello")),
            (
                "ssh://git@ghe.example.com:22/octo/hello",
                repo("octo", "hello"),
            ),
            ("github.com/octo/hello", repo("octo", "hello")),
        ];
        for (input, want) in cases {
            assert_eq!(ok(input), want, "input `{input}`");
        }
        for input in [
            "octo",
            "https://github.com/octo",
            "https://github.com/octo/",
        ] {
            assert_eq!(
                ok(input),
                Target::Account {
                    owner: "octo".into()
                },
                "input `{input}`"
            );
        }
    }

    #[test]
    fn canonical_display_kind_and_from_str_agree() {
        let t: Target = "https://github.com/octo/hello.git".parse().unwrap();
        assert_eq!(t.canonical(), "octo/hello");
        assert_eq!(t.to_string(), "octo/hello");
        assert_eq!(t.kind(), TargetKind::Repository);
        assert_eq!(t.owner(), "octo");
        assert_eq!(Target::parse(&t.canonical()).unwrap(), t);

        let a = ok("octo");
        assert_eq!(a.canonical(), "octo");
        assert_eq!(a.kind(), TargetKind::Account);
    }

    #[test]
    fn limits_are_inclusive() {
        let owner = "a".repeat(39);
        let name = "b".repeat(100);
        assert_eq!(ok(&format!("{owner}/{name}")), repo(&owner, &name));
        assert!(refused(&format!("{}/x", "a".repeat(40))).contains("too long"));
        assert!(refused(&format!("a/{}", "b".repeat(101))).contains("too long"));
    }

    #[test]
    fn rejects_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("octo/hel lo", "space"),
            ("octo/hel\tlo", "control"),
            ("octo/hello\u{7}", "control"),
            ("a/b/c", "too many slashes"),
            ("octo/", "repository name is empty"),
            ("/hello", "owner is empty"),
            ("octo//hello", "empty"),
            ("../hello", "`..`"),
            ("octo/..", "`..`"),
            ("octo/.", "`..`"),
            ("octo/a..b", "contain `..`"),
            ("octo/.git", "repository name is empty"),
            ("-octo/hello", "start or end with `-`"),
            ("octo-/hello", "start or end with `-`"),
            ("oc_to/hello", "contains `_`"),
            ("oc.to", "contains `.`"),
            ("octo/hé", "contains `é`"),
            ("octo/hel%2e", "contains `%`"),
            ("https://github.com/", "names no owner"),
            ("https:///octo/hello", "no host"),
            ("https://github.com/../hello", "`..`"),
            ("https://github.com//hello", "owner is empty"),
            ("ftp://github.com/octo/hello", "unsupported URL scheme"),
            ("ssh://git@github.com/octo/hello/extra", "too many parts"),
            (
                "git@github.com:octo/hello/extra",
                "must be `owner/name.git`",
            ),
            ("octo:hello", "neither"),
        ];
        for (input, needle) in cases {
            let msg = refused(input);
            assert!(
                msg.contains(needle),
                "`{input}`: message `{msg}` lacks `{needle}`"
            );
        }
    }

    #[test]
    fn never_echoes_credentials_in_urls() {
        let msg = refused("https://ghp_secret123@github.com/octo/hello");
        assert!(msg.contains("credentials"), "{msg}");
        assert!(!msg.contains("ghp_secret123"), "{msg}");
        let msg = refused("https://user:ghp_secret123@github.com/octo/hello");
        assert!(!msg.contains("ghp_secret123"), "{msg}");
    }
}
