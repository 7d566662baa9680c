//! Built-in panels: the jobs and partitions of `pgdw status` (the same code reads them) and
//! the alerts' states, as tables.

use std::time::Instant;

use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};

use crate::dashboards::query::{PanelData, PanelError};
use crate::dashboards::Builtin;

fn failed(e: impl std::fmt::Display) -> PanelError {
    PanelError {
        error: e.to_string(),
        sqlstate: None,
    }
}

fn ago(secs: Option<i64>) -> Value {
    secs.map_or(Value::Null, |s| json!(crate::jobs::freshness::ago(s)))
}

pub async fn run(owner: &PgPool, which: Builtin) -> Result<PanelData, PanelError> {
    let start = Instant::now();
    // One connection per request, and nothing else taken from the pool while it is held: a
    // request that waits for a second connection while holding one deadlocks the pool as soon
    // as there are as many such requests as connections.
    let mut conn = owner.acquire().await.map_err(failed)?;
    let (columns, rows): (Vec<&str>, Vec<Vec<Value>>) = match which {
        Builtin::Jobs => {
            let f = crate::jobs::freshness::read(&mut conn)
                .await
                .map_err(failed)?;
            let rows = f
                .jobs
                .iter()
                .map(|j| {
                    vec![
                        json!(j.name),
                        json!(j.state()),
                        json!(j.schedule),
                        ago(j.last_started.map(|t| f.now - t)),
                        json!(j.last_duration_secs.map(|s| (s * 1000.0).round() / 1000.0)),
                        json!(j.rows_text()),
                        ago(j.age_secs),
                        json!(j.last_error),
                    ]
                })
                .collect();
            (
                vec![
                    "job",
                    "state",
                    "schedule",
                    "last run",
                    "seconds",
                    "rows",
                    "fresh as of",
                    "last error",
                ],
                rows,
            )
        }
        Builtin::Partitions => {
            let f = crate::jobs::freshness::read(&mut conn)
                .await
                .map_err(failed)?;
            let rows = f
                .partitioned
                .iter()
                .map(|p| {
                    vec![
                        json!(p.table),
                        json!(p.partitions),
                        json!(p.oldest),
                        json!(p.newest),
                        json!(p.bytes),
                        json!(p.default_rows),
                        json!(p.retention),
                    ]
                })
                .collect();
            (
                vec![
                    "table",
                    "partitions",
                    "oldest",
                    "newest",
                    "bytes",
                    "rows in default",
                    "retention",
                ],
                rows,
            )
        }
        Builtin::Replication => {
            let list = crate::replicate::status(&mut conn).await.map_err(failed)?;
            let rows = list
                .iter()
                .map(|s| {
                    let ready = s.tables.iter().filter(|(_, st)| st == "ready").count();
                    vec![
                        json!(s.name),
                        json!(s.state),
                        json!(s.lag_secs.map(|l| (l * 10.0).round() / 10.0)),
                        json!(s.lag_bytes),
                        json!(format!("{ready}/{}", s.tables.len())),
                        json!(s.wal_status),
                        json!(s.retained_bytes),
                        json!(s.apply_errors.unwrap_or(0) + s.sync_errors.unwrap_or(0)),
                        json!(s.problem),
                    ]
                })
                .collect();
            (
                vec![
                    "source",
                    "state",
                    "lag (s)",
                    "lag (bytes)",
                    "tables ready",
                    "slot",
                    "slot retains (bytes)",
                    "errors",
                    "problem",
                ],
                rows,
            )
        }
        Builtin::Alerts => {
            let v = alerts_json(&mut conn).await.map_err(failed)?;
            let rows = v["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|a| {
                    vec![
                        a["alert"].clone(),
                        a["state"].clone(),
                        a["since"].clone(),
                        a["detail"].clone(),
                    ]
                })
                .collect();
            (vec!["alert", "state", "since", "detail"], rows)
        }
    };
    Ok(PanelData {
        columns: columns.into_iter().map(String::from).collect(),
        rows,
        elapsed_ms: start.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Every alert's state, and the latest state changes with their delivery.
pub async fn alerts_json(conn: &mut PgConnection) -> Result<Value, sqlx::Error> {
    if !crate::runtime::installed(conn).await?.readable() {
        return Ok(json!({"alerts": [], "events": []}));
    }
    let v: Option<String> = sqlx::query_scalar(
        "SELECT json_build_object(
           'alerts', coalesce((SELECT json_agg(json_build_object('alert', alert, 'state', state,
                       'since', since, 'evaluated_at', evaluated_at, 'detail', detail)
                       ORDER BY state <> 'firing', alert) FROM pgdw.alert_state), '[]'),
           'events', coalesce((SELECT json_agg(e ORDER BY e.id DESC) FROM
                       (SELECT id, alert, at, from_state, to_state, detail, delivered_at, attempts, last_error
                          FROM pgdw.alert_events ORDER BY id DESC LIMIT 50) e), '[]'))::text",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(v.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null))
}
