//! `dw.metric_series` as a panel calls it, over SAMPLES samples (one a minute for a year, of
//! SAMPLES / 525,600 series in 10 organizations), with a quarter-hour rollup from the samples,
//! the hourly from it and the daily from the hourly: p50/p95 of RUNS calls for one instance's
//! series (a panel of one instance) and for one organization's (a tenth of them) over 1 hour,
//! 1 day, 30 days and 1 year in at most 1,000 points, against the same aggregate read from the
//! samples (the baseline, 3 runs), with the resolution each range got.
//!
//!     cargo bench -p pgdw --bench metric_series -- [SAMPLES] [RUNS]   (100000000 20)

mod common;

use std::time::Instant;

use pgdw_testkit::bench::{arg, percentile};
use sqlx::{Connection, PgConnection};

const YEAR_MINUTES: i64 = 525_600;

fn main() {
    let samples = arg(0, 100_000_000) as i64;
    let runs = arg(1, 20) as usize;
    let series = (samples / YEAR_MINUTES).max(1);
    let (w, opts) = common::fresh_warehouse();
    let sql = |q: &str| common::sql(&w, q);
    let now = 1_767_225_600_i64; // 2026-01-01 00:00 UTC: the year ends there
    let start = now - 365 * 86_400;
    eprintln!("{series} series of a sample a minute for a year ({samples} samples)");
    let t = Instant::now();
    sql("CREATE TABLE metric_labels (id bigserial PRIMARY KEY, name text NOT NULL, labels jsonb NOT NULL, UNIQUE (name, labels));
         CREATE TABLE metric_values (label_id bigint NOT NULL, time bigint NOT NULL, value float8 NOT NULL);");
    sql(&format!(
        "INSERT INTO metric_labels (name, labels)
         SELECT 'cpu', jsonb_build_object('instance', 'i' || i, 'org', 'o' || i % 10) FROM generate_series(1, {series}) i"
    ));
    for s in 1..=series {
        sql(&format!(
            "INSERT INTO metric_values SELECT {s}, t, 50 + 40 * sin(t / 3600.0) + random() * 10
               FROM generate_series({start}, {now} - 60, 60) t"
        ));
        if s % 20 == 0 || s == series {
            eprintln!(
                "  {s}/{series} series loaded ({:.0} s)",
                t.elapsed().as_secs_f64()
            );
        }
    }
    sql("ALTER TABLE metric_values ADD PRIMARY KEY (label_id, time);");
    let load = t.elapsed().as_secs_f64();
    let t = Instant::now();
    // A quarter-hour tier besides the hourly and the daily: 30 days at 1,000 points asks for
    // buckets of 43 minutes, which the hourly one is too coarse for (raw samples, else).
    sql("CREATE INDEX ON metric_values (label_id, (time / 900 * 900));
         SELECT pgdw.rollup('metric_15m',
           $$SELECT label_id, time / 900 * 900 AS quarter, sum(value) AS sum, min(value) AS min, max(value) AS max, count(*) AS samples
               FROM metric_values GROUP BY 1, 2$$,
           source => 'metric_values', keys => ARRAY['label_id', 'time / 900 * 900']);
         CREATE INDEX ON metric_15m (label_id, (quarter / 3600 * 3600));
         SELECT pgdw.rollup('metric_hourly',
           $$SELECT label_id, quarter / 3600 * 3600 AS hour, sum(sum) AS sum, min(min) AS min, max(max) AS max, sum(samples)::bigint AS samples
               FROM metric_15m GROUP BY 1, 2$$,
           source => 'metric_15m', keys => ARRAY['label_id', 'quarter / 3600 * 3600']);
         CREATE INDEX ON metric_hourly (label_id, (hour / 86400 * 86400));
         SELECT pgdw.rollup('metric_daily',
           $$SELECT label_id, hour / 86400 * 86400 AS day, sum(sum) AS sum, min(min) AS min, max(max) AS max, sum(samples)::bigint AS samples
               FROM metric_hourly GROUP BY 1, 2$$,
           source => 'metric_hourly', keys => ARRAY['label_id', 'hour / 86400 * 86400']);
         SELECT pgdw.metric_resolutions('metric_values', '{\"metric_15m\": \"15 minutes\", \"metric_hourly\": \"1 hour\", \"metric_daily\": \"1 day\"}', labels => 'metric_labels');
         VACUUM ANALYZE metric_values, metric_15m, metric_hourly, metric_daily;");
    eprintln!(
        "loaded in {load:.0} s, rollups registered in {:.0} s",
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut conn = rt.block_on(PgConnection::connect_with(&opts)).unwrap();
    let mut timed = |q: &str| -> f64 {
        let t = Instant::now();
        rt.block_on(sqlx::raw_sql(q).execute(&mut conn))
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        t.elapsed().as_secs_f64() * 1000.0
    };
    println!("series       range     resolution        bucket    points  p50 ms  p95 ms  samples p50 ms  ratio");
    for (who, filter) in [
        ("instance i3", r#"{"instance": "i3"}"#),
        ("org o3", r#"{"org": "o3"}"#),
    ] {
        for (label, secs) in [
            ("1 hour", 3600),
            ("1 day", 86_400),
            ("30 days", 30 * 86_400),
            ("1 year", 365 * 86_400),
        ] {
            let (from, to) = (now - secs, now);
            let args = format!("'cpu', '{filter}', to_timestamp({from}), to_timestamp({to}), 1000");
            let plan = sql(&format!(
            "SELECT coalesce(rollup::text, 'samples') || ' ' || bucket_seconds FROM pgdw.metric_series_resolution('metric_values', to_timestamp({from}), to_timestamp({to}), 1000)"
        ));
            let (resolution, bucket) = plan.split_once(' ').unwrap();
            let bucket: i64 = bucket.parse().unwrap();
            let points = sql(&format!("SELECT count(*) FROM dw.metric_series({args})"));
            let mut times = Vec::new();
            for _ in 0..runs {
                times.push(timed(&format!("SELECT * FROM dw.metric_series({args})")));
            }
            times.sort_by(f64::total_cmp);
            // The same points from the samples: what a panel costs without the rollups.
            let mut raw = Vec::new();
            for _ in 0..3 {
                raw.push(timed(&format!(
                "SELECT v.label_id, v.time / {bucket}, avg(v.value), min(v.value), max(v.value), count(*)
                   FROM metric_values v JOIN metric_labels l ON l.id = v.label_id
                  WHERE l.name = 'cpu' AND l.labels @> '{filter}'
                    AND v.time >= {from} / {bucket} * {bucket} AND v.time < ({to} + {bucket} - 1) / {bucket} * {bucket}
                  GROUP BY 1, 2"
            )));
            }
            raw.sort_by(f64::total_cmp);
            let (p50, p95, r50) = (
                percentile(&times, 0.5),
                percentile(&times, 0.95),
                percentile(&raw, 0.5),
            );
            println!(
            "{who:<12} {label:<9} {resolution:<17} {bucket:>7} s {points:>7} {p50:>7.1} {p95:>7.1} {r50:>15.1} {:>6.0}x",
            r50 / p50
        );
        }
    }
}
