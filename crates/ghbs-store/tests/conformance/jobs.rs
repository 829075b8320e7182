//! Jobs: CRUD, isolation between users, duplicate targets, "run now".

use std::sync::Arc;

use ghbs_store::{JobPatch, NewSnapshot, Store, StoreError};
use ghbs_wire::{JobOptions, Retention, RunStatus, RunTrigger, TargetKind};

use super::{new_job, t, user};

fn not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::NotFound))
}

pub async fn crud(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let mut spec = new_job(alice.id, "octo/hello", t(3600));
    spec.options.metadata = true;
    spec.retention.keep_daily = 7;
    let job = store.create_job(spec).await.unwrap();
    assert_eq!(job.user_id, alice.id);
    assert_eq!(job.target, "octo/hello");
    assert_eq!(job.target_kind, TargetKind::Repository);
    assert!(job.options.metadata);
    assert_eq!(job.retention.keep_daily, 7);
    assert!(!job.paused && !job.needs_login);
    assert_eq!(job.next_run_at, t(3600));
    assert_eq!(job.created_at, t(0));
    assert_eq!(
        (
            job.lease_owner.as_deref(),
            job.lease_expires_at,
            job.lease_token
        ),
        (None, None, 0)
    );
    assert_eq!(store.get_job(alice.id, job.id).await.unwrap(), job);

    let account = store
        .create_job(new_job(alice.id, "octo", t(7200)))
        .await
        .unwrap();
    assert_eq!(account.target_kind, TargetKind::Account);
    let listed = store.list_jobs(alice.id).await.unwrap();
    assert_eq!(listed, vec![job.clone(), account.clone()]);
    assert_eq!(store.count_jobs().await.unwrap(), 2);

    let patched = store
        .update_job(
            alice.id,
            job.id,
            JobPatch {
                schedule: Some("weekly on mon".parse().unwrap()),
                timezone: Some(chrono_tz::Europe::Paris),
                retention: Some(Retention {
                    keep_last: 3,
                    ..Retention::default()
                }),
                options: Some(JobOptions {
                    wiki: true,
                    ..JobOptions::default()
                }),
                paused: Some(true),
                next_run_at: Some(t(99)),
                ..JobPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.schedule.canonical(), "weekly on monday");
    assert_eq!(patched.timezone, chrono_tz::Europe::Paris);
    assert_eq!(patched.retention.keep_last, 3);
    assert!(patched.options.wiki && !patched.options.metadata);
    assert!(patched.paused);
    assert_eq!(patched.next_run_at, t(99));
    assert_eq!(patched.target, "octo/hello");
    // An empty patch changes nothing.
    let same = store
        .update_job(alice.id, job.id, JobPatch::default())
        .await
        .unwrap();
    assert_eq!(same, patched);
    let resumed = store
        .update_job(
            alice.id,
            job.id,
            JobPatch {
                paused: Some(false),
                ..JobPatch::default()
            },
        )
        .await
        .unwrap();
    assert!(!resumed.paused);

    // Deleting a job deletes its runs.
    let run = store.request_run(alice.id, job.id, t(5)).await.unwrap();
    store.delete_job(alice.id, job.id, false).await.unwrap();
    assert!(not_found(store.get_job(alice.id, job.id).await));
    assert!(not_found(store.get_run(alice.id, run.id).await));
    assert!(not_found(store.delete_job(alice.id, job.id, false).await));
    assert_eq!(store.count_jobs().await.unwrap(), 1);
    assert_eq!(store.list_jobs(alice.id).await.unwrap(), vec![account]);
}

pub async fn isolation(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let bob = user(&store, 2).await;
    let job = store
        .create_job(new_job(alice.id, "octo/hello", t(0)))
        .await
        .unwrap();
    let run = store.request_run(alice.id, job.id, t(1)).await.unwrap();
    let snap = store
        .insert_snapshot(NewSnapshot {
            job_id: job.id,
            run_id: run.id,
            created_at: t(2),
            refs: 1,
            size_bytes: 10,
            repos: vec![],
            manifest: serde_json::json!({}),
        })
        .await
        .unwrap();

    assert!(not_found(store.get_job(bob.id, job.id).await));
    assert!(not_found(
        store.update_job(bob.id, job.id, JobPatch::default()).await
    ));
    assert!(not_found(store.delete_job(bob.id, job.id, true).await));
    assert!(not_found(store.list_runs(bob.id, job.id, 10).await));
    assert!(not_found(store.list_snapshots(bob.id, job.id).await));
    assert!(not_found(store.request_run(bob.id, job.id, t(3)).await));
    assert!(not_found(store.get_run(bob.id, run.id).await));
    assert!(not_found(store.get_snapshot(bob.id, snap.id).await));
    assert!(store.list_jobs(bob.id).await.unwrap().is_empty());

    // Exactly like rows that do not exist at all.
    assert!(not_found(store.get_job(alice.id, job.id + 1000).await));
    assert!(not_found(
        store.list_runs(alice.id, job.id + 1000, 10).await
    ));
    assert!(not_found(
        store.list_snapshots(alice.id, job.id + 1000).await
    ));

    // Bob's attempts changed nothing for Alice.
    assert_eq!(store.get_job(alice.id, job.id).await.unwrap(), job);
    assert_eq!(
        store.list_runs(alice.id, job.id, 10).await.unwrap(),
        vec![run.clone()]
    );
    assert_eq!(
        store.get_snapshot(alice.id, snap.id).await.unwrap().id,
        snap.id
    );
    assert_eq!(store.get_run(alice.id, run.id).await.unwrap(), run);
}

pub async fn duplicate_target(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let bob = user(&store, 2).await;
    let job = store
        .create_job(new_job(alice.id, "octo/hello", t(0)))
        .await
        .unwrap();
    // GitHub names are case-insensitive: this is the same repository.
    match store
        .create_job(new_job(alice.id, "Octo/Hello", t(0)))
        .await
    {
        Err(StoreError::Conflict { existing_id, .. }) => assert_eq!(existing_id, Some(job.id)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Another user may back up the same repository.
    store
        .create_job(new_job(bob.id, "octo/hello", t(0)))
        .await
        .unwrap();
    // Renaming a job onto another job's target conflicts too.
    let other = store
        .create_job(new_job(alice.id, "octo/world", t(0)))
        .await
        .unwrap();
    let rename = JobPatch {
        target: Some("octo/hello".into()),
        ..JobPatch::default()
    };
    match store.update_job(alice.id, other.id, rename).await {
        Err(StoreError::Conflict { existing_id, .. }) => assert_eq!(existing_id, Some(job.id)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // A case-only rename of a job onto its own target is fine (a repository renamed on GitHub).
    let recased = JobPatch {
        target: Some("Octo/World".into()),
        ..JobPatch::default()
    };
    let renamed = store.update_job(alice.id, other.id, recased).await.unwrap();
    assert_eq!(renamed.target, "Octo/World");
}

pub async fn run_now(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let job = store
        .create_job(new_job(alice.id, "octo/hello", t(86_400)))
        .await
        .unwrap();
    let run = store.request_run(alice.id, job.id, t(10)).await.unwrap();
    assert_eq!(
        (run.trigger, run.status),
        (RunTrigger::Manual, RunStatus::Queued)
    );
    assert_eq!(run.queued_at, t(10));
    assert_eq!(run.started_at, None);
    // Idempotent while queued, and while running.
    assert_eq!(
        store.request_run(alice.id, job.id, t(11)).await.unwrap(),
        run
    );
    assert_eq!(
        store.count_manual_runs_since(job.id, t(10)).await.unwrap(),
        1
    );
    assert_eq!(
        store.count_manual_runs_since(job.id, t(11)).await.unwrap(),
        0
    );
    let claim = store
        .claim_due("node", t(12), t(72), 10)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(claim.run.id, run.id);
    let running = store.request_run(alice.id, job.id, t(13)).await.unwrap();
    assert_eq!((running.id, running.status), (run.id, RunStatus::Running));
    assert_eq!(
        store.count_manual_runs_since(job.id, t(0)).await.unwrap(),
        1
    );
    assert_eq!(store.last_runs(&[job.id]).await.unwrap(), vec![running]);
    assert!(store.last_runs(&[]).await.unwrap().is_empty());
}

/// A stored schedule or timezone that does not parse (written by an older version, or by hand)
/// is an error that says which job and what, never a silent default (retention used to fall
/// back to UTC).
pub async fn unparsable_stored_values(store: Arc<dyn Store>, db: &crate::Db) {
    let alice = user(&store, 1).await;
    let job = store
        .create_job(new_job(alice.id, "octo/hello", t(3600)))
        .await
        .unwrap();
    for (timezone, schedule, bad) in [
        ("Mars/Olympus_Mons", "daily", "Mars/Olympus_Mons"),
        ("UTC", "every full moon", "every full moon"),
    ] {
        db.raw_execute(&format!(
            "UPDATE jobs SET timezone = '{timezone}', schedule = '{schedule}' WHERE id = {}",
            job.id
        ))
        .await;
        // A patch that touches nothing else still reads the row back: the error names it.
        let err = store
            .update_job(alice.id, job.id, JobPatch::default())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("job {}", job.id)) && text.contains(bad),
            "{text}"
        );
        let err = store
            .get_job(alice.id, job.id)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(bad), "{err}");
        let err = store.list_jobs(alice.id).await.unwrap_err().to_string();
        assert!(err.contains(bad), "{err}");
    }
}

/// Keyset pages: id order, only the user's jobs, and a cursor (the last id seen) that neither
/// skips nor repeats a job while jobs before or after it are added or deleted.
pub async fn pages(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let bob = user(&store, 2).await;
    let mut mine = Vec::new();
    for i in 0..5 {
        let j = store
            .create_job(new_job(alice.id, &format!("a/r{i}"), t(100)))
            .await
            .unwrap();
        mine.push(j.id);
        store
            .create_job(new_job(bob.id, &format!("b/r{i}"), t(100)))
            .await
            .unwrap();
    }
    let ids = |page: &[ghbs_store::JobListing]| page.iter().map(|l| l.job.id).collect::<Vec<_>>();
    let first = store.list_jobs_page(alice.id, None, 2).await.unwrap();
    assert_eq!(ids(&first), mine[..2]);
    // The job the cursor names is deleted, one before it too, and a new one is added.
    let cursor = mine[1];
    store.delete_job(alice.id, mine[1], false).await.unwrap();
    store.delete_job(alice.id, mine[0], false).await.unwrap();
    let added = store
        .create_job(new_job(alice.id, "a/new", t(100)))
        .await
        .unwrap();
    let second = store
        .list_jobs_page(alice.id, Some(cursor), 2)
        .await
        .unwrap();
    assert_eq!(ids(&second), mine[2..4]);
    let third = store
        .list_jobs_page(alice.id, Some(mine[3]), 2)
        .await
        .unwrap();
    assert_eq!(ids(&third), vec![mine[4], added.id]);
    assert!(store
        .list_jobs_page(alice.id, Some(added.id), 2)
        .await
        .unwrap()
        .is_empty());
    assert!(third
        .iter()
        .all(|l| l.last_run.is_none() && l.freshness.last_success_at.is_none()));
    assert_eq!(
        store.list_jobs_page(bob.id, None, 100).await.unwrap().len(),
        5
    );
}
