//! Scoped, expiring keys with a cap per user, and the audit trail.

use std::sync::Arc;

use ghbs_store::{NewApiKey, NewAuditEntry, Store, StoreError};

use super::{t, user};

fn key<'a>(user_id: i64, hash: &'a str, now_secs: i64, max_live: i64) -> NewApiKey<'a> {
    NewApiKey {
        user_id,
        key_hash: hash,
        label: Some("script"),
        read_only: false,
        expires_at: None,
        now: t(now_secs),
        max_live,
    }
}

pub async fn scoped_keys_and_cap(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let bob = user(&store, 2).await;
    let ro = store
        .create_scoped_api_key(NewApiKey {
            read_only: true,
            expires_at: Some(t(100)),
            ..key(alice.id, "h-ro", 0, 3)
        })
        .await
        .unwrap();
    assert!(ro.read_only);
    assert_eq!(ro.expires_at, Some(t(100)));
    let (found, _) = store.authenticate_key("h-ro", t(1)).await.unwrap();
    assert!(found.read_only);
    assert_eq!(found.expires_at, Some(t(100)));

    store
        .create_scoped_api_key(key(alice.id, "h-2", 0, 3))
        .await
        .unwrap();
    let third = store
        .create_scoped_api_key(key(alice.id, "h-3", 0, 3))
        .await
        .unwrap();
    assert!(!third.read_only);
    assert_eq!(third.expires_at, None);
    // The cap counts live keys only; Bob's keys are his own.
    let err = store
        .create_scoped_api_key(key(alice.id, "h-4", 0, 3))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    store
        .create_scoped_api_key(key(bob.id, "h-bob", 0, 3))
        .await
        .unwrap();
    // A revoked key frees a place…
    store.revoke_api_key(alice.id, third.id).await.unwrap();
    store
        .create_scoped_api_key(key(alice.id, "h-4", 0, 3))
        .await
        .unwrap();
    // …and so does an expired one (the read-only key expired at t(100)).
    assert!(store
        .create_scoped_api_key(key(alice.id, "h-5", 50, 3))
        .await
        .is_err());
    store
        .create_scoped_api_key(key(alice.id, "h-5", 100, 3))
        .await
        .unwrap();
    // Same hash twice is still a conflict, and nothing was stored for the refused ones.
    assert_eq!(store.list_api_keys(alice.id).await.unwrap().len(), 4);
}

fn entry(user_id: i64, at: i64, action: &str) -> NewAuditEntry {
    NewAuditEntry {
        user_id,
        at: t(at),
        action: action.into(),
        key_id: Some(7),
        client_addr: Some("192.0.2.1".into()),
        job_id: Some(3),
        detail: serde_json::json!({"purge": true}),
    }
}

pub async fn audit_trail(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let bob = user(&store, 2).await;
    for (i, action) in ["login", "job.create", "job.delete"].iter().enumerate() {
        store
            .record_audit(&entry(alice.id, i as i64 * 10, action))
            .await
            .unwrap();
    }
    store
        .record_audit(&entry(bob.id, 5, "login"))
        .await
        .unwrap();
    let all = store.list_audit(alice.id, None, 100).await.unwrap();
    let actions: Vec<_> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["job.delete", "job.create", "login"]);
    assert!(all.iter().all(|e| e.user_id == alice.id));
    let newest = &all[0];
    assert_eq!(newest.at, t(20));
    assert_eq!(newest.key_id, Some(7));
    assert_eq!(newest.client_addr.as_deref(), Some("192.0.2.1"));
    assert_eq!(newest.job_id, Some(3));
    assert_eq!(newest.detail, serde_json::json!({"purge": true}));
    // Paging: the page after the newest.
    let page = store
        .list_audit(alice.id, Some(newest.id), 1)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].action, "job.create");
    // Pruning removes old entries of every user, and only those.
    assert_eq!(store.prune_audit(t(10)).await.unwrap(), 2);
    let left = store.list_audit(alice.id, None, 100).await.unwrap();
    assert_eq!(left.len(), 2);
    assert!(store
        .list_audit(bob.id, None, 100)
        .await
        .unwrap()
        .is_empty());
}
