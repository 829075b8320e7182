//! A write that fails inside a transaction leaves no pooled connection inside it.

use sqlx::Connection;

use super::{new_job, t, user, Db};

/// SQLite: `RAISE(ROLLBACK)` ends the transaction inside the database, as `SQLITE_FULL` does on
/// a full disk, so the driver's own ROLLBACK then fails. PostgreSQL: the exception aborts the
/// transaction.
const SQLITE_FAIL: &str = "CREATE TRIGGER inject_failure BEFORE INSERT ON runs
    BEGIN SELECT RAISE(ROLLBACK, 'injected write failure'); END";
const PG_FAIL: &[&str] = &[
    "CREATE FUNCTION inject_failure() RETURNS trigger LANGUAGE plpgsql AS
     $$ BEGIN RAISE EXCEPTION 'injected write failure'; END $$",
    "CREATE TRIGGER inject_failure BEFORE INSERT ON runs
     FOR EACH ROW EXECUTE FUNCTION inject_failure()",
];

async fn exec_all(db: &Db, statements: &[&str]) {
    if db.pg_schema.is_some() {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        for s in statements {
            sqlx::query(s).execute(&mut conn).await.expect("inject");
        }
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&db.url)
            .await
            .expect("connect");
        for s in statements {
            sqlx::query(s).execute(&mut conn).await.expect("inject");
        }
    }
}

pub async fn failed_claim_leaves_no_open_transaction(db: &Db) {
    let store = db.open().await;
    let alice = user(&store, 1).await;
    let job = store
        .create_job(new_job(alice.id, "a/one", t(0)))
        .await
        .unwrap();
    if db.pg_schema.is_some() {
        exec_all(db, PG_FAIL).await;
    } else {
        exec_all(db, &[SQLITE_FAIL]).await;
    }
    // Several failures in a row: each one used (and returned) a pooled connection. On
    // PostgreSQL a later attempt may find the job still locked by the previous one (its ROLLBACK
    // is sent when the connection goes back to the pool) and skip it: it must still claim nothing.
    let first = store.claim_due("n1", t(1), t(61), 10).await;
    assert!(
        first.is_err(),
        "the injected failure must fail the claim: {:?}",
        first.map(|c| c.len())
    );
    for _ in 0..3 {
        let again = store.claim_due("n1", t(1), t(61), 10).await;
        assert!(
            again.as_ref().map_or(true, |c| c.is_empty()),
            "a failing claim must not hand out the job"
        );
    }
    // Nothing of the failed claims stayed: the job is still free.
    assert_eq!(
        store.get_job(alice.id, job.id).await.unwrap().lease_owner,
        None
    );
    let drop = if db.pg_schema.is_some() {
        "DROP TRIGGER inject_failure ON runs"
    } else {
        "DROP TRIGGER inject_failure"
    };
    exec_all(db, &[drop]).await;
    // Every later transaction works on whichever connection the pool hands out: an error now
    // is the bug (a connection stuck at a non-zero transaction depth); an empty claim only means
    // the last failed attempt's rollback has not reached the server yet.
    let mut claims = Vec::new();
    for _ in 0..100 {
        claims = store
            .claim_due("n1", t(2), t(62), 10)
            .await
            .expect("a claim after the failures");
        if !claims.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].job.id, job.id);
    for _ in 0..3 {
        store
            .request_run(alice.id, job.id, t(3))
            .await
            .expect("a write transaction after the failures");
    }
}

/// Authentication refreshes `last_used_at`; a database that refuses that write (a full disk)
/// still authenticates, and the key's use is recorded once writes work again.
pub async fn authentication_survives_a_failed_refresh(db: &Db) {
    let store = db.open().await;
    let alice = user(&store, 1).await;
    store
        .create_api_key(alice.id, "hash-a", None, t(0))
        .await
        .unwrap();
    if db.pg_schema.is_some() {
        exec_all(
            db,
            &[
                PG_FAIL[0],
                "CREATE TRIGGER inject_failure BEFORE UPDATE ON api_keys
                 FOR EACH ROW EXECUTE FUNCTION inject_failure()",
            ],
        )
        .await;
    } else {
        exec_all(
            db,
            &["CREATE TRIGGER inject_failure BEFORE UPDATE ON api_keys
               BEGIN SELECT RAISE(ABORT, 'injected write failure'); END"],
        )
        .await;
    }
    let (key, owner) = store
        .authenticate_key("hash-a", t(100))
        .await
        .expect("a read must not fail on a refused bookkeeping write");
    assert_eq!(owner.id, alice.id);
    assert_eq!(key.last_used_at, None, "nothing was recorded");
    let drop = if db.pg_schema.is_some() {
        "DROP TRIGGER inject_failure ON api_keys"
    } else {
        "DROP TRIGGER inject_failure"
    };
    exec_all(db, &[drop]).await;
    let (key, _) = store.authenticate_key("hash-a", t(200)).await.unwrap();
    assert_eq!(key.last_used_at, Some(t(200)));
    let listed = store.list_api_keys(alice.id).await.unwrap();
    assert_eq!(listed[0].last_used_at, Some(t(200)));
}
