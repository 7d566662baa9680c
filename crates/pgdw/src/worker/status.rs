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
}

/// None when the warehouse has no queue (pgdw not installed there).
pub async fn read(conn: &mut PgConnection) -> anyhow::Result<Option<QueueStatus>> {
    let installed: bool = sqlx::query_scalar("SELECT to_regclass('pgdw.queue') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !installed {
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
    Ok(Some(QueueStatus {
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
}
