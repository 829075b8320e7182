//! Run the GitHub stand-in by hand, to try the product without reaching GitHub:
//!
//! ```sh
//! cargo run -p ghbs-testkit --example standin
//! ```
//!
//! It creates user `octocat` with a token, a public repository `octocat/hello-world` (two
//! branches, a tag) and a private `octocat/secret`, prints the API URL and the token, and serves
//! until interrupted. The token it prints is a throwaway for this local stand-in only.

use ghbs_testkit::{GitHubStandIn, RepoOptions};

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
    gh.create_issue(
        "octocat/hello-world",
        "Found a bug",
        "It does not say goodbye.",
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
    println!("serving until Ctrl-C");
    let _ = tokio::signal::ctrl_c().await;
}
