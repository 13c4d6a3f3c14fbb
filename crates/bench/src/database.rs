//! A throwaway PostgreSQL database for one multi-node benchmark scenario: created as
//! `logoutd_bench_<random>` on the server the bench was given, dropped when the scenario ends.

use sqlx::{Connection, PgConnection};

/// Prefix of every benchmark database, so a left-over one is easy to recognise.
const PREFIX: &str = "logoutd_bench_";

/// A database created for the benchmark; [`BenchDatabase::drop_now`] removes it.
pub struct BenchDatabase {
    server: String,
    name: String,
    /// URL of the new database on the same server.
    pub url: String,
}

impl BenchDatabase {
    /// Creates a fresh database on the server at `server`
    /// (e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
    pub async fn create(server: &str) -> anyhow::Result<Self> {
        let name = format!("{PREFIX}{:016x}", rand::random::<u64>());
        let mut conn = PgConnection::connect(server).await?;
        let sql = format!("CREATE DATABASE \"{name}\"");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let mut url = url::Url::parse(server)?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            server: server.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    /// Drops the database, closing connections still open on it.
    pub async fn drop_now(self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(&self.server).await?;
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    }
}
