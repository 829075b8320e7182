use std::time::Instant;
use chrono::{TimeZone, Utc, Duration};
use sqlx::Connection;

fn t(s: i64) -> chrono::DateTime<Utc> { Utc.with_ymd_and_hms(2030,1,1,0,0,0).unwrap() + Duration::seconds(s) }

async fn bench(store: std::sync::Arc<dyn ghbs_store::Store>, label: &str) {
    let mut claimed = 0;
    let start = Instant::now();
    while claimed < 10_000 {
        let c = store.claim_due("n", t(50_000), t(60_000), 64).await.unwrap();
        assert!(!c.is_empty());
        claimed += c.len();
    }
    let el = start.elapsed();
    let s2 = Instant::now();
    for _ in 0..20 { assert!(store.claim_due("n", t(-10), t(60_000), 64).await.unwrap().is_empty()); }
    println!("{label}: idle poll {:?}", s2.elapsed() / 20);
    println!("{label}: {claimed} claims in {el:?} = {:.0}/s", claimed as f64 / el.as_secs_f64());
}

#[tokio::test]
#[ignore]
async fn sqlite_bench() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("b.db").display());
    let store = ghbs_store::connect(&url).await.unwrap();
    let u = store.upsert_user(1, "u", b"x", t(0)).await.unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    // 100k jobs; job i due at i seconds; "now" = 50_000 → 50k due
    sqlx::query("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < 99999)
      INSERT INTO jobs (user_id, target, target_kind, schedule, timezone, retention, options, next_run_at, created_at)
      SELECT ?, 'o/r' || i, 'repository', 'daily', 'UTC', '{\"keep_last\":30}', '{}', ? + (i * 1000000 / 2), 0 FROM n")
      .bind(u.id).bind(t(0).timestamp_micros()).execute(&mut conn).await.unwrap();
    bench(store, "sqlite").await;
}

#[tokio::test]
#[ignore]
async fn pg_bench() {
    let url = std::env::var("TEST_DATABASE_URL").unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("DROP SCHEMA IF EXISTS bench CASCADE").execute(&mut conn).await.unwrap();
    sqlx::query("CREATE SCHEMA bench").execute(&mut conn).await.unwrap();
    let surl = format!("{url}?options=-csearch_path%3Dbench");
    let store = ghbs_store::connect(&surl).await.unwrap();
    let u = store.upsert_user(1, "u", b"x", t(0)).await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&surl).await.unwrap();
    sqlx::query("INSERT INTO jobs (user_id, target, target_kind, schedule, timezone, retention, options, next_run_at, created_at)
      SELECT $1, 'o/r' || i, 'repository', 'daily', 'UTC', '{\"keep_last\":30}', '{}', $2 + i * interval '0.5 second', $2 FROM generate_series(0, 99999) i")
      .bind(u.id).bind(t(0)).execute(&mut conn).await.unwrap();
    sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
    bench(store, "pg").await;
}
