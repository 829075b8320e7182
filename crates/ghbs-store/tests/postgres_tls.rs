//! PostgreSQL over TLS, as managed databases require: `sslmode=require` encrypts,
//! `sslmode=verify-full` with `sslrootcert=` also checks the server's certificate and name.
//!
//! Needs `TEST_DATABASE_URL` (a server with TLS on) and, for verification, `TEST_DATABASE_CA`
//! (the CA that signed the server's certificate): `.ci/run` sets both, making a throwaway CA.

use sqlx::Connection;

fn server() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            eprintln!("skipping PostgreSQL TLS tests: TEST_DATABASE_URL is not set (CI sets it)");
            None
        }
    }
}

fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// A fresh schema, so that the store's migrations do not meet another test's tables.
async fn schema(server: &str) -> String {
    let schema = format!("tls_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(server).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    schema
}

async fn drop_schema(server: &str, schema: &str) {
    let mut conn = sqlx::PgConnection::connect(server).await.unwrap();
    let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut conn)
        .await;
}

/// Whether every live connection named `app` is encrypted, as the server sees it (and how many
/// there are).
async fn encrypted_connections(server: &str, app: &str) -> (i64, bool) {
    let mut conn = sqlx::PgConnection::connect(server).await.unwrap();
    let (n, all): (i64, Option<bool>) = sqlx::query_as(
        "SELECT count(*), bool_and(s.ssl) FROM pg_stat_ssl s
         JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
    )
    .bind(app)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    (n, all.unwrap_or(false))
}

#[tokio::test]
async fn sslmode_require_encrypts_every_store_connection() {
    let Some(server) = server() else { return };
    let schema = schema(&server).await;
    let app = format!("ghbs-tls-{}", uuid::Uuid::new_v4().simple());
    let url = with_params(
        &server,
        &format!("sslmode=require&application_name={app}&options=-csearch_path%3D{schema}"),
    );
    let store = ghbs_store::connect(&url).await.expect("open over TLS");
    store.ping().await.unwrap();
    let (n, encrypted) = encrypted_connections(&server, &app).await;
    assert!(n >= 1, "no store connection seen by the server");
    assert!(
        encrypted,
        "{n} store connections, not all of them encrypted"
    );
    drop(store);
    drop_schema(&server, &schema).await;
}

#[tokio::test]
async fn verify_full_checks_the_certificate_against_the_given_root() {
    let Some(server) = server() else { return };
    let Ok(ca) = std::env::var("TEST_DATABASE_CA") else {
        eprintln!(
            "skipping certificate verification: TEST_DATABASE_CA is not set (.ci/run makes a CA)"
        );
        return;
    };
    // The certificate names localhost, so the URL must too for verify-full.
    let server = server.replace("@127.0.0.1:", "@localhost:");
    let schema = schema(&server).await;
    let verified = with_params(
        &server,
        &format!("sslmode=verify-full&sslrootcert={ca}&options=-csearch_path%3D{schema}"),
    );
    let store = ghbs_store::connect(&verified)
        .await
        .expect("verify-full with the right CA");
    store.ping().await.unwrap();
    drop(store);

    // Roots that did not sign the server's certificate: refused, with an error that names TLS
    // and does not repeat the URL (it carries the password).
    let wrong = with_params(
        &server,
        &format!(
            "sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt\
             &options=-csearch_path%3D{schema}"
        ),
    );
    let err = match ghbs_store::connect(&wrong).await {
        Ok(_) => panic!("a certificate not signed by the given roots was accepted"),
        Err(e) => e.to_string(),
    };
    let lower = err.to_lowercase();
    assert!(
        lower.contains("tls") || lower.contains("certificate") || lower.contains("ssl"),
        "{err}"
    );
    assert!(!err.contains("postgres://"), "{err}");
    drop_schema(&server, &schema).await;
}
