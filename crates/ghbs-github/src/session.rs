//! [`Session`]: the calls one run makes with one token.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ghbs_core::{FailureKind, Secret};
use http::HeaderValue;
use serde::de::DeserializeOwned;

use crate::cache::ValidatorCache;
use crate::client::GitHub;
use crate::error::GitHubError;
use crate::link::{self, display_path, next_page_number, per_page_of, valid_name, with_per_page};
use crate::progress::Progress;
use crate::ratelimit::TokenState;
use crate::request::Page;
use crate::types::{Counters, Fetched, GhRepo, GhUser, RawRepo};

/// A handle for one token and one run. Cheap to clone; clones share the counters, so a run can
/// fetch several things concurrently and still report one total.
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<SessionInner>,
}

pub(crate) struct SessionInner {
    pub(crate) gh: GitHub,
    /// `Bearer <token>`, marked sensitive so that no `Debug` of a request shows it. `None` when
    /// the token has bytes that cannot go into a header.
    pub(crate) auth: Option<HeaderValue>,
    pub(crate) state: Arc<TokenState>,
    pub(crate) cache: Arc<dyn ValidatorCache>,
    pub(crate) progress: Arc<dyn Progress>,
    counted: AtomicU64,
    conditional_hits: AtomicU64,
    me: tokio::sync::OnceCell<GhUser>,
}

impl SessionInner {
    pub(crate) fn count_request(&self) {
        self.counted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_hit(&self) {
        self.conditional_hits.fetch_add(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("api_url", &self.inner.gh.api_url())
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(
        gh: GitHub,
        token: Secret,
        state: Arc<TokenState>,
        cache: Arc<dyn ValidatorCache>,
        progress: Arc<dyn Progress>,
    ) -> Session {
        let auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .ok()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        Session {
            inner: Arc::new(SessionInner {
                gh,
                auth,
                state,
                cache,
                progress,
                counted: AtomicU64::new(0),
                conditional_hits: AtomicU64::new(0),
                me: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// The account the token belongs to (`GET /user`); also how a token is checked at login.
    /// Asked once per session.
    pub async fn user(&self) -> Result<GhUser, GitHubError> {
        self.inner
            .me
            .get_or_try_init(|| async {
                let page = self.fetch(self.url("/user")?).await?;
                self.decode::<GhUser>(&page)
            })
            .await
            .cloned()
    }

    /// One repository. A renamed or transferred repository is followed: `value` is the repository
    /// under its new name and `moved_to` says that name.
    pub async fn repo(&self, owner: &str, name: &str) -> Result<Fetched<GhRepo>, GitHubError> {
        check_name(owner, "owner")?;
        check_name(name, "repository name")?;
        let asked = format!("{owner}/{name}");
        let page = self
            .fetch(self.url(&format!("/repos/{owner}/{name}"))?)
            .await
            .map_err(|e| match e.kind {
                FailureKind::NotFound => GitHubError::new(
                    FailureKind::NotFound,
                    e.status,
                    format!(
                        "the repository {asked} was not found on GitHub: it was deleted, made \
                         private, or the token cannot see it (earlier backups are kept)"
                    ),
                ),
                _ => e,
            })?;
        let repo: GhRepo = self.decode::<RawRepo>(&page)?.into();
        let moved_to =
            (!repo.full_name.eq_ignore_ascii_case(&asked)).then(|| repo.full_name.clone());
        Ok(Fetched {
            value: repo,
            not_modified: page.not_modified,
            moved_to,
        })
    }

    /// Every repository of an account that the token can see. For the token's own account:
    /// `/user/repos?affiliation=owner` (which includes private ones); otherwise the account is
    /// tried as an organization, then as a user.
    pub async fn account_repos(&self, owner: &str) -> Result<Vec<GhRepo>, GitHubError> {
        check_name(owner, "account")?;
        let me = self.user().await?;
        let listed = if me.login.eq_ignore_ascii_case(owner) {
            self.get_json_pages("/user/repos?affiliation=owner").await?
        } else {
            match self
                .get_json_pages(&format!("/orgs/{owner}/repos?type=all"))
                .await
            {
                Err(e) if matches!(e.kind, FailureKind::NotFound) => self
                    .get_json_pages(&format!("/users/{owner}/repos?type=owner"))
                    .await
                    .map_err(|e| match e.kind {
                        FailureKind::NotFound => GitHubError::new(
                            FailureKind::NotFound,
                            e.status,
                            format!(
                                "the GitHub account {owner} was not found, or the token cannot \
                                 see it"
                            ),
                        ),
                        _ => e,
                    })?,
                other => other?,
            }
        };
        let mut repos = Vec::with_capacity(listed.value.len());
        for v in listed.value {
            let repo: GhRepo = serde_json::from_value::<RawRepo>(v)
                .map_err(|e| unreadable(&format!("the repositories of {owner}"), &e))?
                .into();
            // `affiliation=owner` already means this on GitHub; some servers also list the
            // repositories of organizations the user belongs to, which are not this account's.
            if repo.owner.eq_ignore_ascii_case(owner) {
                repos.push(repo);
            }
        }
        Ok(repos)
    }

    /// A paginated list: asks for 100 items a page and follows `Link: rel="next"`, each page
    /// conditional on its own cached validators.
    pub async fn get_json_pages(
        &self,
        path_and_query: &str,
    ) -> Result<Fetched<Vec<serde_json::Value>>, GitHubError> {
        let mut url = with_per_page(self.url(path_and_query)?);
        let mut items = Vec::new();
        let mut all_not_modified = true;
        let mut seen = HashSet::new();
        loop {
            if !seen.insert(url.as_str().to_owned()) {
                break; // a next link pointing back: stop rather than loop
            }
            let page = self.fetch(url).await?;
            let batch: Vec<serde_json::Value> = self.decode(&page)?;
            all_not_modified &= page.not_modified;
            let full = batch.len() >= per_page_of(&page.url);
            items.extend(batch);
            url = match page.next {
                Some(next) => next,
                // A 304 may come without the Link header; a full cached page means there can be
                // a next one, which page numbers reach.
                None if page.not_modified && !page.link_present && full => {
                    next_page_number(&page.url)
                }
                None => break,
            };
        }
        Ok(Fetched {
            value: items,
            not_modified: all_not_modified,
            moved_to: None,
        })
    }

    /// One JSON document.
    pub async fn get_json(
        &self,
        path_and_query: &str,
    ) -> Result<Fetched<serde_json::Value>, GitHubError> {
        let page = self.fetch(self.url(path_and_query)?).await?;
        Ok(Fetched {
            value: self.decode(&page)?,
            not_modified: page.not_modified,
            moved_to: None,
        })
    }

    /// Requests spent so far by this session (and its clones).
    pub fn counters(&self) -> Counters {
        Counters {
            counted: self.inner.counted.load(Ordering::Relaxed),
            conditional_hits: self.inner.conditional_hits.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn url(&self, path_and_query: &str) -> Result<reqwest::Url, GitHubError> {
        link::join(&self.inner.gh.inner.base, path_and_query).ok_or_else(|| {
            GitHubError::permanent(
                None,
                format!("{path_and_query:?} is not a path under the GitHub API"),
            )
        })
    }

    fn decode<T: DeserializeOwned>(&self, page: &Page) -> Result<T, GitHubError> {
        serde_json::from_slice(&page.body)
            .map_err(|e| unreadable(&display_path(&self.inner.gh.inner.base, &page.url), &e))
    }
}

/// GitHub answered JSON of an unexpected shape: an API change or a broken proxy. Retrying later
/// may help (a proxy), so it is transient rather than permanent.
fn unreadable(what: &str, e: &serde_json::Error) -> GitHubError {
    GitHubError::new(
        FailureKind::Transient,
        None,
        format!(
            "GitHub's answer for {what} had an unexpected shape ({e}); will retry at the next run"
        ),
    )
}

fn check_name(s: &str, what: &str) -> Result<(), GitHubError> {
    if valid_name(s) {
        Ok(())
    } else {
        Err(GitHubError::permanent(
            None,
            format!("{s:?} is not a valid GitHub {what}"),
        ))
    }
}
