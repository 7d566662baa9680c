//! Metric loads, the worker's way (`metrics_load.sql` beside this file registers them and holds the other
//! way): Prometheus read through prometheus_fdw's own Rust code, samples streamed into the
//! target table with binary `COPY FROM STDIN`, six hours per transaction.
//!
//! Why not `INSERT ... SELECT` from the foreign table: the executor inserts, indexes and logs
//! one row at a time, and that alone is about half of COPY's rate; COPY inserts in batches.
//! Why the wrapper's code rather than a second client: the same requests and the same rows
//! (`tests/cli/metrics_load.rs` loads a window both ways and compares them), and one place
//! that knows Prometheus.
//!
//! Memory stays flat whatever the range: two chunks' replies at most are held (the one being
//! written and the next, read meanwhile), batches of 10,000 rows are encoded and sent as they
//! come, and each chunk's COPY ends with its transaction (the foreign key's queued checks
//! with it).

mod copy_binary;
mod source;

use std::collections::HashMap;
use std::sync::Arc;

use pgdw_fdw_api::{Cell, FdwError, Row};
use sqlx::{PgConnection, PgPool};

use copy_binary::{Float, Int, SampleRows};
use source::ForeignTable;

/// The first chunk of a run, in seconds: small, so that the server starts writing after a
/// short reply (the next chunk is read meanwhile). The others are `pgdw.metrics_chunk`'s six
/// hours: one transaction, one watermark step, one request per series set each.
const FIRST_CHUNK_SECS: i64 = 3600;
/// Bytes handed to the connection at a time.
const SEND_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no metric load {0} (pgdw.load_metrics creates one)")]
    Unknown(String),
    #[error("{0}")]
    Definition(String),
    #[error("reading Prometheus: {0}")]
    Source(String),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

impl From<FdwError> for LoadError {
    fn from(e: FdwError) -> Self {
        let mut text = e.message;
        if let Some(d) = e.detail {
            text = format!("{text} ({d})");
        }
        if let Some(h) = e.hint {
            text = format!("{text}; hint: {h}");
        }
        LoadError::Source(text)
    }
}

/// What a load did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub rows: u64,
    pub chunks: u32,
    /// Chunks that already held samples, loaded through the foreign table instead.
    pub by_insert: u32,
    /// The backend process that ran the COPY (for the benchmark's memory figures).
    pub backend_pid: i32,
    /// Ended before the window's end because the worker is stopping.
    pub stopped: bool,
}

/// One registered load, as `pgdw.metric_loads` holds it.
struct Definition {
    job: String,
    source: ForeignTable,
    metric: String,
    target: String,
    labels: String,
    label: Int,
    time: Int,
    value: Float,
}

impl Definition {
    async fn read(conn: &mut PgConnection, job: &str) -> Result<Definition, LoadError> {
        let row: Option<(String, String, String, String)> = sqlx::query_as(
            "SELECT source::text, metric, target::text, labels::text FROM pgdw.metric_loads WHERE job = $1",
        )
        .bind(job)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((source, metric, target, labels)) = row else {
            return Err(LoadError::Unknown(job.to_string()));
        };
        // The same checks as at registration: a table changed since then fails here, clearly.
        sqlx::query("SELECT pgdw.metric_load_check($1::regclass, $2, $3::regclass, $4::regclass)")
            .bind(&source)
            .bind(&metric)
            .bind(&target)
            .bind(&labels)
            .execute(&mut *conn)
            .await?;
        let types: (String, String, String) = sqlx::query_as(
            "SELECT pgdw.column_type($1::regclass, 'label_id')::text, pgdw.column_type($1::regclass, 'time')::text,
                    pgdw.column_type($1::regclass, 'value')::text",
        )
        .bind(&target)
        .fetch_one(&mut *conn)
        .await?;
        let bad = |c: &str, t: &str| LoadError::Definition(format!("{target}.{c} is {t}"));
        Ok(Definition {
            label: Int::of(&types.0).ok_or_else(|| bad("label_id", &types.0))?,
            time: Int::of(&types.1).ok_or_else(|| bad("time", &types.1))?,
            value: Float::of(&types.2).ok_or_else(|| bad("value", &types.2))?,
            source: ForeignTable::read(conn, &source).await?,
            job: job.to_string(),
            metric,
            target,
            labels,
        })
    }

    /// The statement's comment: pg_stat_statements keeps it, `pgdw doctor` names the load.
    fn label(&self) -> String {
        crate::quote::comment(&format!("pgdw job: {}", self.job))
    }
}

/// Run load `job` up to its window's end as it is now, a chunk per transaction, recording
/// the run in pgdw.runs under the job's name. A failed chunk rolls back alone: the ones
/// before it stay loaded and the watermark with them. When `stop` turns true, the run ends
/// after the chunk in progress. The load runs on a connection from `pool`; label ids are
/// resolved on one from `side` (a pool of its own: every connection of `pool` may be a
/// load's).
pub async fn run(
    pool: &PgPool,
    side: &PgPool,
    job: &str,
    stop: Option<&tokio::sync::watch::Receiver<bool>>,
) -> Result<Loaded, LoadError> {
    let mut conn = pool.acquire().await?;
    // The run log's rows through the runtime's own functions, as pgdw.run writes them.
    let run_id: i64 = sqlx::query_scalar("SELECT pgdw.run_start($1)")
        .bind(job)
        .fetch_one(&mut *conn)
        .await?;
    let result = load(side, &mut conn, job, run_id, stop).await;
    let error = result.as_ref().err().map(|e| e.to_string());
    sqlx::query("SELECT pgdw.run_finish($1, $2, 0, 0, 0)")
        .bind(run_id)
        .bind(error)
        .execute(&mut *conn)
        .await?;
    result
}

async fn load(
    side: &PgPool,
    conn: &mut PgConnection,
    job: &str,
    run_id: i64,
    stop: Option<&tokio::sync::watch::Receiver<bool>>,
) -> Result<Loaded, LoadError> {
    let def = Arc::new(Definition::read(conn, job).await?);
    let upto: i64 = sqlx::query_scalar("SELECT hi FROM pgdw.metrics_window($1)")
        .bind(job)
        .fetch_one(&mut *conn)
        .await?;
    let mut loaded = Loaded {
        backend_pid: sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await?,
        ..Loaded::default()
    };
    let mut ids = LabelIds::default();
    // The next chunk's scan, started while this one is written: Prometheus answers the next
    // request while the server inserts this chunk's rows.
    let mut ahead: Option<((i64, i64), Batches)> = None;
    loop {
        if stop.is_some_and(|s| *s.borrow()) {
            loaded.stopped = true;
            return Ok(loaded);
        }
        sqlx::query("BEGIN").execute(&mut *conn).await?;
        let chunk = async {
            let (lo, hi, overlap, next): (i64, i64, bool, i64) = sqlx::query_as(
                "SELECT lo, hi, overlap, next_hi FROM pgdw.metrics_chunk($1, $2, $3)",
            )
            .bind(job)
            .bind((loaded.chunks == 0).then_some(FIRST_CHUNK_SECS))
            .bind(upto)
            .fetch_one(&mut *conn)
            .await?;
            if hi <= lo {
                return Ok(None);
            }
            // Started for this window, unless another run moved the watermark meanwhile.
            let started = ahead
                .take()
                .filter(|(w, _)| *w == (lo, hi))
                .map(|(_, rx)| rx);
            if next > hi {
                ahead = Some(((hi, next), batches(&def, hi, next)));
            }
            let rows = if overlap {
                sqlx::query_scalar::<_, i64>("SELECT pgdw.metrics_insert($1, $2, $3)")
                    .bind(job)
                    .bind(lo)
                    .bind(hi)
                    .fetch_one(&mut *conn)
                    .await? as u64
            } else {
                let rx = started.unwrap_or_else(|| batches(&def, lo, hi));
                copy_window(side, conn, &def, &mut ids, rx).await?
            };
            sqlx::query("UPDATE pgdw.metric_loads SET synced_to = $2 WHERE job = $1")
                .bind(job)
                .bind(hi)
                .execute(&mut *conn)
                .await?;
            sqlx::query("SELECT pgdw.run_progress($1, $2)")
                .bind(run_id)
                .bind(rows as i64)
                .execute(&mut *conn)
                .await?;
            Ok::<_, LoadError>(Some((rows, overlap)))
        }
        .await;
        match chunk {
            Ok(Some((rows, overlap))) => {
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                loaded.rows += rows;
                loaded.chunks += 1;
                loaded.by_insert += overlap as u32;
            }
            Ok(None) => {
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                return Ok(loaded);
            }
            Err(e) => {
                // A connection lost mid-COPY cannot roll back; the server does when it ends.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                return Err(e);
            }
        }
    }
}

/// Label ids by (name, labels), resolved on another connection, committed at once: a label
/// set is harmless if the load that made it fails, and the COPY's connection cannot run a
/// query in the middle of its COPY.
#[derive(Default)]
struct LabelIds {
    known: HashMap<(String, String), i64>,
}

impl LabelIds {
    /// The ids of `sets` (name, labels as JSON text), creating those that do not exist.
    async fn resolve(
        &mut self,
        pool: &PgPool,
        def: &Definition,
        sets: Vec<(String, String)>,
    ) -> Result<(), LoadError> {
        let mut sets: Vec<(String, String)> = sets
            .into_iter()
            .filter(|k| !self.known.contains_key(k))
            .collect();
        sets.sort();
        sets.dedup();
        if sets.is_empty() {
            return Ok(());
        }
        let (names, labels): (Vec<String>, Vec<String>) = sets.iter().cloned().unzip();
        let mut conn = pool.acquire().await?;
        sqlx::query(&format!(
            "{} INSERT INTO {} (name, labels) SELECT * FROM unnest($1::text[], $2::jsonb[]) ON CONFLICT DO NOTHING",
            def.label(),
            def.labels
        ))
        .bind(&names)
        .bind(&labels)
        .execute(&mut *conn)
        .await?;
        let found: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "{} SELECT u.i, x.id::bigint FROM unnest($1::text[], $2::jsonb[]) WITH ORDINALITY u (name, labels, i)
               JOIN {} x ON x.name = u.name AND x.labels = u.labels",
            def.label(),
            def.labels
        ))
        .bind(&names)
        .bind(&labels)
        .fetch_all(&mut *conn)
        .await?;
        for (i, id) in found {
            self.known.insert(sets[i as usize - 1].clone(), id);
        }
        Ok(())
    }
}

type Batches = tokio::sync::mpsc::Receiver<Result<Vec<Row>, FdwError>>;

/// Batches of a scan, read on a thread of their own (the wrapper's client blocks), two ahead.
fn batches(def: &Arc<Definition>, lo: i64, hi: i64) -> Batches {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let def = def.clone();
    std::thread::spawn(move || {
        let mut source = match def.source.scan(&def.metric, lo, hi) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let secrets = def.source.options.secrets();
        loop {
            match source.next_batch() {
                Ok(Some(rows)) => {
                    if tx.blocking_send(Ok(rows)).is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e.masked(&secrets)));
                    return;
                }
            }
        }
    });
    rx
}

fn text(cell: &Cell) -> Option<&str> {
    match cell {
        Cell::Text(t) => Some(t),
        Cell::Shared(inner) => text(inner),
        _ => None,
    }
}

/// The labels cell as the jsonb input takes it (the wrapper gives every series' labels as a
/// JSON object; the column is checked to be jsonb).
fn json_text(cell: &Cell) -> String {
    match cell {
        Cell::Json(j) => j.to_string(),
        Cell::Shared(inner) => json_text(inner),
        Cell::Text(t) => serde_json::Value::String(t.clone()).to_string(),
        _ => "{}".into(),
    }
}

/// Whole seconds, as the FDW core converts a time for a bigint column (floor).
fn seconds(cell: &Cell) -> Option<i64> {
    match cell {
        Cell::EpochSeconds(s) if s.is_finite() => Some(s.floor() as i64),
        Cell::Int(i) => Some(*i),
        Cell::Shared(inner) => seconds(inner),
        _ => None,
    }
}

fn float(cell: &Cell) -> Option<f64> {
    match cell {
        Cell::Float(f) => Some(*f),
        Cell::Int(i) => Some(*i as f64),
        Cell::Text(t) => pgdw_fdw_api::numbers::parse_float(t),
        Cell::Shared(inner) => float(inner),
        _ => None,
    }
}

/// Runs of rows sharing a series' labels cell, as (first row, key): the labels are one Arc
/// per series, so a key is made once per series and batch, not per row. The batch keeps the
/// Arcs alive, so equal pointers within it are the same series.
fn series_runs(
    batch: &[Row],
    name_col: usize,
    labels_col: usize,
) -> Vec<(usize, (String, String))> {
    let mut runs = Vec::new();
    let mut prev: Option<*const Cell> = None;
    for (i, row) in batch.iter().enumerate() {
        let p = match &row[labels_col] {
            Cell::Shared(l) => Some(Arc::as_ptr(l)),
            _ => None,
        };
        if p.is_some() && p == prev {
            continue;
        }
        prev = p;
        let key = (
            text(&row[name_col]).unwrap_or_default().to_string(),
            json_text(&row[labels_col]),
        );
        runs.push((i, key));
    }
    runs
}

/// A window's samples (its scan's batches) into the target, in the connection's open
/// transaction.
async fn copy_window(
    side: &PgPool,
    conn: &mut PgConnection,
    def: &Arc<Definition>,
    ids: &mut LabelIds,
    mut rx: Batches,
) -> Result<u64, LoadError> {
    let col = |n: &str| def.source.column(n).expect("checked at registration");
    let (name_col, labels_col, time_col, value_col) = (
        col("metric_name"),
        col("metric_labels"),
        col("metric_time"),
        col("metric_value"),
    );
    let mut copy = conn
        .copy_in_raw(&format!(
            "{} COPY {} (label_id, time, value) FROM STDIN (FORMAT binary)",
            def.label(),
            def.target
        ))
        .await?;
    let mut out = SampleRows::new(def.label, def.time, def.value);
    let streamed = async {
        while let Some(batch) = rx.recv().await {
            let batch = batch?;
            let runs = series_runs(&batch, name_col, labels_col);
            ids.resolve(side, def, runs.iter().map(|(_, k)| k.clone()).collect())
                .await?;
            for (r, (first, key)) in runs.iter().enumerate() {
                let end = runs.get(r + 1).map_or(batch.len(), |(next, _)| *next);
                let id = ids.known[key];
                for row in &batch[*first..end] {
                    let (Some(t), Some(v)) = (seconds(&row[time_col]), float(&row[value_col]))
                    else {
                        return Err(LoadError::Source(format!(
                            "Prometheus returned a sample that is not a time and a number: {:?} {:?}",
                            row[time_col], row[value_col]
                        )));
                    };
                    out.push(id, t, v)
                        .map_err(|e| LoadError::Definition(format!("{}: {e}", def.target)))?;
                }
            }
            if out.len() >= SEND_BYTES {
                copy.send(out.take()).await?;
            }
        }
        Ok::<_, LoadError>(())
    }
    .await;
    match streamed {
        Ok(()) => {
            copy.send(out.finish()).await?;
            Ok(copy.finish().await?)
        }
        Err(e) => {
            let _ = copy.abort("pgdw: the metric load failed").await;
            Err(e)
        }
    }
}
