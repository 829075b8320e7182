//! Verification runs: queued on request (idempotent, conflicting with a backup), claimed like
//! any run, and scheduled once per slot whatever the number of nodes.

use std::sync::Arc;

use ghbs_store::{Store, StoreError};
use ghbs_wire::{RunStatus, RunTrigger};

use super::{new_job, outcome, t, user};

pub async fn request_and_claim(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let bob = user(&store, 2).await;
    let job = store
        .create_job(new_job(alice.id, "octo/hello", t(86_400)))
        .await
        .unwrap();
    assert!(matches!(
        store.request_verify(bob.id, job.id, None, t(1)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .request_verify(alice.id, job.id + 100, None, t(1))
            .await,
        Err(StoreError::NotFound)
    ));
    let run = store
        .request_verify(alice.id, job.id, Some(7), t(1))
        .await
        .unwrap();
    assert_eq!(
        (run.trigger, run.status, run.snapshot_id),
        (RunTrigger::Verify, RunStatus::Queued, Some(7))
    );
    // The same request again is that run; another one conflicts, as does "run now" (which
    // returns the active run, here the verification).
    assert_eq!(
        store
            .request_verify(alice.id, job.id, Some(7), t(2))
            .await
            .unwrap(),
        run
    );
    match store.request_verify(alice.id, job.id, None, t(2)).await {
        Err(StoreError::Conflict { existing_id, .. }) => assert_eq!(existing_id, Some(run.id)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        store.request_run(alice.id, job.id, t(2)).await.unwrap(),
        run
    );
    assert_eq!(
        store.count_manual_runs_since(job.id, t(0)).await.unwrap(),
        0
    );

    let claim = store
        .claim_due("node", t(3), t(63), 10)
        .await
        .unwrap()
        .pop()
        .expect("the queued verification is claimed");
    assert_eq!(
        (claim.run.id, claim.run.trigger, claim.run.status),
        (run.id, RunTrigger::Verify, RunStatus::Running)
    );
    let mut done = outcome(RunStatus::Failed, t(86_400));
    done.error = Some("octo/hello in snapshot 7: 1 missing object(s)".into());
    done.snapshot_id = Some(7);
    assert!(store
        .finish_run(job.id, claim.lease_token, run.id, done, t(4))
        .await
        .unwrap());
    let finished = store.get_run(alice.id, run.id).await.unwrap();
    assert_eq!(
        (finished.trigger, finished.status, finished.snapshot_id),
        (RunTrigger::Verify, RunStatus::Failed, Some(7))
    );
    assert_eq!(
        store.get_job(alice.id, job.id).await.unwrap().next_run_at,
        t(86_400),
        "a verification leaves the backup schedule alone"
    );

    // While a backup is queued, a verification conflicts.
    let backup = store.request_run(alice.id, job.id, t(5)).await.unwrap();
    match store.request_verify(alice.id, job.id, None, t(5)).await {
        Err(StoreError::Conflict { existing_id, .. }) => assert_eq!(existing_id, Some(backup.id)),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub async fn scheduled_once_per_slot(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let alice = user(&a, 1).await;
    let job = a
        .create_job(new_job(alice.id, "octo/hello", t(86_400)))
        .await
        .unwrap();
    let paused = a
        .create_job(new_job(alice.id, "octo/paused", t(86_400)))
        .await
        .unwrap();
    a.update_job(
        alice.id,
        paused.id,
        ghbs_store::JobPatch {
            paused: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let unscheduled: Vec<i64> = a
        .unscheduled_verify_jobs(10)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(unscheduled, vec![job.id, paused.id]);
    a.schedule_verify(job.id, t(100)).await.unwrap();
    a.schedule_verify(paused.id, t(100)).await.unwrap();
    // A second first slot changes nothing; a job that does not exist gets none.
    b.schedule_verify(job.id, t(500)).await.unwrap();
    b.schedule_verify(job.id + 100, t(100)).await.unwrap();
    assert!(a.unscheduled_verify_jobs(10).await.unwrap().is_empty());

    assert!(a.due_verifies(t(99), 10).await.unwrap().is_empty());
    let due = a.due_verifies(t(100), 10).await.unwrap();
    assert_eq!(due.len(), 1, "the paused job waits");
    assert_eq!((due[0].0.id, due[0].1), (job.id, t(100)));
    // A job whose backup is due is backed up first: its verification waits.
    let backup_due = a
        .create_job(new_job(alice.id, "octo/busy", t(50)))
        .await
        .unwrap();
    a.schedule_verify(backup_due.id, t(100)).await.unwrap();
    let due = a.due_verifies(t(100), 10).await.unwrap();
    assert_eq!(
        due.iter().map(|(j, _)| j.id).collect::<Vec<_>>(),
        vec![job.id]
    );

    // Two nodes race for the slot: one run.
    let won_a = a
        .queue_scheduled_verify(job.id, t(100), t(700), t(101))
        .await
        .unwrap();
    let won_b = b
        .queue_scheduled_verify(job.id, t(100), t(700), t(101))
        .await
        .unwrap();
    assert!(won_a ^ won_b, "exactly one node queues the slot");
    let runs = a.list_runs(alice.id, job.id, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].trigger, runs[0].status, runs[0].snapshot_id),
        (RunTrigger::Verify, RunStatus::Queued, None)
    );
    assert!(a.due_verifies(t(699), 10).await.unwrap().is_empty());
    // Due again, but the job is busy (its verification is still queued): nothing written.
    assert!(!a
        .queue_scheduled_verify(job.id, t(700), t(1300), t(701))
        .await
        .unwrap());
    assert_eq!(a.due_verifies(t(701), 10).await.unwrap()[0].1, t(700));
    // A deleted job takes its slot along.
    a.delete_job(alice.id, job.id, false).await.unwrap();
    assert!(a.due_verifies(t(10_000), 10).await.unwrap().is_empty());
}

pub async fn queue_stats(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    assert_eq!(store.queue_stats(t(0)).await.unwrap(), Default::default());
    let due = store
        .create_job(new_job(alice.id, "octo/due", t(100)))
        .await
        .unwrap();
    let later = store
        .create_job(new_job(alice.id, "octo/later", t(86_400)))
        .await
        .unwrap();
    store
        .create_job(new_job(alice.id, "octo/not-yet", t(86_400)))
        .await
        .unwrap();
    store.request_run(alice.id, later.id, t(150)).await.unwrap();
    let stats = store.queue_stats(t(200)).await.unwrap();
    assert_eq!((stats.waiting, stats.oldest_due), (2, Some(t(100))));
    assert_eq!(stats.oldest_last_success, None);
    assert_eq!(stats.stored_bytes, 0, "no snapshot yet");
    // Claimed jobs no longer wait; a success is remembered.
    let claims = store.claim_due("node", t(300), t(360), 10).await.unwrap();
    assert_eq!(claims.len(), 2);
    assert_eq!(store.queue_stats(t(300)).await.unwrap().waiting, 0);
    let c = claims.iter().find(|c| c.job.id == due.id).unwrap();
    assert!(store
        .finish_run(
            due.id,
            c.lease_token,
            c.run.id,
            outcome(RunStatus::Succeeded, t(86_500)),
            t(310)
        )
        .await
        .unwrap());
    assert_eq!(
        store.queue_stats(t(400)).await.unwrap().oldest_last_success,
        Some(t(310))
    );
}
