//! What the warehouse benchmarks share: a fresh warehouse, alone or next to a Prometheus with
//! N days of M series; the example warehouse filled with a control plane and N days of
//! per-instance metrics at one-minute resolution (generated into the tables, as the metric
//! loads would leave them, rollups included); and the timing of every dashboard panel through
//! the code `pgdw serve` runs.

// Each benchmark compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use pgdw::dashboards::query::{self, Bindings};
use pgdw::serve::{self, reader::Reader};
use pgdw_testkit::bench::percentile;
use pgdw_testkit::prometheus::{History, Prometheus};
use pgdw_testkit::TempWarehouse;

pub const PGDW: &str = env!("CARGO_BIN_EXE_pgdw");

/// A fresh embedded warehouse (`pgdw up`), and how to connect to its database.
pub fn fresh_warehouse() -> (TempWarehouse, sqlx::postgres::PgConnectOptions) {
    let w = TempWarehouse::new();
    let out = w.pgdw(PGDW.as_ref(), &["up"]);
    assert!(out.status.success(), "{}", pgdw_testkit::transcript(&out));
    let cluster = w.cluster().unwrap();
    let opts = pgdw::target::embedded_options(&cluster, &cluster.state().database);
    (w, opts)
}

/// A fresh warehouse next to a Prometheus holding `days` days of `series` series of one gauge
/// (`bench_cpu`) at one minute, and the foreign table `bench.metrics` reading it.
pub struct WithPrometheus {
    pub w: TempWarehouse,
    pub connect: sqlx::postgres::PgConnectOptions,
    pub prometheus: Prometheus,
    pub history: History,
}

pub fn with_prometheus(days: i64, series: i64) -> WithPrometheus {
    let history = History::new("bench_cpu", days, series, 60);
    let prometheus = Prometheus::with_history(&history);
    let (w, connect) = fresh_warehouse();
    sql(
        &w,
        &format!(
            "CREATE SERVER bench_prom FOREIGN DATA WRAPPER prometheus_fdw OPTIONS (base_url '{}', timeout '10m');
             CREATE SCHEMA bench;
             CREATE FOREIGN TABLE bench.metrics (metric_name text, metric_labels jsonb, metric_time bigint, metric_value float8)
               SERVER bench_prom OPTIONS (object 'metrics', step '60s');",
            prometheus.url()
        ),
    );
    WithPrometheus {
        w,
        connect,
        prometheus,
        history,
    }
}

/// The example warehouse with `instances` instances (cpu and memory: two series each) over
/// `days` days.
pub struct Filled {
    pub w: TempWarehouse,
    /// Epoch seconds the data ends at (a whole minute).
    pub now: i64,
    pub series: i64,
    pub samples: i64,
    /// Seconds the samples took to load (the rollups' capture included), and the rollups to
    /// compute after.
    pub load_secs: f64,
    pub rollup_secs: f64,
}

/// One value, through psql, in the warehouse database.
pub fn sql(w: &TempWarehouse, q: &str) -> String {
    w.psql_db("warehouse", q)
        .unwrap_or_else(|e| panic!("{q}: {e}"))
}

impl Filled {
    pub fn sql(&self, q: &str) -> String {
        sql(&self.w, q)
    }
}

pub fn example_with_metrics(instances: i64, days: i64) -> Filled {
    let (w, _) = fresh_warehouse();
    // The polling variant: the sources are not reached, migrations only declare them.
    pgdw_testkit::example::migrate_unreachable(&w, PGDW.as_ref());
    let mut f = Filled {
        w,
        now: 0,
        series: instances * 2,
        samples: 0,
        load_secs: 0.0,
        rollup_secs: 0.0,
    };
    let orgs = (instances / 3).max(1);
    f.sql(&format!(
        "INSERT INTO organizations SELECT 'org_' || o, 'Customer ' || o, 'c' || o, 'pro', now() - interval '200 days', now(), NULL
           FROM generate_series(1, {orgs}) o;
         INSERT INTO instances SELECT 'inst_' || i, 'org_' || (i % {orgs} + 1), 'db-' || i, 'Standard', 'prod',
                1, 4, 50, '{{}}', now() - (i % 300 || ' days')::interval, now(), NULL
           FROM generate_series(1, {instances}) i;
         INSERT INTO instance_state SELECT i, 'inst_' || i, (ARRAY['Up','Up','Up','Stopped','Error'])[i % 5 + 1], 'Created', now()
           FROM generate_series(1, {instances}) i;
         INSERT INTO pgmq.a_saas_queue SELECT e, 1, now() - (e || ' minutes')::interval, now(), now(),
                jsonb_build_object('org_id', 'org_' || (e % {orgs} + 1), 'event_type', 'Create'), NULL
           FROM generate_series(1, 20000) e;
         INSERT INTO clerk_users SELECT 'user_' || u, 'A', 'B', u || '@example.com',
                (extract(epoch FROM now() - (u % 120 || ' days')::interval) * 1000)::bigint, NULL, NULL, '{{}}'
           FROM generate_series(1, 5000) u;
         INSERT INTO clerk_organization_memberships SELECT 'mem_' || u, 'user_' || u, 'org_' || (u % {orgs} + 1), 'member', 0
           FROM generate_series(1, 5000, 2) u;
         INSERT INTO metric_labels (name, labels)
         SELECT m, jsonb_build_object('instance_id', 'inst_' || i, 'organization_id', 'org_' || (i % {orgs} + 1))
           FROM generate_series(1, {instances}) i, unnest(ARRAY['instance_cpu_usage', 'instance_memory_bytes']) m;"
    ));
    f.now = f
        .sql("SELECT extract(epoch FROM now())::bigint / 60 * 60")
        .parse()
        .unwrap();
    eprintln!(
        "loading {days} days x {} series at 1 minute ({} samples)...",
        f.series,
        f.series * days * 1440
    );
    let start = Instant::now();
    // One day per statement: each lands in its own partition.
    for d in 0..days {
        let hi = f.now - d * 86_400;
        f.sql(&format!(
            "INSERT INTO metric_values (label_id, time, value)
             SELECT l.id, t, CASE WHEN l.name = 'instance_cpu_usage'
                                  THEN (l.id % 7 + 1) * (0.75 + 0.25 * sin(t / 13751.0))
                                  ELSE (l.id % 5 + 1) * 1073741824.0 END
               FROM metric_labels l, generate_series({lo}, {hi} - 60, 60) t",
            lo = hi - 86_400
        ));
        let done = f.series * (d + 1) * 1440;
        eprintln!(
            "  day {}/{days}: {done} samples, {:.0} samples/s",
            d + 1,
            done as f64 / start.elapsed().as_secs_f64()
        );
    }
    f.load_secs = start.elapsed().as_secs_f64();
    f.sql(&format!(
        "UPDATE pgdw.metric_loads SET synced_to = {} WHERE metric IN ('instance_cpu_usage', 'instance_memory_bytes')",
        f.now
    ));
    // The derived data, as pgdw worker keeps it: materialized columns, then every rollup
    // (a whole pass each after a bulk load), until nothing is left (rollups feed rollups).
    eprintln!("computing the materialized columns and rollups...");
    let start = Instant::now();
    for _ in 0..5 {
        f.sql(
            "SELECT pgdw.materialize_batch(tbl, 10000000) FROM (SELECT DISTINCT tbl FROM pgdw.materializations) m",
        );
        for r in f
            .sql("SELECT string_agg(name::text, ' ' ORDER BY id) FROM pgdw.rollups")
            .split(' ')
        {
            f.sql(&format!("CALL pgdw.rollup_run('{r}')"));
        }
        if f.sql("SELECT pgdw.derived_backlog()") == "0" {
            break;
        }
    }
    f.rollup_secs = start.elapsed().as_secs_f64();
    // The database dashboard's trends start here.
    f.sql("SELECT pgdw.health_sample()");
    eprintln!("VACUUM ANALYZE...");
    f.sql("VACUUM ANALYZE");
    f.samples = f.sql("SELECT count(*) FROM metric_values").parse().unwrap();
    f
}

/// One panel's latency over one range.
pub struct Timing {
    pub title: String,
    pub range_days: i64,
    pub p50: f64,
    pub p95: f64,
    pub rows: usize,
}

pub const BASELINE: &str = "baseline: busiest customers from raw samples (no rollup)";

/// Every SQL panel of the example's dashboards, `runs` times over each of `ranges` (days back
/// from `now`), as `pgdw serve` runs them; with `baseline`, also the busiest customers from
/// the raw samples. Prints a line per panel as it goes.
pub fn time_panels(f: &Filled, runs: usize, ranges: &[i64], baseline: bool) -> Vec<Timing> {
    let cluster = f.w.cluster().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_owner, reader) = rt
        .block_on(serve::pools(
            &pgdw::target::embedded_options(&cluster, "warehouse"),
            &Reader::Socket,
        ))
        .unwrap();
    let mut panels: Vec<(String, String)> = Vec::new();
    for d in pgdw::dashboards::load_dir(&pgdw_testkit::example::path().join("dashboards")).unwrap()
    {
        for p in d.panels.iter().filter(|p| p.sql.is_some()) {
            panels.push((format!("{}: {}", d.name, p.title), p.sql.clone().unwrap()));
        }
    }
    if baseline {
        panels.push((
            BASELINE.into(),
            "SELECT o.name, round(sum(v.value)::numeric / 60, 1) AS core_hours
               FROM metric_values v JOIN metric_labels l ON l.id = v.label_id AND l.name = 'instance_cpu_usage'
               JOIN organizations o ON o.organization_id = l.labels->>'organization_id'
              WHERE v.time >= $from_epoch AND v.time < $to_epoch
              GROUP BY o.name ORDER BY core_hours DESC LIMIT 10"
                .into(),
        ));
    }
    println!(
        "\npanel latency, {runs} runs each, read-only role, over {} samples ({} series):",
        f.samples, f.series
    );
    println!(
        "{:<62} {:>6} {:>9} {:>9} {:>6}",
        "panel", "range", "p50 ms", "p95 ms", "rows"
    );
    let mut out = Vec::new();
    for &range_days in ranges {
        let b = Bindings {
            from_ms: (f.now - range_days * 86_400) * 1000,
            to_ms: f.now * 1000,
            vars: vec![("organization".into(), None)],
        };
        for (title, q) in &panels {
            let mut times = Vec::with_capacity(runs);
            let mut rows = 0;
            // The baseline takes seconds a run: a few runs say enough.
            let these = if title == BASELINE { runs.min(5) } else { runs };
            for _ in 0..these {
                let t = Instant::now();
                let data = rt
                    .block_on(query::run(
                        &reader,
                        &format!("panel: bench/{title}"),
                        q,
                        &b,
                        60_000,
                    ))
                    .unwrap_or_else(|e| panic!("{title}: {}", e.error));
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                rows = data.rows.len();
            }
            times.sort_by(f64::total_cmp);
            let (p50, p95) = (percentile(&times, 0.5), percentile(&times, 0.95));
            println!("{title:<62} {range_days:>5}d {p50:>9.1} {p95:>9.1} {rows:>6}");
            out.push(Timing {
                title: title.clone(),
                range_days,
                p50,
                p95,
                rows,
            });
        }
    }
    out
}

/// A bar chart of p95 per panel over `range_days`, against the 100 ms target.
pub fn chart(timings: &[Timing], range_days: i64) {
    println!("\np95 over {range_days} days (each # = 5 ms; | = the 100 ms target):");
    for t in timings.iter().filter(|t| t.range_days == range_days) {
        let bar = "#".repeat(((t.p95 / 5.0).ceil() as usize).min(60));
        let short: String = t.title.chars().take(46).collect();
        println!(
            "  {short:<46} {bar:<20}|{} {:.1}",
            if t.p95 > 100.0 { " over" } else { "" },
            t.p95
        );
    }
}

/// What `clients` viewers looping over `paths` saw.
pub struct Round {
    pub requests: usize,
    pub failures: usize,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

/// `clients` threads, each requesting `paths` of the server at `base` in turn over real HTTP
/// while `keep_going` holds (all start together).
pub fn viewers(
    base: &str,
    paths: &[&str],
    clients: usize,
    keep_going: Arc<dyn Fn() -> bool + Send + Sync>,
) -> Round {
    let start = Arc::new(Barrier::new(clients));
    let began = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let base = base.to_string();
            let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            let (start, keep_going) = (start.clone(), keep_going.clone());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(60))
                    .build();
                start.wait();
                let (mut lat, mut failures) = (Vec::new(), 0);
                let mut i = c;
                while keep_going() {
                    let t = Instant::now();
                    match agent
                        .get(&format!("{base}{}", paths[i % paths.len()]))
                        .call()
                    {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.into_string();
                        }
                        _ => failures += 1,
                    }
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    i += 1;
                }
                (lat, failures)
            })
        })
        .collect();
    let (mut all, mut failures) = (Vec::new(), 0);
    for t in threads {
        let (l, f) = t.join().unwrap();
        all.extend(l);
        failures += f;
    }
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        all.get(((all.len().max(1) as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Round {
        requests: all.len(),
        failures,
        per_sec: all.len() as f64 / began.elapsed().as_secs_f64(),
        p50_ms: pct(0.5),
        p95_ms: pct(0.95),
    }
}

/// `n` writers, each on its own connection running `statement(rng)` one at a time (each
/// writes `rows` rows), `rate` rows per second in all (0: as fast as they go), for `secs`.
/// Returns the rows written.
pub async fn paced_writers<F>(
    opts: &sqlx::postgres::PgConnectOptions,
    n: u64,
    rate: u64,
    secs: f64,
    rows: u64,
    statement: F,
) -> u64
where
    F: Fn(&mut rand::rngs::StdRng) -> String + Clone + Send + 'static,
{
    use rand::SeedableRng;
    use sqlx::Connection;
    let mut tasks = Vec::new();
    for w in 0..n {
        let (opts, statement) = (opts.clone(), statement.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = sqlx::PgConnection::connect_with(&opts).await.unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(w);
            let start = Instant::now();
            let mut done = 0u64;
            while start.elapsed().as_secs_f64() < secs {
                if rate > 0 {
                    // Paced: this writer's share of `rate`.
                    let due = Duration::from_secs_f64(done as f64 / (rate as f64 / n as f64));
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                let sql = statement(&mut rng);
                sqlx::query(&sql)
                    .persistent(false)
                    .execute(&mut c)
                    .await
                    .unwrap();
                done += rows;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}
