//! p50 and p95 latency of every panel of the example's dashboards over 30 days × 200 series
//! at 1-minute resolution (8,640,000 samples), through the code `pgdw serve` runs (read-only
//! role, statement_timeout, JSON). Baseline in the same run: the busiest-customers panel
//! computed from the raw samples instead of the hourly rollup. Prints figures and a chart.
//!
//!     cargo bench -p pgdw --bench dashboards [-- RUNS]      (default 30 runs per panel)

use std::time::Instant;

use pgdw::dashboards::query::{self, Bindings};
use pgdw::serve::{self, reader::Reader};
use pgdw_testkit::bench::percentile;
use pgdw_testkit::TempWarehouse;

const INSTANCES: i64 = 100; // × cpu and memory = 200 series
const DAYS: i64 = 30;

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let w = TempWarehouse::new();
    let up = w.pgdw(env!("CARGO_BIN_EXE_pgdw").as_ref(), &["up"]);
    assert!(up.status.success(), "{}", pgdw_testkit::transcript(&up));
    // The polling variant: the sources are not reached, migrations only declare them.
    pgdw_testkit::example::migrate_unreachable(&w, env!("CARGO_BIN_EXE_pgdw").as_ref());
    let sql = |q: &str| {
        w.psql_db("warehouse", q)
            .unwrap_or_else(|e| panic!("{q}: {e}"))
    };

    eprintln!(
        "loading {DAYS} days × {} series at 1 minute...",
        INSTANCES * 2
    );
    let t = Instant::now();
    sql(&format!(
        "INSERT INTO organizations SELECT 'org_' || o, 'Customer ' || o, 'c' || o, 'pro', now() - interval '200 days', now(), NULL
           FROM generate_series(1, 40) o;
         INSERT INTO instances SELECT 'inst_' || i, 'org_' || (i % 40 + 1), 'db-' || i, 'Standard', 'prod',
                1, 4, 50, '{{}}', now() - (i || ' days')::interval, now(), NULL
           FROM generate_series(1, {INSTANCES}) i;
         INSERT INTO instance_state SELECT i, 'inst_' || i, (ARRAY['Up','Up','Up','Stopped','Error'])[i % 5 + 1], 'Created', now()
           FROM generate_series(1, {INSTANCES}) i;
         INSERT INTO pgmq.a_saas_queue SELECT e, 1, now() - (e || ' minutes')::interval, now(), now(),
                jsonb_build_object('org_id', 'org_' || (e % 40 + 1), 'event_type', 'Create'), NULL
           FROM generate_series(1, 20000) e;
         INSERT INTO clerk_users SELECT 'user_' || u, 'A', 'B', u || '@example.com',
                (extract(epoch FROM now() - (u % 120 || ' days')::interval) * 1000)::bigint, NULL, NULL, '{{}}'
           FROM generate_series(1, 5000) u;
         INSERT INTO clerk_organization_memberships SELECT 'mem_' || u, 'user_' || u, 'org_' || (u % 40 + 1), 'member', 0
           FROM generate_series(1, 5000, 2) u;
         INSERT INTO metric_labels (name, labels)
         SELECT m, jsonb_build_object('instance_id', 'inst_' || i, 'organization_id', 'org_' || (i % 40 + 1))
           FROM generate_series(1, {INSTANCES}) i, unnest(ARRAY['instance_cpu_usage', 'instance_memory_bytes']) m;"
    ));
    let now: i64 = sql("SELECT extract(epoch FROM now())::bigint / 60 * 60")
        .parse()
        .unwrap();
    // One day per statement: each lands in its own partition.
    for d in 0..DAYS {
        let hi = now - d * 86_400;
        sql(&format!(
            "INSERT INTO metric_values (label_id, time, value)
             SELECT l.id, t, CASE WHEN l.name = 'instance_cpu_usage'
                                  THEN (l.id % 7 + 1) * (0.75 + 0.25 * sin(t / 13751.0))
                                  ELSE (l.id % 5 + 1) * 1073741824.0 END
               FROM metric_labels l, generate_series({lo}, {hi} - 60, 60) t",
            lo = hi - 86_400
        ));
        eprint!(".");
    }
    sql(&format!(
        "INSERT INTO metric_sync SELECT m, {now} FROM unnest(ARRAY['instance_cpu_usage', 'instance_memory_bytes']) m"
    ));
    // The rollups, as pgdw worker keeps them: one whole pass each after a bulk load.
    sql("CALL pgdw.rollup_run('metric_hourly')");
    sql("CALL pgdw.rollup_run('metric_daily')");
    sql("VACUUM ANALYZE");
    let samples = sql("SELECT count(*) FROM metric_values");
    eprintln!(
        "\n{samples} samples loaded in {:.0} s",
        t.elapsed().as_secs_f64()
    );

    let cluster = w.cluster().unwrap();
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
    let baseline = "baseline: busiest customers from raw samples (no rollup)";
    panels.push((
        baseline.into(),
        "SELECT o.name, round(sum(v.value)::numeric / 60, 1) AS core_hours
           FROM metric_values v JOIN metric_labels l ON l.id = v.label_id AND l.name = 'instance_cpu_usage'
           JOIN organizations o ON o.organization_id = l.labels->>'organization_id'
          WHERE v.time >= $from_epoch AND v.time < $to_epoch
          GROUP BY o.name ORDER BY core_hours DESC LIMIT 10"
            .into(),
    ));
    let now_ms = now * 1000;
    println!(
        "\npanel latency, {runs} runs each, read-only role, over {samples} samples ({} series):",
        INSTANCES * 2
    );
    println!(
        "{:<62} {:>6} {:>9} {:>9} {:>6}",
        "panel", "range", "p50 ms", "p95 ms", "rows"
    );
    let mut rows_out = Vec::new();
    for range_days in [30i64, 1] {
        let b = Bindings {
            from_ms: now_ms - range_days * 86_400_000,
            to_ms: now_ms,
            vars: vec![("organization".into(), None)],
        };
        for (title, q) in &panels {
            let mut times = Vec::with_capacity(runs);
            let mut n = 0;
            // The baseline takes seconds a run: a few runs say enough.
            let these = if title == baseline { runs.min(5) } else { runs };
            for _ in 0..these {
                let t = Instant::now();
                let data = rt
                    .block_on(query::run(
                        &reader,
                        &format!("panel: bench/{title}"),
                        q,
                        &b,
                        30_000,
                    ))
                    .unwrap_or_else(|e| panic!("{title}: {}", e.error));
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                n = data.rows.len();
            }
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let (p50, p95) = (percentile(&times, 0.5), percentile(&times, 0.95));
            println!(
                "{title:<62} {:>5}d {p50:>9.1} {p95:>9.1} {n:>6}",
                range_days
            );
            rows_out.push((title.clone(), range_days, p50, p95));
        }
    }
    // The chart: p95 per panel, 30-day range, against the 100 ms target.
    println!("\np95 over 30 days (each # = 5 ms; | = the 100 ms target):");
    for (title, _, _, p95) in rows_out.iter().filter(|r| r.1 == 30) {
        let bar = "#".repeat(((p95 / 5.0).ceil() as usize).min(60));
        let short: String = title.chars().take(46).collect();
        println!(
            "  {short:<46} {bar:<20}|{} {p95:.1}",
            if *p95 > 100.0 { " over" } else { "" }
        );
    }
    let worst = rows_out
        .iter()
        .filter(|r| !r.0.starts_with("baseline"))
        .map(|r| r.3)
        .fold(0.0, f64::max);
    let p95_of = |t: &str| {
        rows_out
            .iter()
            .find(|r| r.0.contains(t) && r.1 == 30)
            .map(|r| r.3)
            .unwrap()
    };
    println!(
        "\nworst panel p95: {worst:.1} ms (target < 100 ms); busiest customers: rollup {:.1} ms vs raw samples {:.1} ms = {:.0}x faster",
        p95_of("Most active customers (cpu"),
        p95_of("baseline"),
        p95_of("baseline") / p95_of("Most active customers (cpu")
    );
}
