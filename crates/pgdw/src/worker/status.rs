//! The queue at a glance (`pgdw.queue`), for `pgdw status`.

use serde::Serialize;
use sqlx::{PgConnection, Row};

#[derive(Debug, Serialize)]
pub struct QueueStatus {
    /// Tasks that could run now and wait for a worker.
    pub due: i64,
    /// Enqueued for later, or waiting out a retry's backoff.
    pub scheduled: i64,
    pub running: i64,
    /// How long the oldest due task has waited, in seconds.
    pub oldest_due_seconds: Option<f64>,
    pub succeeded_last_hour: i64,
    pub failed_last_day: i64,
    /// Workers seen in the last minute.
    pub workers: i64,
    /// The last day's failures, newest first (at most 5).
    pub recent_failures: Vec<String>,
    /// Each rollup (`pgdw.rollup`) with how far it is behind its source.
    pub rollups: Vec<RollupLag>,
    /// Rollups no longer kept: their table or source was dropped (`pgdw.rollups_lost`).
    pub lost_rollups: Vec<LostRollup>,
}

#[derive(Debug, Serialize)]
pub struct LostRollup {
    pub name: String,
    pub source: String,
    /// Why, as `its table was dropped (DROP TABLE)`.
    pub reason: String,
    pub lost_at: String,
}

#[derive(Debug, Serialize)]
pub struct RollupLag {
    pub name: String,
    pub source: String,
    /// Groups changed and not yet recomputed.
    pub dirty_groups: i64,
    /// Age of the oldest change not yet applied, in seconds (0: caught up).
    pub lag_seconds: f64,
    /// Every group is to be recomputed (a TRUNCATE, a partition dropped while attached).
    pub recompute_all: bool,
    /// Tables the query reads besides its source, whose changes are not captured.
    pub also_reads: Vec<String>,
}

/// None when the warehouse has no queue (pgdw not installed there).
pub async fn read(conn: &mut PgConnection) -> anyhow::Result<Option<QueueStatus>> {
    if !crate::runtime::installed(conn).await?.readable() {
        return Ok(None);
    }
    let r = sqlx::query(
        "SELECT due, scheduled, running, extract(epoch FROM oldest_due_age)::float8 AS oldest,
                succeeded_last_hour, failed_last_day, workers FROM pgdw.queue",
    )
    .fetch_one(&mut *conn)
    .await?;
    let recent_failures = sqlx::query_scalar(
        "SELECT format('task %s (%s) after %s attempts: %s', id, kind, attempts, error)
           FROM pgdw.task_history WHERE state = 'failed' AND finished_at > now() - interval '1 day'
          ORDER BY finished_at DESC LIMIT 5",
    )
    .fetch_all(&mut *conn)
    .await?;
    let rollups = sqlx::query(
        "SELECT rollup, source, dirty_groups,
                coalesce(extract(epoch FROM oldest_change_age), 0)::float8 AS lag, recompute_all, also_reads
           FROM pgdw.rollup_status ORDER BY rollup",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| RollupLag {
        name: r.get("rollup"),
        source: r.get("source"),
        dirty_groups: r.get("dirty_groups"),
        lag_seconds: r.get("lag"),
        recompute_all: r.get("recompute_all"),
        also_reads: r.get("also_reads"),
    })
    .collect();
    let lost_rollups = sqlx::query(
        "SELECT name, source, reason, to_char(lost_at, 'YYYY-MM-DD HH24:MI:SS TZ') AS lost_at
           FROM pgdw.rollups_lost ORDER BY lost_at",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| LostRollup {
        name: r.get("name"),
        source: r.get("source"),
        reason: r.get("reason"),
        lost_at: r.get("lost_at"),
    })
    .collect();
    Ok(Some(QueueStatus {
        rollups,
        lost_rollups,
        due: r.get("due"),
        scheduled: r.get("scheduled"),
        running: r.get("running"),
        oldest_due_seconds: r.get("oldest"),
        succeeded_last_hour: r.get("succeeded_last_hour"),
        failed_last_day: r.get("failed_last_day"),
        workers: r.get("workers"),
        recent_failures,
    }))
}

pub fn print(q: &QueueStatus) {
    let waited = q
        .oldest_due_seconds
        .map(|s| format!(" (the oldest waiting {s:.1} s)"))
        .unwrap_or_default();
    outln!(
        "  queue: {} due{waited}, {} scheduled, {} running; {} succeeded in the last hour, {} failed in the last day; {} workers",
        q.due,
        q.scheduled,
        q.running,
        q.succeeded_last_hour,
        q.failed_last_day,
        q.workers
    );
    if q.workers == 0 && q.due > 0 {
        outln!("    no worker seen in the last minute: start one with `pgdw worker`");
    }
    for f in &q.recent_failures {
        outln!("    failed: {f}");
    }
    for r in &q.rollups {
        let behind = if r.recompute_all {
            format!("every group to recompute, {:.1} s behind", r.lag_seconds)
        } else if r.dirty_groups == 0 {
            "caught up".to_string()
        } else {
            format!(
                "{} groups to recompute, {:.1} s behind",
                r.dirty_groups, r.lag_seconds
            )
        };
        outln!("  rollup {} (from {}): {behind}", r.name, r.source);
        if !r.also_reads.is_empty() {
            outln!(
                "    also reads {}: changes there are not captured",
                r.also_reads.join(", ")
            );
        }
    }
    for l in &q.lost_rollups {
        outln!(
            "  rollup {} (from {}): no longer kept since {}: {}; register it again with pgdw.rollup, or SELECT pgdw.rollup_forget('{}')",
            l.name,
            l.source,
            l.lost_at,
            l.reason,
            l.name
        );
    }
}
