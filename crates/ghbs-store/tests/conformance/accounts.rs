//! Users and API keys.

use std::sync::Arc;

use ghbs_store::{Store, StoreError};
use ghbs_wire::RunStatus;

use super::{new_job, outcome, t, user};

pub async fn users_upsert(store: Arc<dyn Store>) {
    let first = store
        .upsert_user(42, "octocat", b"token-one", t(0))
        .await
        .unwrap();
    assert_eq!(first.github_id, 42);
    assert_eq!(first.login, "octocat");
    assert_eq!(first.token_sealed, b"token-one");
    assert_eq!(first.created_at, t(0));

    // GitHub rejects the token during a run: the user's jobs are flagged.
    store
        .create_job(new_job(first.id, "octo/hello", t(0)))
        .await
        .unwrap();
    let claim = store
        .claim_due("node", t(1), t(61), 10)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let mut end = outcome(RunStatus::Failed, t(86_400));
    end.needs_login = true;
    assert!(store
        .finish_run(claim.job.id, claim.lease_token, claim.run.id, end, t(2))
        .await
        .unwrap());
    assert!(
        store
            .get_job(first.id, claim.job.id)
            .await
            .unwrap()
            .needs_login
    );

    // Same GitHub id again: same user, new login and token, creation time kept, flag cleared.
    let again = store
        .upsert_user(42, "octocat-renamed", b"token-two", t(100))
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.login, "octocat-renamed");
    assert_eq!(again.token_sealed, b"token-two");
    assert_eq!(again.created_at, t(0));
    assert_eq!(store.get_user(first.id).await.unwrap(), again);
    assert!(
        !store
            .get_job(first.id, claim.job.id)
            .await
            .unwrap()
            .needs_login
    );

    let other = store.upsert_user(43, "hubot", b"x", t(0)).await.unwrap();
    assert_ne!(other.id, first.id);
    assert!(matches!(
        store.get_user(other.id + 1000).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn api_keys(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let bob = user(&store, 2).await;
    let key = store
        .create_api_key(alice.id, "hash-a", Some("laptop"), t(10))
        .await
        .unwrap();
    assert_eq!(key.user_id, alice.id);
    assert_eq!(key.label.as_deref(), Some("laptop"));
    assert_eq!(key.created_at, t(10));
    assert_eq!(key.last_used_at, None);

    let (found, owner) = store.authenticate_key("hash-a", t(20)).await.unwrap();
    assert_eq!(found.id, key.id);
    assert_eq!(found.last_used_at, Some(t(20)));
    assert_eq!(owner, alice);
    assert!(matches!(
        store.authenticate_key("hash-b", t(20)).await,
        Err(StoreError::NotFound)
    ));

    assert!(matches!(
        store.create_api_key(bob.id, "hash-a", None, t(10)).await,
        Err(StoreError::Conflict { .. })
    ));
    let second = store
        .create_api_key(alice.id, "hash-c", None, t(11))
        .await
        .unwrap();
    let listed = store.list_api_keys(alice.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.id).collect::<Vec<_>>(),
        vec![key.id, second.id]
    );
    assert_eq!(listed[0].last_used_at, Some(t(20)));
    assert!(store.list_api_keys(bob.id).await.unwrap().is_empty());

    // Someone else's key cannot be revoked, and answers like a missing one.
    assert!(matches!(
        store.revoke_api_key(bob.id, key.id).await,
        Err(StoreError::NotFound)
    ));
    store.revoke_api_key(alice.id, key.id).await.unwrap();
    assert!(matches!(
        store.authenticate_key("hash-a", t(30)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.revoke_api_key(alice.id, key.id).await,
        Err(StoreError::NotFound)
    ));
    let listed = store.list_api_keys(alice.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.id).collect::<Vec<_>>(),
        vec![second.id]
    );
    assert!(store.authenticate_key("hash-c", t(30)).await.is_ok());
}
