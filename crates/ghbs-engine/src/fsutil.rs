//! File-system helpers: name validation, crash-safe writes (temp + fsync + rename + fsync dir),
//! disk usage and the clean-up of what a killed git leaves behind. All blocking; callers run them
//! on `spawn_blocking` when they may take a while.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{EngineError, Result};

/// Mirror keys name directories: only `[a-z0-9_-]`, never a path from user input.
pub(crate) fn validate_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 100
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(EngineError::permanent(format!(
            "invalid mirror key {key:?}: only [a-z0-9_-] allowed"
        )))
    }
}

/// Snapshot keys become ref path components and file names: `[A-Za-z0-9-]` (a uuid fits).
pub(crate) fn validate_snapshot_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(EngineError::permanent(format!(
            "invalid snapshot key {key:?}"
        )))
    }
}

/// Flushes a directory entry change (create, rename, unlink) to disk.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| EngineError::io(format!("fsync {}", dir.display()), e))
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the complete new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| EngineError::permanent("file without parent directory"))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", uuid::Uuid::new_v4()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(EngineError::io(format!("write {}", path.display()), e));
    }
    fsync_dir(dir)
}

/// Moves a finished file into place (same file system) and makes the rename durable.
pub(crate) fn publish(tmp: &Path, dest: &Path) -> Result<()> {
    fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| EngineError::io("fsync artifact", e))?;
    fs::rename(tmp, dest)
        .map_err(|e| EngineError::io(format!("rename into {}", dest.display()), e))?;
    if let Some(dir) = dest.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// (size, SHA-256) of a file, read once in 1 MiB pieces.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<(u64, [u8; 32])> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hasher.finalize().into()))
}

/// Apparent size of every regular file under `path` (0 when it does not exist).
pub(crate) fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries.flatten().map(|e| tree_size(&e.path())).sum()
}

/// fsyncs every directory under `root` (inclusive), then the directories above it up to `stop`
/// (inclusive): what makes renames into, and the creation of, those directories survive a power
/// cut. File contents are not flushed here (git already fsynced the files it wrote).
pub(crate) fn fsync_dirs_and_parents(root: &Path, stop: &Path) -> Result<()> {
    fn walk(dir: &Path) -> std::io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                walk(&entry.path())?;
            }
        }
        fs::File::open(dir)?.sync_all()
    }
    if root.is_dir() {
        walk(root).map_err(|e| EngineError::io(format!("fsync {}", root.display()), e))?;
    }
    let mut dir: Option<&Path> = root.parent();
    while let Some(d) = dir {
        if d.exists() {
            fsync_dir(d)?;
        }
        if d == stop {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

/// Removes what a git process killed mid-way leaves in a mirror: `*.lock` files (refs, packed-refs,
/// config, shallow) and half-written `tmp_*` packs, when they are older than `before` (the start
/// of the current operation). Callers hold the mirror's lock, so no live git of ours can own them;
/// git's own writes are atomic (lock file + rename), which is why removing leftovers is enough.
pub(crate) fn clean_stale(mirror: &Path, before: SystemTime) -> Vec<PathBuf> {
    fn stale(path: &Path, before: SystemTime) -> bool {
        fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .map(|t| t <= before)
            .unwrap_or(false)
    }
    fn walk_locks(dir: &Path, before: SystemTime, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                walk_locks(&path, before, out);
            } else if path.extension().is_some_and(|e| e == "lock") && stale(&path, before) {
                out.push(path);
            }
        }
    }
    let mut found = Vec::new();
    // Top level (packed-refs.lock, config.lock, HEAD.lock, shallow.lock) and the refs tree.
    if let Ok(entries) = fs::read_dir(mirror) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "lock") && stale(&path, before) {
                found.push(path);
            }
        }
    }
    walk_locks(&mirror.join("refs"), before, &mut found);
    for sub in ["objects/pack", "objects/info", "objects"] {
        if let Ok(entries) = fs::read_dir(mirror.join(sub)) {
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let leftover = name.starts_with("tmp_")
                    || name.starts_with(".tmp-")
                    || name.ends_with(".lock");
                if leftover && entry.file_type().is_ok_and(|t| t.is_file()) && stale(&path, before)
                {
                    found.push(path);
                }
            }
        }
    }
    found.retain(|p| fs::remove_file(p).is_ok());
    found
}

/// Sum of the sizes of `objects/pack/*.pack` files, keyed by name (for bytes-fetched accounting).
pub(crate) fn pack_sizes(mirror: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    if let Ok(entries) = fs::read_dir(mirror.join("objects/pack")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".pack") && !name.starts_with("tmp_") {
                if let Ok(meta) = entry.metadata() {
                    out.insert(name, meta.len());
                }
            }
        }
    }
    out
}

/// Removes a directory so that it disappears at once: rename into `trash` first, then delete.
pub(crate) fn remove_dir_atomic(dir: &Path, trash: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let target = trash.join(format!("trash-{}", uuid::Uuid::new_v4()));
    fs::rename(dir, &target)
        .map_err(|e| EngineError::io(format!("remove {}", dir.display()), e))?;
    if let Some(parent) = dir.parent() {
        fsync_dir(parent)?;
    }
    fs::remove_dir_all(&target).map_err(|e| EngineError::io("delete removed directory", e))
}

/// Runs a blocking closure off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::permanent(format!("background task failed: {e}")))?
}

/// Processes other than this one that work inside `dir`: their working directory is in it, or
/// an argument names it (`git -C dir`, and the wrapper git runs under). Linux `/proc`; other
/// systems (or processes we may not inspect) report nothing.
pub(crate) fn processes_using(dir: &Path) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let needle = dir.as_os_str().as_encoded_bytes();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let proc_dir = entry.path();
        let in_dir = fs::read_link(proc_dir.join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir));
        let named = fs::read(proc_dir.join("cmdline")).is_ok_and(|cmdline| {
            cmdline.split(|b| *b == 0).any(|arg| {
                arg.starts_with(needle) && matches!(arg.get(needle.len()), None | Some(b'/'))
            })
        });
        if in_dir || named {
            found.push(pid);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert!(validate_key("r42").is_ok());
        assert!(validate_key("a_b-c").is_ok());
        for bad in ["", "../x", "R1", "a/b", "a.git", "a b"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
        assert!(validate_snapshot_key(&uuid::Uuid::new_v4().to_string()).is_ok());
        assert!(validate_snapshot_key("a/../b").is_err());
    }

    #[test]
    fn write_atomic_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }

    #[test]
    fn processes_using_finds_a_child_working_in_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(dir.path()).unwrap();
        assert!(super::processes_using(&dir).is_empty());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(&dir)
            .spawn()
            .unwrap();
        let found = super::processes_using(&dir);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, vec![child.id()]);
        assert!(super::processes_using(&dir).is_empty());
    }
}
