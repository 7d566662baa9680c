//! Materialized columns: 1,000,000 venues whose country (a city lookup) and name key are
//! computed by `pgdw worker`: the time to compute all of them with 1, 2 and 4 workers; then 1%
//! of the rows changed and the time until all are fresh again (a running worker, medians of
//! five rounds), against `REFRESH MATERIALIZED VIEW` of the equivalent view in the same run;
//! the share of the worker's write-backs that were HOT updates, and what the registration
//! costs a writer (single-row updates per second, against the same table unregistered).
//!
//!     cargo bench -p pgdw --bench materialize -- [ROWS] [FILLFACTOR]   (default 1000000 90)

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgdw::worker::{self, Options, Stats};
use pgdw_testkit::bench::arg;
use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{Connection, PgConnection};

async fn exec(c: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `pgdw worker`'s loop with `concurrency` tasks at once, in this process, until stopped.
struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    worker: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn start(opts: &PgConnectOptions, concurrency: usize) -> Running {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker = tokio::spawn(worker::run(
            opts.clone(),
            Options {
                concurrency,
                lease: Duration::from_secs(60),
                poll: Duration::from_millis(100),
                ..Options::default()
            },
            stopped,
            Arc::new(Stats::default()),
        ));
        Running { stop, worker }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.worker.await.unwrap().unwrap();
    }
}

/// Run `concurrency` workers until the venues have nothing pending; how long it took.
async fn compute_all(
    opts: &PgConnectOptions,
    c: &mut PgConnection,
    batches: &mut PgListener,
    concurrency: usize,
) -> Duration {
    let start = Instant::now();
    let running = Running::start(opts, concurrency);
    let took = wait_fresh(c, batches, start).await;
    running.stop().await;
    took
}

/// Measured rounds of the 1% change and of each REFRESH; medians are reported.
const ROUNDS: usize = 5;

/// Looked at again whenever a worker commits a batch (its transaction queues the slot's next
/// task, whose notification arrives at the commit) and at least every 20 ms: a poll
/// interval would add its own wait to the measurement, and a fast poll would take CPU from
/// the workers.
async fn wait_fresh(c: &mut PgConnection, batches: &mut PgListener, start: Instant) -> Duration {
    loop {
        // The pending set's keys, not a scan of the rows (no index names materialized_at).
        let pending: bool = sqlx::query_scalar("SELECT pgdw.materialize_waiting('venue')")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        if !pending {
            return start.elapsed();
        }
        let _ = tokio::time::timeout(Duration::from_millis(20), batches.recv()).await;
    }
}

/// Until no materialize task is queued or running (the previous round's last hand-on
/// included: a slot is held while its task is).
async fn wait_idle(c: &mut PgConnection) {
    loop {
        let busy: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pgdw.materialize_slots)")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        if !busy {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The materialized columns agree with the view (as last refreshed).
async fn agree(c: &mut PgConnection) {
    let wrong: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM venue v JOIN venue_derived d USING (id)
          WHERE v.country IS DISTINCT FROM d.country OR v.name_key IS DISTINCT FROM d.name_key",
    )
    .fetch_one(&mut *c)
    .await
    .unwrap();
    assert_eq!(wrong, 0, "the materialized columns agree with the view");
}

/// `n_tup_upd` and `n_tup_hot_upd` of venue once they reach `at_least` (statistics arrive
/// when a backend commits or idles, seconds later).
async fn updates(c: &mut PgConnection, at_least: i64) -> (i64, i64) {
    loop {
        let (upd, hot): (i64, i64) = sqlx::query_as(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'venue'",
        )
        .fetch_one(&mut *c)
        .await
        .unwrap();
        if upd >= at_least {
            return (upd, hot);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Single-row updates of `table` (a rename of one random row each, committed) per second.
async fn writer_rate(c: &mut PgConnection, table: &str, rows: u64) -> f64 {
    const N: u64 = 5_000;
    let sql = format!("UPDATE {table} SET name = name || '.' WHERE id = $1");
    let start = Instant::now();
    for i in 0..N {
        sqlx::query(&sql)
            .bind(((i * 7919) % rows + 1) as i64)
            .execute(&mut *c)
            .await
            .unwrap();
    }
    N as f64 / start.elapsed().as_secs_f64()
}

/// The materialize tasks finished since `since` (epoch seconds): when each was enqueued and
/// when it finished, in ms after `since`, and its slot.
async fn tasks_since(c: &mut PgConnection, since: f64) -> Vec<(f64, f64, i32)> {
    // No task queued or running any more (the last one's completion may still be on its
    // way to the history: the timeline can miss that one, which found nothing to do).
    wait_idle(c).await;
    sqlx::query_as(
        "SELECT (extract(epoch FROM enqueued_at)::float8 - $1) * 1000, (extract(epoch FROM finished_at)::float8 - $1) * 1000,
                (payload->>'slot')::int
           FROM pgdw.task_history WHERE kind = 'materialize' AND finished_at >= to_timestamp($1)
          ORDER BY finished_at",
    )
    .bind(since)
    .fetch_all(&mut *c)
    .await
    .unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn run(opts: PgConnectOptions, rows: u64, fillfactor: u64) {
    let mut c = PgConnection::connect_with(&opts).await.unwrap();
    let listening = sqlx::PgPool::connect_with(opts.clone()).await.unwrap();
    let mut batches = PgListener::connect_with(&listening).await.unwrap();
    batches.listen("pgdw_tasks").await.unwrap();
    eprintln!("loading {rows} venues...");
    exec(
        &mut c,
        &format!(
            "CREATE TABLE city (id int PRIMARY KEY, country text NOT NULL);
             INSERT INTO city SELECT g, (ARRAY['GB','FR','DE','US','ES','IT'])[g % 6 + 1] FROM generate_series(1, 1000) g;
             CREATE TABLE venue (id bigint PRIMARY KEY, name text NOT NULL, city_id int NOT NULL, seats int NOT NULL)
               WITH (fillfactor = {fillfactor});
             INSERT INTO venue SELECT g, 'Cinéma No. ' || g || ' (' || md5(g::text) || ')', g % 1000 + 1, g % 500
               FROM generate_series(1, {rows}) g;
             ALTER TABLE venue ADD COLUMN country text, ADD COLUMN name_key text;
             CREATE FUNCTION venue_derive(v venue) RETURNS TABLE (country text, name_key text)
             LANGUAGE sql STABLE AS $$
               SELECT c.country, lower(regexp_replace(v.name, '[^[:alnum:]]+', '', 'g'))
                 FROM city c WHERE c.id = v.city_id $$;
             CREATE MATERIALIZED VIEW venue_derived AS
               SELECT v.id, d.country, d.name_key FROM venue v LEFT JOIN LATERAL venue_derive(v) d ON true;
             CREATE UNIQUE INDEX ON venue_derived (id);"
        ),
    )
    .await;
    exec(&mut c, "VACUUM ANALYZE venue").await;
    exec(
        &mut c,
        "SELECT pgdw.materialize('venue', 'venue_derive', depends_on => '{name,city_id}')",
    )
    .await;

    let mut full = Vec::new();
    for n in [1usize, 2, 4] {
        if n > 1 {
            // Everything pending again, outside the measurement.
            exec(
                &mut c,
                "UPDATE venue SET materialized_at = NULL, country = NULL, name_key = NULL",
            )
            .await;
        }
        // Every run from the same pages: the table rewritten compact (at its fillfactor), not
        // carrying the versions the runs before left.
        exec(&mut c, "VACUUM FULL venue").await;
        exec(&mut c, "ANALYZE venue").await;
        eprintln!("computing every row with {n} worker(s)...");
        let took = compute_all(&opts, &mut c, &mut batches, n).await;
        full.push((n, took));
    }
    agree(&mut c).await;
    // The writer's cost of the registration: the same table (the same pages, the same
    // indexes) with pgdw's triggers disabled, side by side, twice each; and a fresh copy of it
    // with no triggers, as a second baseline (compact pages: an upper bound of the cost).
    exec(
        &mut c,
        &format!(
            "CREATE TABLE venue_plain (LIKE venue INCLUDING ALL) WITH (fillfactor = {fillfactor});
         INSERT INTO venue_plain SELECT * FROM venue"
        ),
    )
    .await;
    exec(&mut c, "VACUUM ANALYZE venue_plain, venue").await;
    eprintln!("single-row updates, with and without the registration...");
    let mut registered = Vec::new();
    let mut disabled = Vec::new();
    let mut fresh = Vec::new();
    for _ in 0..2 {
        exec(&mut c, "ALTER TABLE venue DISABLE TRIGGER USER").await;
        disabled.push(writer_rate(&mut c, "venue", rows).await);
        // The renames made without the triggers: pending, as the triggers would have made them.
        exec(
            &mut c,
            &format!(
                "UPDATE venue SET materialized_at = NULL WHERE id IN (SELECT (g::bigint * 7919) % {rows} + 1 FROM generate_series(0, 4999) g);
                 SELECT pgdw.materialize_install('venue')"
            ),
        )
        .await;
        registered.push(writer_rate(&mut c, "venue", rows).await);
        fresh.push(writer_rate(&mut c, "venue_plain", rows).await);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (plain_rate, registered_rate, fresh_rate) =
        (mean(&disabled), mean(&registered), mean(&fresh));
    compute_all(&opts, &mut c, &mut batches, 2).await;

    // 1% of the rows renamed, a different 1% each round: the worker recomputes them; the view
    // refreshes whole. The worker keeps running between rounds, as in a deployment; its first
    // change is reported apart (new connections: every function, regular expression and
    // shared buffer is new to their backends).
    let running = Running::start(&opts, 2);
    let mut changes = Vec::new();
    let mut timeline = Vec::new();
    for round in 0..=ROUNDS {
        eprintln!("1% of the rows changed (round {round} of {ROUNDS})...");
        exec(&mut c, "VACUUM ANALYZE venue").await;
        // The worker idle (connected, listening) before the change.
        wait_idle(&mut c).await;
        exec(
            &mut c,
            &format!("UPDATE venue SET name = name || ' bis' WHERE id % 100 = {round}"),
        )
        .await;
        // From the change's commit (the UPDATE returned) to every row fresh again.
        let committed: f64 =
            sqlx::query_scalar("SELECT extract(epoch FROM clock_timestamp())::float8")
                .fetch_one(&mut c)
                .await
                .unwrap();
        changes.push(wait_fresh(&mut c, &mut batches, Instant::now()).await);
        timeline.push(tasks_since(&mut c, committed).await);
    }
    running.stop().await;
    for (round, tasks) in timeline.iter().enumerate() {
        let line: Vec<String> = tasks
            .iter()
            .map(|(e, f, slot)| format!("s{slot} {e:.0}..{f:.0}"))
            .collect();
        eprintln!(
            "  round {round}: tasks (ms after the commit) {}",
            line.join(", ")
        );
    }
    // The HOT share of the write-backs of one more 1% change: the renames' updates counted
    // first (no worker running), then the worker's.
    exec(&mut c, "VACUUM venue").await;
    let (base, _) = updates(&mut c, 0).await;
    exec(
        &mut c,
        "UPDATE venue SET name = name || ' ter' WHERE id % 100 = 42",
    )
    .await;
    let (renamed, hot_renamed) = updates(&mut c, base + (rows / 100) as i64).await;
    let running = Running::start(&opts, 2);
    wait_fresh(&mut c, &mut batches, Instant::now()).await;
    running.stop().await;
    let (written, hot_written) = updates(&mut c, renamed + (rows / 100) as i64).await;
    let hot_share = (hot_written - hot_renamed) as f64 / (written - renamed) as f64;
    let first = changes.remove(0);
    let incremental = median(changes);
    let mut refreshes = Vec::new();
    let mut concurrently = Vec::new();
    for round in 1..=ROUNDS {
        eprintln!("REFRESH MATERIALIZED VIEW (round {round} of {ROUNDS})...");
        let start = Instant::now();
        exec(&mut c, "REFRESH MATERIALIZED VIEW venue_derived").await;
        refreshes.push(start.elapsed());
        let start = Instant::now();
        exec(
            &mut c,
            "REFRESH MATERIALIZED VIEW CONCURRENTLY venue_derived",
        )
        .await;
        concurrently.push(start.elapsed());
    }
    let refresh = median(refreshes);
    let refresh_concurrently = median(concurrently);
    // The rows the worker recomputed agree with the view refreshed after them.
    agree(&mut c).await;

    println!(
        "\nmaterialized columns over {rows} rows (country by city lookup, name key by regexp), fillfactor {fillfactor}:"
    );
    println!("  {:<52} {:>9}", "compute every row", "seconds");
    for (n, d) in &full {
        println!(
            "  {:<52} {:>9.2}   {:.0} rows/s",
            format!("{n} worker(s)"),
            d.as_secs_f64(),
            rows as f64 / d.as_secs_f64()
        );
    }
    println!(
        "\n  after 1% of the rows changed ({} rows; medians of {ROUNDS} rounds):",
        rows / 100
    );
    let lines = [
        ("pgdw worker: commit to every row fresh", incremental),
        ("  the same, the worker's first change", first),
        ("REFRESH MATERIALIZED VIEW", refresh),
        (
            "REFRESH MATERIALIZED VIEW CONCURRENTLY",
            refresh_concurrently,
        ),
    ];
    let longest = lines
        .iter()
        .map(|(_, d)| d.as_secs_f64())
        .fold(0.0, f64::max);
    for (name, d) in lines {
        println!(
            "  {:<44} {:>8.3} s {}",
            name,
            d.as_secs_f64(),
            "#".repeat((d.as_secs_f64() / longest * 40.0).round().max(1.0) as usize)
        );
    }
    println!(
        "\n  the 1% change: {:.0}x less time than REFRESH, {:.0}x less than REFRESH CONCURRENTLY",
        refresh.as_secs_f64() / incremental.as_secs_f64(),
        refresh_concurrently.as_secs_f64() / incremental.as_secs_f64()
    );
    println!(
        "  write-backs that were HOT updates: {:.1}% ({} of {})",
        hot_share * 100.0,
        hot_written - hot_renamed,
        written - renamed
    );
    println!(
        "  a writer's single-row updates: {registered_rate:.0}/s registered, {plain_rate:.0}/s with its triggers disabled ({:.1}% cost); {fresh_rate:.0}/s on a fresh copy without them ({:.1}%)",
        (1.0 - registered_rate / plain_rate) * 100.0,
        (1.0 - registered_rate / fresh_rate) * 100.0
    );
    if let [(_, one), (_, two), (_, four)] = full[..] {
        println!(
            "  every row: 2 workers {:.2}x the speed of 1, 4 workers {:.2}x the speed of 2",
            one.as_secs_f64() / two.as_secs_f64(),
            two.as_secs_f64() / four.as_secs_f64()
        );
    }
}

fn main() {
    let rows = arg(0, 1_000_000);
    let fillfactor = arg(1, 90);
    let (_w, opts) = common::fresh_warehouse();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(run(opts, rows, fillfactor));
}
