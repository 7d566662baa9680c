//! What a warehouse database needs (preloaded libraries, extensions), how to install it,
//! and how to explain what is missing on a server pgdw does not manage.

use anyhow::Context;
use serde::Serialize;
use sqlx::{PgConnection, Row};

/// The extensions every warehouse has, with the schema each lives in.
pub const EXTENSIONS: &[(&str, Option<&str>)] = &[
    ("postgres_fdw", None),
    ("pg_cron", None),
    ("pg_partman", Some("partman")),
    ("pg_stat_statements", None),
    ("prometheus_fdw", None),
    ("clerk_fdw", None),
    // Sketches for approximate distinct counts and percentiles in rollups (docs/analytics.md).
    ("hll", None),
    ("tdigest", None),
];

/// Libraries that must be in shared_preload_libraries.
pub const PRELOADED: &[&str] = &["pg_cron", "pg_stat_statements"];

#[derive(Debug, Serialize)]
pub struct ExtensionInfo {
    pub name: String,
    pub installed: Option<String>,
    pub available: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub server_version: String,
    pub database: String,
    pub extensions: Vec<ExtensionInfo>,
    /// Each entry says what is missing and how to fix it.
    pub problems: Vec<String>,
    /// pg_cron is preloaded and runs its jobs in this database (from `pg_settings`), so
    /// `CREATE EXTENSION pg_cron` can work here.
    pub cron_usable: bool,
}

/// Inspect the connected database without changing anything.
pub async fn inspect(conn: &mut PgConnection) -> anyhow::Result<Report> {
    let row = sqlx::query(
        "SELECT current_setting('server_version') AS version, current_database() AS db, \
                current_setting('shared_preload_libraries') AS preload, \
                (SELECT setting FROM pg_settings WHERE name = 'cron.database_name') AS cron_db",
    )
    .fetch_one(&mut *conn)
    .await
    .context("reading server settings")?;
    let server_version: String = row.get("version");
    let database: String = row.get("db");
    let preload: String = row.get("preload");
    let cron_db: Option<String> = row.get("cron_db");

    let mut problems = Vec::new();
    let preloaded: Vec<&str> = preload
        .split(',')
        .map(|s| s.trim().trim_matches('"'))
        .collect();
    for lib in PRELOADED {
        if !preloaded.contains(lib) {
            problems.push(format!(
                "{lib} is not preloaded: add it to shared_preload_libraries (now '{preload}') and restart the server"
            ));
        }
    }
    let cron_preloaded = preloaded.contains(&"pg_cron");
    // pg_cron's default database is `postgres` when the setting is absent.
    let cron_db = cron_db.unwrap_or_else(|| "postgres".into());
    let cron_usable = cron_preloaded && cron_db == database;
    if cron_preloaded && cron_db != database {
        problems.push(format!(
            "pg_cron runs its jobs in database '{cron_db}', not '{database}': set cron.database_name = '{database}' and restart"
        ));
    }

    let mut extensions = Vec::new();
    for (name, _) in EXTENSIONS {
        let row = sqlx::query(
            "SELECT (SELECT extversion FROM pg_extension WHERE extname = $1) AS installed, \
                    (SELECT default_version FROM pg_available_extensions WHERE name = $1) AS available",
        )
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .with_context(|| format!("looking up extension {name}"))?;
        let info = ExtensionInfo {
            name: name.to_string(),
            installed: row.get("installed"),
            available: row.get("available"),
        };
        if info.installed.is_none() && info.available.is_none() {
            problems.push(format!(
                "extension {name} is not installed on the server's machine: run scripts/setup.sh there \
                 (or install its package) so that CREATE EXTENSION {name} works"
            ));
        }
        extensions.push(info);
    }
    Ok(Report {
        server_version,
        database,
        extensions,
        problems,
        cron_usable,
    })
}

/// Create every extension that can be created; return what is still missing.
pub async fn install(conn: &mut PgConnection) -> anyhow::Result<Report> {
    let before = inspect(conn).await?;
    for (ext, info) in EXTENSIONS.iter().zip(&before.extensions) {
        let (name, schema) = *ext;
        if info.installed.is_some() || info.available.is_none() {
            continue;
        }
        if name == "pg_cron" && !before.cron_usable {
            continue; // already explained in the report; CREATE EXTENSION would only fail
        }
        let sql = match schema {
            Some(s) => format!(
                "CREATE SCHEMA IF NOT EXISTS {s}; CREATE EXTENSION IF NOT EXISTS {name} SCHEMA {s}"
            ),
            None => format!("CREATE EXTENSION IF NOT EXISTS {name}"),
        };
        sqlx::raw_sql(&sql)
            .execute(&mut *conn)
            .await
            .with_context(|| format!("CREATE EXTENSION {name}"))?;
    }
    let report = inspect(conn).await?;
    let has = |name: &str| {
        report
            .extensions
            .iter()
            .any(|e| e.name == name && e.installed.is_some())
    };
    if has("pg_cron") && has("pg_partman") {
        crate::runtime::install(conn).await?;
    }
    Ok(report)
}

/// Create the warehouse database when it does not exist (connected to another database).
pub async fn ensure_database(conn: &mut PgConnection, name: &str) -> anyhow::Result<bool> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        sqlx::raw_sql(&format!("CREATE DATABASE {}", crate::quote::ident(name)))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
    }
    Ok(!exists)
}
