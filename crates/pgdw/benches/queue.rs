//! The work queue: a backlog of no-op tasks drained by 32 concurrent workers, pgdw's queue
//! (the real `pgdw worker` engine, in process) against the naive design the seed replaced
//! (FOR UPDATE SKIP LOCKED straight on the one big task table, the same batching around it),
//! each again while another session holds a REPEATABLE READ transaction open for the whole
//! run. Prints throughput, claim latency p50/p99, and the dead row versions left in the
//! queue's hot tables at the end (pgstattuple), with a chart.
//!
//!     cargo bench -p pgdw --bench queue -- [TASKS] [MAX_SECS]      (defaults 1000000, 180)

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgdw::worker::{self, Options, Stats};
use pgdw_testkit::bench::{arg, percentile as pct};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

const CONCURRENCY: usize = 32;

struct Run {
    name: String,
    done: u64,
    secs: f64,
    claims_ms: Vec<f64>,
    dead: i64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.done as f64 / self.secs
    }
}

/// A session holding a REPEATABLE READ snapshot (the long analytics query, the forgotten
/// transaction): VACUUM cannot remove any row version deleted after it began.
async fn hold_snapshot(opts: &PgConnectOptions) -> PgConnection {
    let mut c = PgConnection::connect_with(opts).await.unwrap();
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class")
        .execute(&mut c)
        .await
        .unwrap();
    c
}

/// Dead row versions left in `tables` (exact: pgstattuple reads every page).
async fn dead_tuples(c: &mut PgConnection, tables: &[&str]) -> i64 {
    sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        .execute(&mut *c)
        .await
        .unwrap();
    let mut dead = 0;
    for t in tables {
        let n: i64 = sqlx::query_scalar("SELECT dead_tuple_count FROM pgstattuple($1::regclass)")
            .bind(t)
            .fetch_one(&mut *c)
            .await
            .unwrap();
        dead += n;
    }
    dead
}

/// A connection after `setup` filled a backlog in `table` (vacuumed and analyzed), and, when
/// `held`, another session holding a snapshot.
async fn backlog(
    opts: &PgConnectOptions,
    setup: &str,
    table: &str,
    held: bool,
) -> (PgConnection, Option<PgConnection>) {
    let mut c = PgConnection::connect_with(opts).await.unwrap();
    sqlx::raw_sql(setup).execute(&mut c).await.unwrap();
    // Separately: a multi-statement string is one transaction, and VACUUM runs outside one.
    sqlx::raw_sql(&format!("VACUUM ANALYZE {table}"))
        .execute(&mut c)
        .await
        .unwrap();
    let holder = if held {
        Some(hold_snapshot(opts).await)
    } else {
        None
    };
    (c, holder)
}

async fn pgdw_queue(opts: &PgConnectOptions, tasks: u64, max: Duration, held: bool) -> Run {
    let (mut c, holder) = backlog(
        opts,
        &format!(
            "TRUNCATE pgdw.task_log, pgdw.task_ready, pgdw.task_history;
             INSERT INTO pgdw.task_log (kind) SELECT 'noop' FROM generate_series(1, {tasks})"
        ),
        "pgdw.task_log",
        held,
    )
    .await;
    let stats = Arc::new(Stats {
        keep_claims: true,
        ..Stats::default()
    });
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let running = tokio::spawn(worker::run(
        opts.clone(),
        Options {
            concurrency: CONCURRENCY,
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(200),
            ..Options::default()
        },
        stop,
        stats.clone(),
    ));
    while stats.succeeded.load(Ordering::Relaxed) < tasks && start.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let done = stats.succeeded.load(Ordering::Relaxed);
    stop_tx.send(true).unwrap();
    running.await.unwrap().unwrap();
    let dead = dead_tuples(
        &mut c,
        &[
            "pgdw.task_log",
            "pgdw.task_ready_0",
            "pgdw.task_ready_1",
            "pgdw.task_ready_2",
            "pgdw.task_delayed",
        ],
    )
    .await;
    drop(holder);
    let mut claims_ms: Vec<f64> = stats
        .claims
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    claims_ms.sort_by(f64::total_cmp);
    Run {
        name: format!("pgdw queue{}", if held { ", snapshot held" } else { "" }),
        done,
        secs,
        claims_ms,
        dead,
    }
}

/// The naive design: one task table, claimed with SKIP LOCKED in place, finished by DELETE;
/// one claimer taking up to the free slots, one completer batching, as pgdw's worker does.
async fn naive_queue(opts: &PgConnectOptions, tasks: u64, max: Duration, held: bool) -> Run {
    let (mut c, holder) = backlog(
        opts,
        &format!(
        "DROP TABLE IF EXISTS naive_jobs;
         CREATE TABLE naive_jobs (id bigserial PRIMARY KEY, kind text NOT NULL, payload jsonb NOT NULL DEFAULT '{{}}',
             state text NOT NULL DEFAULT 'ready', run_at timestamptz NOT NULL DEFAULT now(),
             attempts int NOT NULL DEFAULT 0, locked_by text, locked_until timestamptz);
         CREATE INDEX naive_jobs_ready_idx ON naive_jobs (run_at, id) WHERE state = 'ready';
         INSERT INTO naive_jobs (kind) SELECT 'noop' FROM generate_series(1, {tasks})"
        ),
        "naive_jobs",
        held,
    )
    .await;
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let (done_tx, mut done_rx) =
        tokio::sync::mpsc::unbounded_channel::<(i64, tokio::sync::OwnedSemaphorePermit)>();
    let finished = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let completer = {
        let opts = opts.clone();
        let finished = finished.clone();
        tokio::spawn(async move {
            let mut c = PgConnection::connect_with(&opts).await.unwrap();
            while let Some(first) = done_rx.recv().await {
                let mut batch = vec![first];
                while let Ok(more) = done_rx.try_recv() {
                    batch.push(more);
                }
                let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
                sqlx::query("DELETE FROM naive_jobs WHERE id = ANY ($1)")
                    .bind(&ids)
                    .execute(&mut c)
                    .await
                    .unwrap();
                finished.fetch_add(ids.len() as u64, Ordering::Relaxed);
            }
        })
    };
    let mut claimer = PgConnection::connect_with(opts).await.unwrap();
    let mut claims_ms = Vec::new();
    let start = Instant::now();
    while finished.load(Ordering::Relaxed) < tasks && start.elapsed() < max {
        let first = slots.clone().acquire_owned().await.unwrap();
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        let t = Instant::now();
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE naive_jobs j SET state = 'running', locked_by = 'bench', locked_until = now() + interval '1 minute',
                    attempts = j.attempts + 1
               FROM (SELECT id FROM naive_jobs WHERE state = 'ready' AND run_at <= now()
                      ORDER BY run_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) c
              WHERE j.id = c.id RETURNING j.id",
        )
        .bind(permits.len() as i32)
        .fetch_all(&mut claimer)
        .await
        .unwrap();
        claims_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if ids.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        for (id, permit) in ids.into_iter().zip(permits) {
            // A no-op task: finished at once.
            done_tx.send((id, permit)).unwrap();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(done_tx);
    completer.await.unwrap();
    let dead = dead_tuples(&mut c, &["naive_jobs"]).await;
    drop(holder);
    claims_ms.sort_by(f64::total_cmp);
    Run {
        name: format!(
            "naive SKIP LOCKED{}",
            if held { ", snapshot held" } else { "" }
        ),
        done: finished.load(Ordering::Relaxed).min(tasks),
        secs,
        claims_ms,
        dead,
    }
}

fn main() {
    let tasks = arg(0, 1_000_000);
    let max = Duration::from_secs(arg(1, 180));
    let (_w, opts) = common::fresh_warehouse();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut runs = Vec::new();
    for held in [false, true] {
        eprintln!(
            "pgdw queue: {tasks} no-op tasks, {CONCURRENCY} at once{}...",
            if held {
                ", a REPEATABLE READ snapshot held"
            } else {
                ""
            }
        );
        runs.push(rt.block_on(pgdw_queue(&opts, tasks, max, held)));
        eprintln!("naive queue: the same...");
        runs.push(rt.block_on(naive_queue(&opts, tasks, max, held)));
    }
    println!(
        "\n{:<36} {:>10} {:>8} {:>11} {:>10} {:>10} {:>12}",
        "queue", "tasks", "secs", "tasks/s", "claim p50", "claim p99", "dead tuples"
    );
    for r in &runs {
        println!(
            "{:<36} {:>10} {:>8.1} {:>11.0} {:>8.2}ms {:>8.2}ms {:>12}",
            r.name,
            r.done,
            r.secs,
            r.rate(),
            pct(&r.claims_ms, 0.5),
            pct(&r.claims_ms, 0.99),
            r.dead
        );
    }
    let best = runs.iter().map(Run::rate).fold(0.0, f64::max);
    println!("\ntasks/s (each # = {:.0}):", best / 50.0);
    for r in &runs {
        println!(
            "  {:<36} {:<50} {:.0}",
            r.name,
            "#".repeat((r.rate() / best * 50.0).round() as usize),
            r.rate()
        );
    }
    let (p, n, ph, nh) = (&runs[0], &runs[1], &runs[2], &runs[3]);
    println!(
        "\npgdw vs naive: {:.2}x the throughput; with a snapshot held: {:.2}x. Loss to the held snapshot: pgdw {:.1}%, naive {:.1}%",
        p.rate() / n.rate(),
        ph.rate() / nh.rate(),
        100.0 * (1.0 - ph.rate() / p.rate()),
        100.0 * (1.0 - nh.rate() / n.rate())
    );
}
