//! What ran and how fresh everything is: pg_cron jobs with their last runs from `pgdw.runs`,
//! and pg_partman's partitioned tables.

use serde::Serialize;
use sqlx::{PgConnection, Row};

#[derive(Debug, Serialize)]
pub struct Job {
    pub name: String,
    pub schedule: String,
    pub active: bool,
    pub last_status: Option<String>,
    pub last_started: Option<i64>,
    pub last_duration_secs: Option<f64>,
    pub rows: Option<[Option<i64>; 3]>,
    pub last_error: Option<String>,
    /// Seconds since the last successful run.
    pub age_secs: Option<i64>,
    pub period_secs: Option<i64>,
    pub next_run: Option<i64>,
    /// Last run failed, or no success within two periods.
    pub failing: bool,
    pub stale: bool,
}

#[derive(Debug, Serialize)]
pub struct Partitioned {
    pub table: String,
    pub partitions: i64,
    pub oldest: Option<String>,
    pub newest: Option<String>,
    pub bytes: i64,
    pub default_rows: i64,
    pub retention: Option<String>,
}

#[derive(Debug, Serialize, Default)]
pub struct Freshness {
    pub now: i64,
    pub jobs: Vec<Job>,
    pub partitioned: Vec<Partitioned>,
}

async fn exists(conn: &mut PgConnection, sql: &str) -> bool {
    sqlx::query_scalar::<_, bool>(sql)
        .fetch_one(conn)
        .await
        .unwrap_or(false)
}

pub async fn read(conn: &mut PgConnection) -> anyhow::Result<Freshness> {
    let now: i64 = sqlx::query_scalar("SELECT extract(epoch FROM now())::bigint")
        .fetch_one(&mut *conn)
        .await?;
    let mut f = Freshness {
        now,
        ..Freshness::default()
    };
    if crate::runtime::installed(conn).await?.readable() {
        // The view is the one definition of stale and failing (alert rules and BI tools read
        // it too); this only formats it.
        let rows = sqlx::query(
            "SELECT job, schedule, active, last_status,
                    extract(epoch FROM last_started)::bigint AS started,
                    extract(epoch FROM last_finished - last_started)::float8 AS secs,
                    rows_inserted, rows_updated, rows_deleted, last_error,
                    extract(epoch FROM age)::bigint AS age,
                    extract(epoch FROM period)::bigint AS period,
                    extract(epoch FROM next_run)::bigint AS next_run,
                    stale, failing
               FROM pgdw.job_freshness ORDER BY job",
        )
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            let status: Option<String> = r.get("last_status");
            let rows_changed = status.as_ref().map(|_| {
                [
                    r.get("rows_inserted"),
                    r.get("rows_updated"),
                    r.get("rows_deleted"),
                ]
            });
            f.jobs.push(Job {
                name: r.get("job"),
                schedule: r.get("schedule"),
                active: r.get("active"),
                last_status: status,
                last_started: r.get("started"),
                last_duration_secs: r.get("secs"),
                rows: rows_changed,
                last_error: r.get("last_error"),
                age_secs: r.get("age"),
                period_secs: r.get("period"),
                next_run: r.get("next_run"),
                failing: r.get("failing"),
                stale: r.get("stale"),
            });
        }
    }
    if exists(
        conn,
        "SELECT to_regclass('partman.part_config') IS NOT NULL",
    )
    .await
    {
        let parents: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT parent_table, retention FROM partman.part_config ORDER BY parent_table",
        )
        .fetch_all(&mut *conn)
        .await?;
        for (table, retention) in parents {
            let row = sqlx::query(
                "SELECT count(*) AS n, min(c.relname) AS oldest, max(c.relname) AS newest,
                        coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes
                   FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = $1::regclass AND c.relname NOT LIKE '%\\_default'",
            )
            .bind(&table)
            .fetch_one(&mut *conn)
            .await?;
            let default = format!("{table}_default");
            let default_rows: i64 = if exists(
                conn,
                &format!(
                    "SELECT to_regclass({}) IS NOT NULL",
                    crate::quote::literal(&default)
                ),
            )
            .await
            {
                // The name comes from pg_partman's catalog; quote it anyway.
                let (schema, name) = default.split_once('.').unwrap_or(("public", &default));
                sqlx::query_scalar(&format!(
                    "SELECT count(*) FROM {}.{}",
                    crate::quote::ident(schema),
                    crate::quote::ident(name)
                ))
                .fetch_one(&mut *conn)
                .await?
            } else {
                0
            };
            f.partitioned.push(Partitioned {
                table,
                partitions: row.get("n"),
                oldest: row.get("oldest"),
                newest: row.get("newest"),
                bytes: row.get("bytes"),
                default_rows,
                retention,
            });
        }
    }
    Ok(f)
}

impl Job {
    /// What stands out about the job: FAILING, STALE, not run yet, or ok.
    pub fn state(&self) -> &'static str {
        if self.failing {
            "FAILING"
        } else if self.stale {
            "STALE"
        } else if self.last_status.is_none() {
            "not run yet"
        } else {
            "ok"
        }
    }

    /// The last run's rows as `+inserted ~updated -deleted`.
    pub fn rows_text(&self) -> Option<String> {
        self.rows.map(|r| {
            format!(
                "+{} ~{} -{}",
                r[0].unwrap_or(0),
                r[1].unwrap_or(0),
                r[2].unwrap_or(0)
            )
        })
    }
}

/// A past moment as "12 s ago", "5 min ago", "3 h ago", "2 days ago".
pub fn ago(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// The text block of `pgdw status`.
pub fn print(f: &Freshness) {
    if !f.jobs.is_empty() {
        outln!("  jobs:");
        for j in &f.jobs {
            let flag = j.state();
            let last = match (&j.last_status, j.last_started) {
                (Some(s), Some(t)) => format!(
                    "last {s} {} ({:.1} s{})",
                    ago(f.now - t),
                    j.last_duration_secs.unwrap_or(0.0),
                    j.rows_text().map(|r| format!(", {r}")).unwrap_or_default()
                ),
                _ => "never ran".into(),
            };
            let fresh = j
                .age_secs
                .map(|a| format!(", fresh as of {}", ago(a)))
                .unwrap_or_default();
            let next = j
                .next_run
                .map(|n| format!(", next in {} s", n - f.now))
                .unwrap_or_default();
            outln!(
                "    {:<28} {:<12} [{flag}] {last}{fresh}{next}",
                j.name,
                j.schedule
            );
            if let (true, Some(e)) = (j.failing, &j.last_error) {
                outln!("      error: {e}");
            }
        }
    }
    if !f.partitioned.is_empty() {
        outln!("  partitioned tables:");
        for p in &f.partitioned {
            let warn = if p.default_rows > 0 {
                format!(
                    " [WARNING: {} rows in the default partition: create the missing partitions]",
                    p.default_rows
                )
            } else {
                String::new()
            };
            outln!(
                "    {:<28} {} partitions ({} .. {}), {} bytes, retention {}{warn}",
                p.table,
                p.partitions,
                p.oldest.as_deref().unwrap_or("-"),
                p.newest.as_deref().unwrap_or("-"),
                p.bytes,
                p.retention.as_deref().unwrap_or("none")
            );
        }
    }
}
