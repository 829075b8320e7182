//! Running the git CLI hermetically (no system or user config, a private HOME) and feeding
//! `git fast-import`, which writes thousands of commits in one process instead of one process
//! per commit.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

/// Identity used for every commit the stand-in makes.
pub(crate) const IDENT: &str = "Stand-in <stand-in@example.invalid>";

/// A HOME for git that no test shares with the developer's real configuration.
fn clean_home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("ghbs-git-home-")
            .tempdir()
            .expect("create git HOME")
    })
    .path()
}

/// A `git` command with a clean environment: only PATH survives, HOME is a private temp dir,
/// system config is ignored, prompts are disabled, and a committer identity is set.
pub(crate) fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env("HOME", clean_home())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .args([
            "-c",
            "user.name=Stand-in",
            "-c",
            "user.email=stand-in@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .envs(env.iter().copied());
    cmd
}

/// Writes `bundle` to `dir/NAME.bundle` and `git clone --mirror`s it to `dir/NAME.git`; returns
/// the clone. Cloning checks every object, so this also verifies the bundle.
pub fn clone_bundle(dir: &Path, name: &str, bundle: &[u8]) -> std::path::PathBuf {
    let file = dir.join(format!("{name}.bundle"));
    std::fs::write(&file, bundle).expect("write bundle");
    let clone = dir.join(format!("{name}.git"));
    git(
        dir,
        &[
            "clone",
            "--mirror",
            file.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    clone
}

/// Branches and tags of the repository at `dir`, each with the object it points at.
pub fn refs_of(dir: &Path) -> std::collections::BTreeMap<String, String> {
    git(
        dir,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads",
            "refs/tags",
        ],
    )
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(r, s)| (r.to_owned(), s.to_owned()))
    .collect()
}

/// Runs git in `dir` with a clean environment and returns its stdout without the trailing
/// newline. Panics with git's stderr on failure: it is meant for tests, where that is the most
/// useful outcome.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_with_env(dir, args, &[])
}

/// [`git`] with extra environment variables (e.g. `GIT_ASKPASS` and the variable it reads).
pub fn git_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = command(dir, args, env)
        .output()
        .unwrap_or_else(|e| panic!("cannot run git {args:?}: {e}"));
    if !out.status.success() {
        panic!(
            "git {args:?} in {} failed ({}): {}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

/// Runs git and returns stdout if it succeeded, `None` otherwise (for probes like `rev-parse`).
pub(crate) fn git_try(dir: &Path, args: &[&str]) -> Option<String> {
    let out = command(dir, args, &[])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

/// Writes a bare repository by hand: much faster than `git init` when a test creates hundreds.
pub(crate) fn init_bare(path: &Path, default_branch: &str) {
    for d in [
        "objects/info",
        "objects/pack",
        "refs/heads",
        "refs/tags",
        "info",
    ] {
        std::fs::create_dir_all(path.join(d)).expect("create bare repo dirs");
    }
    std::fs::write(
        path.join("HEAD"),
        format!("ref: refs/heads/{default_branch}\n"),
    )
    .expect("write HEAD");
    let config = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n\
                  [http]\n\treceivepack = true\n[uploadpack]\n\tallowFilter = true\n";
    std::fs::write(path.join("config"), config).expect("write config");
}

/// A running `git fast-import` appending commits to one branch.
pub(crate) struct FastImport {
    child: Child,
    stdin: std::io::BufWriter<ChildStdin>,
    branch_ref: String,
    parent: Option<String>,
    when: i64,
    dir: std::path::PathBuf,
}

impl FastImport {
    /// Starts an import onto `branch_ref`, whose first new commit gets `parent` (if any).
    pub fn start(bare: &Path, branch_ref: &str, parent: Option<String>) -> FastImport {
        let mut child = command(bare, &["fast-import", "--quiet", "--done"], &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn git fast-import");
        let stdin = std::io::BufWriter::with_capacity(
            1 << 20,
            child.stdin.take().expect("fast-import stdin"),
        );
        FastImport {
            child,
            stdin,
            branch_ref: branch_ref.to_owned(),
            parent,
            when: chrono::Utc::now().timestamp(),
            dir: bare.to_owned(),
        }
    }

    /// Adds a commit that writes `files` (path, content) on top of the previous tree.
    pub fn commit(&mut self, message: &str, files: &[(&str, &[u8])]) {
        let s = &mut self.stdin;
        let ok = (|| -> std::io::Result<()> {
            writeln!(s, "commit {}", self.branch_ref)?;
            writeln!(s, "committer {IDENT} {} +0000", self.when)?;
            writeln!(s, "data {}", message.len())?;
            s.write_all(message.as_bytes())?;
            writeln!(s)?;
            if let Some(p) = self.parent.take() {
                writeln!(s, "from {p}")?;
            }
            for (path, content) in files {
                writeln!(s, "M 100644 inline {path}")?;
                writeln!(s, "data {}", content.len())?;
                s.write_all(content)?;
                writeln!(s)?;
            }
            writeln!(s)
        })();
        if let Err(e) = ok {
            let err = self.stderr_now();
            panic!("git fast-import failed while writing ({e}): {err}");
        }
    }

    fn stderr_now(&mut self) -> String {
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }

    /// Ends the import and returns the branch's new head.
    pub fn finish(mut self) -> String {
        let written = writeln!(self.stdin, "done").and_then(|_| self.stdin.flush());
        let FastImport {
            mut child,
            stdin,
            branch_ref,
            dir,
            ..
        } = self;
        drop(stdin);
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = child.wait().expect("wait for git fast-import");
        if written.is_err() || !status.success() {
            panic!("git fast-import failed ({status}): {err}");
        }
        git(&dir, &["rev-parse", &branch_ref])
    }
}
