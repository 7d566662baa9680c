//! Product analytics, side by side in one run, on EVENTS events over the 30 days to today
//! (USERS users, skewed; 50 event names, skewed; 20 endpoints with latencies) in pg_partman's
//! daily partitions:
//!
//! 1. Each answer (active_users for 30 days, a 3-step funnel over 30 days within 7 days,
//!    8-week retention, an hourly trend, p95 latency by endpoint per hour from a tdigest
//!    rollup), p50/p95 of RUNS runs: registered (`pgdw.events`), the same functions scanning
//!    the rows (`scan => true`; 3 runs, they are slow), and ClickHouse's own engine (chDB from
//!    PyPI, in target/bench-venv) on the same events in a MergeTree ordered by
//!    (event_name, occurred_at, user_id).
//! 2. Freshness: from an event's commit to its effect in each answer (trend, dau, mau,
//!    retention), p50/p99, while writers add 2,000 events/s and `pgdw worker` keeps up.
//! 3. Writers' throughput (4 connections, 10-row inserts) on the registered table against an
//!    identical table without registration, alternated.
//!
//!     cargo bench -p pgdw --bench analytics -- [EVENTS] [USERS] [RUNS]   (100000000 1000000 10)

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use pgdw::worker::{self, Options, Stats};
use pgdw_testkit::bench::{arg, percentile};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

async fn exec(c: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn text(c: &mut PgConnection, sql: &str) -> String {
    sqlx::query_scalar::<_, String>(sql)
        .fetch_one(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The events of one day: users skewed towards low ids, names towards e0, latencies
/// exponential with a mean of 50 ms.
fn day_insert(table: &str, day: i64, n: i64, users: i64) -> String {
    format!(
        "INSERT INTO {table} (user_id, occurred_at, event_name, endpoint, latency_ms)
         SELECT 1 + floor({users} * power(random(), 2))::bigint,
                date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '{day} days' + random() * interval '1 day',
                'e' || floor(50 * power(random(), 3))::int, 'ep' || floor(random() * 20)::int, (-ln(1 - random()) * 50)::real
           FROM generate_series(1, {n})"
    )
}

fn create(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (event_id bigserial, user_id bigint NOT NULL, occurred_at timestamptz NOT NULL,
                               event_name text NOT NULL, endpoint text NOT NULL, latency_ms real NOT NULL,
                               PRIMARY KEY (event_id, occurred_at)) PARTITION BY RANGE (occurred_at);
         SELECT pgdw.partition_daily('{table}', 'occurred_at', retention => '60 days');"
    )
}

/// The questions, as pgdw answers them; `extra` is `, scan => true` or nothing.
fn questions(since: &str, until: &str, extra: &str) -> Vec<(&'static str, String)> {
    vec![
        ("active_users", format!("SELECT count(*) FROM pgdw.active_users('app.events', since => date '{since}', until => date '{until}'{extra})")),
        ("funnel", format!("SELECT count(*) FROM pgdw.funnel('app.events', steps => ARRAY['e10', 'e20', 'e30'], within => interval '7 days',
                                   since => timestamptz '{since} 00:00+00', until => timestamptz '{until} 00:00+00'{extra})")),
        ("retention", format!("SELECT count(*) FROM pgdw.retention('app.events', cohort_event => 'e10', return_event => NULL, period => 'week', periods => 8,
                                      since => timestamptz '{since} 00:00+00' - interval '56 days', until => timestamptz '{until} 00:00+00'{extra})")),
        ("trend", format!("SELECT count(*) FROM pgdw.trend('app.events', event => NULL, bucket => 'hour',
                                  since => timestamptz '{since} 00:00+00', until => timestamptz '{until} 00:00+00'{extra})")),
        ("p95_latency", if extra.is_empty() {
            format!("SELECT count(*) FROM (SELECT endpoint, hour, tdigest_percentile(latency, 0.95) FROM app.latency_hourly
                      WHERE hour >= timestamptz '{since} 00:00+00' AND hour < timestamptz '{until} 00:00+00' GROUP BY 1, 2) x")
        } else {
            format!("SELECT count(*) FROM (SELECT endpoint, date_trunc('hour', occurred_at), percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
                      FROM app.events WHERE occurred_at >= timestamptz '{since} 00:00+00' AND occurred_at < timestamptz '{until} 00:00+00' GROUP BY 1, 2) x")
        }),
    ]
}

async fn timed(c: &mut PgConnection, sql: &str, runs: usize) -> Vec<f64> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        text(c, &format!("SELECT ({sql})::text")).await;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times
}

fn start_worker(opts: &PgConnectOptions) -> tokio::sync::watch::Sender<bool> {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(worker::run(
        opts.clone(),
        Options {
            concurrency: 2,
            ..Default::default()
        },
        stop,
        Arc::new(Stats::default()),
    ));
    stop_tx
}

/// `n` writers of 10-row inserts into `table`, `rate` events/s in all (0: as fast as they
/// go), for `secs`. Returns the events written.
async fn writers(
    opts: &PgConnectOptions,
    n: u64,
    table: &str,
    users: i64,
    rate: u64,
    secs: f64,
) -> u64 {
    let sql = format!(
        "INSERT INTO {table} (user_id, occurred_at, event_name, endpoint, latency_ms)
         SELECT 1 + floor({users} * power(random(), 2))::bigint, now() - random() * interval '10 minutes',
                'e' || floor(50 * power(random(), 3))::int, 'ep' || floor(random() * 20)::int, (-ln(1 - random()) * 50)::real
           FROM generate_series(1, 10)"
    );
    common::paced_writers(opts, n, rate, secs, 10, move |_| sql.clone()).await
}

/// Poll `sql` until it returns `want`; the time since `t`.
async fn until_is(c: &mut PgConnection, t: Instant, sql: &str, want: &str) -> f64 {
    loop {
        if text(c, sql).await == want {
            return t.elapsed().as_secs_f64();
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{sql} never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn export_csv(c: &mut PgConnection, path: &Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut stream = c
        .copy_out_raw("COPY (SELECT user_id, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), event_name, endpoint, latency_ms FROM app.events) TO STDOUT (FORMAT csv)")
        .await
        .unwrap();
    while let Some(chunk) = stream.try_next().await.unwrap() {
        f.write_all(&chunk).unwrap();
    }
    f.flush().unwrap();
}

async fn run(opts: PgConnectOptions, events: i64, users: i64, runs: usize, dir: &Path) {
    let mut c = PgConnection::connect_with(&opts).await.unwrap();
    exec(
        &mut c,
        &format!(
            "CREATE SCHEMA app; {} {}",
            create("app.events"),
            create("app.events_plain")
        ),
    )
    .await;
    let since = text(
        &mut c,
        "SELECT to_char((now() AT TIME ZONE 'UTC')::date - 30, 'YYYY-MM-DD')",
    )
    .await;
    let until = text(
        &mut c,
        "SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD')",
    )
    .await;
    let t = Instant::now();
    for day in 1..=30 {
        exec(&mut c, &day_insert("app.events", day, events / 30, users)).await;
        eprintln!("  loaded day {day}/30 ({:.0} s)", t.elapsed().as_secs_f64());
    }
    exec(&mut c, "VACUUM ANALYZE app.events").await;
    let load = t.elapsed().as_secs_f64();

    eprintln!("exporting the events for chDB...");
    let csv = dir.join("events.csv");
    export_csv(&mut c, &csv).await;
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-venv");
    if !venv.join("bin/python").exists() {
        let ok = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap()
            .success()
            && std::process::Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "chdb-core"])
                .status()
                .unwrap()
                .success();
        assert!(ok, "installing chDB into {}", venv.display());
    }
    eprintln!("chDB: loading and asking, {runs} runs each...");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench/chdb_analytics.py");
    let out = std::process::Command::new(venv.join("bin/python"))
        .arg(&script)
        .arg(&csv)
        .arg(dir.join("chdb"))
        .args([&since, &until, &runs.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chDB: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chdb: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    std::fs::remove_file(&csv).unwrap();

    eprintln!("registering...");
    let t = Instant::now();
    exec(&mut c, "SELECT pgdw.events('app.events', user_column => 'user_id', time_column => 'occurred_at', name_column => 'event_name')").await;
    let register = t.elapsed().as_secs_f64();
    let t = Instant::now();
    exec(
        &mut c,
        "SELECT pgdw.rollup('app.latency_hourly',
             $$SELECT endpoint, date_trunc('hour', occurred_at) AS hour, tdigest(latency_ms, 100) AS latency FROM app.events GROUP BY 1, 2$$,
             'app.events', ARRAY['endpoint', $$date_trunc('hour', occurred_at)$$])",
    )
    .await;
    let register_latency = t.elapsed().as_secs_f64();
    let state = text(&mut c, "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c
                               WHERE c.relnamespace = 'pgdw'::regnamespace AND c.relname LIKE 'events\\_%' AND c.relkind = 'r'").await;
    let raw = text(&mut c, "SELECT pg_size_pretty(sum(pg_total_relation_size(relid))) FROM pg_partition_tree('app.events')").await;

    let mut table = Vec::new();
    for ((name, registered), (_, scanning)) in questions(&since, &until, "")
        .into_iter()
        .zip(questions(&since, &until, ", scan => true"))
    {
        eprintln!("  {name}...");
        let reg = timed(&mut c, &registered, runs).await;
        let scan = timed(&mut c, &scanning, 3.min(runs)).await;
        let mut ch: Vec<f64> = chdb["questions"][name]["seconds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        ch.sort_by(f64::total_cmp);
        table.push((name, reg, scan, ch));
    }

    eprintln!("freshness under 2,000 events/s...");
    let stop = start_worker(&opts);
    let wopts = opts.clone();
    let load_task =
        tokio::spawn(async move { writers(&wopts, 4, "app.events", users, 2000, 70.0).await });
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (mut f_trend, mut f_dau, mut f_mau, mut f_ret) = (vec![], vec![], vec![], vec![]);
    for k in 0..20 {
        // A day of its own far ahead (the default partition), an event name of its own.
        // 40 days apart: no probe is in another's month.
        let day = text(
            &mut c,
            &format!("SELECT (date '2031-01-01' + 40 * {k})::text"),
        )
        .await;
        let t = Instant::now();
        exec(
            &mut c,
            &format!(
                "INSERT INTO app.events (user_id, occurred_at, event_name, endpoint, latency_ms)
                               VALUES ({}, timestamptz '{day} 12:00+00', 'probe{k}', 'ep0', 1)",
                users + 1 + k
            ),
        )
        .await;
        f_trend.push(until_is(&mut c, t, &format!("SELECT sum(events)::text FROM pgdw.trend('app.events', event => 'probe{k}', bucket => 'day',
                                                             since => timestamptz '{day} 00:00+00', until => timestamptz '{day} 00:00+00' + interval '1 day')"), "1").await);
        f_dau.push(until_is(&mut c, t, &format!("SELECT dau::text FROM pgdw.active_users('app.events', since => date '{day}', until => date '{day}' + 1)"), "1").await);
        f_mau.push(until_is(&mut c, t, &format!("SELECT mau::text FROM pgdw.active_users('app.events', since => date '{day}', until => date '{day}' + 1)"), "1").await);
        f_ret.push(until_is(&mut c, t, &format!("SELECT coalesce(max(cohort_users), 0)::text FROM pgdw.retention('app.events', cohort_event => 'probe{k}', return_event => NULL,
                                                           period => 'day', periods => 1, since => timestamptz '{day} 00:00+00', until => timestamptz '{day} 00:00+00' + interval '1 day')"), "1").await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let made = load_task.await.unwrap();
    for v in [&mut f_trend, &mut f_dau, &mut f_mau, &mut f_ret] {
        v.sort_by(f64::total_cmp);
    }

    eprintln!("writers, with and without registration...");
    let (mut with, mut without) = (0.0, 0.0);
    for round in 0..3 {
        eprintln!("  round {}/3", round + 1);
        without += writers(&opts, 4, "app.events_plain", users, 0, 5.0).await as f64 / 15.0;
        with += writers(&opts, 4, "app.events", users, 0, 5.0).await as f64 / 15.0;
    }
    let _ = stop.send(true);

    println!("\nanalytics: {events} events, {users} users, 30 days ({since} to {until}); load {load:.0} s; raw {raw}, kept state {state}");
    println!("registration: pgdw.events {register:.0} s, the tdigest rollup {register_latency:.0} s; chDB load {:.0} s", chdb["load_s"].as_f64().unwrap());
    println!(
        "\n{:<14} {:>22} {:>22} {:>22}   registered vs chDB (p50)",
        "answer", "registered p50/p95 s", "scanning p50/p95 s", "chDB p50/p95 s"
    );
    for (name, reg, scan, ch) in &table {
        let f = |v: &[f64]| format!("{:.3}/{:.3}", percentile(v, 0.5), percentile(v, 0.95));
        println!(
            "{name:<14} {:>22} {:>22} {:>22}   {:.2}x {}",
            f(reg),
            f(scan),
            f(ch),
            percentile(ch, 0.5) / percentile(reg, 0.5),
            "#".repeat(
                ((percentile(ch, 0.5) / percentile(reg, 0.5)).log2().max(0.0) * 4.0) as usize
            )
        );
    }
    println!(
        "\nfreshness (commit to effect) with writers at 2,000 events/s ({made} events in 70 s):"
    );
    for (name, v) in [
        ("trend (first level)", &f_trend),
        ("dau (second)", &f_dau),
        ("mau (third)", &f_mau),
        ("retention cohort", &f_ret),
    ] {
        println!(
            "  {name:<22} p50 {:.3} s  p99 {:.3} s",
            percentile(v, 0.5),
            percentile(v, 0.99)
        );
    }
    println!("\nwriters (4 connections, 10-row inserts): registered {with:.0} events/s, plain {without:.0} events/s: {:.1}% cost",
             (1.0 - with / without) * 100.0);
}

fn main() {
    let events = arg(0, 100_000_000) as i64;
    let users = arg(1, 1_000_000) as i64;
    let runs = arg(2, 10) as usize;
    let (w, opts) = common::fresh_warehouse();
    let dir =
        tempfile::tempdir_in(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")).unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(run(opts, events, users, runs, dir.path()));
    drop(w);
}
