//! A fresh schema on the real PostgreSQL that `TEST_DATABASE_URL` names (CI starts one).

use sqlx::Connection;

/// Creates a uniquely named schema (`{prefix}_{uuid}`) and returns a database URL whose
/// connections use it (`options=-csearch_path=…`); `None`, with the reason printed, when
/// `TEST_DATABASE_URL` is unset. The schema is left behind (the test database is disposable).
pub async fn pg_schema_url(test: &str, prefix: &str) -> Option<String> {
    let Ok(server) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!(
            "skipping {test}: TEST_DATABASE_URL is unset (.ci/run starts PostgreSQL and sets it)"
        );
        return None;
    };
    let schema = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&server)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("create a test schema");
    let sep = if server.contains('?') { '&' } else { '?' };
    Some(format!("{server}{sep}options=-csearch_path%3D{schema}"))
}
