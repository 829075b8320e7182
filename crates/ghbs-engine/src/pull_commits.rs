//! What the metadata backup reads from local storage instead of asking GitHub: the commit list
//! of a pull request from the mirrored `refs/pull/N/head`, and a stored metadata document of an
//! earlier snapshot (to merge a `since` listing into).

use serde_json::{json, Value};

use crate::error::{EngineError, Result};
use crate::fsutil::{self, blocking};
use crate::git::Git;
use crate::metadata::MetadataEntry;
use crate::Engine;

/// Field separator in the `git log` format below (never in names, emails or dates; a message
/// holding it would only cut that message short).
const FIELD: char = '\u{1f}';
/// Record separator: after each commit's message.
const RECORD: char = '\u{1e}';

impl Engine {
    /// The commits of pull request `number` as `git log --reverse base..head` in the mirror
    /// `key`, oldest first, shaped like a subset of GitHub's `GET /pulls/N/commits` items
    /// (`sha`, `commit.{message,author,committer}`, `parents[].sha`; no GitHub accounts, URLs or
    /// verification). `head` defaults to `refs/pull/N/head`. `Ok(None)` when the mirror lacks
    /// the pull ref or either commit (the caller then asks GitHub).
    pub async fn pull_commits(
        &self,
        key: &str,
        number: u64,
        base: &str,
        head: Option<&str>,
    ) -> Result<Option<Vec<Value>>> {
        fsutil::validate_key(key)?;
        let hex =
            |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(base) || head.is_some_and(|h| !hex(h)) {
            return Ok(None);
        }
        let mirror = self.mirror_path(key);
        if !mirror.is_dir() {
            return Ok(None);
        }
        let pull_ref = format!("refs/pull/{number}/head");
        let head = head.map_or(pull_ref.clone(), str::to_owned);
        // Both ends must be there: a pull ref the job does not mirror, or a push GitHub saw after
        // our fetch, means the list would be wrong.
        let present = Git::new(self.git())
            .dir(&mirror)
            .args(["rev-parse", "--verify", "--quiet", &pull_ref])
            .run()
            .await
            .is_ok()
            && Git::new(self.git())
                .dir(&mirror)
                .args(["cat-file", "-e", &format!("{base}^{{commit}}")])
                .run()
                .await
                .is_ok()
            && Git::new(self.git())
                .dir(&mirror)
                .args(["cat-file", "-e", &format!("{head}^{{commit}}")])
                .run()
                .await
                .is_ok();
        if !present {
            return Ok(None);
        }
        let format = format!(
            "--format=%H{FIELD}%P{FIELD}%an{FIELD}%ae{FIELD}%aI{FIELD}%cn{FIELD}%ce{FIELD}%cI{FIELD}%B{RECORD}"
        );
        let out = Git::new(self.git())
            .dir(&mirror)
            .args([
                "log",
                "--reverse",
                &format,
                &format!("{base}..{head}"),
                "--",
            ])
            .run()
            .await?;
        Ok(Some(parse_log(&out.text())))
    }

    /// The JSON of a stored metadata file (for example `issues/12.json` of the previous
    /// snapshot), or `None` when its object is gone.
    pub async fn read_metadata(&self, entry: &MetadataEntry) -> Result<Option<Value>> {
        if !crate::metadata::valid_object(&entry.object) || !entry.object.ends_with(".json") {
            return Ok(None);
        }
        let path = self.object_path(&entry.object);
        blocking(move || match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| EngineError::permanent(format!("stored metadata unreadable: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(EngineError::io("reading stored metadata", e)),
        })
        .await
    }
}

fn parse_log(text: &str) -> Vec<Value> {
    text.split(RECORD)
        .filter_map(|record| {
            let f: Vec<&str> = record.trim_start_matches('\n').splitn(9, FIELD).collect();
            let [sha, parents, an, ae, ad, cn, ce, cd, message] = f[..] else {
                return None;
            };
            let parents: Vec<Value> = parents
                .split_whitespace()
                .map(|p| json!({ "sha": p }))
                .collect();
            Some(json!({
                "sha": sha,
                "commit": {
                    "author": { "name": an, "email": ae, "date": ad },
                    "committer": { "name": cn, "email": ce, "date": cd },
                    "message": message.trim_end_matches('\n'),
                },
                "parents": parents,
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_git_log_records() {
        let text = format!(
            "a1{FIELD}p1 p2{FIELD}Ann{FIELD}a@x{FIELD}2026-01-01T00:00:00+00:00{FIELD}Cy{FIELD}c@x{FIELD}2026-01-02T00:00:00+00:00{FIELD}Subject\n\nBody\n{RECORD}\nb2{FIELD}a1{FIELD}A{FIELD}e{FIELD}d{FIELD}C{FIELD}e{FIELD}d{FIELD}Two\n{RECORD}\n"
        );
        let commits = parse_log(&text);
        assert_eq!(commits.len(), 2);
        assert_eq!(commits[0]["sha"], "a1");
        assert_eq!(commits[0]["parents"][1]["sha"], "p2");
        assert_eq!(commits[0]["commit"]["message"], "Subject\n\nBody");
        assert_eq!(commits[0]["commit"]["author"]["email"], "a@x");
        assert_eq!(commits[1]["commit"]["message"], "Two");
    }
}
