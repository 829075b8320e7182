//! Reading the stand-in's request log the way GitHub's rate limiter would: which requests were
//! counted, which were free 304s, which were account-level (the repository listing, `/user`) and
//! which were spent on one repository. Shared by our job's runs and python-github-backup's.

use std::collections::BTreeMap;
use std::time::Duration;

use ghbs_testkit::RequestRecord;

use crate::report::{against, figure, secs};

/// One run's requests, tallied.
pub(crate) struct Tally {
    pub rest: usize,
    pub counted: usize,
    pub conditional: usize,
    pub git: usize,
    /// Counted requests outside `/repos/…` and `/repositories/…` (listing pages, `/user`).
    pub account_counted: usize,
    /// Counted requests about one repository.
    pub repo_counted: usize,
}

impl Tally {
    pub fn of(log: &[RequestRecord]) -> Tally {
        let rest: Vec<&RequestRecord> = log.iter().filter(|r| !r.git).collect();
        let repo_counted = rest
            .iter()
            .filter(|r| r.counted && is_repo_path(&r.path))
            .count();
        let counted = rest.iter().filter(|r| r.counted).count();
        Tally {
            rest: rest.len(),
            counted,
            conditional: rest.iter().filter(|r| r.conditional_hit).count(),
            git: log.len() - rest.len(),
            account_counted: counted - repo_counted,
            repo_counted,
        }
    }

    /// "N REST (C counted, K 304), G git; per repository: …".
    pub fn summary(&self, repos: usize) -> String {
        let n = repos.max(1) as f64;
        format!(
            "{} REST ({} counted, {} 304), {} git; per repository {:.2} REST, {:.2} counted",
            self.rest,
            self.counted,
            self.conditional,
            self.git,
            self.rest as f64 / n,
            self.counted as f64 / n
        )
    }

    /// The issue's target for a run with nothing changed: at most one counted request per page
    /// of the account's repository listing, and none spent on any repository.
    pub fn against_unchanged_target(&self, prefix: &str, repos: usize, pages: usize) {
        against(
            &format!("{prefix} counted, account level"),
            format!("{} ({pages} listing pages)", self.account_counted),
            "<= 1 per page",
            self.account_counted <= pages,
        );
        against(
            &format!("{prefix} counted per unchanged repository"),
            format!(
                "{:.3} ({} / {repos})",
                self.repo_counted as f64 / repos.max(1) as f64,
                self.repo_counted
            ),
            "0",
            self.repo_counted == 0,
        );
    }
}

/// A run's wall time and tally as one line.
pub(crate) fn line(wall: Duration, t: &Tally, repos: usize) -> String {
    format!("{} — {}", secs(wall), t.summary(repos))
}

fn is_repo_path(path: &str) -> bool {
    let p = path.strip_prefix("/api/v3").unwrap_or(path);
    p.starts_with("/repos/") || p.starts_with("/repositories/")
}

/// `/api/v3/repos/o/r/issues/3/comments?per_page=100&page=2` → `repos/{r}/issues/{n}/comments
/// ?page&per_page`: the endpoint with the repository and numbers taken out and only the names
/// of the query parameters kept, so requests of all repositories add up per kind.
fn endpoint(path: &str) -> String {
    let (p, query) = path.split_once('?').unwrap_or((path, ""));
    let p = p.strip_prefix("/api/v3").unwrap_or(p);
    let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segs.len());
    let mut i = 0;
    while i < segs.len() {
        let s = segs[i];
        if i == 0 && s == "repos" && segs.len() >= 3 {
            out.extend(["repos", "{r}"]);
            i += 3;
            continue;
        }
        out.push(if s.bytes().all(|b| b.is_ascii_digit()) {
            "{n}"
        } else {
            s
        });
        i += 1;
    }
    let mut keys: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').map_or(kv, |(k, _)| k))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut e = out.join("/");
    if !keys.is_empty() {
        e.push('?');
        e.push_str(&keys.join("&"));
    }
    e
}

/// Prints REST requests per endpoint kind, most frequent first: (requests, counted, 304).
pub(crate) fn print_endpoints(title: &str, log: &[RequestRecord]) {
    let mut kinds: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for r in log.iter().filter(|r| !r.git) {
        let e = kinds.entry(endpoint(&r.path)).or_default();
        e.0 += 1;
        e.1 += usize::from(r.counted);
        e.2 += usize::from(r.conditional_hit);
    }
    let mut rows: Vec<(String, (usize, usize, usize))> = kinds.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(&b.0)));
    figure(title, "requests  counted     304  endpoint");
    for (e, (n, counted, hits)) in rows {
        figure("", format!("{n:>8} {counted:>8} {hits:>7}  {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, counted: bool, hit: bool, git: bool) -> RequestRecord {
        RequestRecord {
            method: "GET".into(),
            path: path.into(),
            status: if hit { 304 } else { 200 },
            token_login: Some("bench".into()),
            conditional_hit: hit,
            counted,
            git,
        }
    }

    #[test]
    fn endpoints_drop_repository_names_numbers_and_query_values() {
        assert_eq!(
            endpoint("/api/v3/repos/bench/repo-0001/issues/3/comments?per_page=100&page=2"),
            "repos/{r}/issues/{n}/comments?page&per_page"
        );
        assert_eq!(
            endpoint("/api/v3/user/repos?per_page=100"),
            "user/repos?per_page"
        );
        assert_eq!(endpoint("/api/v3/repos/bench/r"), "repos/{r}");
        assert_eq!(endpoint("/api/v3/user"), "user");
    }

    #[test]
    fn tally_splits_account_level_from_repository_requests() {
        let log = vec![
            rec("/api/v3/user/repos?per_page=100", true, false, false),
            rec("/api/v3/user/repos?per_page=100&page=2", false, true, false),
            rec("/api/v3/repos/bench/a/issues?state=all", true, false, false),
            rec("/api/v3/repositories/7/labels", false, true, false),
            rec(
                "/git/bench/a.git/info/refs?service=git-upload-pack",
                false,
                false,
                true,
            ),
        ];
        let t = Tally::of(&log);
        assert_eq!(
            (t.rest, t.counted, t.conditional, t.git),
            (4, 2, 2, 1),
            "REST, counted, 304, git"
        );
        assert_eq!((t.account_counted, t.repo_counted), (1, 1));
    }
}
