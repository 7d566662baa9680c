//! `pgdw worker`: claims tasks from the warehouse's queue (`src/queue/queue.sql`) and runs them.
//!
//! One process runs up to `concurrency` tasks at once. A single claimer takes as many ready
//! tasks as there are free slots in one statement, and moves the next batch of the backlog
//! into the ready table when a claim comes up short (`pgdw.dispatch`); a single completer
//! finishes whatever tasks ended since its last statement in one more. So a busy worker makes
//! two short statements per batch of tasks, not two per task. Idle, it waits on
//! LISTEN pgdw_tasks (woken by every enqueuing statement), polling as a fallback (for delayed
//! tasks and expired leases). Claims are leases, renewed while tasks run: a worker killed
//! mid-task loses nothing, another one claims the task once its lease expires.

pub mod status;
pub mod tasks;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use tasks::{Outcome, Task};

/// How often a worker looks for rollups with changes to apply.
const ROLLUP_TICK: Duration = Duration::from_millis(100);

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tasks run at once.
    pub concurrency: usize,
    /// How long a claimed task stays this worker's without a renewal.
    pub lease: Duration,
    /// The longest idle wait between looks at the queue, notifications aside.
    pub poll: Duration,
    /// A `DATABASE_URL` of several hosts: the pools follow its read-write one (a failover).
    pub follow: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 8,
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            follow: None,
        }
    }
}

/// What a worker did, for its caller (and the queue benchmark).
#[derive(Debug, Default)]
pub struct Stats {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    /// Each claim statement's duration (kept only when `keep_claims` is set).
    pub claims: Mutex<Vec<Duration>>,
    pub keep_claims: bool,
}

/// This process in `pgdw.workers`: `id` is also each claimed task's `worker`.
#[derive(Debug, Clone)]
struct Identity {
    id: String,
    host: String,
    concurrency: usize,
    /// How often it says it is alive (with its leases' renewal): pgdw.worker_alive reads it.
    heartbeat: Duration,
}

impl Identity {
    fn new(concurrency: usize, heartbeat: Duration) -> Identity {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let id = format!(
            "{host}:{}:{:04x}",
            std::process::id(),
            rand::random::<u16>()
        );
        Identity {
            id,
            host,
            concurrency,
            heartbeat,
        }
    }

    /// Record that this worker is alive (or stopping).
    async fn seen(&self, pool: &PgPool, stopping: bool) -> sqlx::Result<()> {
        sqlx::query("SELECT pgdw.worker_seen($1, $2, $3, $4, $5, $6)")
            .bind(&self.id)
            .bind(&self.host)
            .bind(std::process::id() as i32)
            .bind(self.concurrency as i32)
            .bind(stopping)
            .bind(self.heartbeat)
            .execute(pool)
            .await
            .map(|_| ())
    }
}

/// Run until `stop` turns true: then claim nothing more, finish the running tasks, record
/// them, and return.
pub async fn run(
    connect: PgConnectOptions,
    options: Options,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
) -> anyhow::Result<()> {
    let concurrency = options.concurrency.max(1);
    // A third of the lease, in whole milliseconds (an interval holds no finer time).
    let heartbeat = Duration::from_millis((options.lease / 3).as_millis().max(1) as u64);
    let me = Identity::new(concurrency, heartbeat);
    let id = me.id.clone();
    // Short statements: JIT compilation would cost more than it saves.
    let connect = connect
        .application_name("pgdw worker")
        .options([("jit", "off")]);
    // The claimer, the completer, the heartbeat, the rollup ticker, and a metric load's side
    // connection per task.
    let pool = PgPoolOptions::new()
        .max_connections(concurrency as u32 + 4)
        .connect_with(connect.clone())
        .await
        .context("connecting the worker to the warehouse")?;
    // The tasks' own connections, one per task running: a pool hands out the connection idle
    // longest, so tasks sharing one pool with the worker's upkeep would keep landing on
    // connections whose backend has not run them (every function, regular expression and
    // shared buffer page new to it: ~30 ms more for 10,000 materialized rows, in psql).
    let task_pool = PgPoolOptions::new()
        .max_connections(concurrency as u32)
        .connect_with(connect)
        .await
        .context("connecting the worker to the warehouse")?;
    let following = options
        .follow
        .clone()
        .and_then(|url| crate::target::hosts::follow(url, vec![pool.clone(), task_pool.clone()]));
    let pools = tasks::Pools {
        tasks: task_pool,
        side: pool.clone(),
    };
    crate::runtime::installed(&mut *pool.acquire().await?)
        .await?
        .require()?;
    me.seen(&pool, false).await?;

    let wake = Arc::new(Notify::new());
    let mut listener = PgListener::connect_with(&pool).await?;
    listener
        .listen_all(["pgdw_tasks", "pgdw_materialize"])
        .await?;
    let listening = {
        let wake = wake.clone();
        tokio::spawn(async move {
            // A lost connection ends this; the poll keeps the worker going meanwhile.
            while listener.recv().await.is_ok() {
                wake.notify_one();
            }
        })
    };

    // Rollups: their capture triggers do not NOTIFY (a notifying transaction takes a
    // database-wide lock at commit, which would serialize the source's writers), so their
    // changes are looked for here, every 100 ms; a run queued wakes the claimer by the
    // enqueue's own notification.
    let rollup_ticker = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(ROLLUP_TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = sqlx::query("SELECT pgdw.rollup_schedule()")
                    .execute(&pool)
                    .await
                {
                    eprintln!("pgdw worker: looking for rollup changes: {e}");
                }
            }
        })
    };

    let running: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let (done_tx, done_rx) = mpsc::unbounded_channel::<(i64, Outcome)>();
    let completer = tokio::spawn(complete(
        pool.clone(),
        id.clone(),
        done_rx,
        running.clone(),
        stats.clone(),
    ));
    let heartbeat = {
        let (pool, me, running, lease) = (pool.clone(), me.clone(), running.clone(), options.lease);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(me.heartbeat);
            loop {
                every.tick().await;
                let seqs: Vec<i64> = running.lock().unwrap().iter().copied().collect();
                let renewed = sqlx::query("SELECT pgdw.renew_leases($1, $2, $3)")
                    .bind(&me.id)
                    .bind(&seqs)
                    .bind(lease)
                    .execute(&pool)
                    .await
                    .map(|_| ());
                let seen = me.seen(&pool, false).await;
                let upkeep = sqlx::query("SELECT pgdw.queue_upkeep()")
                    .execute(&pool)
                    .await
                    .map(|_| ());
                if let Err(e) = renewed.and(seen).and(upkeep) {
                    eprintln!("pgdw worker: heartbeat (leases, upkeep): {e}");
                }
            }
        })
    };

    let slots = Arc::new(Semaphore::new(concurrency));
    let mut after: i64 = 0;
    let mut scheduled = Instant::now() - options.poll;
    // Woken by a notification (a write to a materialized table, a task enqueued): look now.
    let mut woken = false;
    // The wait after a failed look at the queue; doubles while they fail.
    let first_retry = options.poll.min(Duration::from_millis(100));
    let mut retry = first_retry;
    let result: anyhow::Result<()> = async {
        loop {
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => p?,
                _ = stop.changed() => break,
            };
            if *stop.borrow() {
                break;
            }
            let mut permits = vec![first];
            while let Ok(p) = slots.clone().try_acquire_owned() {
                permits.push(p);
            }
            // What fails here is the warehouse's answer to the worker itself (a restart, a lost
            // connection): said, and looked at again after a wait that doubles up to 5 s,
            // while the running tasks go on. Tasks claimed before a later step failed are
            // kept.
            let mut claimed = match claim(&pool, &id, permits.len(), after, &options, &stats).await
            {
                Ok(claimed) => {
                    retry = first_retry;
                    claimed
                }
                Err(e) => {
                    eprintln!(
                        "pgdw worker: looking at the queue: {e:#}; trying again in {retry:?}"
                    );
                    drop(permits);
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = stop.changed() => break,
                    }
                    retry = (retry * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let more = |r: anyhow::Result<Vec<Task>>, claimed: &mut Vec<Task>| match r {
                Ok(c) => claimed.extend(c),
                Err(e) => eprintln!("pgdw worker: looking at the queue: {e:#}"),
            };
            if claimed.len() < permits.len() && after > 0 {
                // Short from the cursor: earlier tasks may have come back (an expired lease).
                after = 0;
                more(
                    claim(
                        &pool,
                        &id,
                        permits.len() - claimed.len(),
                        0,
                        &options,
                        &stats,
                    )
                    .await,
                    &mut claimed,
                );
            }
            if claimed.len() < permits.len() {
                // Tables with rows to compute get their tasks, as many at once as this worker
                // runs (at most 8): at once when a notification woke the worker, else at most
                // every 100 ms (a busy worker comes here after every short claim).
                if woken || scheduled.elapsed() >= Duration::from_millis(100) {
                    // It reads the users' tables: what fails there (a table's privileges, a
                    // lock timeout) is said, and the queue's other tasks go on.
                    if let Err(e) = sqlx::query("SELECT pgdw.materialize_schedule($1)")
                        .bind(concurrency.min(8) as i32)
                        .execute(&pool)
                        .await
                    {
                        eprintln!("pgdw worker: looking for rows to compute: {e}");
                    }
                    scheduled = Instant::now();
                    woken = false;
                }
                let moved = async {
                    let moved: i32 = sqlx::query_scalar("SELECT pgdw.dispatch($1)")
                        .bind((concurrency * 32).max(1000) as i32)
                        .fetch_one(&pool)
                        .await?;
                    sqlx::query("SELECT pgdw.queue_truncate()")
                        .execute(&pool)
                        .await?;
                    Ok::<i32, sqlx::Error>(moved)
                }
                .await
                .unwrap_or_else(|e| {
                    eprintln!("pgdw worker: moving due tasks to the ready table: {e}");
                    0
                });
                if moved > 0 {
                    more(
                        claim(
                            &pool,
                            &id,
                            permits.len() - claimed.len(),
                            after,
                            &options,
                            &stats,
                        )
                        .await,
                        &mut claimed,
                    );
                }
            }
            if claimed.is_empty() {
                after = 0;
                drop(permits);
                tokio::select! {
                    _ = wake.notified() => woken = true,
                    _ = tokio::time::sleep(options.poll) => {}
                    _ = stop.changed() => break,
                }
                continue;
            }
            after = claimed.iter().map(|t| t.seq).max().unwrap_or(after);
            running
                .lock()
                .unwrap()
                .extend(claimed.iter().map(|t| t.seq));
            for (task, permit) in claimed.into_iter().zip(permits) {
                let (pools, done, stop) = (pools.clone(), done_tx.clone(), stop.clone());
                tokio::spawn(async move {
                    let outcome = tasks::execute(&pools, &task, &stop).await;
                    let _ = done.send((task.seq, outcome));
                    drop(permit);
                });
            }
        }
        Ok(())
    }
    .await;

    // Finish what runs: every slot back means every task ended and sent its outcome.
    let _all = slots.acquire_many(concurrency as u32).await;
    drop(done_tx);
    let completed = completer.await;
    heartbeat.abort();
    rollup_ticker.abort();
    listening.abort();
    if let Some(f) = following {
        f.abort();
    }
    me.seen(&pool, true).await.ok();
    pool.close().await;
    result?;
    completed??;
    Ok(())
}

async fn claim(
    pool: &PgPool,
    id: &str,
    want: usize,
    after: i64,
    options: &Options,
    stats: &Stats,
) -> anyhow::Result<Vec<Task>> {
    if want == 0 {
        return Ok(Vec::new());
    }
    let start = Instant::now();
    let rows = sqlx::query(
        "SELECT seq, id, kind, payload::text AS payload, attempts, max_attempts FROM pgdw.claim_tasks($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(want as i32)
    .bind(after)
    .bind(options.lease)
    .fetch_all(pool)
    .await
    .context("claiming tasks")?;
    if stats.keep_claims {
        stats.claims.lock().unwrap().push(start.elapsed());
    }
    Ok(rows.iter().map(Task::from_row).collect())
}

/// Record outcomes as they come, all that arrived since the last statement in one.
async fn complete(
    pool: PgPool,
    id: String,
    mut done: mpsc::UnboundedReceiver<(i64, Outcome)>,
    running: Arc<Mutex<HashSet<i64>>>,
    stats: Arc<Stats>,
) -> anyhow::Result<()> {
    while let Some(first) = done.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1000 {
            match done.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let mut ok = Vec::new();
        let (mut failed, mut errors, mut permanent) = (Vec::new(), Vec::new(), Vec::new());
        for (seq, outcome) in &batch {
            match outcome {
                Outcome::Done => ok.push(*seq),
                Outcome::Retry(e) | Outcome::Fail(e) => {
                    failed.push(*seq);
                    errors.push(e.clone());
                    permanent.push(matches!(outcome, Outcome::Fail(_)));
                }
            }
        }
        // A lost connection must not lose outcomes: try again until the warehouse answers
        // (the leases are renewed meanwhile, so nobody else takes these tasks).
        let mut wait = Duration::from_millis(100);
        loop {
            let r = sqlx::query("SELECT pgdw.complete_tasks($1, $2, $3, $4, $5)")
                .bind(&id)
                .bind(&ok)
                .bind(&failed)
                .bind(&errors)
                .bind(&permanent)
                .execute(&pool)
                .await;
            match r {
                Ok(_) => break,
                Err(e) => {
                    eprintln!(
                        "pgdw worker: recording {} finished tasks: {e}; retrying",
                        batch.len()
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        let mut r = running.lock().unwrap();
        for (seq, _) in &batch {
            r.remove(seq);
        }
        stats
            .succeeded
            .fetch_add(ok.len() as u64, Ordering::Relaxed);
        stats
            .failed
            .fetch_add(failed.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}
