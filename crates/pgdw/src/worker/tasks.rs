//! The task kinds a worker knows, and what each does with its payload.

use sqlx::PgPool;
use tokio::sync::watch;

/// A claimed task.
#[derive(Debug)]
pub struct Task {
    pub seq: i64,
    pub id: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    pub attempts: i32,
    pub max_attempts: i32,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Failed; another attempt may succeed (after its backoff, while attempts remain).
    Retry(String),
    /// Failed in a way no retry can fix (an unknown kind, a malformed payload).
    Fail(String),
}

impl Task {
    /// From a row of `pgdw.claim_tasks` (payload as text: sqlx here has no JSON types).
    pub fn from_row(row: &sqlx::postgres::PgRow) -> Task {
        use sqlx::Row;
        Task {
            seq: row.get("seq"),
            id: row.get("id"),
            kind: row.get("kind"),
            payload: serde_json::from_str(row.get::<&str, _>("payload")).unwrap_or_default(),
            attempts: row.get("attempts"),
            max_attempts: row.get("max_attempts"),
        }
    }
}

/// Where tasks get connections: `tasks`, one per running task; `side`, the worker's shared
/// pool, for a task's second connection (a metric load resolves label ids there while its
/// own connection is in a COPY).
#[derive(Clone)]
pub struct Pools {
    pub tasks: PgPool,
    pub side: PgPool,
}

pub const KINDS: &[&str] = &["noop", "sql", "materialize", "rollup", "metrics"];

/// Run a task; `stop` turns true when the worker is asked to stop (a long task may end early
/// where that loses nothing).
pub async fn execute(pools: &Pools, task: &Task, stop: &watch::Receiver<bool>) -> Outcome {
    let pool = &pools.tasks;
    match task.kind.as_str() {
        "noop" => Outcome::Done,
        "sql" => sql(pool, task).await,
        "materialize" => materialize(pool, task).await,
        "rollup" => rollup(pool, task).await,
        "metrics" => metrics(pools, task, stop).await,
        other => Outcome::Fail(format!(
            "no worker task kind {other:?} (pgdw worker runs: {})",
            KINDS.join(", ")
        )),
    }
}

/// `{"sql": "<statement>", "job": "<name>"}`: run through `pgdw.run`, so it is recorded in
/// pgdw.runs like a scheduled job (under `job`, or `task:<id>`); its failure is the task's.
async fn sql(pool: &PgPool, task: &Task) -> Outcome {
    let Some(statement) = task.payload.get("sql").and_then(|v| v.as_str()) else {
        return Outcome::Fail(r#"a sql task's payload needs {"sql": "<statement>"}"#.into());
    };
    let job = task
        .payload
        .get("job")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("task:{}", task.id));
    let ran = async {
        let mut conn = pool.acquire().await?;
        sqlx::query("CALL pgdw.run($1, $2)")
            .bind(&job)
            .bind(statement)
            .execute(&mut *conn)
            .await?;
        sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT status, error FROM pgdw.runs WHERE job = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(&job)
        .fetch_one(&mut *conn)
        .await
    }
    .await;
    match ran {
        Ok((status, _)) if status == "succeeded" => Outcome::Done,
        Ok((_, error)) => Outcome::Retry(error.unwrap_or_else(|| "failed".into())),
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

/// `{"table": "<regclass>", "slot": n}`: one batch of a materialized table's pending rows;
/// while there is more, the task hands on to a new one in its slot (`pgdw.materialize_run`).
/// Its writers are switched to their other partitions first, in a transaction of its own
/// (`pgdw.materialize_switch`), so the batch drains what a change wrote just before it
/// instead of leaving it to the next task.
async fn materialize(pool: &PgPool, task: &Task) -> Outcome {
    let Some(table) = task.payload.get("table").and_then(|v| v.as_str()) else {
        return Outcome::Fail(r#"a materialize task's payload needs {"table": "<name>"}"#.into());
    };
    let slot = task
        .payload
        .get("slot")
        .and_then(|v| v.as_i64())
        .unwrap_or(1) as i32;
    let ran: Result<i64, sqlx::Error> = async {
        let mut conn = pool.acquire().await?;
        sqlx::query("SELECT pgdw.materialize_switch($1::regclass, $2)")
            .bind(table)
            .bind(slot)
            .execute(&mut *conn)
            .await?;
        sqlx::query_scalar("SELECT pgdw.materialize_run($1::regclass, $2)")
            .bind(table)
            .bind(slot)
            .fetch_one(&mut *conn)
            .await
    }
    .await;
    match ran {
        Ok(_) => Outcome::Done,
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

/// `{"rollup": "<regclass>"}`: one run of a rollup (`pgdw.rollup_run`: switch the changes
/// table, then recompute its groups, two transactions); then its slot is free for the next
/// run (`pgdw.rollup_done`), which the workers' 100 ms look queues.
async fn rollup(pool: &PgPool, task: &Task) -> Outcome {
    let Some(name) = task.payload.get("rollup").and_then(|v| v.as_str()) else {
        return Outcome::Fail(r#"a rollup task's payload needs {"rollup": "<table>"}"#.into());
    };
    let ran = async {
        let mut conn = pool.acquire().await?;
        sqlx::query("CALL pgdw.rollup_run($1::regclass)")
            .bind(name)
            .execute(&mut *conn)
            .await?;
        sqlx::query("SELECT pgdw.rollup_done($1::regclass)")
            .bind(name)
            .execute(&mut *conn)
            .await
    }
    .await;
    match ran {
        Ok(_) => Outcome::Done,
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

/// `{"job": "<name>"}`: a metric load (`pgdw.load_metrics`) up to now, by binary COPY, its run
/// recorded in pgdw.runs under the job's name. A worker stopping ends it after the chunk it
/// is writing (each chunk commits with its watermark: the next tick goes on from there).
async fn metrics(pools: &Pools, task: &Task, stop: &watch::Receiver<bool>) -> Outcome {
    let Some(job) = task.payload.get("job").and_then(|v| v.as_str()) else {
        return Outcome::Fail(r#"a metrics task's payload needs {"job": "<name>"}"#.into());
    };
    match crate::metrics_load::run(&pools.tasks, &pools.side, job, Some(stop)).await {
        Ok(_) => Outcome::Done,
        Err(e @ crate::metrics_load::LoadError::Unknown(_)) => Outcome::Fail(e.to_string()),
        Err(e) => Outcome::Retry(e.to_string()),
    }
}
