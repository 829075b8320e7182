//! `restore --metadata` / `--metadata-only`: put a snapshot's issues, pull requests, comments,
//! labels, milestones and releases back into an (empty) GitHub repository, with its git data
//! first unless `--metadata-only`.
//!
//! The snapshot's `.tar.gz` is downloaded (it holds the git data and the metadata folder, see
//! docs/metadata.md) and replayed in a fixed order: git push; labels; milestones; issues and pull
//! requests by number (a missing number becomes a closed placeholder, so that every number is
//! kept in an empty repository), each followed by its comments in time order and then its state;
//! releases oldest first with their assets. The API cannot set authors or times, so each item
//! starts with a quoted line saying who wrote it and when. Pull requests are recreated as issues
//! that say what they were (a pull request needs its branch to differ from its base, and merged
//! ones cannot be reopened), with the head commit pushed as branch `pr/N` when the git data has
//! it; reviews and review comments become comments quoting their file.
//!
//! Where the server offers GitHub's issue import endpoint (`POST /repos/{o}/{r}/import/issues`,
//! a preview API), each item goes in one request with its comments, keeping the original
//! creation, update and closing times; the import's status URL is journaled before it is polled,
//! so an interrupted run waits for the same import instead of sending it again. A server that
//! answers the first import with 404, 410 or 415 does not offer it: the plain endpoints (one
//! request per issue, comment and state change, times quoted in the text only) are used from
//! then on.
//!
//! Every accepted write is recorded in the [`Journal`] before the next one, so a rerun of an
//! interrupted restore continues where it stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ghbs_core::Secret;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::fetch::{download, Dest};
use super::Ctx;
use crate::api::Api;
use crate::cli::RestoreArgs;
use crate::exit::{CliError, CliResult};
use crate::restore_journal::Journal;
use crate::target_github::{message, Body, TargetGitHub};
use ghbs_wire::{DownloadFormat, Snapshot};

/// The snapshot's data for one repository, unpacked.
struct Unpacked {
    /// The bare repository or bundle holding the branches and tags.
    git: Option<PathBuf>,
    /// The `{name}.metadata/` folder.
    meta: PathBuf,
}

/// One issue or pull request of the snapshot, or a placeholder for a number it lacks.
struct Item {
    number: u64,
    /// `issues/{n}.json` or `pulls/{n}.json`; `None`: placeholder.
    doc: Option<Value>,
    pull: bool,
}

/// What the snapshot holds, in restore order.
struct Plan {
    labels: Vec<Value>,
    milestones: Vec<Value>,
    items: Vec<Item>,
    /// Oldest first.
    releases: Vec<Value>,
}

impl Plan {
    fn load(meta: &Path) -> CliResult<Plan> {
        let read = |rel: &str| -> CliResult<Option<Value>> {
            let path = meta.join(rel);
            match std::fs::read(&path) {
                Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                    CliError::failed(format!(
                        "the snapshot's {rel} is not valid JSON ({e}); the download may be damaged"
                    ))
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        };
        let list = |v: Option<Value>| -> Vec<Value> {
            v.and_then(|v| v.as_array().cloned()).unwrap_or_default()
        };
        let labels = list(read("labels.json")?);
        let mut milestones = list(read("milestones.json")?);
        milestones.sort_by_key(|m| m["number"].as_u64().unwrap_or(0));
        let mut releases = list(read("releases.json")?);
        releases.sort_by(|a, b| {
            let t = |r: &Value| r["created_at"].as_str().unwrap_or("").to_owned();
            t(a).cmp(&t(b))
                .then(a["id"].as_i64().cmp(&b["id"].as_i64()))
        });
        let mut docs: BTreeMap<u64, (Value, bool)> = BTreeMap::new();
        for (dir, pull) in [("issues", false), ("pulls", true)] {
            let Ok(entries) = std::fs::read_dir(meta.join(dir)) else {
                continue;
            };
            for entry in entries {
                let name = entry?.file_name().to_string_lossy().into_owned();
                let Some(n) = name
                    .strip_suffix(".json")
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    continue;
                };
                if let Some(doc) = read(&format!("{dir}/{name}"))? {
                    docs.insert(n, (doc, pull));
                }
            }
        }
        let max = docs.keys().next_back().copied().unwrap_or(0);
        let items = (1..=max)
            .map(|number| match docs.remove(&number) {
                Some((doc, pull)) => Item {
                    number,
                    doc: Some(doc),
                    pull,
                },
                None => Item {
                    number,
                    doc: None,
                    pull: false,
                },
            })
            .collect();
        Ok(Plan {
            labels,
            milestones,
            items,
            releases,
        })
    }

    fn counts(&self, meta: &Path) -> Value {
        let mut comments = 0;
        let mut reviews = 0;
        let mut closed = 0;
        for item in &self.items {
            let Some(doc) = &item.doc else {
                closed += 1;
                continue;
            };
            let (_, c) = conversation(doc);
            comments += c.iter().filter(|e| e.kind == "comment").count();
            reviews += c.iter().filter(|e| e.kind != "comment").count();
            if state_of(doc).0 == "closed" {
                closed += 1;
            }
        }
        let assets: Vec<(bool, &Value)> = self
            .releases
            .iter()
            .flat_map(|r| {
                r["assets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(move |a| (asset_file(meta, r, a).is_some(), a))
            })
            .collect();
        json!({
            "labels": self.labels.len(),
            "milestones": self.milestones.len(),
            "issues": self.items.iter().filter(|i| i.doc.is_some() && !i.pull).count(),
            "pulls_as_issues": self.items.iter().filter(|i| i.pull).count(),
            "placeholders": self.items.iter().filter(|i| i.doc.is_none()).count(),
            "comments": comments,
            "reviews_and_review_comments": reviews,
            "closed": closed,
            "releases": self.releases.len(),
            "assets": assets.iter().filter(|(held, _)| *held).count(),
            "assets_not_in_snapshot": assets.iter().filter(|(held, _)| !*held).count(),
        })
    }
}

/// One entry of an item's conversation, in time order.
struct Entry<'a> {
    /// Journal step key.
    key: String,
    kind: &'static str,
    at: String,
    value: &'a Value,
}

/// The item's issue (for a pull request, its `pull`, else `issue`) and its conversation:
/// comments, reviews with something to say, and review comments, oldest first.
fn conversation(doc: &Value) -> (&Value, Vec<Entry<'_>>) {
    let head = if doc["pull"].is_object() {
        &doc["pull"]
    } else {
        &doc["issue"]
    };
    let mut out = Vec::new();
    let list = |key: &str| doc[key].as_array().map(|a| a.iter()).into_iter().flatten();
    for c in list("comments") {
        out.push(Entry {
            key: format!("comment:{}", c["id"]),
            kind: "comment",
            at: c["created_at"].as_str().unwrap_or("").to_owned(),
            value: c,
        });
    }
    for r in list("reviews") {
        let said = r["body"].as_str().is_some_and(|b| !b.trim().is_empty());
        if said || r["state"] != "COMMENTED" {
            out.push(Entry {
                key: format!("review:{}", r["id"]),
                kind: "review",
                at: r["submitted_at"].as_str().unwrap_or("").to_owned(),
                value: r,
            });
        }
    }
    for c in list("review_comments") {
        out.push(Entry {
            key: format!("review-comment:{}", c["id"]),
            kind: "review comment",
            at: c["created_at"].as_str().unwrap_or("").to_owned(),
            value: c,
        });
    }
    out.sort_by(|a, b| a.at.cmp(&b.at));
    (head, out)
}

/// `(state, state_reason)` of an item.
fn state_of(doc: &Value) -> (&str, Option<&str>) {
    let issue = if doc["issue"].is_object() {
        &doc["issue"]
    } else {
        &doc["pull"]
    };
    (
        issue["state"].as_str().unwrap_or("open"),
        issue["state_reason"].as_str(),
    )
}

fn login(v: &Value) -> &str {
    v["login"].as_str().unwrap_or("ghost")
}

/// The quoted first line of every recreated item: who wrote it and when (the API cannot set
/// either), and where the original was.
fn attribution(what: &str, who: &Value, at: &str, link: &Value) -> String {
    let mut s = format!("> *{what} by @{} on {at}*", login(who));
    if let Some(url) = link.as_str() {
        s.push_str(&format!(" · [original]({url})"));
    }
    s
}

fn with_body(header: String, body: &Value) -> String {
    match body.as_str().filter(|b| !b.is_empty()) {
        Some(b) => format!("{header}\n\n{b}"),
        None => header,
    }
}

/// The issue body of item `n` (and for a pull request, what it was).
fn item_body(item: &Item, pr_branch: Option<&str>) -> (String, String) {
    let Some(doc) = &item.doc else {
        return (
            format!("Placeholder for #{}", item.number),
            format!(
                "> *#{} is not in the backup (deleted or transferred before it was taken); this placeholder keeps the numbers of the issues after it.*",
                item.number
            ),
        );
    };
    let issue = if doc["issue"].is_object() {
        &doc["issue"]
    } else {
        &doc["pull"]
    };
    let title = issue["title"].as_str().unwrap_or("(untitled)").to_owned();
    if !item.pull {
        let header = attribution(
            "Originally opened",
            &issue["user"],
            issue["created_at"].as_str().unwrap_or("?"),
            &issue["html_url"],
        );
        return (title, with_body(header, &issue["body"]));
    }
    let pull = &doc["pull"];
    let mut header = attribution(
        &format!("Originally pull request #{}, opened", item.number),
        &pull["user"],
        pull["created_at"].as_str().unwrap_or("?"),
        &pull["html_url"],
    );
    let head = pull["head"]["label"]
        .as_str()
        .or(pull["head"]["ref"].as_str())
        .unwrap_or("?");
    let base = pull["base"]["ref"].as_str().unwrap_or("?");
    header.push_str(&format!("\n> *It asked to merge `{head}` into `{base}`"));
    match (pull["merged_at"].as_str(), pull["state"].as_str()) {
        (Some(at), _) => header.push_str(&format!("; it was merged on {at}")),
        (None, Some("closed")) => header.push_str("; it was closed without merging"),
        _ => {}
    }
    header.push_str(".*");
    match pr_branch {
        Some(b) => header.push_str(&format!("\n> *Its head commit is on branch `{b}`.*")),
        None => header
            .push_str("\n> *Its head commit is not in the restored git data (no branch pushed).*"),
    }
    let n = doc["commits"].as_array().map_or(0, Vec::len);
    if n > 0 {
        header.push_str(&format!("\n> *{n} commit(s).*"));
    }
    (title, with_body(header, &pull["body"]))
}

fn entry_body(e: &Entry<'_>) -> String {
    let v = e.value;
    let header = match e.kind {
        "review" => attribution(
            &format!(
                "Review ({})",
                v["state"].as_str().unwrap_or("COMMENTED").to_lowercase()
            ),
            &v["user"],
            &e.at,
            &v["html_url"],
        ),
        "review comment" => {
            let mut what = format!("Review comment on `{}`", v["path"].as_str().unwrap_or("?"));
            if let Some(line) = v["line"].as_u64().or(v["original_line"].as_u64()) {
                what.push_str(&format!(" line {line}"));
            }
            attribution(&what, &v["user"], &e.at, &v["html_url"])
        }
        _ => attribution("Comment", &v["user"], &e.at, &v["html_url"]),
    };
    let mut body = with_body(header, &v["body"]);
    if e.kind == "review comment" {
        if let Some(hunk) = v["diff_hunk"].as_str().filter(|h| !h.is_empty()) {
            body = format!("{body}\n\n```diff\n{hunk}\n```");
        }
    }
    body
}

/// The stored bytes of a release asset, if the snapshot holds them: `assets/{asset id}` or
/// `assets/{release id}/{asset name}` in the metadata folder. Snapshots that store only the
/// asset list (docs/metadata.md) have neither, and the asset is reported as skipped.
fn asset_file(meta: &Path, release: &Value, asset: &Value) -> Option<PathBuf> {
    let id = asset["id"].as_i64()?;
    let by_id = meta.join("assets").join(id.to_string());
    if by_id.is_file() {
        return Some(by_id);
    }
    let name = asset["name"].as_str()?;
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    let by_name = meta
        .join("assets")
        .join(release["id"].as_i64()?.to_string())
        .join(name);
    by_name.is_file().then_some(by_name)
}

/// Unpacks the snapshot's tar.gz (one repository) and finds its git data and metadata folder.
async fn unpack(archive: &Path, into: &Path) -> CliResult<Unpacked> {
    let (archive, into) = (archive.to_path_buf(), into.to_path_buf());
    tokio::task::spawn_blocking(move || -> CliResult<Unpacked> {
        let file = std::fs::File::open(&archive)?;
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
        // `unpack` refuses entries outside `into` (absolute paths, `..`).
        tar.unpack(&into).map_err(|e| {
            CliError::failed(format!("the downloaded tar.gz cannot be read ({e}); try again"))
        })?;
        let mut git = None;
        let mut meta = None;
        let mut dirs = vec![into.clone()];
        for depth in 0..2 {
            let mut next = Vec::new();
            for dir in &dirs {
                for entry in std::fs::read_dir(dir)? {
                    let path = entry?.path();
                    let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                    if name.ends_with(".metadata") && path.is_dir() {
                        meta = Some(path);
                    } else if (name.ends_with(".git") && path.is_dir())
                        || (name.ends_with(".bundle") && path.is_file())
                    {
                        git = Some(path);
                    } else if path.is_dir() && depth == 0 {
                        next.push(path);
                    }
                }
            }
            dirs = next;
        }
        let meta = meta.ok_or_else(|| {
            CliError::failed(
                "this snapshot holds no metadata (the job does not back up issues and pull requests): \
                 turn it on with `github-backup-scheduler job edit ID --metadata`, run a backup, and restore that snapshot",
            )
        })?;
        Ok(Unpacked { git, meta })
    })
    .await
    .map_err(|_| CliError::failed("reading the archive stopped unexpectedly"))?
}

/// The target's token: `--token-stdin`, `GITHUB_TOKEN`, or a hidden prompt (never argv).
async fn target_token(ctx: &Ctx, token_stdin: bool) -> CliResult<Secret> {
    super::login::read_token(
        ctx,
        token_stdin,
        "The restore needs a GitHub token that can write to the target repository \
         (classic: the `repo` scope; fine-grained: Contents, Issues and Pull requests: read and write).",
    )
    .await
}

pub async fn restore_metadata(
    ctx: &Ctx,
    api: &Api,
    args: &RestoreArgs,
    snapshot: &Snapshot,
    repo: Option<&str>,
) -> CliResult {
    let target = crate::validate::repo_name(&args.to).map_err(|_| {
        CliError::usage(format!(
            "--to `{}`: with --metadata or --metadata-only, --to is the GitHub repository to restore into, as OWNER/NAME",
            args.to.trim()
        ))
    })?;
    let scratch = tempfile::tempdir()?;
    let archive = scratch.path().join("snapshot.tar.gz");
    let got = download(
        ctx,
        api,
        snapshot.id,
        DownloadFormat::TarGz,
        repo,
        Dest::File(archive),
    )
    .await?;
    let unpacked = unpack(&got.path, &scratch.path().join("unpacked")).await?;
    let plan = Plan::load(&unpacked.meta)?;
    let counts = plan.counts(&unpacked.meta);
    let with_git = !args.metadata_only;
    if with_git && unpacked.git.is_none() {
        return Err(CliError::failed(format!(
            "snapshot {} holds no git data for this repository: restore its metadata alone with --metadata-only",
            snapshot.id
        )));
    }

    if args.dry_run {
        let report = json!({
            "snapshot_id": snapshot.id, "to": target, "dry_run": true,
            "git": with_git, "would_create": counts,
        });
        if !ctx.out.json(&report) {
            ctx.out.line(format!(
                "Would restore snapshot {} into {target}{}:",
                snapshot.id,
                if with_git {
                    " (branches and tags, then metadata)"
                } else {
                    " (metadata only)"
                }
            ));
            for (k, v) in counts.as_object().into_iter().flatten() {
                ctx.out.line(format!("  {:<28} {v}", k.replace('_', " ")));
            }
        }
        return Ok(());
    }

    let token = target_token(ctx, args.token_stdin).await?;
    let mut gh = TargetGitHub::new(&args.github_api_url, token.clone())?;
    let journal_path = Journal::path_for(ctx.config.dir(), gh.api_url(), &target, snapshot.id);
    let mut journal = Journal::open(journal_path)?;
    let out = &ctx.out;

    // The target must exist and, on a first run, be empty of issues and releases: numbers are
    // only kept in an empty repository, and a restore never mixes into someone's data.
    let info = gh
        .send(out, Method::GET, &format!("/repos/{target}"), Body::None)
        .await?;
    if info.status == StatusCode::NOT_FOUND {
        return Err(CliError::NotFound(format!(
            "{target} does not exist on {} (or the token cannot see it): create it, empty, first",
            gh.api_url()
        )));
    }
    if !info.status.is_success() {
        return Err(CliError::failed(format!(
            "reading {target}: {}",
            message(&info)
        )));
    }
    if journal.is_empty() {
        for (what, path) in [
            (
                "issues or pull requests",
                format!("/repos/{target}/issues?state=all&per_page=1"),
            ),
            ("releases", format!("/repos/{target}/releases?per_page=1")),
        ] {
            let a = gh.send(out, Method::GET, &path, Body::None).await?;
            if a.body.as_array().is_some_and(|l| !l.is_empty()) {
                return Err(CliError::failed(format!(
                    "{target} already has {what}: a metadata restore only goes into an empty repository \
                     (so that issue numbers are kept); create a new one and restore there"
                )));
            }
        }
    } else {
        out.note(format!(
            "Continuing the restore recorded in {} ({} steps already done).",
            journal.path().display(),
            journal.len()
        ));
    }

    let mut r = Restorer {
        gh: &mut gh,
        journal: &mut journal,
        out,
        target: &target,
        resumed: false,
        created: BTreeMap::new(),
        import: None,
    };
    r.resumed = !r.journal.is_empty();
    let result = r
        .run(&plan, &unpacked, &info.body, &token, with_git, args.force)
        .await;
    let created = std::mem::take(&mut r.created);
    let requests = gh.requests;
    match result {
        Ok(skipped_assets) => {
            let report = json!({
                "snapshot_id": snapshot.id, "to": target, "git": with_git,
                "created": created, "assets_not_in_snapshot": skipped_assets,
                "requests": requests, "journal": journal.path().display().to_string(),
            });
            if !out.json(&report) {
                let parts: Vec<String> =
                    created.iter().map(|(k, v)| format!("{v} {k}")).collect();
                out.line(format!(
                    "Restored snapshot {} into {target}: {}.",
                    snapshot.id,
                    if parts.is_empty() { "nothing new".to_owned() } else { parts.join(", ") }
                ));
                if skipped_assets > 0 {
                    out.note(format!(
                        "{skipped_assets} release asset(s) were not restored: the snapshot holds only their description, not their files."
                    ));
                }
            }
            Ok(())
        }
        Err(e) => Err(CliError::failed(format!(
            "the restore into {target} stopped: {e} — what was done is recorded in {}; run the same command again to continue",
            journal.path().display()
        ))),
    }
}

/// The media type of GitHub's issue import preview.
const IMPORT_MEDIA: &str = "application/vnd.github.golden-comet-preview+json";

/// The comment marker that lets a resumed run find a comment it already wrote.
fn marker(e: &Entry<'_>) -> String {
    format!("<!-- restored {} -->", e.key)
}

/// What an item counts as in the summary.
fn kind_of(item: &Item) -> &'static str {
    if item.doc.is_none() {
        "placeholders"
    } else if item.pull {
        "pull requests (as issues)"
    } else {
        "issues"
    }
}

/// An item's labels (names) and its milestone on the target.
fn labels_and_milestone<'v>(
    item: &'v Item,
    milestone_of: &BTreeMap<u64, u64>,
) -> (Vec<&'v Value>, Option<u64>) {
    let Some(doc) = &item.doc else {
        return (Vec::new(), None);
    };
    let issue = if doc["issue"].is_object() {
        &doc["issue"]
    } else {
        &doc["pull"]
    };
    let labels = issue["labels"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| &l["name"])
        .collect();
    let milestone = issue["milestone"]["number"]
        .as_u64()
        .and_then(|m| milestone_of.get(&m).copied());
    (labels, milestone)
}

struct Restorer<'a> {
    gh: &'a mut TargetGitHub,
    journal: &'a mut Journal,
    out: &'a crate::output::Printer,
    target: &'a str,
    /// A journal existed: the first write of each kind is checked against the target first,
    /// because the process may have died after GitHub accepted it and before it was recorded.
    resumed: bool,
    /// What this run created, by kind.
    created: BTreeMap<&'static str, u64>,
    /// Whether the target offers the issue import endpoint: `None` until the first item asks.
    import: Option<bool>,
}

impl Restorer<'_> {
    fn count(&mut self, kind: &'static str) {
        *self.created.entry(kind).or_default() += 1;
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Body,
    ) -> CliResult<crate::target_github::Answer> {
        self.gh.send(self.out, method, path, body).await
    }

    /// Sends a write and insists on success.
    async fn write(
        &mut self,
        what: &str,
        method: Method,
        path: &str,
        body: Value,
    ) -> CliResult<Value> {
        let a = self.send(method, path, Body::Json(body)).await?;
        if !a.status.is_success() {
            return Err(CliError::failed(format!(
                "{what}: GitHub answered {}",
                message(&a)
            )));
        }
        Ok(a.body)
    }

    /// Returns the number of release assets that could not be restored (not in the snapshot).
    async fn run(
        &mut self,
        plan: &Plan,
        unpacked: &Unpacked,
        repo_info: &Value,
        token: &Secret,
        with_git: bool,
        force: bool,
    ) -> CliResult<u64> {
        let target = self.target.to_owned();
        // Branches `pr/N` for pull requests, at their head commit (when the git data has it).
        let mut pr_branches: BTreeMap<u64, String> = BTreeMap::new();
        if with_git {
            let wanted: Vec<(String, String)> = plan
                .items
                .iter()
                .filter(|i| i.pull)
                .filter_map(|i| {
                    let sha = i.doc.as_ref()?["pull"]["head"]["sha"].as_str()?;
                    Some((format!("pr/{}", i.number), sha.to_owned()))
                })
                .collect();
            if let Some(done) = self.journal.get("git") {
                for b in done
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if let Some(n) = b.strip_prefix("pr/").and_then(|n| n.parse().ok()) {
                        pr_branches.insert(n, b.to_owned());
                    }
                }
            } else {
                let remote = repo_info["clone_url"]
                    .as_str()
                    .ok_or_else(|| CliError::failed("GitHub did not say the target's clone URL"))?;
                self.out
                    .note(format!("Pushing branches and tags to {target} …"));
                let opts = ghbs_engine::RestoreOptions {
                    force,
                    token: Some(token.clone()),
                    extra_branches: wanted,
                };
                let source = unpacked.git.as_deref().expect("checked by the caller");
                let pushed = ghbs_engine::restore_with(source, remote, &opts)
                    .await
                    .map_err(|e| CliError::failed(format!("pushing the git data: {e}")))?;
                for b in &pushed {
                    if let Some(n) = b.strip_prefix("pr/").and_then(|n| n.parse().ok()) {
                        pr_branches.insert(n, b.clone());
                    }
                }
                self.journal.record("git", json!(pushed))?;
                self.count("git pushes");
            }
        }

        self.out.note(format!(
            "Restoring {} labels, {} milestones, {} issues and pull requests, {} releases into {target} …",
            plan.labels.len(),
            plan.milestones.len(),
            plan.items.len(),
            plan.releases.len()
        ));
        for label in &plan.labels {
            let Some(name) = label["name"].as_str() else {
                continue;
            };
            let step = format!("label:{name}");
            if self.journal.has(&step) {
                continue;
            }
            let body =
                json!({"name": name, "color": label["color"], "description": label["description"]});
            let a = self
                .send(
                    Method::POST,
                    &format!("/repos/{target}/labels"),
                    Body::Json(body.clone()),
                )
                .await?;
            if a.status == StatusCode::UNPROCESSABLE_ENTITY {
                // New repositories come with default labels: take the snapshot's colour and text.
                let path = format!("/repos/{target}/labels/{}", encode(name));
                self.write(
                    &format!("updating label {name}"),
                    Method::PATCH,
                    &path,
                    body,
                )
                .await?;
            } else if !a.status.is_success() {
                return Err(CliError::failed(format!(
                    "creating label {name}: {}",
                    message(&a)
                )));
            }
            self.journal.record(&step, Value::Null)?;
            self.count("labels");
        }

        let mut milestone_of: BTreeMap<u64, u64> = BTreeMap::new();
        let mut checked = !self.resumed;
        for m in &plan.milestones {
            let Some(old) = m["number"].as_u64() else {
                continue;
            };
            let step = format!("milestone:{old}");
            if let Some(new) = self.journal.get(&step).and_then(Value::as_u64) {
                milestone_of.insert(old, new);
                continue;
            }
            if !std::mem::replace(&mut checked, true) {
                let listed = self
                    .send(
                        Method::GET,
                        &format!("/repos/{target}/milestones?state=all&per_page=100"),
                        Body::None,
                    )
                    .await?;
                if let Some(found) = listed
                    .body
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|x| x["title"] == m["title"])
                {
                    let new = found["number"].as_u64().unwrap_or(0);
                    self.journal.record(&step, json!(new))?;
                    milestone_of.insert(old, new);
                    continue;
                }
            }
            let mut body =
                json!({"title": m["title"], "state": m["state"], "description": m["description"]});
            if m["due_on"].is_string() {
                body["due_on"] = m["due_on"].clone();
            }
            let made = self
                .write(
                    &format!("creating milestone {}", m["title"]),
                    Method::POST,
                    &format!("/repos/{target}/milestones"),
                    body,
                )
                .await?;
            let new = made["number"].as_u64().unwrap_or(0);
            self.journal.record(&step, json!(new))?;
            milestone_of.insert(old, new);
            self.count("milestones");
        }

        let total = plan.items.len();
        let mut checked = !self.resumed;
        for (i, item) in plan.items.iter().enumerate() {
            let n = item.number;
            if (i + 1) % 50 == 0 {
                self.out.note(format!("… issue {} of {total}", i + 1));
            }
            let step = format!("issue:{n}");
            if !self.journal.has(&step) && !std::mem::replace(&mut checked, true) {
                self.adopt_issue(item, &pr_branches).await?;
            }
            if !self.journal.has(&step) {
                let imported = match self.import {
                    Some(false) => None,
                    _ => self.import_item(item, &pr_branches, &milestone_of).await?,
                };
                let got = match imported {
                    Some(got) => got,
                    None => self.create_item(item, &pr_branches, &milestone_of).await?,
                };
                if got != n {
                    return Err(CliError::failed(format!(
                        "GitHub numbered the recreated #{n} as #{got}: the target was not empty; restore into a new, empty repository"
                    )));
                }
            }
            if let Some(doc) = &item.doc {
                let (_, entries) = conversation(doc);
                // On a resumed run, the comments already on the target (listed once per item):
                // those the interrupted run wrote carry their marker.
                let mut present: Option<Vec<String>> = None;
                for e in &entries {
                    let ckey = format!("{}:{n}", e.key);
                    if self.journal.has(&ckey) {
                        continue;
                    }
                    let marker = marker(e);
                    let body = format!("{}\n\n{marker}", entry_body(e));
                    if self.resumed {
                        if present.is_none() {
                            let listed = self
                                .send(
                                    Method::GET,
                                    &format!("/repos/{target}/issues/{n}/comments?per_page=100"),
                                    Body::None,
                                )
                                .await?;
                            present = Some(
                                listed
                                    .body
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .filter_map(|c| c["body"].as_str().map(str::to_owned))
                                    .collect(),
                            );
                        }
                        if present.iter().flatten().any(|b| b.contains(&marker)) {
                            self.journal.record(&ckey, Value::Null)?;
                            continue;
                        }
                    }
                    self.write(
                        &format!("adding a comment to #{n}"),
                        Method::POST,
                        &format!("/repos/{target}/issues/{n}/comments"),
                        json!({"body": body}),
                    )
                    .await?;
                    self.journal.record(&ckey, Value::Null)?;
                    self.count(if e.kind == "comment" {
                        "comments"
                    } else {
                        "reviews and review comments (as comments)"
                    });
                }
            }
            let (state, reason) = item.doc.as_ref().map_or(("closed", None), state_of);
            let skey = format!("state:{n}");
            if state == "closed" && !self.journal.has(&skey) {
                let mut req = json!({"state": "closed"});
                if let Some(r) = reason {
                    req["state_reason"] = json!(r);
                }
                self.write(
                    &format!("closing #{n}"),
                    Method::PATCH,
                    &format!("/repos/{target}/issues/{n}"),
                    req,
                )
                .await?;
                self.journal.record(&skey, Value::Null)?;
                self.count("closed");
            }
        }

        let mut skipped_assets = 0;
        for rel in &plan.releases {
            let Some(id) = rel["id"].as_i64() else {
                continue;
            };
            let step = format!("release:{id}");
            let upload = match self.journal.get(&step) {
                Some(v) => v.as_str().unwrap_or_default().to_owned(),
                None => {
                    let header = attribution(
                        "Originally published",
                        &rel["author"],
                        rel["published_at"]
                            .as_str()
                            .or(rel["created_at"].as_str())
                            .unwrap_or("?"),
                        &rel["html_url"],
                    );
                    let body = json!({"tag_name": rel["tag_name"], "name": rel["name"], "body": with_body(header, &rel["body"]),
                        "draft": rel["draft"], "prerelease": rel["prerelease"], "target_commitish": rel["target_commitish"]});
                    let body = strip_nulls(body);
                    let a = self
                        .send(
                            Method::POST,
                            &format!("/repos/{target}/releases"),
                            Body::Json(body),
                        )
                        .await?;
                    let made = if a.status == StatusCode::UNPROCESSABLE_ENTITY && self.resumed {
                        // Created by the run that was interrupted: find it by its tag.
                        let listed = self
                            .send(
                                Method::GET,
                                &format!("/repos/{target}/releases?per_page=100"),
                                Body::None,
                            )
                            .await?;
                        listed
                            .body
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|r| r["tag_name"] == rel["tag_name"])
                            .cloned()
                            .ok_or_else(|| {
                                CliError::failed(format!(
                                    "creating release {}: {}",
                                    rel["tag_name"],
                                    message(&a)
                                ))
                            })?
                    } else if a.status.is_success() {
                        self.count("releases");
                        a.body
                    } else {
                        return Err(CliError::failed(format!(
                            "creating release {}: {}",
                            rel["tag_name"],
                            message(&a)
                        )));
                    };
                    let upload = made["upload_url"]
                        .as_str()
                        .unwrap_or_default()
                        .split('{')
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    self.journal.record(&step, json!(upload))?;
                    upload
                }
            };
            for asset in rel["assets"].as_array().into_iter().flatten() {
                let akey = format!("asset:{}", asset["id"]);
                if self.journal.has(&akey) {
                    continue;
                }
                let Some(file) = asset_file(&unpacked.meta, rel, asset) else {
                    skipped_assets += 1;
                    continue;
                };
                let name = asset["name"].as_str().unwrap_or("asset");
                let bytes = tokio::fs::read(&file).await?;
                let url = format!("{upload}?name={}", encode(name));
                let a = self.send(Method::POST, &url, Body::Bytes(bytes)).await?;
                if !(a.status.is_success()
                    || (a.status == StatusCode::UNPROCESSABLE_ENTITY && self.resumed))
                {
                    return Err(CliError::failed(format!(
                        "uploading asset {name}: {}",
                        message(&a)
                    )));
                }
                self.journal.record(&akey, Value::Null)?;
                self.count("assets");
            }
        }
        Ok(skipped_assets)
    }

    /// Recreates `item` with the plain endpoint (its comments and state follow separately) and
    /// journals it; returns the number GitHub gave it.
    async fn create_item(
        &mut self,
        item: &Item,
        pr_branches: &BTreeMap<u64, String>,
        milestone_of: &BTreeMap<u64, u64>,
    ) -> CliResult<u64> {
        let n = item.number;
        let target = self.target.to_owned();
        let (title, body) = item_body(item, pr_branches.get(&n).map(String::as_str));
        let mut req = json!({"title": title, "body": body});
        let (labels, milestone) = labels_and_milestone(item, milestone_of);
        if !labels.is_empty() {
            req["labels"] = json!(labels);
        }
        if let Some(new) = milestone {
            req["milestone"] = json!(new);
        }
        let made = self
            .write(
                &format!("creating issue #{n}"),
                Method::POST,
                &format!("/repos/{target}/issues"),
                req,
            )
            .await?;
        let got = made["number"].as_u64().unwrap_or(0);
        self.journal.record(&format!("issue:{n}"), json!(got))?;
        self.count(kind_of(item));
        Ok(got)
    }

    /// Recreates `item` through the issue import endpoint, comments and times included, and
    /// journals it; `None` when the target does not offer the endpoint (then `self.import`
    /// turns false and the caller uses the plain endpoints).
    async fn import_item(
        &mut self,
        item: &Item,
        pr_branches: &BTreeMap<u64, String>,
        milestone_of: &BTreeMap<u64, u64>,
    ) -> CliResult<Option<u64>> {
        let n = item.number;
        let target = self.target.to_owned();
        let sent = format!("import:{n}");
        let url = match self.journal.get(&sent).and_then(Value::as_str) {
            // An interrupted run sent it: wait for that import, do not send it again.
            Some(url) => url.to_owned(),
            None => {
                let (title, body) = item_body(item, pr_branches.get(&n).map(String::as_str));
                let (labels, milestone) = labels_and_milestone(item, milestone_of);
                let mut issue = json!({"title": title, "body": body, "labels": labels});
                if let Some(m) = milestone {
                    issue["milestone"] = json!(m);
                }
                let mut comments = Vec::new();
                match &item.doc {
                    Some(doc) => {
                        let (head, entries) = conversation(doc);
                        let (state, _) = state_of(doc);
                        for key in ["created_at", "updated_at"] {
                            if head[key].is_string() {
                                issue[key] = head[key].clone();
                            }
                        }
                        if state == "closed" {
                            issue["closed"] = json!(true);
                            if head["closed_at"].is_string() {
                                issue["closed_at"] = head["closed_at"].clone();
                            }
                        }
                        for e in &entries {
                            let mut c =
                                json!({"body": format!("{}\n\n{}", entry_body(e), marker(e))});
                            if !e.at.is_empty() {
                                c["created_at"] = json!(e.at);
                            }
                            comments.push(c);
                        }
                    }
                    None => issue["closed"] = json!(true),
                }
                let a = self
                    .gh
                    .send_accepting(
                        self.out,
                        Method::POST,
                        &format!("/repos/{target}/import/issues"),
                        Body::Json(json!({"issue": issue, "comments": comments})),
                        IMPORT_MEDIA,
                    )
                    .await?;
                let offered = !matches!(a.status.as_u16(), 404 | 410 | 415);
                if self.import.is_none() {
                    self.import = Some(offered);
                    if !offered {
                        self.out.note(
                            "The target does not offer GitHub's issue import endpoint: using the \
                             plain endpoints (original times are quoted in the text, not kept).",
                        );
                        return Ok(None);
                    }
                }
                if !a.status.is_success() {
                    return Err(CliError::failed(format!(
                        "importing #{n}: GitHub answered {}",
                        message(&a)
                    )));
                }
                let Some(url) = a.body["url"].as_str().map(str::to_owned) else {
                    return Err(CliError::failed(format!(
                        "importing #{n}: GitHub did not say where to follow the import"
                    )));
                };
                self.journal.record(&sent, json!(url))?;
                url
            }
        };
        let got = self.await_import(n, &url).await?;
        // The import carried the comments and the state: journaled so nothing is sent again.
        self.journal.record(&format!("issue:{n}"), json!(got))?;
        if let Some(doc) = &item.doc {
            for e in conversation(doc).1 {
                self.journal
                    .record(&format!("{}:{n}", e.key), Value::Null)?;
            }
            // The import endpoint has no `state_reason`: a "not planned" closing is set after.
            if !matches!(state_of(doc), (_, Some("not_planned"))) {
                self.journal.record(&format!("state:{n}"), Value::Null)?;
            }
        } else {
            self.journal.record(&format!("state:{n}"), Value::Null)?;
        }
        self.count(kind_of(item));
        self.count("imported with original times");
        Ok(Some(got))
    }

    /// Polls an import's status URL until GitHub says it is done; returns the issue's number.
    async fn await_import(&mut self, n: u64, url: &str) -> CliResult<u64> {
        let mut wait = std::time::Duration::from_millis(100);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let a = self
                .gh
                .send_accepting(self.out, Method::GET, url, Body::None, IMPORT_MEDIA)
                .await?;
            if !a.status.is_success() {
                return Err(CliError::failed(format!(
                    "following the import of #{n}: GitHub answered {}",
                    message(&a)
                )));
            }
            match a.body["status"].as_str() {
                Some("imported") => {
                    let number = a.body["issue_url"]
                        .as_str()
                        .and_then(|u| u.rsplit('/').next())
                        .and_then(|s| s.parse().ok());
                    return number.ok_or_else(|| {
                        CliError::failed(format!(
                            "GitHub imported #{n} but did not say its number"
                        ))
                    });
                }
                Some("failed") => {
                    return Err(CliError::failed(format!(
                        "GitHub refused the import of #{n}: {}",
                        a.body["errors"]
                    )))
                }
                _ if tokio::time::Instant::now() > deadline => {
                    return Err(CliError::failed(format!(
                        "GitHub had not finished importing #{n} after 5 minutes; run the restore again to go on"
                    )))
                }
                _ => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(2));
                }
            }
        }
    }

    /// On a resumed run, the issue the interrupted run may have created without recording it:
    /// if the target already has #n with the planned title, it is taken as done.
    async fn adopt_issue(&mut self, item: &Item, pr_branches: &BTreeMap<u64, String>) -> CliResult {
        let n = item.number;
        let target = self.target.to_owned();
        let a = self
            .send(
                Method::GET,
                &format!("/repos/{target}/issues/{n}"),
                Body::None,
            )
            .await?;
        let (title, _) = item_body(item, pr_branches.get(&n).map(String::as_str));
        if a.status.is_success() && a.body["title"].as_str() == Some(title.as_str()) {
            self.journal.record(&format!("issue:{n}"), json!(n))?;
        }
        Ok(())
    }
}

/// Percent-encodes a path or query component (label and asset names).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Leaves out null fields (GitHub refuses `"name": null` on some endpoints).
fn strip_nulls(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.retain(|_, x| !x.is_null());
    }
    v
}
