//! Pure helpers of the metadata backup's repository-wide listings: which issue or pull request a
//! listed comment belongs to, and how a `since` listing is merged into what the previous
//! snapshot stored.

use std::collections::BTreeMap;

use serde_json::Value;

/// The number a comment of a repository-wide listing belongs to: the last path segment of its
/// `issue_url` (issue comments) or `pull_request_url` (review comments).
fn number_of(item: &Value, field: &str) -> Option<u64> {
    item[field].as_str()?.rsplit('/').next()?.parse().ok()
}

/// Groups a repository-wide listing by issue or pull-request number; items without a readable
/// number are dropped (GitHub always sends one).
pub(super) fn group(items: Vec<Value>, field: &str) -> BTreeMap<u64, Vec<Value>> {
    let mut out: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for item in items {
        if let Some(n) = number_of(&item, field) {
            out.entry(n).or_default().push(item);
        }
    }
    out
}

/// `older` with every item of `newer` put in (replacing the one with the same `id`), oldest
/// first as GitHub lists them (by `created_at`, then `id`).
pub(super) fn merge(older: &[Value], newer: &[Value]) -> Vec<Value> {
    let mut by_id: BTreeMap<i64, Value> = BTreeMap::new();
    let mut without_id = Vec::new();
    for item in older.iter().chain(newer) {
        match item["id"].as_i64() {
            Some(id) => {
                by_id.insert(id, item.clone());
            }
            None => without_id.push(item.clone()),
        }
    }
    let mut out: Vec<Value> = by_id.into_values().chain(without_id).collect();
    out.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v["created_at"].as_str().unwrap_or("").to_owned(),
                v["id"].as_i64(),
            )
        };
        key(a).cmp(&key(b))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn groups_by_the_number_in_the_url() {
        let items = vec![
            json!({"id": 1, "issue_url": "http://h/api/v3/repos/o/r/issues/7"}),
            json!({"id": 2, "issue_url": "http://h/api/v3/repos/o/r/issues/12"}),
            json!({"id": 3, "issue_url": "http://h/api/v3/repos/o/r/issues/7"}),
            json!({"id": 4}),
        ];
        let g = group(items, "issue_url");
        assert_eq!(g.keys().copied().collect::<Vec<_>>(), [7, 12]);
        assert_eq!(g[&7].len(), 2);
    }

    #[test]
    fn merge_replaces_edited_and_appends_new_in_creation_order() {
        let old = [
            json!({"id": 1, "body": "a", "created_at": "2026-01-01T00:00:00Z"}),
            json!({"id": 2, "body": "b", "created_at": "2026-01-02T00:00:00Z"}),
        ];
        let new = [
            json!({"id": 3, "body": "c", "created_at": "2026-01-03T00:00:00Z"}),
            json!({"id": 1, "body": "a2", "created_at": "2026-01-01T00:00:00Z"}),
        ];
        let m = merge(&old, &new);
        let bodies: Vec<&str> = m.iter().map(|v| v["body"].as_str().unwrap()).collect();
        assert_eq!(bodies, ["a2", "b", "c"]);
    }
}
