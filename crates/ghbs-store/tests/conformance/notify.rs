//! Notification targets, the delivery queue and stale marks (issue 11).

use std::sync::Arc;

use ghbs_store::{DeliveryResult, NewNotifyTarget, Store, StoreError};
use ghbs_wire::RunStatus;

use super::{new_job, outcome, t, user};

fn target(user_id: i64, events: &str) -> NewNotifyTarget {
    NewNotifyTarget {
        user_id,
        kind: "webhook".into(),
        format: "json".into(),
        destination_sealed: b"sealed-url".to_vec(),
        display: "https://hooks.example/…".into(),
        secret_sealed: Some(b"sealed-secret".to_vec()),
        events: events.into(),
        created_at: t(0),
    }
}

/// Targets are the user's own: another user's id answers exactly like a missing one.
pub async fn targets_are_scoped(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let bob = user(&store, 2).await;
    let a = store
        .create_notify_target(target(alice.id, "all"))
        .await
        .unwrap();
    assert_eq!(a.destination_sealed, b"sealed-url");
    assert_eq!(a.secret_sealed.as_deref(), Some(&b"sealed-secret"[..]));
    assert_eq!(a.last_attempt_at, None);
    assert_eq!(
        store.list_notify_targets(alice.id).await.unwrap(),
        vec![a.clone()]
    );
    assert!(store.list_notify_targets(bob.id).await.unwrap().is_empty());
    assert!(matches!(
        store.get_notify_target(bob.id, a.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_notify_target(bob.id, a.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.get_notify_target(alice.id, a.id).await.unwrap(), a);
    store.delete_notify_target(alice.id, a.id).await.unwrap();
    assert!(matches!(
        store.delete_notify_target(alice.id, a.id).await,
        Err(StoreError::NotFound)
    ));
}

/// Events reach only subscribed targets of that user; claims are leased and fenced; a retry
/// waits for its time; the target keeps the last result.
pub async fn queue_claim_retry_finish(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let bob = user(&store, 2).await;
    let all = store
        .create_notify_target(target(alice.id, "all"))
        .await
        .unwrap();
    let failed_only = store
        .create_notify_target(target(alice.id, "failed,partial"))
        .await
        .unwrap();
    let bobs = store
        .create_notify_target(target(bob.id, "all"))
        .await
        .unwrap();
    // `part` must not match `partial`, nor `failed` match `failed-x`.
    assert_eq!(
        store
            .enqueue_notification(alice.id, "part", "{}", t(10))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .enqueue_notification(alice.id, "partial", "{\"n\":1}", t(10))
            .await
            .unwrap(),
        2
    );
    // Not due before its time.
    assert!(store
        .claim_deliveries(t(9), t(69), 10)
        .await
        .unwrap()
        .is_empty());
    let claimed = store.claim_deliveries(t(10), t(70), 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(claimed.iter().all(|c| c.target.user_id == alice.id));
    assert!(claimed.iter().all(|c| c.delivery.attempts == 1));
    // Leased: nobody else takes them until the lease ends.
    assert!(store
        .claim_deliveries(t(11), t(71), 10)
        .await
        .unwrap()
        .is_empty());
    let to_failed_only = claimed
        .iter()
        .find(|c| c.target.id == failed_only.id)
        .unwrap();
    assert_eq!(to_failed_only.delivery.event, "partial");
    assert_eq!(to_failed_only.delivery.payload, "{\"n\":1}");
    // A failed attempt with a retry time: pending again, due then.
    assert!(store
        .finish_delivery(DeliveryResult {
            delivery_id: to_failed_only.delivery.id,
            attempt: 1,
            ok: false,
            error: Some("connection refused".into()),
            retry_at: Some(t(100)),
            now: t(12),
        })
        .await
        .unwrap());
    // The same claim cannot finish twice.
    assert!(!store
        .finish_delivery(DeliveryResult {
            delivery_id: to_failed_only.delivery.id,
            attempt: 1,
            ok: true,
            error: None,
            retry_at: None,
            now: t(13),
        })
        .await
        .unwrap());
    let t2 = store
        .get_notify_target(alice.id, failed_only.id)
        .await
        .unwrap();
    assert_eq!(t2.last_attempt_at, Some(t(12)));
    assert_eq!(t2.last_error.as_deref(), Some("connection refused"));
    assert_eq!(t2.last_event.as_deref(), Some("partial"));
    // At 99 the other two leases (until 70) have expired: a node died mid-delivery. They are
    // claimed again with a new token; the retry of the failed one is not due yet.
    let retaken = store.claim_deliveries(t(99), t(159), 10).await.unwrap();
    assert_eq!(retaken.len(), 2);
    assert!(retaken
        .iter()
        .all(|c| c.target.id == all.id && c.delivery.attempts == 2));
    let again = store.claim_deliveries(t(100), t(160), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.attempts, 2);
    assert!(store
        .finish_delivery(DeliveryResult {
            delivery_id: again[0].delivery.id,
            attempt: 2,
            ok: true,
            error: None,
            retry_at: None,
            now: t(101),
        })
        .await
        .unwrap());
    let rows = store.target_deliveries(failed_only.id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "delivered");
    assert_eq!(rows[0].finished_at, Some(t(101)));
    let t2 = store
        .get_notify_target(alice.id, failed_only.id)
        .await
        .unwrap();
    assert_eq!(t2.last_error, None);
    assert_eq!(t2.last_attempt_at, Some(t(101)));
    // The old claim of a retaken delivery can no longer write.
    let stale = claimed
        .iter()
        .find(|c| c.target.id == all.id && c.delivery.event == "part")
        .unwrap();
    assert!(!store
        .finish_delivery(DeliveryResult {
            delivery_id: stale.delivery.id,
            attempt: 1,
            ok: true,
            error: None,
            retry_at: None,
            now: t(201),
        })
        .await
        .unwrap());
    // Giving up: failed for good, never claimed again.
    for c in &retaken {
        assert!(store
            .finish_delivery(DeliveryResult {
                delivery_id: c.delivery.id,
                attempt: c.delivery.attempts,
                ok: false,
                error: Some("HTTP 410".into()),
                retry_at: None,
                now: t(202),
            })
            .await
            .unwrap());
    }
    assert!(store
        .claim_deliveries(t(10_000), t(10_060), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .target_deliveries(all.id)
        .await
        .unwrap()
        .iter()
        .all(|d| d.status == "failed"));
    // A test delivery is recorded as the last result.
    store
        .record_notify_result(bobs.id, "test", Some("timed out"), t(300))
        .await
        .unwrap();
    let b = store.get_notify_target(bob.id, bobs.id).await.unwrap();
    assert_eq!(b.last_event.as_deref(), Some("test"));
    assert_eq!(b.last_error.as_deref(), Some("timed out"));
    // Deleting a target drops its queue.
    store.delete_notify_target(alice.id, all.id).await.unwrap();
    assert!(store.target_deliveries(all.id).await.unwrap().is_empty());
}

/// Freshness lists unpaused jobs with their newest success; stale marks are once per basis.
pub async fn freshness_and_stale_marks(store: Arc<dyn Store>) {
    let alice = user(&store, 1).await;
    let job = store
        .create_job(new_job(alice.id, "a/one", t(0)))
        .await
        .unwrap();
    let paused = store
        .create_job(new_job(alice.id, "a/two", t(1_000_000)))
        .await
        .unwrap();
    store
        .update_job(
            alice.id,
            paused.id,
            ghbs_store::JobPatch {
                paused: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let fresh = store.stale_candidates().await.unwrap();
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].job.id, job.id);
    assert_eq!(fresh[0].last_success_at, None);
    for (at, status) in [(10, RunStatus::Succeeded), (20, RunStatus::Failed)] {
        let claim = store
            .claim_due("n", t(at), t(at + 60), 1)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert!(store
            .finish_run(
                job.id,
                claim.lease_token,
                claim.run.id,
                outcome(status, t(at + 5)),
                t(at + 1)
            )
            .await
            .unwrap());
    }
    let fresh = store.stale_candidates().await.unwrap();
    assert_eq!(fresh[0].last_success_at, Some(t(11)));
    assert!(store.mark_stale_notified(job.id, t(11)).await.unwrap());
    assert!(!store.mark_stale_notified(job.id, t(11)).await.unwrap());
    assert!(store.mark_stale_notified(job.id, t(50)).await.unwrap());
    assert!(!store.mark_stale_notified(job.id, t(50)).await.unwrap());
}
