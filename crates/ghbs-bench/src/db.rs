//! The database a benchmark runs on: a fresh SQLite file, or a fresh schema in the PostgreSQL
//! database the user names (created at start, dropped at the end), so a benchmark never touches
//! existing tables.

use std::path::Path;

use sqlx::Connection;

pub struct BenchDb {
    /// What the store and the server connect to.
    pub url: String,
    /// PostgreSQL: the user's URL and the schema to drop afterwards.
    pg: Option<(String, String)>,
}

impl BenchDb {
    /// `None` → `sqlite://DIR/bench.db`; `postgres://…` → a new schema `ghbs_bench_PID_MILLIS`
    /// selected through the connection's `search_path` (`options=-csearch_path%3D…`).
    pub async fn prepare(arg: Option<&str>, dir: &Path) -> anyhow::Result<BenchDb> {
        let Some(url) = arg else {
            return Ok(BenchDb {
                url: format!("sqlite://{}", dir.join("bench.db").display()),
                pg: None,
            });
        };
        if url.starts_with("sqlite:") {
            return Ok(BenchDb {
                url: url.to_string(),
                pg: None,
            });
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            anyhow::bail!("--database must be sqlite://PATH or postgres://…");
        }
        if url.contains("search_path") {
            anyhow::bail!(
                "--database already selects a search_path; pass the plain database URL: the \
                 benchmark creates (and drops) its own schema"
            );
        }
        let schema = format!(
            "ghbs_bench_{}_{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        );
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create schema {schema}: {e}"))?;
        conn.close().await.ok();
        let sep = if url.contains('?') { '&' } else { '?' };
        Ok(BenchDb {
            url: format!("{url}{sep}options=-csearch_path%3D{schema}"),
            pg: Some((url.to_string(), schema)),
        })
    }

    /// The backend, for the report.
    pub fn kind(&self) -> &'static str {
        if self.pg.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    }

    /// Drop the PostgreSQL schema (SQLite files go with their temporary folder).
    pub async fn cleanup(self) {
        let Some((url, schema)) = self.pg else {
            return;
        };
        match sqlx::PgConnection::connect(&url).await {
            Ok(mut conn) => {
                if let Err(e) = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut conn)
                    .await
                {
                    eprintln!("warning: could not drop schema {schema}: {e}");
                }
                conn.close().await.ok();
            }
            Err(e) => eprintln!("warning: could not drop schema {schema}: {e}"),
        }
    }
}
