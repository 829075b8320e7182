//! Snapshots, per-repository engine state and the HTTP validator cache.

use std::sync::Arc;

use ghbs_store::{HttpCacheRow, NewSnapshot, Store, StoreError};
use ghbs_wire::SnapshotRepo;

use super::{new_job, t, user};

fn snapshot(job_id: i64, run_id: i64, at: i64) -> NewSnapshot {
    NewSnapshot {
        job_id,
        run_id,
        created_at: t(at),
        refs: 12,
        size_bytes: 4096,
        repos: vec![SnapshotRepo {
            full_name: "octo/hello".into(),
            default_branch: Some("main".into()),
            refs: 12,
            status: "ok".into(),
            metadata: [("issues".to_string(), 3_u64)].into_iter().collect(),
            ..SnapshotRepo::default()
        }],
        manifest: serde_json::json!({"octo/hello": {"refs/heads/main": "abc123"}, "at": at}),
    }
}

pub async fn snapshots(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let job = store
        .create_job(new_job(alice.id, "octo/hello", t(0)))
        .await
        .unwrap();
    let run = store.request_run(alice.id, job.id, t(1)).await.unwrap();
    assert!(store
        .list_snapshots(alice.id, job.id)
        .await
        .unwrap()
        .is_empty());
    let s1 = store
        .insert_snapshot(snapshot(job.id, run.id, 10))
        .await
        .unwrap();
    let s2 = store
        .insert_snapshot(snapshot(job.id, run.id, 20))
        .await
        .unwrap();
    assert_eq!(
        (s1.job_id, s1.run_id, s1.created_at),
        (job.id, run.id, t(10))
    );
    assert_eq!((s1.refs, s1.size_bytes), (12, 4096));
    assert_eq!(s1.repos, snapshot(job.id, run.id, 10).repos);
    assert_eq!(s1.manifest, snapshot(job.id, run.id, 10).manifest);

    let listed = store.list_snapshots(alice.id, job.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![s2.id, s1.id]
    );
    let all = store.job_snapshots(job.id).await.unwrap();
    assert_eq!(
        all.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![s2.id, s1.id]
    );
    let got = store.get_snapshot(alice.id, s2.id).await.unwrap();
    assert_eq!((got.id, got.manifest), (s2.id, s2.manifest.clone()));
    // Another user's job without snapshots, then one with: only jobs holding snapshots, in order.
    let bob = user(&store, 2).await;
    let empty = store
        .create_job(new_job(bob.id, "bob/empty", t(0)))
        .await
        .unwrap();
    let other = store
        .create_job(new_job(bob.id, "bob/other", t(0)))
        .await
        .unwrap();
    let other_run = store.request_run(bob.id, other.id, t(1)).await.unwrap();
    store
        .insert_snapshot(snapshot(other.id, other_run.id, 15))
        .await
        .unwrap();
    let with_snapshots = store.snapshot_job_ids().await.unwrap();
    assert_eq!(with_snapshots, vec![job.id, other.id]);
    assert!(!with_snapshots.contains(&empty.id));

    store.delete_snapshots(&[s2.id]).await.unwrap();
    store.delete_snapshots(&[]).await.unwrap();
    assert!(matches!(
        store.get_snapshot(alice.id, s2.id).await,
        Err(StoreError::NotFound)
    ));
    let listed = store.list_snapshots(alice.id, job.id).await.unwrap();
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), vec![s1.id]);
    assert!(matches!(
        store
            .insert_snapshot(snapshot(job.id + 1000, run.id, 30))
            .await,
        Err(StoreError::NotFound)
    ));
}

/// The startup check after a crash finds a snapshot by the engine key in its manifest, and
/// only an exact match counts.
pub async fn snapshot_key_lookup(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let job = store
        .create_job(new_job(alice.id, "octo/hello", t(0)))
        .await
        .unwrap();
    let run = store.request_run(alice.id, job.id, t(1)).await.unwrap();
    let key = "0b7c6f1e-4a52-4d4e-9a38-6f8d2c1e5b90";
    assert!(!store.snapshot_key_exists(key).await.unwrap());
    let mut with_key = snapshot(job.id, run.id, 10);
    with_key.manifest = serde_json::json!({"snapshot_key": key, "repos": []});
    let row = store.insert_snapshot(with_key).await.unwrap();
    // A row without the field, and one whose key merely contains the other, never match.
    store
        .insert_snapshot(snapshot(job.id, run.id, 20))
        .await
        .unwrap();
    let mut longer = snapshot(job.id, run.id, 30);
    longer.manifest = serde_json::json!({"snapshot_key": format!("{key}0"), "repos": []});
    store.insert_snapshot(longer).await.unwrap();
    assert!(store.snapshot_key_exists(key).await.unwrap());
    assert!(!store
        .snapshot_key_exists("0b7c6f1e-4a52-4d4e-9a38-6f8d2c1e5b9")
        .await
        .unwrap());
    assert!(!store.snapshot_key_exists("' OR 1=1 --").await.unwrap());
    store.delete_snapshots(&[row.id]).await.unwrap();
    assert!(!store.snapshot_key_exists(key).await.unwrap());
}

pub async fn purge(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let bob = user(&store, 2).await;
    let kept = store
        .create_job(new_job(alice.id, "octo/kept", t(0)))
        .await
        .unwrap();
    let purged = store
        .create_job(new_job(alice.id, "octo/purged", t(0)))
        .await
        .unwrap();
    let run = store.request_run(alice.id, kept.id, t(1)).await.unwrap();
    let k = store
        .insert_snapshot(snapshot(kept.id, run.id, 10))
        .await
        .unwrap();
    let p = store
        .insert_snapshot(snapshot(purged.id, run.id, 10))
        .await
        .unwrap();

    // Without purge the snapshots stay, still Alice's alone.
    store.delete_job(alice.id, kept.id, false).await.unwrap();
    assert_eq!(
        store.get_snapshot(alice.id, k.id).await.unwrap().job_id,
        kept.id
    );
    assert!(matches!(
        store.get_snapshot(bob.id, k.id).await,
        Err(StoreError::NotFound)
    ));
    let listed = store.list_snapshots(alice.id, kept.id).await.unwrap();
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), vec![k.id]);
    assert!(matches!(
        store.list_snapshots(bob.id, kept.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.job_snapshots(kept.id).await.unwrap().len(), 1);

    // With purge they go.
    store.delete_job(alice.id, purged.id, true).await.unwrap();
    assert!(matches!(
        store.get_snapshot(alice.id, p.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.job_snapshots(purged.id).await.unwrap().is_empty());
    assert!(matches!(
        store.list_snapshots(alice.id, purged.id).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn job_repos(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let job = store
        .create_job(new_job(alice.id, "octo", t(0)))
        .await
        .unwrap();
    let other = store
        .create_job(new_job(alice.id, "hubot", t(0)))
        .await
        .unwrap();

    let a = store.job_repo(job.id, "octo/a", None).await.unwrap();
    assert_eq!(
        (a.job_id, a.full_name.as_str(), a.github_id),
        (job.id, "octo/a", None)
    );
    assert_eq!(a.state, serde_json::json!({}));
    assert_eq!(store.job_repo(job.id, "octo/a", None).await.unwrap(), a);
    // Learning the GitHub id later keeps the row.
    let a = store.job_repo(job.id, "octo/a", Some(100)).await.unwrap();
    assert_eq!(a.github_id, Some(100));
    assert_eq!(
        store.job_repo(job.id, "octo/a", Some(100)).await.unwrap(),
        a
    );
    // Same name in another job is another row.
    let elsewhere = store.job_repo(other.id, "octo/a", Some(100)).await.unwrap();
    assert_ne!(elsewhere.id, a.id);

    store
        .set_job_repo_state(a.id, &serde_json::json!({"etag": "W/\"1\"", "runs": 3}))
        .await
        .unwrap();
    // Renamed on GitHub: matched by id, row (and mirror) kept, name and state carried.
    let renamed = store
        .job_repo(job.id, "octo/a-renamed", Some(100))
        .await
        .unwrap();
    assert_eq!(renamed.id, a.id);
    assert_eq!(renamed.full_name, "octo/a-renamed");
    assert_eq!(
        renamed.state,
        serde_json::json!({"etag": "W/\"1\"", "runs": 3})
    );

    // A new repository takes the old name: it gets its own row.
    let b = store.job_repo(job.id, "octo/a", Some(200)).await.unwrap();
    assert_ne!(b.id, a.id);
    // And a rename onto a name still held by a gone repository moves that row aside.
    let c = store.job_repo(job.id, "octo/c", Some(300)).await.unwrap();
    let moved = store.job_repo(job.id, "octo/a", Some(300)).await.unwrap();
    assert_eq!((moved.id, moved.full_name.as_str()), (c.id, "octo/a"));

    let listed = store.list_job_repos(job.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![a.id, b.id, c.id]
    );
    let names: Vec<&str> = listed.iter().map(|r| r.full_name.as_str()).collect();
    assert_eq!(names[0], "octo/a-renamed");
    assert!(
        names[1].starts_with("octo/a ("),
        "displaced row keeps a marked name: {}",
        names[1]
    );
    assert_eq!(names[2], "octo/a");
    assert!(matches!(
        store
            .set_job_repo_state(c.id + 1000, &serde_json::json!({}))
            .await,
        Err(StoreError::NotFound)
    ));

    // forget-repo: one row goes, only within its job.
    assert!(matches!(
        store.delete_job_repo(other.id, b.id).await,
        Err(StoreError::NotFound)
    ));
    store.delete_job_repo(job.id, b.id).await.unwrap();
    assert_eq!(
        store
            .list_job_repos(job.id)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![a.id, c.id]
    );
    assert!(matches!(
        store.delete_job_repo(job.id, b.id).await,
        Err(StoreError::NotFound)
    ));

    // Deleting the job deletes its repository rows.
    store.delete_job(alice.id, job.id, false).await.unwrap();
    assert!(store.list_job_repos(job.id).await.unwrap().is_empty());
}

pub async fn http_cache(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let bob = user(&store, 2).await;
    let url = "https://api.github.com/repos/octo/hello";
    assert_eq!(store.get_http_cache(alice.id, url).await.unwrap(), None);
    let row = HttpCacheRow {
        user_id: alice.id,
        url: url.into(),
        etag: Some("\"abc\"".into()),
        last_modified: None,
        body: Some(b"{\"id\":1}".to_vec()),
    };
    store.put_http_cache(&row).await.unwrap();
    assert_eq!(
        store.get_http_cache(alice.id, url).await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(store.get_http_cache(bob.id, url).await.unwrap(), None);
    let newer = HttpCacheRow {
        etag: None,
        last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
        body: None,
        ..row
    };
    store.put_http_cache(&newer).await.unwrap();
    assert_eq!(
        store.get_http_cache(alice.id, url).await.unwrap(),
        Some(newer)
    );
}
