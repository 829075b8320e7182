//! Run the GitHub stand-in by hand, to try the product without reaching GitHub:
//!
//! ```sh
//! cargo run -p ghbs-testkit --example standin
//! ```
//!
//! It creates user `octocat` with a token, a public repository `octocat/hello-world` (two
//! branches, a tag, an issue with a comment, a release with an asset) and a private
//! `octocat/secret`, prints the API URL and the token, and serves until interrupted. The token
//! it prints is a throwaway for this local stand-in only.
//!
//! Lines typed on its standard input change the world, to try failure paths by hand:
//! `push OWNER/NAME` (a new commit on main), `break OWNER/NAME` (its git transfers fail until
//! `heal`), `heal`, `delete OWNER/NAME`, `create OWNER/NAME` (an empty repository, a restore
//! target), `import on|off` (offer GitHub's issue import endpoint or not).

use ghbs_testkit::{Fault, FaultKind, GitHubStandIn, RepoOptions};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() {
    let gh = GitHubStandIn::start().await;
    let (_, token) = gh.add_user("octocat");
    gh.create_repo("octocat", "hello-world", RepoOptions::default());
    gh.commit(
        "octocat/hello-world",
        "main",
        &[("README.md", "Hello, world!\n")],
        "first commit",
    );
    gh.commit(
        "octocat/hello-world",
        "feature",
        &[("feature.txt", "new feature\n")],
        "feature work",
    );
    gh.create_tag("octocat/hello-world", "v1.0", "main");
    let bug = gh.create_issue(
        "octocat/hello-world",
        "Found a bug",
        "It does not say goodbye.",
    );
    gh.add_issue_comment("octocat/hello-world", bug, "Confirmed on main.");
    gh.create_release("octocat/hello-world", "v1.0", "First release");
    gh.add_release_asset(
        "octocat/hello-world",
        "v1.0",
        "hello-linux.tar.gz",
        b"pretend this is a build\n",
    );
    gh.create_repo(
        "octocat",
        "secret",
        RepoOptions {
            private: true,
            ..Default::default()
        },
    );
    gh.commit(
        "octocat/secret",
        "main",
        &[("plan.md", "world domination\n")],
        "plans",
    );
    println!("GitHub stand-in API: {}", gh.api_url());
    println!("token for octocat:   {token}");
    println!("serving until Ctrl-C; commands on stdin: push|break|delete|create OWNER/NAME, heal, import on|off");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pushes = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            line = lines.next_line() => {
                let Ok(Some(line)) = line else {
                    // No stdin (or it closed): just serve.
                    let _ = tokio::signal::ctrl_c().await;
                    break;
                };
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["push", repo] => {
                        pushes += 1;
                        let sha = gh.commit(repo, "main", &[("pushed.txt", &format!("{pushes}\n"))], "pushed");
                        println!("pushed {sha} to {repo}");
                    }
                    ["break", repo] => {
                        gh.inject(Fault::new(&format!("/git/{repo}.git/"), FaultKind::DropMidBody, u32::MAX));
                        println!("git transfers of {repo} now fail (until `heal`)");
                    }
                    ["heal"] => {
                        gh.clear_faults();
                        println!("faults cleared");
                    }
                    ["delete", repo] => {
                        gh.delete_repo(repo);
                        println!("deleted {repo}");
                    }
                    ["create", repo] => match repo.split_once('/') {
                        Some((owner, name)) => {
                            gh.create_repo(owner, name, RepoOptions::default());
                            println!("created the empty repository {repo}");
                        }
                        None => println!("create OWNER/NAME"),
                    },
                    ["import", on @ ("on" | "off")] => {
                        gh.offer_issue_import(*on == "on");
                        println!("issue import endpoint {on}");
                    }
                    [] => {}
                    _ => println!("unknown command {line:?}: push|break|delete|create OWNER/NAME, heal, import on|off"),
                }
            }
        }
    }
}
