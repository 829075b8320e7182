//! claim_due, leases, fencing, finishing and releasing runs.

use std::{collections::HashSet, sync::Arc};

use ghbs_store::{JobPatch, Store};
use ghbs_wire::{RunStatus, RunTrigger};

use super::{new_job, outcome, t, user};

const TAKEOVER: &str =
    "the server node running this backup stopped before it finished; the job was taken over";

pub async fn claimable(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let carol = user(&store, 3).await;
    // Carol's token was rejected: her other job is due but waits for a new login.
    let rejected = store
        .create_job(new_job(carol.id, "c/one", t(0)))
        .await
        .unwrap();
    let flagged = store
        .create_job(new_job(carol.id, "c/two", t(10_000)))
        .await
        .unwrap();
    let c = store.claim_due("n1", t(1), t(61), 10).await.unwrap();
    assert_eq!(c.len(), 1);
    let mut end = outcome(RunStatus::Failed, t(5));
    end.needs_login = true;
    assert!(store
        .finish_run(rejected.id, c[0].lease_token, c[0].run.id, end, t(2))
        .await
        .unwrap());
    store
        .update_job(
            carol.id,
            flagged.id,
            JobPatch {
                next_run_at: Some(t(0)),
                ..JobPatch::default()
            },
        )
        .await
        .unwrap();

    let due = store
        .create_job(new_job(alice.id, "a/due", t(100)))
        .await
        .unwrap();
    let later = store
        .create_job(new_job(alice.id, "a/later", t(10_000)))
        .await
        .unwrap();
    let paused = store
        .create_job(new_job(alice.id, "a/paused", t(50)))
        .await
        .unwrap();
    store
        .update_job(
            alice.id,
            paused.id,
            JobPatch {
                paused: Some(true),
                ..JobPatch::default()
            },
        )
        .await
        .unwrap();
    // A queued manual run makes a job due whatever its schedule says.
    let manual = store
        .create_job(new_job(alice.id, "a/manual", t(20_000)))
        .await
        .unwrap();
    let queued = store
        .request_run(alice.id, manual.id, t(150))
        .await
        .unwrap();
    // Due by schedule, or by a queued run; never paused, flagged or not-yet-due jobs.
    let claims = store.claim_due("n1", t(200), t(260), 10).await.unwrap();
    let ids: Vec<i64> = claims.iter().map(|c| c.job.id).collect();
    assert_eq!(
        ids,
        vec![due.id, manual.id],
        "claims are ordered by next_run_at"
    );
    let d = &claims[0];
    assert_eq!(
        (d.run.trigger, d.run.status),
        (RunTrigger::Schedule, RunStatus::Running)
    );
    assert_eq!((d.run.queued_at, d.run.started_at), (t(200), Some(t(200))));
    assert_eq!(d.job.lease_owner.as_deref(), Some("n1"));
    assert_eq!(d.job.lease_expires_at, Some(t(260)));
    assert_eq!((d.lease_token, d.job.lease_token), (1, 1));
    let m = &claims[1];
    assert_eq!(m.run.id, queued.id);
    assert_eq!(
        (m.run.trigger, m.run.status),
        (RunTrigger::Manual, RunStatus::Running)
    );
    assert_eq!((m.run.queued_at, m.run.started_at), (t(150), Some(t(200))));

    // Leased jobs are not claimed again while the lease holds, by any node.
    assert!(store
        .claim_due("n2", t(259), t(300), 10)
        .await
        .unwrap()
        .is_empty());
    let stored = store.get_job(alice.id, due.id).await.unwrap();
    assert_eq!(stored.lease_owner.as_deref(), Some("n1"));
    let _ = later;
    // A limit is a limit.
    for i in 0..5 {
        store
            .create_job(new_job(alice.id, &format!("b/{i}"), t(i)))
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .claim_due("n1", t(200), t(260), 3)
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        store
            .claim_due("n1", t(200), t(260), 0)
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        store
            .claim_due("n1", t(200), t(260), 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

pub async fn takeover_and_fencing(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let job = store
        .create_job(new_job(alice.id, "octo/hello", t(0)))
        .await
        .unwrap();
    let first = store
        .claim_due("n1", t(10), t(70), 10)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert!(store
        .claim_due("n2", t(69), t(130), 10)
        .await
        .unwrap()
        .is_empty());

    // n1 went silent; its lease expires and n2 takes the job over.
    let second = store
        .claim_due("n2", t(70), t(130), 10)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(second.job.id, job.id);
    assert_eq!(second.lease_token, first.lease_token + 1);
    assert_eq!(second.job.lease_owner.as_deref(), Some("n2"));
    assert_ne!(second.run.id, first.run.id);
    assert_eq!(
        (second.run.trigger, second.run.status),
        (RunTrigger::Schedule, RunStatus::Running)
    );
    let old = store.get_run(alice.id, first.run.id).await.unwrap();
    assert_eq!(old.status, RunStatus::Failed);
    assert_eq!(old.error.as_deref(), Some(TAKEOVER));
    assert_eq!(old.finished_at, Some(t(70)));

    // n1 wakes up: every write with its stale token is refused and changes nothing.
    let (stale, run1) = (first.lease_token, first.run.id);
    assert!(!store.heartbeat(job.id, stale, t(500)).await.unwrap());
    assert!(!store
        .set_run_progress(job.id, stale, run1, Some("late"))
        .await
        .unwrap());
    let mut late = outcome(RunStatus::Succeeded, t(9_999));
    late.needs_login = true;
    assert!(!store
        .finish_run(job.id, stale, run1, late, t(80))
        .await
        .unwrap());
    assert!(!store.release(job.id, stale, run1).await.unwrap());
    let unchanged = store.get_job(alice.id, job.id).await.unwrap();
    assert_eq!(unchanged, second.job);
    assert_eq!(store.get_run(alice.id, run1).await.unwrap(), old);
    assert_eq!(
        store.get_run(alice.id, second.run.id).await.unwrap(),
        second.run
    );

    // The current holder can write.
    let (token, run2) = (second.lease_token, second.run.id);
    assert!(store.heartbeat(job.id, token, t(200)).await.unwrap());
    assert_eq!(
        store
            .get_job(alice.id, job.id)
            .await
            .unwrap()
            .lease_expires_at,
        Some(t(200))
    );
    assert!(store
        .set_run_progress(job.id, token, run2, Some("fetching"))
        .await
        .unwrap());
    assert_eq!(
        store
            .get_run(alice.id, run2)
            .await
            .unwrap()
            .progress
            .as_deref(),
        Some("fetching")
    );
    // A token is bound to its job and run.
    assert!(!store
        .set_run_progress(job.id, token, run1, Some("x"))
        .await
        .unwrap());
    assert!(!store
        .finish_run(job.id, token, run1, outcome(RunStatus::Failed, t(1)), t(90))
        .await
        .unwrap());
    let runs = store.list_runs(alice.id, job.id, 10).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![run2, run1],
        "newest first"
    );
    assert_eq!(store.list_runs(alice.id, job.id, 1).await.unwrap().len(), 1);
}

pub async fn finish_and_needs_login(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let bob = user(&store, 2).await;
    let job = store
        .create_job(new_job(alice.id, "octo/hello", t(0)))
        .await
        .unwrap();
    let sibling = store
        .create_job(new_job(alice.id, "octo/world", t(150_000)))
        .await
        .unwrap();
    let bobs = store
        .create_job(new_job(bob.id, "octo/hello", t(150_000)))
        .await
        .unwrap();
    let c = store
        .claim_due("n1", t(10), t(70), 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(c.job.id, job.id);

    // `partial` (a snapshot with carried-forward repositories) is stored like any status.
    let mut end = outcome(RunStatus::Partial, t(86_400));
    end.bytes_fetched = 1234;
    end.api_requests = 7;
    end.api_requests_conditional = 3;
    end.snapshot_id = Some(77);
    assert!(store
        .set_run_progress(job.id, c.lease_token, c.run.id, Some("x"))
        .await
        .unwrap());
    assert!(store
        .finish_run(job.id, c.lease_token, c.run.id, end, t(40))
        .await
        .unwrap());
    let run = store.get_run(alice.id, c.run.id).await.unwrap();
    assert_eq!(run.status, RunStatus::Partial);
    assert_eq!(run.finished_at, Some(t(40)));
    assert_eq!(
        (
            run.bytes_fetched,
            run.api_requests,
            run.api_requests_conditional
        ),
        (1234, 7, 3)
    );
    assert_eq!(run.snapshot_id, Some(77));
    assert_eq!((run.error, run.progress), (None, None));
    let after = store.get_job(alice.id, job.id).await.unwrap();
    assert_eq!(after.next_run_at, t(86_400));
    assert_eq!((after.lease_owner, after.lease_expires_at), (None, None));
    // Finishing twice, or heartbeating a released lease, is refused.
    assert!(!store
        .finish_run(
            job.id,
            c.lease_token,
            c.run.id,
            outcome(RunStatus::Failed, t(1)),
            t(41)
        )
        .await
        .unwrap());
    assert!(!store
        .heartbeat(job.id, c.lease_token, t(500))
        .await
        .unwrap());
    assert!(store
        .claim_due("n1", t(100), t(160), 10)
        .await
        .unwrap()
        .is_empty());

    // Next slot: GitHub rejects the token. All of Alice's jobs, and only hers, are flagged.
    let c = store
        .claim_due("n1", t(86_400), t(86_460), 10)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let mut end = outcome(RunStatus::Failed, t(172_800));
    end.error = Some("GitHub rejected the token".into());
    end.needs_login = true;
    assert!(store
        .finish_run(job.id, c.lease_token, c.run.id, end, t(86_401))
        .await
        .unwrap());
    assert_eq!(
        store
            .get_run(alice.id, c.run.id)
            .await
            .unwrap()
            .error
            .as_deref(),
        Some("GitHub rejected the token")
    );
    assert!(store.get_job(alice.id, job.id).await.unwrap().needs_login);
    assert!(
        store
            .get_job(alice.id, sibling.id)
            .await
            .unwrap()
            .needs_login
    );
    assert!(!store.get_job(bob.id, bobs.id).await.unwrap().needs_login);
    // Flagged jobs are not claimed, even with a queued manual run; Bob's due job is.
    store
        .request_run(alice.id, sibling.id, t(200_000))
        .await
        .unwrap();
    let claims = store
        .claim_due("n1", t(200_000), t(200_060), 10)
        .await
        .unwrap();
    assert_eq!(
        claims.iter().map(|c| c.job.id).collect::<Vec<_>>(),
        vec![bobs.id]
    );
    // A new login clears the flag.
    store
        .upsert_user(1, "user1", b"new", t(200_001))
        .await
        .unwrap();
    let claims = store
        .claim_due("n1", t(200_002), t(200_060), 10)
        .await
        .unwrap();
    assert_eq!(
        claims.iter().map(|c| c.job.id).collect::<Vec<_>>(),
        vec![sibling.id, job.id]
    );
}

pub async fn release_requeues(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let job = store
        .create_job(new_job(alice.id, "octo/hello", t(0)))
        .await
        .unwrap();
    let c = store
        .claim_due("n1", t(10), t(70), 10)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert!(store
        .set_run_progress(job.id, c.lease_token, c.run.id, Some("half"))
        .await
        .unwrap());
    assert!(store
        .release(job.id, c.lease_token, c.run.id)
        .await
        .unwrap());
    let run = store.get_run(alice.id, c.run.id).await.unwrap();
    assert_eq!(
        (run.status, run.started_at, run.progress),
        (RunStatus::Queued, None, None)
    );
    let released = store.get_job(alice.id, job.id).await.unwrap();
    assert_eq!(
        (released.lease_owner, released.lease_expires_at),
        (None, None)
    );
    assert!(!store
        .release(job.id, c.lease_token, c.run.id)
        .await
        .unwrap());

    // Even with its schedule moved to the future, the queued run is claimed again, elsewhere.
    store
        .update_job(
            alice.id,
            job.id,
            JobPatch {
                next_run_at: Some(t(99_999)),
                ..JobPatch::default()
            },
        )
        .await
        .unwrap();
    let again = store
        .claim_due("n2", t(20), t(80), 10)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(again.run.id, c.run.id);
    assert_eq!(
        (again.run.status, again.run.started_at),
        (RunStatus::Running, Some(t(20)))
    );
    assert_eq!(again.run.trigger, RunTrigger::Schedule);
    assert_eq!(again.lease_token, c.lease_token + 1);
    assert_eq!(
        store.list_runs(alice.id, job.id, 10).await.unwrap().len(),
        1
    );
}

/// Two nodes on one database claim 200 due jobs in small batches at the same time: every job
/// is claimed exactly once.
pub async fn concurrent_claimers(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let alice = user(&a, 1).await;
    for i in 0..200 {
        a.create_job(new_job(alice.id, &format!("octo/r{i}"), t(i % 17)))
            .await
            .unwrap();
    }
    let claimer = |store: Arc<dyn Store>, node: &'static str| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let claims = store.claim_due(node, t(100), t(1000), 7).await.unwrap();
                if claims.is_empty() {
                    return got;
                }
                got.extend(claims.into_iter().map(|c| (c.job.id, c.run.id)));
            }
        })
    };
    let (x, y) = tokio::join!(claimer(a.clone(), "n1"), claimer(b.clone(), "n2"));
    let (x, y) = (x.unwrap(), y.unwrap());
    let all: Vec<(i64, i64)> = x.iter().chain(&y).copied().collect();
    let jobs: HashSet<i64> = all.iter().map(|(j, _)| *j).collect();
    let runs: HashSet<i64> = all.iter().map(|(_, r)| *r).collect();
    assert_eq!(all.len(), 200, "n1 got {}, n2 got {}", x.len(), y.len());
    assert_eq!(jobs.len(), 200);
    assert_eq!(runs.len(), 200);
    assert!(a
        .claim_due("n3", t(100), t(1000), 500)
        .await
        .unwrap()
        .is_empty());
}

/// A node dies during a manual run of a job whose schedule is not due: the run is still taken
/// over when the lease expires, as a manual run again.
pub async fn manual_takeover(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let job = store
        .create_job(new_job(alice.id, "octo/hello", t(99_999)))
        .await
        .unwrap();
    let queued = store.request_run(alice.id, job.id, t(5)).await.unwrap();
    let first = store
        .claim_due("n1", t(10), t(70), 10)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(first.run.id, queued.id);
    assert!(store
        .claim_due("n2", t(69), t(130), 10)
        .await
        .unwrap()
        .is_empty());
    let second = store
        .claim_due("n2", t(70), t(130), 10)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(second.job.id, job.id);
    assert_eq!(
        (second.run.trigger, second.run.status),
        (RunTrigger::Manual, RunStatus::Running)
    );
    let old = store.get_run(alice.id, queued.id).await.unwrap();
    assert_eq!(
        (old.status, old.error.as_deref()),
        (RunStatus::Failed, Some(TAKEOVER))
    );
    // The run taking over is a manual run too, and is counted as one.
    assert_eq!(
        store.count_manual_runs_since(job.id, t(0)).await.unwrap(),
        2
    );
}

/// A restarted node gives back its dead incarnation's leases at once (not after they expire);
/// another node's leases on the same database are untouched.
pub async fn release_node_settles_only_own_leases(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    for target in ["a/mine", "a/theirs"] {
        store
            .create_job(new_job(alice.id, target, t(0)))
            .await
            .unwrap();
    }
    let a = store.claim_due("node-a", t(10), t(310), 1).await.unwrap();
    let b = store.claim_due("node-b", t(10), t(310), 1).await.unwrap();
    assert_eq!((a.len(), b.len()), (1, 1));
    let (a, b) = (&a[0], &b[0]);
    assert_eq!(store.release_node("node-a").await.unwrap(), 1);
    assert_eq!(store.release_node("node-a").await.unwrap(), 0, "idempotent");
    assert_eq!(store.release_node("node-c").await.unwrap(), 0);

    let settled = store.get_run(alice.id, a.run.id).await.unwrap();
    assert_eq!(
        (settled.status, settled.started_at),
        (RunStatus::Queued, None)
    );
    let other = store.get_run(alice.id, b.run.id).await.unwrap();
    assert_eq!(other.status, RunStatus::Running);
    let other_job = store.get_job(alice.id, b.job.id).await.unwrap();
    assert_eq!(other_job.lease_owner.as_deref(), Some("node-b"));
    // The dead incarnation cannot write any more (its token is stale once the job is claimed
    // again), and the requeued run is claimed long before the old lease would have expired.
    let again = store.claim_due("node-a", t(11), t(311), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].run.id, a.run.id);
    assert_eq!(again[0].job.id, a.job.id);
    assert!(!store
        .heartbeat(a.job.id, a.lease_token, t(400))
        .await
        .unwrap());
    assert!(store
        .heartbeat(b.job.id, b.lease_token, t(400))
        .await
        .unwrap());
}

/// The readiness write probe writes (repeatedly, per node).
pub async fn probe_write(store: Arc<dyn Store>) {
    store.probe_write("node-a", t(1)).await.unwrap();
    store.probe_write("node-a", t(2)).await.unwrap();
    store.probe_write("node-b", t(2)).await.unwrap();
}

/// Placement: a due job waits for the node that finished its last run until it has been due
/// since `others_after`; a job no node has run yet goes to anyone.
pub async fn warm_node_first(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let job = store
        .create_job(new_job(alice.id, "octo/warm", t(0)))
        .await
        .unwrap();
    // Never run: any node, at once.
    let first = store
        .claim_due_placed("n1", t(10), t(70), 10, t(10))
        .await
        .unwrap()
        .pop()
        .expect("a job no node ran yet is anyone's");
    assert!(store
        .finish_run(
            job.id,
            first.lease_token,
            first.run.id,
            outcome(RunStatus::Succeeded, t(1000)),
            t(20)
        )
        .await
        .unwrap());
    // Due at 1000. n2 asks at 1030 with a 60 s delay (others only for jobs due by 970): no.
    assert!(store
        .claim_due_placed("n2", t(1030), t(1100), 10, t(970))
        .await
        .unwrap()
        .is_empty());
    // n1, the warm node, takes it at once.
    let warm = store
        .claim_due_placed("n1", t(1030), t(1100), 10, t(970))
        .await
        .unwrap()
        .pop()
        .expect("the warm node claims its job at once");
    assert_eq!(warm.job.id, job.id);
    assert!(store
        .finish_run(
            job.id,
            warm.lease_token,
            warm.run.id,
            outcome(RunStatus::Succeeded, t(2000)),
            t(1040)
        )
        .await
        .unwrap());
    // n1 is gone: n2 gets the job once it has been due for the delay.
    assert!(store
        .claim_due_placed("n2", t(2059), t(2120), 10, t(1999))
        .await
        .unwrap()
        .is_empty());
    let cold = store
        .claim_due_placed("n2", t(2060), t(2120), 10, t(2000))
        .await
        .unwrap()
        .pop()
        .expect("another node takes the job after the delay");
    assert!(store
        .finish_run(
            job.id,
            cold.lease_token,
            cold.run.id,
            outcome(RunStatus::Succeeded, t(3000)),
            t(2070)
        )
        .await
        .unwrap());
    // n2 ran it last, so n2 is now its warm node.
    assert!(store
        .claim_due_placed("n1", t(3001), t(3060), 10, t(2941))
        .await
        .unwrap()
        .is_empty());
    // A queued ("run now") run is not held back for the warm node.
    store.request_run(alice.id, job.id, t(2500)).await.unwrap();
    let manual = store
        .claim_due_placed("n1", t(2501), t(2560), 10, t(2441))
        .await
        .unwrap();
    assert_eq!(manual.len(), 1, "a queued run goes to any node");
    assert_eq!(manual[0].run.trigger, RunTrigger::Manual);
}

/// A cluster-wide periodic task is claimed by one node per period.
pub async fn maintenance_once_per_period(store: Arc<dyn Store>) {
    assert!(store
        .claim_maintenance("storage-gc", "n1", t(100), t(100 - 3600))
        .await
        .unwrap());
    assert!(!store
        .claim_maintenance("storage-gc", "n2", t(200), t(200 - 3600))
        .await
        .unwrap());
    assert!(!store
        .claim_maintenance("storage-gc", "n1", t(3699), t(99))
        .await
        .unwrap());
    // Another task is independent.
    assert!(store
        .claim_maintenance("other", "n2", t(200), t(200 - 3600))
        .await
        .unwrap());
    assert!(store
        .claim_maintenance("storage-gc", "n2", t(3700), t(100))
        .await
        .unwrap());
    assert!(!store
        .claim_maintenance("storage-gc", "n1", t(3701), t(101))
        .await
        .unwrap());
}
