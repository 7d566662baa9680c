//! The runtime in schema `pgdw`: the one ordered list of its SQL files (each beside the Rust
//! of its concern), its recorded version, the upgrade steps from earlier versions, and the one
//! probe every command asks before it uses the runtime.
//!
//! Every file holds current definitions only, written to be run again (`CREATE OR REPLACE`,
//! `IF NOT EXISTS`): `pgdw up` runs them all each time. What an earlier version left that
//! today's definitions cannot simply replace (a changed signature, a column added to a table
//! that exists) is an upgrade step, named like PostgreSQL extensions' `--1.0--1.1.sql`
//! scripts: `upgrade/V-W.sql` runs before the files, `upgrade/V-W.after.sql` after them (it may
//! call today's functions). A fresh install runs no upgrade step.

use anyhow::Context;
use sqlx::PgConnection;

/// The version the files below define. Raise it with every change a warehouse installed by
/// the previous release needs an upgrade step for, and add that step to [`UPGRADES`].
pub const VERSION: i32 = 1;

/// One SQL file of the runtime.
pub struct Part {
    /// Its path under `src/`, for errors and the test that every file is listed.
    pub file: &'static str,
    /// What it installs, as `pgdw up` says when it fails.
    pub what: &'static str,
    pub sql: &'static str,
}

macro_rules! part {
    ($file:literal, $what:literal) => {
        Part {
            file: $file,
            what: $what,
            sql: include_str!(concat!("../", $file)),
        }
    };
}

/// Every file of the runtime, in the order they are installed: each builds on the ones
/// before it.
pub const PARTS: &[Part] = &[
    part!("runtime/schema.sql", "the runtime's schema and version"),
    part!("secrets/secrets.sql", "secrets"),
    part!("jobs/runs.sql", "the run log"),
    part!("jobs/schedules.sql", "schedules"),
    part!("jobs/run.sql", "running a job"),
    part!("sync/sync.sql", "incremental sync"),
    part!("partitions/partitions.sql", "partitions"),
    part!("jobs/freshness.sql", "job freshness"),
    part!("alerts/alerts.sql", "alert state"),
    part!("replicate/replicate.sql", "replication"),
    part!("queue/queue.sql", "the work queue"),
    part!("materialize/materialize.sql", "materialized columns"),
    part!("rollup/rollup.sql", "incremental rollups"),
    part!("analytics/analytics.sql", "product analytics"),
    part!("metrics_load/metrics_load.sql", "metric loads"),
    part!(
        "metric_series/metric_series.sql",
        "metric series at a panel's resolution"
    ),
    part!("standby/standby.sql", "standbys"),
    part!("health/health.sql", "health checks"),
    part!("bi/bi.sql", "the views BI tools read (schema dw)"),
    part!(
        "rollup/registrants.sql",
        "rollups registered by other roles (dw.rollup)"
    ),
];

/// The steps from one version to the next.
pub struct Upgrade {
    pub from: i32,
    /// Run before the parts.
    pub before: &'static str,
    /// Run after the parts.
    pub after: &'static str,
}

pub const UPGRADES: &[Upgrade] = &[Upgrade {
    from: 0,
    before: include_str!("upgrade/0-1.sql"),
    after: include_str!("upgrade/0-1.after.sql"),
}];

/// What a database holds of the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    Missing,
    /// An earlier version: `pgdw up` upgrades it.
    Older(i32),
    Current,
    /// Installed by a later release of pgdw than this one.
    Newer(i32),
}

impl Installed {
    /// Whether this pgdw can read the runtime's tables and views.
    pub fn readable(self) -> bool {
        matches!(self, Installed::Current | Installed::Newer(_))
    }

    /// The runtime as this pgdw was built for, or an error saying what to run.
    pub fn require(self) -> anyhow::Result<()> {
        match self {
            Installed::Current => Ok(()),
            Installed::Missing => {
                anyhow::bail!("the warehouse has no pgdw runtime (schema pgdw): run `pgdw up` (or `pgdw migrate`) first")
            }
            Installed::Older(v) => anyhow::bail!(
                "the warehouse's pgdw runtime is version {v}, this pgdw needs {VERSION}: run `pgdw up` (or `pgdw migrate`) to upgrade it"
            ),
            Installed::Newer(v) => anyhow::bail!(
                "the warehouse's pgdw runtime is version {v}, newer than this pgdw's {VERSION}: use the pgdw that installed it"
            ),
        }
    }
}

/// The one probe of the runtime: its recorded version against this pgdw's.
pub async fn installed(conn: &mut PgConnection) -> Result<Installed, sqlx::Error> {
    Ok(match recorded(conn).await? {
        None => Installed::Missing,
        Some(v) if v < VERSION => Installed::Older(v),
        Some(v) if v > VERSION => Installed::Newer(v),
        Some(_) => Installed::Current,
    })
}

/// The recorded version; 0 for a runtime installed before versions were recorded (or whose
/// install stopped before it recorded one), None when there is none.
async fn recorded(conn: &mut PgConnection) -> Result<Option<i32>, sqlx::Error> {
    let (versioned, runs): (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('pgdw.runtime_version') IS NOT NULL, to_regclass('pgdw.runs') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    let version = if versioned {
        sqlx::query_scalar("SELECT pgdw.version()")
            .fetch_one(&mut *conn)
            .await?
    } else {
        None
    };
    Ok(version.or(runs.then_some(0)))
}

/// Install the runtime, or bring it to this version: the upgrade steps from the recorded
/// version, every part, then the version recorded.
pub async fn install(conn: &mut PgConnection) -> anyhow::Result<()> {
    let from = recorded(conn).await?;
    if let Some(v) = from.filter(|&v| v > VERSION) {
        Installed::Newer(v).require()?;
    }
    let steps: Vec<&Upgrade> = match from {
        Some(v) => UPGRADES.iter().filter(|u| u.from >= v).collect(),
        None => Vec::new(),
    };
    for u in &steps {
        install_file(conn, u.before)
            .await
            .with_context(|| format!("upgrading pgdw's runtime from version {}", u.from))?;
    }
    for p in PARTS {
        install_file(conn, p.sql)
            .await
            .with_context(|| format!("installing pgdw's {} ({}, schema pgdw)", p.what, p.file))?;
    }
    for u in &steps {
        install_file(conn, u.after)
            .await
            .with_context(|| format!("upgrading pgdw's runtime from version {}", u.from))?;
    }
    sqlx::query(
        "INSERT INTO pgdw.runtime_version (version) VALUES ($1)
         ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version, installed_at = now()",
    )
    .bind(VERSION)
    .execute(&mut *conn)
    .await
    .context("recording pgdw's runtime version")?;
    Ok(())
}

/// Run one of the runtime's files: one implicit transaction, so a failure leaves nothing of
/// it. Replacing functions and tables a running worker uses can deadlock with that worker's
/// statements (its claims and renewals lock the same tables in another order); PostgreSQL
/// then cancels one side, and the file, written to be run again, is run again.
async fn install_file(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    let mut attempt = 0;
    loop {
        match sqlx::raw_sql(sql).execute(&mut *conn).await {
            Err(sqlx::Error::Database(e))
                if attempt < 5 && matches!(e.code().as_deref(), Some("40P01" | "40001")) =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
            }
            other => return other.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The manifest is the only list: every SQL file under src/ is in it, once.
    #[test]
    fn every_sql_file_is_a_part() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        for dir in std::fs::read_dir(&src).unwrap() {
            let dir = dir.unwrap().path();
            if !dir.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "sql") {
                    found.push(f.strip_prefix(&src).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        let mut listed: Vec<String> = PARTS.iter().map(|p| p.file.to_string()).collect();
        listed.sort();
        assert_eq!(found, listed);
    }

    #[test]
    fn upgrades_lead_to_this_version() {
        for (i, u) in UPGRADES.iter().enumerate() {
            assert_eq!(u.from, i as i32, "one step per version, in order");
        }
        assert_eq!(UPGRADES.len() as i32, VERSION);
    }
}
