//! Refs without a git process where that is safe: the engine's record of a mirror's live refs,
//! and snapshot refs written as loose ref files.
//!
//! An unchanged repository used to cost two git processes per run (`for-each-ref` to learn its
//! refs, `update-ref --stdin` to record the snapshot). Both are replaced here by plain file
//! operations; git stays the fallback whenever an assumption below does not hold.
//!
//! **The live-refs record** (`{mirror}/ghbs-live-refs`, `sha refname` lines as `for-each-ref`
//! prints them) always equals the mirror's `refs/heads`, `refs/tags` and `refs/pull`, or is
//! absent. Only the engine changes those refs, always under the mirror's `ops` lock: a fetch
//! first removes the record (durably, before git starts), and writes it again from the
//! `for-each-ref` that follows a successful fetch; a fetch that fails or is killed in between
//! leaves no record, and the next reader lists the refs with git and records them. The record
//! lives with the mirror (not in the database) because the database row is saved only after a
//! whole run succeeded: a run that fetched and then failed would leave a database copy stale,
//! whereas this file is written right after the fetch, under the same lock.
//!
//! **Loose snapshot refs** are written the way git's files backend writes them (`<ref>.lock`
//! created exclusively, `<sha>\n`, fsync, rename), minus reflogs (the mirror has
//! `core.logAllRefUpdates=false` and `refs/ghbs/` is ours alone). `git update-ref` also checked
//! that each object exists; the fast path is taken only when every sha is the target of a live
//! ref in the record above, and objects reachable from a ref are never pruned, so they exist.
//! Anything else (a sha the record does not hold, a name outside the simple subset of
//! `git check-ref-format` accepted here, a reftable mirror) goes through `git update-ref`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};
use crate::fsutil;
use crate::git::parse_ref_lines;

/// File name of the live-refs record inside a mirror (git ignores unknown files in a git dir).
const LIVE_REFS_FILE: &str = "ghbs-live-refs";
/// First line of the record: a different first line (a future format) reads as "no record".
const LIVE_REFS_HEADER: &str = "# ghbs live refs v1";

/// The recorded live refs, or `None` when there is no (readable, recognised) record.
pub(crate) fn read_live_refs(mirror: &Path) -> Option<BTreeMap<String, String>> {
    let text = fs::read_to_string(mirror.join(LIVE_REFS_FILE)).ok()?;
    let body = text.strip_prefix(LIVE_REFS_HEADER)?.strip_prefix('\n')?;
    Some(parse_ref_lines(body))
}

/// Records the live refs: `ghbs-live-refs.lock` (removed by `clean_stale` if we die here),
/// fsync, rename, fsync the mirror directory. Caller holds the mirror's `ops` lock.
pub(crate) fn write_live_refs(mirror: &Path, refs: &BTreeMap<String, String>) -> Result<()> {
    let mut text = format!("{LIVE_REFS_HEADER}\n");
    for (name, sha) in refs {
        text.push_str(&format!("{sha} {name}\n"));
    }
    let path = mirror.join(LIVE_REFS_FILE);
    let tmp = mirror.join(format!("{LIVE_REFS_FILE}.lock"));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(EngineError::io("record live refs", e));
    }
    fsutil::fsync_dir(mirror)
}

/// Removes the record before the live refs change, and makes the removal durable before git
/// starts: after a power cut the record is then either absent or describes the refs git left.
/// (Git's own renames reach the journal before the later rename of the new record; on a
/// journalling file system the directory fsync of the new record orders them, the same
/// assumption that makes the snapshot refs' directory fsyncs in `commit_repo` sufficient.)
pub(crate) fn forget_live_refs(mirror: &Path) -> Result<()> {
    match fs::remove_file(mirror.join(LIVE_REFS_FILE)) {
        Ok(()) => fsutil::fsync_dir(mirror),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::io("forget live refs", e)),
    }
}

/// Whether `name` (a full ref name) is in a conservative subset of what `git check-ref-format`
/// accepts, safe to use as a path below the mirror: components of printable ASCII without
/// `~^:?*[\` or `@{`, none empty, `.`-led, `.lock`-ended, `.`-ended or longer than a file name
/// may be. Names outside the subset are left to git, which accepts or rejects them.
pub(crate) fn is_simple_ref_name(name: &str) -> bool {
    if !name.starts_with("refs/") || name.contains("..") || name.contains("@{") {
        return false;
    }
    name.split('/').all(|part| {
        !part.is_empty()
            && part.len() <= 200
            && !part.starts_with('.')
            && !part.ends_with('.')
            && !part.ends_with(".lock")
            && part != "@"
            && part
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"~^:?*[\\".contains(&b))
    })
}

/// Whether refs of this mirror live in loose files (git's `files` backend), which is what
/// [`write_loose_refs`] writes. A `reftable` mirror (a global `init.defaultRefFormat`) has its
/// own directory and is left to git.
pub(crate) fn uses_files_backend(mirror: &Path) -> bool {
    !mirror.join("reftable").exists()
}

/// One mirror's share of [`write_loose_refs`]: `(refname, sha)` pairs to write below `mirror`.
pub(crate) struct LooseRefs {
    pub mirror: PathBuf,
    pub refs: Vec<(String, String)>,
}

/// A ref file on its way into place (written to `lock`, closed: a mirror with many refs must not
/// hold a descriptor per ref).
struct Pending {
    lock: PathBuf,
    path: PathBuf,
    existed: bool,
}

/// Writes the refs of several mirrors as loose ref files; returns, per mirror, whether all its
/// refs are in place. Names must satisfy [`is_simple_ref_name`] and shas must name existing
/// objects (see the module comment); the caller holds every mirror's `ops` lock and flushes the
/// directories afterwards. A ref already holding its sha is left alone (committing a manifest
/// twice is harmless). A mirror whose writes failed has the files this call created removed
/// again, so the caller can hand its refs to `git update-ref` instead.
///
/// Each ref gets what git gives it (exclusive `<ref>.lock`, content, fsync, rename), but in
/// phases: every lock file is written, then each is fsynced, then all are renamed. The first
/// fsync's journal commit carries the data of the others (ext4 and xfs flush a transaction's
/// file data with it), so a mirror with many refs pays about one journal commit instead of one
/// per ref. Every rename still follows the fsync of its own file, the order durability needs.
pub(crate) fn write_loose_refs(batch: &[LooseRefs]) -> Vec<bool> {
    let mut pending: Vec<Vec<Pending>> = Vec::with_capacity(batch.len());
    let mut ok = vec![true; batch.len()];
    for (i, item) in batch.iter().enumerate() {
        let mut mine = Vec::new();
        for (name, sha) in &item.refs {
            match start_one(&item.mirror.join(name), &format!("{sha}\n")) {
                Ok(Some(p)) => mine.push(p),
                Ok(None) => {}
                Err(e) => {
                    warn_failed(&item.mirror, &e);
                    ok[i] = false;
                    break;
                }
            }
        }
        pending.push(mine);
    }
    for (i, mine) in pending.iter().enumerate() {
        if ok[i] {
            if let Err(e) = mine
                .iter()
                .try_for_each(|p| fs::File::open(&p.lock)?.sync_all())
            {
                warn_failed(&batch[i].mirror, &e);
                ok[i] = false;
            }
        }
    }
    let mut renamed: Vec<Vec<&Pending>> = vec![Vec::new(); batch.len()];
    for (i, mine) in pending.iter().enumerate() {
        if !ok[i] {
            continue;
        }
        for p in mine {
            if let Err(e) = fs::rename(&p.lock, &p.path) {
                warn_failed(&batch[i].mirror, &e);
                ok[i] = false;
                break;
            }
            renamed[i].push(p);
        }
    }
    for (i, mine) in pending.iter().enumerate() {
        if ok[i] {
            continue;
        }
        for p in mine {
            let _ = fs::remove_file(&p.lock);
        }
        for p in &renamed[i] {
            if !p.existed {
                let _ = fs::remove_file(&p.path);
            }
        }
        // Directories this call created and left empty go too (as git prunes them when it
        // deletes a ref); `refs/` itself stays.
        let stop = batch[i].mirror.join("refs");
        for p in mine {
            let mut dir = p.path.parent();
            while let Some(d) = dir.filter(|d| d.starts_with(&stop) && *d != stop) {
                if fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
    }
    ok
}

/// Creates `<path>.lock` exclusively (a stale or concurrent writer makes this fail instead of
/// interleaving) and writes `content` to it; `None` when the ref already holds `content`.
fn start_one(path: &Path, content: &str) -> std::io::Result<Option<Pending>> {
    let existed = match fs::read(path) {
        Ok(existing) if existing == content.as_bytes() => return Ok(None),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let dir = path.parent().expect("ref paths have a parent");
    fs::create_dir_all(dir)?;
    let mut lock_name = path.file_name().expect("ref file name").to_owned();
    lock_name.push(".lock");
    let lock = dir.join(lock_name);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)?;
    if let Err(e) = file.write_all(content.as_bytes()) {
        let _ = fs::remove_file(&lock);
        return Err(e);
    }
    Ok(Some(Pending {
        lock,
        path: path.to_path_buf(),
        existed,
    }))
}

fn warn_failed(mirror: &Path, e: &std::io::Error) {
    tracing::warn!(mirror = %mirror.display(), error = %e, "writing snapshot refs directly failed; git will");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_simple_ref_names_take_the_fast_path() {
        for good in [
            "refs/ghbs/snap/k/heads/main",
            "refs/ghbs/snap/k/heads/feature/x-1_2",
            "refs/ghbs/snap/k/tags/v1.0",
            "refs/ghbs/snap/k/pull/12/head",
        ] {
            assert!(is_simple_ref_name(good), "{good}");
        }
        for bad in [
            "heads/main",
            "refs/ghbs/snap/k/heads/../../x",
            "refs/ghbs/snap/k/heads/a..b",
            "refs/ghbs/snap/k/heads/.hidden",
            "refs/ghbs/snap/k/heads/x.lock",
            "refs/ghbs/snap/k/heads/x.",
            "refs/ghbs/snap/k/heads//x",
            "refs/ghbs/snap/k/heads/x/",
            "refs/ghbs/snap/k/heads/a b",
            "refs/ghbs/snap/k/heads/a\tb",
            "refs/ghbs/snap/k/heads/a\u{7f}b",
            "refs/ghbs/snap/k/heads/a~1",
            "refs/ghbs/snap/k/heads/a^",
            "refs/ghbs/snap/k/heads/a:b",
            "refs/ghbs/snap/k/heads/a?",
            "refs/ghbs/snap/k/heads/a*",
            "refs/ghbs/snap/k/heads/a[",
            "refs/ghbs/snap/k/heads/a\\b",
            "refs/ghbs/snap/k/heads/a@{1}",
            "refs/ghbs/snap/k/heads/@",
            "refs/ghbs/snap/k/heads/caf\u{e9}",
        ] {
            assert!(!is_simple_ref_name(bad), "{bad:?}");
        }
        assert!(!is_simple_ref_name(&format!(
            "refs/ghbs/snap/k/heads/{}",
            "x".repeat(201)
        )));
    }

    #[test]
    fn live_refs_round_trip_and_unknown_formats_read_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_live_refs(dir.path()), None);
        let refs = BTreeMap::from([
            ("refs/heads/main".to_owned(), "a".repeat(40)),
            ("refs/tags/v1".to_owned(), "b".repeat(40)),
        ]);
        write_live_refs(dir.path(), &refs).unwrap();
        assert_eq!(read_live_refs(dir.path()), Some(refs));
        write_live_refs(dir.path(), &BTreeMap::new()).unwrap();
        assert_eq!(read_live_refs(dir.path()), Some(BTreeMap::new()));
        fs::write(dir.path().join(LIVE_REFS_FILE), "# other v9\n").unwrap();
        assert_eq!(read_live_refs(dir.path()), None);
        forget_live_refs(dir.path()).unwrap();
        forget_live_refs(dir.path()).unwrap();
        assert_eq!(read_live_refs(dir.path()), None);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_failed_write_removes_what_it_created() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        let sha = "c".repeat(40);
        // `heads/a` is a file, so `heads/a/b` cannot be created below it.
        let clash = vec![
            ("refs/x/heads/a".to_owned(), sha.clone()),
            ("refs/x/heads/a/b".to_owned(), sha.clone()),
        ];
        let batch = |first: &[(String, String)]| {
            vec![
                LooseRefs {
                    mirror: one.clone(),
                    refs: first.to_vec(),
                },
                LooseRefs {
                    mirror: two.clone(),
                    refs: clash[..1].to_vec(),
                },
            ]
        };
        assert_eq!(write_loose_refs(&batch(&clash)), vec![false, true]);
        assert!(!one.join("refs/x/heads/a").exists());
        assert!(!one.join("refs/x/heads/a.lock").exists());
        assert!(one.join("refs").is_dir() && !one.join("refs/x").exists());
        assert_eq!(write_loose_refs(&batch(&clash[..1])), vec![true, true]);
        assert_eq!(write_loose_refs(&batch(&clash[..1])), vec![true, true]);
        for mirror in [&one, &two] {
            assert_eq!(
                fs::read_to_string(mirror.join("refs/x/heads/a")).unwrap(),
                format!("{sha}\n")
            );
            assert!(!mirror.join("refs/x/heads/a.lock").exists());
        }
    }
}
