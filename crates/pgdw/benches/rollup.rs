//! Incremental rollups against full refreshes, one run side by side, over an orders table of
//! ROWS rows (10,000 customers, 30 days, 100 products):
//!
//! 1. 1,000 random changes (inserts, updates moving rows between groups, deletes), then the
//!    time from their commit until `pgdw worker` has the rollup exact again, against `REFRESH
//!    MATERIALIZED VIEW` of the same query; and the source rows each read.
//! 2. Writers' throughput (4 connections, single-row statements) on the source with the rollup
//!    installed and on an identical table without one, alternated.
//! 3. The lag from a change's commit to its group updated in the rollup, p50/p99, while
//!    writers (8 connections, paced) make 2,000 changes/s.
//!
//!     cargo bench -p pgdw --bench rollup -- [ROWS]      (default 10000000)

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgdw::worker::{self, Options, Stats};
use pgdw_testkit::bench::{arg, percentile};
use rand::{Rng, SeedableRng};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

const CUSTOMERS: i64 = 10_000;

const QUERY: &str = "SELECT customer_id, date_trunc('day', created_at AT TIME ZONE 'UTC') AS day,
       count(*) AS orders, sum(amount) AS revenue, count(DISTINCT product_id) AS products
  FROM TABLE GROUP BY 1, 2";

async fn exec(c: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn scalar(c: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Source rows read so far (sequential and by index) from `table`.
async fn rows_read(c: &mut PgConnection, table: &str) -> i64 {
    // PostgreSQL 15's backends (the worker's too) flush their table counters when idle, at
    // most once a second: give them that second.
    exec(c, "SELECT pg_stat_force_next_flush()").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    exec(c, "SELECT pg_stat_clear_snapshot()").await;
    scalar(
        c,
        &format!("SELECT (coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0))::bigint FROM pg_stat_user_tables WHERE relname = '{table}'"),
    )
    .await
}

fn start_worker(
    opts: &PgConnectOptions,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker::run(
        opts.clone(),
        Options {
            concurrency: 2,
            ..Default::default()
        },
        stop,
        Arc::new(Stats::default()),
    ));
    (stop_tx, running)
}

async fn caught_up(c: &mut PgConnection) -> Duration {
    let start = Instant::now();
    loop {
        if scalar(
            c,
            "SELECT dirty_groups + recompute_all::int FROM pgdw.rollup_lag('orders_daily')",
        )
        .await
            == 0
        {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One random change of `table` as a single-row statement.
fn change(rng: &mut impl Rng, table: &str, rows: i64) -> String {
    let customer = rng.gen_range(1..=CUSTOMERS);
    let id = rng.gen_range(1..=rows);
    match rng.gen_range(0..10) {
        0..=3 => format!(
            "INSERT INTO {table} (customer_id, created_at, amount, product_id)
             VALUES ({customer}, now() - interval '{} minutes', {}, {})",
            rng.gen_range(0..30 * 1440),
            rng.gen_range(1..500),
            rng.gen_range(1..=100)
        ),
        4..=5 => format!("UPDATE {table} SET amount = amount + 1, product_id = {} WHERE id = {id}", rng.gen_range(1..=100)),
        // Moves the row to another customer and day: both groups change.
        6..=8 => format!(
            "UPDATE {table} SET customer_id = {customer}, created_at = created_at - interval '1 day' WHERE id = {id}"
        ),
        _ => format!("DELETE FROM {table} WHERE id = {id}"),
    }
}

/// Writers on `table`: `n` connections, each a single-row statement at a time; `rate` changes
/// per second in all (0: as fast as they go), for `secs`. Returns the changes made.
async fn writers(
    opts: &PgConnectOptions,
    n: u64,
    table: &str,
    rows: i64,
    rate: u64,
    secs: f64,
) -> u64 {
    let table = table.to_string();
    common::paced_writers(opts, n, rate, secs, 1, move |rng| change(rng, &table, rows)).await
}

/// Writers on the source (with the rollup) and on the plain copy, alternated, 3 rounds of 5 s;
/// the mean changes/s of each.
async fn rounds(opts: &PgConnectOptions, rows: i64, label: &str) -> (f64, f64) {
    let (mut with, mut without) = (0.0, 0.0);
    for round in 0..3 {
        eprintln!("  {label}: round {}/3", round + 1);
        without += writers(opts, 4, "orders_plain", rows, 0, 5.0).await as f64 / 15.0;
        with += writers(opts, 4, "orders", rows, 0, 5.0).await as f64 / 15.0;
    }
    (with, without)
}

fn bar(v: f64, max: f64) -> String {
    "#".repeat((v / max * 40.0).round().max(1.0) as usize)
}

async fn run(opts: PgConnectOptions, rows: i64) {
    let mut c = PgConnection::connect_with(&opts).await.unwrap();
    eprintln!("loading {rows} orders (and a copy without a rollup)...");
    for table in ["orders", "orders_plain"] {
        exec(
            &mut c,
            &format!(
                "CREATE TABLE {table} (id bigserial PRIMARY KEY, customer_id int NOT NULL, created_at timestamptz NOT NULL,
                                       amount numeric NOT NULL, product_id int NOT NULL);
                 INSERT INTO {table} (customer_id, created_at, amount, product_id)
                 SELECT g % {CUSTOMERS} + 1, now() - (g % 43201) * interval '1 minute', g % 499 + 1, g % 100 + 1
                   FROM generate_series(1, {rows}) g;
                 CREATE INDEX ON {table} (customer_id, date_trunc('day', created_at AT TIME ZONE 'UTC'));"
            ),
        )
        .await;
        exec(&mut c, &format!("VACUUM ANALYZE {table}")).await;
        eprintln!("  {table} loaded");
    }
    let query = QUERY.replace("TABLE", "orders");
    exec(
        &mut c,
        &format!("CREATE MATERIALIZED VIEW orders_daily_mv AS {query}"),
    )
    .await;
    eprintln!("registering the rollup...");
    let start = Instant::now();
    exec(
        &mut c,
        &format!(
            "SELECT pgdw.rollup('orders_daily', $q${query}$q$, source => 'orders',
                     keys => ARRAY['customer_id', $k$date_trunc('day', created_at AT TIME ZONE 'UTC')$k$])"
        ),
    )
    .await;
    let registered = start.elapsed();
    exec(&mut c, "VACUUM ANALYZE orders_daily").await;
    let groups = scalar(&mut c, "SELECT count(*) FROM orders_daily").await;

    // 1. A thousand changes.
    eprintln!("1,000 random changes...");
    let (stop, worker) = start_worker(&opts);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let read_before = rows_read(&mut c, "orders").await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1000);
    let batch: Vec<String> = (0..1000)
        .map(|_| change(&mut rng, "orders", rows))
        .collect();
    exec(&mut c, &format!("BEGIN; {}; COMMIT", batch.join(";\n"))).await;
    let incremental = caught_up(&mut c).await;
    let read_incremental = rows_read(&mut c, "orders").await - read_before;
    let apply_ms: f64 = sqlx::query_scalar("SELECT (last_run->>'ms')::float8 FROM pgdw.rollups")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let dirty_groups: i64 = scalar(
        &mut c,
        "SELECT (last_run->>'groups')::bigint FROM pgdw.rollups",
    )
    .await;
    stop.send(true).unwrap();
    worker.await.unwrap().unwrap();
    let wrong = scalar(&mut c, "SELECT pgdw.rollup_verify('orders_daily')").await;
    assert_eq!(wrong, 0, "the rollup equals its query after the changes");
    let read_before = rows_read(&mut c, "orders").await;
    let start = Instant::now();
    exec(&mut c, "REFRESH MATERIALIZED VIEW orders_daily_mv").await;
    let refresh = start.elapsed();
    let read_refresh = rows_read(&mut c, "orders").await - read_before;

    // 2. Writers with and without capture, alternated (the machine's noise falls on both):
    // first the capture alone (no worker: the changes wait), then with the worker applying
    // them at the same time on this machine's cores.
    eprintln!("writers' throughput, with and without the rollup...");
    let (capture, capture_base) = rounds(&opts, rows, "capture only").await;
    let (stop, worker) = start_worker(&opts);
    caught_up(&mut c).await;
    let (applied, applied_base) = rounds(&opts, rows, "capture and worker").await;
    caught_up(&mut c).await;

    // 3. Lag under 2,000 changes/s: probes (a new customer's row each) timed from commit to
    // their group in the rollup, one after another, while the writers run.
    eprintln!("lag under 2,000 changes/s for 30 s...");
    let load = {
        let opts = opts.clone();
        tokio::spawn(async move { writers(&opts, 8, "orders", rows, 2000, 30.0).await })
    };
    let mut lags = Vec::new();
    let (mut longest_run, mut whole_runs) = (0.0f64, 0u32);
    let probing = Instant::now();
    let mut probe = 0i64;
    while probing.elapsed() < Duration::from_secs(29) {
        probe += 1;
        let customer = 1_000_000 + probe;
        exec(
            &mut c,
            &format!("INSERT INTO orders (customer_id, created_at, amount, product_id) VALUES ({customer}, now(), 1, 1)"),
        )
        .await;
        let committed = Instant::now();
        loop {
            let there = scalar(
                &mut c,
                &format!("SELECT count(*) FROM orders_daily WHERE customer_id = {customer}"),
            )
            .await;
            if there > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lags.push(committed.elapsed().as_secs_f64() * 1000.0);
        let (ms, whole): (f64, bool) = sqlx::query_as(
            "SELECT (last_run->>'ms')::float8, (last_run->>'full')::bool FROM pgdw.rollups",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        longest_run = longest_run.max(ms);
        whole_runs += whole as u32;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sustained = load.await.unwrap() as f64 / 30.0;
    caught_up(&mut c).await;
    stop.send(true).unwrap();
    worker.await.unwrap().unwrap();
    let wrong = scalar(&mut c, "SELECT pgdw.rollup_verify('orders_daily')").await;
    assert_eq!(
        wrong, 0,
        "the rollup equals its query after the sustained load"
    );
    lags.sort_by(f64::total_cmp);

    println!("\nincremental rollup over {rows} orders ({groups} groups: customer x day), registered in {:.1} s", registered.as_secs_f64());
    println!("\n  1. after 1,000 random changes ({dirty_groups} groups dirty):");
    let longest = refresh.as_secs_f64().max(incremental.as_secs_f64());
    println!(
        "  {:<42} {:>8.3} s {:>11} rows read {}",
        "pgdw worker: commit to rollup exact",
        incremental.as_secs_f64(),
        read_incremental,
        bar(incremental.as_secs_f64(), longest)
    );
    println!(
        "  {:<42} {:>8.3} s {:>11} rows read {}",
        "REFRESH MATERIALIZED VIEW",
        refresh.as_secs_f64(),
        read_refresh,
        bar(refresh.as_secs_f64(), longest)
    );
    println!(
        "  (of which the worker's recompute itself: {apply_ms:.1} ms; the rest is noticing the change, within {} ms, and the queue)",
        100
    );
    println!(
        "  => {:.0}x less time, {:.0}x fewer rows read (goal: 100x less work)",
        refresh.as_secs_f64() / incremental.as_secs_f64(),
        read_refresh as f64 / read_incremental.max(1) as f64
    );
    println!("\n  2. writers (4 connections, single-row statements), mean of 3 alternated 5 s rounds each:");
    let top = [capture, capture_base, applied, applied_base]
        .into_iter()
        .fold(0.0, f64::max);
    for (name, v) in [
        ("no rollup", capture_base),
        ("rollup installed, worker stopped (capture)", capture),
        ("no rollup (worker running, idle)", applied_base),
        ("rollup installed, worker applying", applied),
    ] {
        println!("  {name:<46} {v:>8.0} changes/s {}", bar(v, top));
    }
    println!(
        "  => capture keeps {:.2} of the throughput (goal: at least 0.75); with the worker recomputing on the same cores, {:.2}",
        capture / capture_base,
        applied / applied_base
    );
    println!(
        "\n  3. lag, commit to rollup updated, {} probes under {:.0} changes/s:",
        lags.len(),
        sustained
    );
    println!(
        "  p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms (goal: p99 under 2,000 ms)",
        percentile(&lags, 0.5),
        percentile(&lags, 0.9),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(f64::NAN)
    );
    println!("  (the longest run seen: {longest_run:.0} ms; runs seen recomputing every group: {whole_runs})");
}

fn main() {
    let rows = arg(0, 10_000_000) as i64;
    let (_w, opts) = common::fresh_warehouse();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(run(opts, rows));
}
