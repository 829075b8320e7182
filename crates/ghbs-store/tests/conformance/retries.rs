//! Retries of failed runs (claimed by `retry_at` before the next slot, recorded by
//! `finish_run`) and the freshness of jobs.

use std::sync::Arc;

use ghbs_store::{RetryPlan, Store};
use ghbs_wire::RunStatus;
use serde_json::json;

use super::{new_job, outcome, t, user};

pub async fn claimed_when_due(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let job = store
        .create_job(new_job(alice.id, "a/one", t(100)))
        .await
        .unwrap();
    let c = store.claim_due("n1", t(100), t(160), 10).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].run.attempt, 1);
    let mut failed = outcome(RunStatus::Failed, t(10_000));
    let plan = RetryPlan {
        at: t(400),
        attempt: 2,
        scope: Some(json!({"repos": ["r1"]})),
    };
    failed.retry = Some(plan.clone());
    assert!(store
        .finish_run(job.id, c[0].lease_token, c[0].run.id, failed, t(101))
        .await
        .unwrap());
    let stored = store.get_job(alice.id, job.id).await.unwrap();
    assert_eq!(stored.retry_at, Some(t(400)));
    assert_eq!(stored.retry_attempt, 2);
    assert_eq!(stored.retry_scope, plan.scope);
    assert_eq!(
        stored.next_run_at,
        t(10_000),
        "a retry never moves the slot"
    );
    let first = store.get_run(alice.id, c[0].run.id).await.unwrap();
    assert_eq!(first.retry_at, Some(t(400)));

    // Not before its time.
    assert!(store
        .claim_due("n1", t(399), t(459), 10)
        .await
        .unwrap()
        .is_empty());
    let c = store.claim_due("n1", t(400), t(460), 10).await.unwrap();
    assert_eq!(c.len(), 1, "the due retry is claimed");
    assert_eq!(c[0].job.retry_attempt, 2);
    assert_eq!(c[0].run.status, RunStatus::Running);
    assert!(store
        .set_run_attempt(job.id, c[0].lease_token, c[0].run.id, 2)
        .await
        .unwrap());
    // A stale token cannot write the attempt.
    assert!(!store
        .set_run_attempt(job.id, c[0].lease_token - 1, c[0].run.id, 3)
        .await
        .unwrap());
    // Leased: not claimed twice.
    assert!(store
        .claim_due("n2", t(401), t(461), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .finish_run(
            job.id,
            c[0].lease_token,
            c[0].run.id,
            outcome(RunStatus::Succeeded, t(10_000)),
            t(402)
        )
        .await
        .unwrap());
    let stored = store.get_job(alice.id, job.id).await.unwrap();
    assert_eq!(stored.retry_at, None, "a finish without a retry clears it");
    assert_eq!(stored.retry_attempt, 0);
    assert_eq!(stored.retry_scope, None);
    let runs = store.list_runs(alice.id, job.id, 10).await.unwrap();
    let attempts: Vec<(u32, RunStatus)> = runs.iter().map(|r| (r.attempt, r.status)).collect();
    assert_eq!(
        attempts,
        vec![(2, RunStatus::Succeeded), (1, RunStatus::Failed)]
    );
    assert_eq!(runs[0].retry_at, None);
    assert!(store
        .claim_due("n1", t(9_999), t(10_059), 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn slot_wins(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let job = store
        .create_job(new_job(alice.id, "a/one", t(100)))
        .await
        .unwrap();
    let c = store.claim_due("n1", t(100), t(160), 10).await.unwrap();
    let mut failed = outcome(RunStatus::Failed, t(1_000));
    failed.retry = Some(RetryPlan {
        at: t(400),
        attempt: 2,
        scope: None,
    });
    store
        .finish_run(job.id, c[0].lease_token, c[0].run.id, failed, t(101))
        .await
        .unwrap();
    // The server was down past both the retry and the slot: one claim, by schedule.
    let c = store.claim_due("n1", t(2_000), t(2_060), 10).await.unwrap();
    assert_eq!(c.len(), 1);
    assert!(c[0].job.next_run_at <= t(2_000));
    assert!(store
        .claim_due("n2", t(2_001), t(2_061), 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn freshness(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let a = store
        .create_job(new_job(alice.id, "a/one", t(100)))
        .await
        .unwrap();
    let b = store
        .create_job(new_job(alice.id, "a/two", t(100)))
        .await
        .unwrap();
    let never = store
        .create_job(new_job(alice.id, "a/three", t(50_000)))
        .await
        .unwrap();
    // a: succeeded, then failed; b: partial.
    for (job, status, at) in [
        (a.id, RunStatus::Succeeded, t(110)),
        (b.id, RunStatus::Partial, t(120)),
    ] {
        let c = store.claim_due("n1", t(100), t(160), 1).await.unwrap();
        assert_eq!(c[0].job.id, job);
        store
            .finish_run(
                job,
                c[0].lease_token,
                c[0].run.id,
                outcome(status, t(1_000)),
                at,
            )
            .await
            .unwrap();
    }
    let c = store.claim_due("n1", t(1_000), t(1_060), 1).await.unwrap();
    assert_eq!(c[0].job.id, a.id);
    store
        .finish_run(
            a.id,
            c[0].lease_token,
            c[0].run.id,
            outcome(RunStatus::Failed, t(5_000)),
            t(1_010),
        )
        .await
        .unwrap();
    let mut got = store.job_freshness(&[a.id, b.id, never.id]).await.unwrap();
    got.sort_by_key(|f| f.job_id);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].last_success_at, Some(t(110)));
    assert_eq!(got[0].last_finished, Some(RunStatus::Failed));
    assert_eq!(got[1].last_success_at, Some(t(120)));
    assert_eq!(got[1].last_finished, Some(RunStatus::Partial));
    assert_eq!(got[2].last_success_at, None);
    assert_eq!(got[2].last_finished, None);
    assert!(store.job_freshness(&[]).await.unwrap().is_empty());

    // The listing's one statement agrees with the separate lookups, job by job.
    let page = store.list_jobs_page(alice.id, None, 10).await.unwrap();
    let last = store.last_runs(&[a.id, b.id, never.id]).await.unwrap();
    assert_eq!(page.len(), 3);
    for l in &page {
        assert_eq!(l.job, store.get_job(alice.id, l.job.id).await.unwrap());
        assert_eq!(
            Some(&l.freshness),
            got.iter().find(|f| f.job_id == l.job.id)
        );
        assert_eq!(
            l.last_run.as_ref(),
            last.iter().find(|r| r.job_id == l.job.id)
        );
    }
    assert_eq!(page[0].last_run.as_ref().unwrap().status, RunStatus::Failed);
    assert!(page[2].last_run.is_none());
}
