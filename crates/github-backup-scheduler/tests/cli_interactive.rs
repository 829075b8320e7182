//! The interactive mode on a real pseudo-terminal: welcome, login prompt, the menu, a rejected
//! then accepted repository, scheduling, and exit.

mod support;

use rexpect::reader::Options;
use rexpect::session::spawn_with_options;
use support::{World, BIN};

const DOWN: &str = "\x1b[B";
const BACKSPACE: &str = "\x7f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menu_logs_in_and_schedules_a_backup() {
    let w = World::start().await;
    let mut cmd = std::process::Command::new(BIN);
    cmd.env("GHBS_CONFIG_DIR", w.config.path())
        .env("GHBS_SERVER", &w.server_url)
        .env("TERM", "xterm")
        .env_remove("GITHUB_TOKEN")
        .current_dir(w.work.path());
    let token = w.token.clone();

    // rexpect blocks; the stand-in and server keep running on the runtime's other threads.
    let transcript = tokio::task::spawn_blocking(move || -> Result<(), rexpect::error::Error> {
        let opts = Options::new()
            .timeout_ms(Some(30_000))
            .strip_ansi_escape_codes(true);
        let mut p = spawn_with_options(cmd, opts)?;
        p.exp_string("Welcome to github-backup-scheduler")?;
        p.exp_string("not logged in")?;
        p.exp_string("https://github.com/settings/tokens")?;
        p.exp_string("GitHub token:")?;
        p.send(&format!("{token}\r"))?;
        p.flush()?;
        p.exp_string("as octo")?;

        p.exp_string("What would you like to do?")?;
        p.send("\r")?; // Schedule a new backup
        p.flush()?;
        p.exp_string("Repository to back up")?;
        p.send("a/b/c\r")?;
        p.flush()?;
        p.exp_string("too many slashes")?;
        p.send(&BACKSPACE.repeat(5))?;
        p.send("octo/hello\r")?;
        p.flush()?;
        p.exp_string("How often?")?;
        p.send("\r")?; // daily
        p.flush()?;
        p.exp_string("At what time")?;
        p.send("04:00\r")?;
        p.flush()?;
        p.exp_string("Back up octo/hello daily at 04:00")?;
        p.send("y\r")?;
        p.flush()?;
        p.exp_string("Scheduled job")?;

        p.exp_string("What would you like to do?")?;
        p.send(&DOWN.repeat(5))?;
        p.send("\r")?; // Exit
        p.flush()?;
        p.exp_eof()?;
        let status = p.process.wait()?;
        assert!(
            matches!(status, rexpect::process::wait::WaitStatus::Exited(_, 0)),
            "{status:?}"
        );
        Ok(())
    })
    .await
    .unwrap();
    transcript.unwrap_or_else(|e| panic!("interactive session: {e}\n{}", w.server_log()));

    let jobs = w.ok(&["jobs", "--json"]).await.json();
    assert_eq!(jobs["jobs"][0]["target"], "octo/hello");
    assert_eq!(jobs["jobs"][0]["schedule"], "daily at 04:00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menu_downloads_an_account_backup_as_verified_bundles() {
    let w = World::start().await;
    w.login().await;
    let job = w.ok(&["schedule", "octo", "--json"]).await.json()["id"].to_string();
    w.ok(&["run", &job, "--wait"]).await;
    let mut cmd = std::process::Command::new(BIN);
    cmd.env("GHBS_CONFIG_DIR", w.config.path())
        .env("GHBS_SERVER", &w.server_url)
        .env("TERM", "xterm")
        .env_remove("GITHUB_TOKEN")
        .current_dir(w.work.path());

    let transcript = tokio::task::spawn_blocking(move || -> Result<(), rexpect::error::Error> {
        let opts = Options::new()
            .timeout_ms(Some(30_000))
            .strip_ansi_escape_codes(true);
        let mut p = spawn_with_options(cmd, opts)?;
        p.exp_string("What would you like to do?")?;
        p.send(&DOWN.repeat(2))?;
        p.send("\r")?; // Download a backup
        p.flush()?;
        p.exp_string("Download a backup of which job?")?;
        p.send("\r")?;
        p.flush()?;
        p.exp_string("Which backup?")?;
        p.send("\r")?;
        p.flush()?;
        p.exp_string("one tar holding a git bundle per repository")?;
        p.send("\r")?; // bundle
        p.flush()?;
        p.exp_string("one verified git bundle per repository: octo/hello")?;
        p.exp_string("What would you like to do?")?;
        p.send(&DOWN.repeat(5))?;
        p.send("\r")?; // Exit
        p.flush()?;
        p.exp_eof()?;
        Ok(())
    })
    .await
    .unwrap();
    transcript.unwrap_or_else(|e| panic!("interactive session: {e}\n{}", w.server_log()));
    let saved: Vec<String> = std::fs::read_dir(w.work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        saved.iter().any(|n| n.ends_with(".bundles.tar")),
        "{saved:?}"
    );
    assert!(!saved.iter().any(|n| n.ends_with(".part")), "{saved:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menu_downloads_a_backup_as_a_site() {
    let w = World::start().await;
    w.login().await;
    let job = w.ok(&["schedule", "octo/hello", "--json"]).await.json()["id"].to_string();
    w.ok(&["run", &job, "--wait"]).await;
    let mut cmd = std::process::Command::new(BIN);
    cmd.env("GHBS_CONFIG_DIR", w.config.path())
        .env("GHBS_SERVER", &w.server_url)
        .env("TERM", "xterm")
        .env_remove("GITHUB_TOKEN")
        .current_dir(w.work.path());

    let transcript = tokio::task::spawn_blocking(move || -> Result<(), rexpect::error::Error> {
        let opts = Options::new()
            .timeout_ms(Some(30_000))
            .strip_ansi_escape_codes(true);
        let mut p = spawn_with_options(cmd, opts)?;
        p.exp_string("What would you like to do?")?;
        p.send(&DOWN.repeat(2))?;
        p.send("\r")?; // Download a backup
        p.flush()?;
        p.exp_string("Download a backup of which job?")?;
        p.send("\r")?;
        p.flush()?;
        p.exp_string("Which backup?")?;
        p.send("\r")?;
        p.flush()?;
        p.exp_string("site (a web site to read offline")?;
        p.send(&DOWN.repeat(3))?;
        p.send("\r")?; // site
        p.flush()?;
        p.exp_string("index.html in any browser")?;
        p.exp_string("What would you like to do?")?;
        p.send(&DOWN.repeat(5))?;
        p.send("\r")?; // Exit
        p.flush()?;
        p.exp_eof()?;
        Ok(())
    })
    .await
    .unwrap();
    transcript.unwrap_or_else(|e| panic!("interactive session: {e}\n{}", w.server_log()));
    let saved: Vec<String> = std::fs::read_dir(w.work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let site = saved
        .iter()
        .find(|n| n.ends_with(".site.zip"))
        .unwrap_or_else(|| panic!("no site in {saved:?}"));
    assert!(std::fs::read(w.work.path().join(site))
        .unwrap()
        .starts_with(b"PK"));
}
