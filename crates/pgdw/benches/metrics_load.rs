//! Loading Prometheus history into a daily-partitioned samples table, three ways in one run,
//! into identical tables (the example's shape: labels with a unique (name, labels), samples
//! with a foreign key and a unique (label_id, time), pg_partman daily partitions):
//!
//! 1. through the foreign table: `INSERT ... SELECT` from prometheus_fdw (`pgdw.metrics_sync`),
//! 2. the workers' way: the same Prometheus replies streamed into binary `COPY FROM STDIN`
//!    (`pgdw::metrics_load::run`),
//! 3. the baseline: `COPY FROM` a CSV file of the same rows (written by the server beforehand).
//!
//! For each, the rate and the peak private memory (RssAnon) of the busiest backend, sampled
//! every 10 ms while it loads; for 1 day and for DAYS days, each way ROUNDS times in turn
//! (the median time is printed). Prints figures; asserts only that the three ways loaded the
//! same rows.
//!
//!     cargo bench -p pgdw --bench metrics_load [-- DAYS SERIES ROUNDS]
//!
//! Default: 30 days x 200 series at 60 s (8.64 million samples), 3 rounds (medians).

mod common;

use common::sql;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgdw_testkit::prometheus::History;
use pgdw_testkit::TempWarehouse;

struct Way {
    name: &'static str,
    rows: i64,
    /// The round of median time.
    median: Measure,
    peak_anon_kb: u64,
}

/// CPU seconds (user + system) process `pid` used so far.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // After the command's closing parenthesis: fields 3.. ; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / 100.0
}

/// Every backend of `db`: pid → RssAnon in kB.
fn backends(db: &str) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if !cmd.starts_with("postgres: ") || !cmd.contains(&format!(" {db} ")) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let anon = status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0);
        out.insert(pid, anon);
    }
    out
}

/// What one load cost.
#[derive(Debug, Clone, Copy)]
struct Measure {
    secs: f64,
    /// The busiest backend's peak RssAnon, kB.
    peak_kb: u64,
    /// CPU seconds of the warehouse's backends, and of this process (the workers' way runs
    /// its client here).
    backend_cpu: f64,
    client_cpu: f64,
}

/// Run `load`, sampling the backends' private memory and CPU meanwhile.
fn measured(load: impl FnOnce()) -> Measure {
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            let mut cpu: HashMap<u32, (f64, f64)> = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                for (pid, anon) in backends("warehouse") {
                    peak = peak.max(anon);
                    let now = cpu_secs(pid);
                    cpu.entry(pid).or_insert((now, now)).1 = now;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (peak, cpu.values().map(|(a, b)| b - a).sum::<f64>())
        })
    };
    let me = std::process::id();
    let client0 = cpu_secs(me);
    let t = Instant::now();
    load();
    let secs = t.elapsed().as_secs_f64();
    let client_cpu = cpu_secs(me) - client0;
    stop.store(true, Ordering::Relaxed);
    let (peak_kb, backend_cpu) = sampler.join().unwrap();
    Measure {
        secs,
        peak_kb,
        backend_cpu,
        client_cpu,
    }
}

fn tables(w: &TempWarehouse, schema: &str) {
    sql(
        w,
        &format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.labels (id bigserial PRIMARY KEY, name text NOT NULL, labels jsonb NOT NULL, UNIQUE (name, labels));
             CREATE TABLE {schema}.samples (label_id bigint NOT NULL REFERENCES {schema}.labels (id), time bigint NOT NULL,
                                            value float8 NOT NULL, UNIQUE (label_id, time)) PARTITION BY RANGE (time);
             SELECT pgdw.partition_daily('{schema}.samples', 'time', retention => '40 days');"
        ),
    );
}

/// Each way `rounds` times, alternating, into emptied tables (the median of each is kept):
/// the history's last `days` days.
fn run(
    w: &TempWarehouse,
    rt: &tokio::runtime::Runtime,
    pool: &sqlx::PgPool,
    history: &History,
    days: i64,
    rounds: usize,
) -> Vec<Way> {
    let tag = format!("d{days}");
    for way in ["fdw", "copy", "csv"] {
        tables(w, &format!("{way}_{tag}"));
    }
    for way in ["fdw", "copy"] {
        sql(
            w,
            &format!(
                "SELECT pgdw.load_metrics('{way}_{tag}', 'bench.metrics', '{}', '{way}_{tag}.samples', '{way}_{tag}.labels');
                 UPDATE cron.job SET active = false WHERE jobname = '{way}_{tag}';",
                history.metric
            ),
        );
    }
    // The same window for both loads, every round.
    let reset = |way: &str| {
        sql(
            w,
            &format!(
                "TRUNCATE {way}_{tag}.samples, {way}_{tag}.labels RESTART IDENTITY;
                 UPDATE pgdw.metric_loads SET synced_to = {} WHERE job = '{way}_{tag}';
                 CHECKPOINT;",
                history.end - days * 86_400
            ),
        );
    };
    let count = |way: &str| -> i64 {
        sql(w, &format!("SELECT count(*) FROM {way}_{tag}.samples"))
            .parse()
            .unwrap()
    };
    let csv = std::env::temp_dir().join(format!("pgdw-bench-{}-{tag}.csv", std::process::id()));
    let mut timings: Vec<Vec<Measure>> = vec![Vec::new(); 3];
    let mut rows = [0i64; 3];
    for round in 1..=rounds {
        eprintln!(
            "{days} day(s), round {round}/{rounds}: INSERT ... SELECT through prometheus_fdw..."
        );
        reset("fdw");
        timings[0].push(measured(|| {
            sql(w, &format!("SELECT * FROM pgdw.metrics_sync('fdw_{tag}')"));
        }));
        rows[0] = count("fdw");

        eprintln!("{days} day(s), round {round}/{rounds}: the workers' binary COPY...");
        reset("copy");
        timings[1].push(measured(|| {
            let loaded = rt
                .block_on(pgdw::metrics_load::run(
                    pool,
                    pool,
                    &format!("copy_{tag}"),
                    None,
                ))
                .unwrap();
            assert_eq!(loaded.by_insert, 0, "every chunk by COPY");
        }));
        rows[1] = count("copy");

        if round == 1 {
            sql(
                w,
                &format!(
                    "INSERT INTO csv_{tag}.labels SELECT * FROM copy_{tag}.labels;
                     COPY (SELECT * FROM copy_{tag}.samples) TO '{}' (FORMAT csv);",
                    csv.display()
                ),
            );
        }
        eprintln!("{days} day(s), round {round}/{rounds}: COPY FROM csv...");
        sql(w, &format!("TRUNCATE csv_{tag}.samples; CHECKPOINT;"));
        timings[2].push(measured(|| {
            sql(
                w,
                &format!(
                    "COPY csv_{tag}.samples FROM '{}' (FORMAT csv)",
                    csv.display()
                ),
            );
        }));
        rows[2] = count("csv");
    }
    let _ = std::fs::remove_file(&csv);

    let differing = sql(
        w,
        &format!(
            "WITH a AS (SELECT l.name, l.labels, s.time, s.value FROM fdw_{tag}.samples s JOIN fdw_{tag}.labels l ON l.id = s.label_id),
                  b AS (SELECT l.name, l.labels, s.time, s.value FROM copy_{tag}.samples s JOIN copy_{tag}.labels l ON l.id = s.label_id)
             SELECT count(*) FROM ((TABLE a EXCEPT ALL TABLE b) UNION ALL (TABLE b EXCEPT ALL TABLE a)) d"
        ),
    );
    assert_eq!(differing, "0", "both ways load the same rows");
    assert!(rows.iter().all(|&r| r == rows[0] && r > 0), "{rows:?}");
    // Room for the next size.
    sql(
        w,
        &format!(
            "DROP SCHEMA fdw_{tag}, copy_{tag}, csv_{tag} CASCADE; DELETE FROM pgdw.metric_loads"
        ),
    );
    let names = [
        "INSERT ... SELECT via prometheus_fdw",
        "binary COPY by the worker",
        "COPY FROM csv (baseline)",
    ];
    timings
        .into_iter()
        .zip(names)
        .zip(rows)
        .map(|((mut t, name), rows)| {
            t.sort_by(|a, b| a.secs.total_cmp(&b.secs));
            Way {
                name,
                rows,
                median: t[t.len() / 2],
                peak_anon_kb: t.iter().map(|x| x.peak_kb).max().unwrap_or(0),
            }
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let days: i64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(30);
    let series: i64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let common::WithPrometheus {
        w,
        connect: opts,
        prometheus: _prom,
        history,
    } = common::with_prometheus(days, series);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pool = rt
        .block_on(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect_with(opts),
        )
        .unwrap();

    // Prometheus alone, and warmed: the scan without inserting anything.
    eprintln!("scan only (SELECT count) through prometheus_fdw...");
    let t = Instant::now();
    let scanned: i64 = sql(
        &w,
        &format!(
            "SELECT count(metric_value) FROM bench.metrics
              WHERE metric_name = 'bench_cpu' AND metric_time >= {} AND metric_time <= {}",
            history.start, history.end
        ),
    )
    .parse()
    .unwrap();
    let scan_secs = t.elapsed().as_secs_f64();

    let mut sizes = vec![1];
    if days > 1 {
        sizes.push(days);
    }
    let results: Vec<(i64, Vec<Way>)> = sizes
        .iter()
        .map(|&d| (d, run(&w, &rt, &pool, &history, d, rounds)))
        .collect();

    // Where the server's time went, by statement (pg_stat_statements keeps COPY's and the
    // workers' statements under their job's comment).
    let statements = sql(
        &w,
        "SELECT string_agg(format('    %8s ms %7s calls  %s', round(total_exec_time), calls,
                                  left(regexp_replace(query, '\\s+', ' ', 'g'), 110)), E'\n' ORDER BY total_exec_time DESC)
           FROM (SELECT * FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12) s",
    );
    println!(
        "metrics_load: {series} series at 60 s; Prometheus holds {} samples ({days} days)",
        history.samples()
    );
    println!(
        "  scan only (SELECT count):             {scanned} rows in {scan_secs:.2} s = {:.0} samples/s",
        scanned as f64 / scan_secs
    );
    println!("  statements by server time, every size and round:\n{statements}");
    for (d, ways) in &results {
        println!("  {d} day(s), median of {rounds} rounds:");
        let baseline = ways
            .last()
            .map(|w| w.rows as f64 / w.median.secs)
            .unwrap_or(1.0);
        for way in ways {
            let m = way.median;
            let rate = way.rows as f64 / m.secs;
            println!(
                "    {:<38} {:>10} rows in {:>6.2} s = {:>9.0} samples/s ({:.2}x COPY csv); CPU s: backends {:.2}, client {:.2}; peak backend RssAnon {:>6.1} MB",
                way.name,
                way.rows,
                m.secs,
                rate,
                rate / baseline,
                m.backend_cpu,
                m.client_cpu,
                way.peak_anon_kb as f64 / 1024.0
            );
        }
    }
}
