//! The server's top-level modules import down, never around: the graph of `crate::MODULE`
//! references between them (outside comments and tests) has no cycle. A new import that closes
//! a circle fails here with the circle spelled out (ARCHITECTURE.md has the intended layers).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its source refers to as `crate::NAME`.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            if top == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let deps = out.entry(top.clone()).or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (i, _) in line.match_indices("crate::") {
                    let name: String = line[i + "crate::".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != top {
                        deps.insert(name);
                    }
                }
            }
        }
    }
    out
}

/// A cycle through `from`, if any, as the list of modules on it.
fn cycle_through(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    fn walk(
        g: &BTreeMap<String, BTreeSet<String>>,
        goal: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in g.get(at).into_iter().flatten() {
            if next == goal {
                return true;
            }
            if g.contains_key(next) && seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(g, goal, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![from.to_owned()];
    walk(g, from, from, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn server_modules_import_down_not_around() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(
        g.contains_key("state") && g.contains_key("scheduler"),
        "{g:?}"
    );
    let cycles: Vec<String> = g
        .keys()
        .filter_map(|m| cycle_through(&g, m))
        .map(|c| format!("{} -> {}", c.join(" -> "), c[0]))
        .collect();
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
    // The shared state sits low: nothing of the HTTP or scheduling layers below it.
    for upper in [
        "app",
        "routes",
        "scheduler",
        "backup",
        "notify",
        "start",
        "executor",
    ] {
        assert!(
            !g["state"].contains(upper),
            "state imports {upper}: {:?}",
            g["state"]
        );
    }
}

/// Executors get the run context, not the whole application state: nothing under `backup/`
/// and nothing in `executor` names `AppState` (issue 10).
#[test]
fn executors_see_only_the_run_context() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("executor.rs")];
    for entry in std::fs::read_dir(src.join("backup")).unwrap() {
        files.push(entry.unwrap().path());
    }
    assert!(files.len() > 2, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("AppState"),
            "{} names AppState; executors take RunContext",
            file.display()
        );
    }
}
