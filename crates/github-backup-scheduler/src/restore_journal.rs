//! The client-side journal of a metadata restore: what was already created in the target, so that
//! a rerun of an interrupted restore continues where it stopped and creates nothing twice.
//!
//! One file per target and snapshot, `restores/{key}.jsonl` in the CLI's configuration folder
//! (next to `config.toml`), where `key` is the SHA-256 of the target's API URL, `owner/name` and
//! the snapshot id. Each line is one step done, `{"step": "issue:7", "value": 7}`, appended and
//! flushed to disk right after GitHub accepted the write, so that at most the one write in flight
//! when the process died is unrecorded (a rerun checks that one against the target). A torn last
//! line is ignored. The file holds no secret (ids and numbers only).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::exit::{CliError, CliResult};

pub struct Journal {
    path: PathBuf,
    done: HashMap<String, Value>,
    file: Option<File>,
    /// The file ends in a torn line: the next record starts on a new line.
    torn: bool,
}

impl Journal {
    /// Where the journal of this restore lives (whether or not it exists).
    pub fn path_for(config_dir: &Path, api_url: &str, target: &str, snapshot: i64) -> PathBuf {
        let key = hex::encode(Sha256::digest(
            format!("{api_url}\n{}\n{snapshot}", target.to_lowercase()).as_bytes(),
        ));
        config_dir.join("restores").join(format!("{key}.jsonl"))
    }

    /// Reads the journal at `path` (none yet: empty).
    pub fn open(path: PathBuf) -> CliResult<Journal> {
        let mut done = HashMap::new();
        let mut torn = false;
        match File::open(&path) {
            Ok(f) => {
                let len = f.metadata()?.len();
                if len > 0 {
                    use std::io::{Read, Seek, SeekFrom};
                    let mut last = [0u8; 1];
                    let mut g = &f;
                    g.seek(SeekFrom::Start(len - 1))?;
                    g.read_exact(&mut last)?;
                    g.seek(SeekFrom::Start(0))?;
                    torn = last[0] != b'\n';
                }
                for line in BufReader::new(f).lines() {
                    let line = line?;
                    // A line cut by a crash is not a step done.
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if let Some(step) = v["step"].as_str() {
                            done.insert(step.to_owned(), v["value"].clone());
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(CliError::failed(format!(
                    "cannot read the restore journal {}: {e}",
                    path.display()
                )))
            }
        }
        Ok(Journal {
            path,
            done,
            file: None,
            torn,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Nothing recorded: a fresh restore.
    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    pub fn len(&self) -> usize {
        self.done.len()
    }

    pub fn get(&self, step: &str) -> Option<&Value> {
        self.done.get(step)
    }

    pub fn has(&self, step: &str) -> bool {
        self.done.contains_key(step)
    }

    /// Records a step as done, on disk before returning.
    pub fn record(&mut self, step: &str, value: Value) -> CliResult {
        let fail = |e: std::io::Error, path: &Path| {
            CliError::failed(format!(
                "cannot write the restore journal {}: {e}",
                path.display()
            ))
        };
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| fail(e, &self.path))?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| fail(e, &self.path))?;
            self.file = Some(f);
        }
        let mut line = if std::mem::take(&mut self.torn) {
            "\n".to_owned()
        } else {
            String::new()
        };
        line.push_str(&json!({ "step": step, "value": value }).to_string());
        line.push('\n');
        let f = self.file.as_mut().expect("opened above");
        // A previous torn line (crash mid-write) must not swallow this one.
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(|e| fail(e, &self.path))?;
        self.done.insert(step.to_owned(), value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_survive_a_reopen_and_a_torn_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = Journal::path_for(dir.path(), "https://api.github.com", "O/R", 3);
        assert_eq!(
            path,
            Journal::path_for(dir.path(), "https://api.github.com", "o/r", 3)
        );
        assert_ne!(
            path,
            Journal::path_for(dir.path(), "https://api.github.com", "o/r", 4)
        );
        let mut j = Journal::open(path.clone()).unwrap();
        assert!(j.is_empty());
        j.record("issue:1", json!(1)).unwrap();
        j.record("label:bug", Value::Null).unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"step\": \"issue:2\", \"val").unwrap();
        drop(f);
        let mut j = Journal::open(path.clone()).unwrap();
        assert_eq!(j.len(), 2);
        j.record("issue:3", json!(3)).unwrap();
        let j = Journal::open(path).unwrap();
        assert_eq!(j.len(), 3);
        assert_eq!(j.get("issue:1"), Some(&json!(1)));
        assert!(j.has("label:bug") && !j.has("issue:2"));
    }
}
