//! The warehouse at the seed's scale (`../shared/seeds/004`: 1.2 billion rows a month): at
//! least SAMPLES metric samples over 30 daily partitions, generated into the example
//! warehouse's tables as the metric syncs would leave them. Measures the load rate, every
//! dashboard panel's p50/p95 over 1 day and 30 days, the rollups' catch-up, one retention run
//! dropping the oldest partition (time, disk freed, the rollups after it), pg_partman's
//! nightly maintenance, and the bytes per sample with and without indexes (and what narrower
//! types would save). Not a test: it needs about 100 bytes of disk per sample and checks
//! that first.
//!
//!     cargo bench -p pgdw --bench scale -- [SAMPLES] [RUNS]     (default 100000000, 10 runs)

mod common;

use std::time::Instant;

use pgdw_testkit::bench::arg;

const DAYS: i64 = 30;
/// Disk a sample needs at most: heap, the two indexes, the rollups, WAL during the load.
const BYTES_PER_SAMPLE: u64 = 150;

fn free_bytes(path: &std::path::Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).expect("statvfs");
    s.blocks_available() as u64 * s.fragment_size() as u64
}

fn gb(b: f64) -> String {
    format!("{:.2} GB", b / 1e9)
}

fn main() {
    let wanted = arg(0, 100_000_000);
    let runs = arg(1, 10) as usize;
    // Two series an instance (cpu, memory), a sample a minute.
    let instances = (wanted as i64 + 2 * DAYS * 1440 - 1) / (2 * DAYS * 1440);
    let need = wanted * BYTES_PER_SAMPLE;
    let tmp = std::env::temp_dir();
    let free = free_bytes(&tmp);
    println!(
        "scale run: {wanted} samples = {instances} instances x 2 series x {DAYS} days at 1 minute; needs about {} of disk, {} free in {}",
        gb(need as f64),
        gb(free as f64),
        tmp.display()
    );
    if free < need {
        eprintln!("not enough disk: free some, or ask for fewer samples (the first argument)");
        std::process::exit(2);
    }

    let f = common::example_with_metrics(instances, DAYS);
    let rate = f.samples as f64 / f.load_secs;
    let sizes = f.sql(
        "SELECT sum(pg_table_size(relid)) || ' ' || sum(pg_indexes_size(relid))
           FROM pg_partition_tree('metric_values') WHERE isleaf",
    );
    let (heap, idx): (f64, f64) = {
        let v: Vec<f64> = sizes.split(' ').map(|x| x.parse().unwrap()).collect();
        (v[0], v[1])
    };
    let rollups = f.sql(
        "SELECT pg_total_relation_size('metric_hourly') + pg_total_relation_size('metric_daily')",
    );
    let db = f.sql("SELECT pg_database_size(current_database())");

    // Narrower types, measured on a copy of a day: label_id and time as int (epoch seconds fit
    // until 2038), value float8 as before.
    f.sql(&format!(
        "CREATE TABLE narrow (label_id int NOT NULL, time int NOT NULL, value float8 NOT NULL);
         INSERT INTO narrow SELECT label_id, time, value FROM metric_values WHERE time >= {} - 86400;
         CREATE UNIQUE INDEX ON narrow (label_id, time);
         CREATE TABLE wide AS SELECT * FROM metric_values WHERE time >= {} - 86400;
         CREATE UNIQUE INDEX ON wide (label_id, time);",
        f.now, f.now
    ));
    let per_row = |t: &str| -> (f64, f64) {
        let v: Vec<f64> = f
            .sql(&format!(
                "SELECT pg_table_size('{t}')::float8 / count(*) || ' ' || pg_indexes_size('{t}')::float8 / count(*) FROM {t}"
            ))
            .split(' ')
            .map(|x| x.parse().unwrap())
            .collect();
        (v[0], v[1])
    };
    let (wide_heap, wide_idx) = per_row("wide");
    let (narrow_heap, narrow_idx) = per_row("narrow");
    f.sql("DROP TABLE narrow, wide");

    let timings = common::time_panels(&f, runs, &[1, 30], false);

    // Retention: the oldest whole day goes (pg_partman detaches, then drops; the first day's
    // earliest hours are older than the first partition and wait in the default one); the
    // rollups recompute the groups it held.
    eprintln!("retention: dropping the oldest partition...");
    let before: f64 = f
        .sql("SELECT pg_database_size(current_database())")
        .parse()
        .unwrap();
    let partitions_before =
        f.sql("SELECT count(*) FROM pg_partition_tree('metric_values') WHERE isleaf");
    f.sql(&format!(
        "UPDATE partman.part_config SET retention = '{} days' WHERE parent_table = 'public.metric_values'",
        DAYS - 2
    ));
    let t = Instant::now();
    f.sql("SELECT pgdw.partition_maintenance()");
    let retention_secs = t.elapsed().as_secs_f64();
    let after: f64 = f
        .sql("SELECT pg_database_size(current_database())")
        .parse()
        .unwrap();
    let partitions_after =
        f.sql("SELECT count(*) FROM pg_partition_tree('metric_values') WHERE isleaf");
    let dirty = f.sql("SELECT dirty_groups FROM pgdw.rollup_lag('metric_hourly')");
    let t = Instant::now();
    f.sql("CALL pgdw.rollup_run('metric_hourly')");
    f.sql("CALL pgdw.rollup_run('metric_daily')");
    let rollup_after_retention = t.elapsed().as_secs_f64();
    let runs_after = f.sql("SELECT string_agg(name::text || ' ' || last_run::text, '; ') FROM pgdw.rollups WHERE name::text LIKE 'metric%'");
    let exact = f.sql(
        "SELECT count(*) = 0 FROM metric_hourly WHERE hour < (SELECT min(time) FROM metric_values) / 3600 * 3600",
    );
    // The nightly maintenance with nothing to drop: premade partitions checked.
    let t = Instant::now();
    f.sql("SELECT pgdw.partition_maintenance()");
    let nightly_secs = t.elapsed().as_secs_f64();

    let s = f.samples as f64;
    println!(
        "\n== scale run: {} samples, {} series, {DAYS} daily partitions ==",
        f.samples, f.series
    );
    println!(
        "load (INSERT ... SELECT a day a statement, the rollups' capture included): {:.0} s, {rate:.0} samples/s",
        f.load_secs
    );
    println!(
        "derived data after the load (materialized columns, then every rollup, hourly and daily whole): {:.1} s",
        f.rollup_secs
    );
    println!(
        "disk: metric_values {} heap + {} indexes = {:.1} + {:.1} bytes a sample; rollups {}; database {}",
        gb(heap),
        gb(idx),
        heap / s,
        idx / s,
        gb(rollups.parse().unwrap()),
        gb(db.parse().unwrap())
    );
    println!(
        "narrower types (a day's copy): bigint label_id and time {wide_heap:.1} heap + {wide_idx:.1} index bytes a row; int {narrow_heap:.1} + {narrow_idx:.1} = {:.0}% less",
        100.0 * (1.0 - (narrow_heap + narrow_idx) / (wide_heap + wide_idx))
    );
    let worst = |d: i64| {
        timings
            .iter()
            .filter(|t| t.range_days == d)
            .map(|t| (t.p95, t.title.as_str()))
            .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a })
    };
    let (w1, t1) = worst(1);
    let (w30, t30) = worst(30);
    println!(
        "panels: worst p95 over 1 day {w1:.1} ms ({t1}), over 30 days {w30:.1} ms ({t30}); goal under 100 ms: {}",
        if w1 < 100.0 && w30 < 100.0 { "met" } else { "NOT met" }
    );
    common::chart(&timings, 30);
    println!(
        "\nretention run (pg_partman, {} -> {} partitions): {retention_secs:.2} s, freed {} of disk",
        partitions_before,
        partitions_after,
        gb(before - after)
    );
    println!(
        "rollups after it: {dirty} groups of the dropped day recomputed in {rollup_after_retention:.2} s ({runs_after}); none older than the oldest sample left: {exact}"
    );
    println!("nightly pg_partman maintenance (nothing to drop): {nightly_secs:.2} s");
}
