//! A hot standby under load: the primary loads Prometheus history by the workers' binary COPY
//! at full speed while viewers request SQL panels (the last day's samples by hour, the latest
//! value of each series) through `pgdw serve`, in three ways in one run, each loading the same
//! window into emptied tables:
//!
//! 1. no viewers (the baseline load rate),
//! 2. viewers on the primary (`Reader::Socket`),
//! 3. the same viewers on an asynchronous standby (`Reader::Standby`),
//!
//! then the load alone again with the standby made synchronous (the cost of `--sync`), and
//! last the failover: the primary SIGKILLed, the standby promoted by `pgdw standby promote`,
//! timed to the first write on it. During every load the standby's replay lag is sampled every
//! 20 ms from the primary's `pg_stat_replication` (as `pgdw.standby_status` reports it).
//!
//! Two machines are emulated on one: with two or more cores, the primary's server processes
//! run on core 0 and the standby's on core 1 (`taskset`; a server's new backends inherit its
//! postmaster's), so panels read on the standby take no CPU from the primary's load; the
//! loader, the viewers' HTTP and Prometheus run where the kernel puts them.
//!
//!     cargo bench -p pgdw --bench standby [-- DAYS SERIES CLIENTS]     (default 7 200 8)

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{sql, viewers, PGDW};
use pgdw::serve::{self, reader::Reader};
use pgdw_testkit::bench::percentile;
use pgdw_testkit::TempWarehouse;

const ROUNDS: usize = 2;
const PANELS: &[&str] = &["api/dashboards/m/panels/0", "api/dashboards/m/panels/1"];

/// Pin every server process of the cluster in `dir` (the postmaster's later children inherit
/// it) to `cpu`. Returns whether the postmaster could be pinned (a backend may end meanwhile).
fn pin(dir: &std::path::Path, cpu: usize) -> bool {
    let dir = pgdw_cluster::place::resolve(dir).unwrap();
    let postmaster = std::fs::read_to_string(dir.join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next().map(str::to_string));
    let mut pinned = false;
    for pid in pgdw_cluster::process::server_processes(&dir) {
        let ok = std::process::Command::new("taskset")
            .args(["-p", "-c", &cpu.to_string(), &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        pinned |= ok && postmaster.as_deref() == Some(pid.to_string().as_str());
    }
    pinned
}

struct Load {
    way: &'static str,
    rows: i64,
    secs: f64,
    panels: Option<common::Round>,
    lag_p99_ms: f64,
    lag_max_bytes: f64,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let days: i64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(7);
    let series: i64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let clients: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(8);
    let common::WithPrometheus {
        w,
        connect,
        prometheus: _prom,
        history,
    } = common::with_prometheus(days, series);
    sql(
        &w,
        &format!(
            "CREATE TABLE labels (id bigserial PRIMARY KEY, name text NOT NULL, labels jsonb NOT NULL, UNIQUE (name, labels));
             CREATE TABLE samples (label_id bigint NOT NULL REFERENCES labels (id), time bigint NOT NULL,
                                     value float8 NOT NULL, UNIQUE (label_id, time)) PARTITION BY RANGE (time);
             SELECT pgdw.partition_daily('samples', 'time', retention => '40 days');
             SELECT pgdw.load_metrics('m', 'bench.metrics', '{}', 'samples', 'labels');
             UPDATE cron.job SET active = false WHERE jobname = 'm';",
            history.metric
        ),
    );
    let standby = TempWarehouse::new();
    let out = w.pgdw(
        PGDW.as_ref(),
        &["standby", "create", standby.data_dir().to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", pgdw_testkit::transcript(&out));

    let dashboards = tempfile::tempdir().unwrap();
    std::fs::write(
        dashboards.path().join("m.toml"),
        format!(
            "title = \"M\"\n\
             [[panels]]\ntitle = \"Samples by hour, last day\"\nkind = \"table\"\n\
             sql = \"SELECT time / 3600 * 3600 AS hour, count(*), avg(value) FROM samples WHERE time >= {} GROUP BY 1 ORDER BY 1\"\n\
             [[panels]]\ntitle = \"Latest value per series\"\nkind = \"table\"\n\
             sql = \"SELECT l.labels, s.value FROM labels l CROSS JOIN LATERAL (SELECT value FROM samples s WHERE s.label_id = l.id ORDER BY time DESC LIMIT 1) s ORDER BY l.id LIMIT 50\"\n",
            history.end - 86_400
        ),
    )
    .unwrap();
    let cluster = w.cluster().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let serve_with = |reader: Reader| {
        rt.block_on(serve::start(serve::Options::local(
            pgdw::target::embedded_options(&cluster, "warehouse"),
            reader,
            dashboards.path().to_path_buf(),
        )))
        .unwrap()
    };
    let on_primary = serve_with(Reader::Socket);
    let on_standby = serve_with(Reader::Standby(standby.data_dir()));
    let pool = rt
        .block_on(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect_with(connect),
        )
        .unwrap();

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = cores >= 2 && {
        let (primary, standby) = (w.data_dir(), standby.data_dir());
        move || pin(&primary, 0) && pin(&standby, 1)
    }();

    let load = |way: &'static str, viewers_at: Option<&str>| -> Load {
        if pinned {
            // The pools' connections made since: pinned like their postmaster already.
            pin(&w.data_dir(), 0);
            pin(&standby.data_dir(), 1);
        }
        sql(
            &w,
            &format!(
                "TRUNCATE samples, labels RESTART IDENTITY;
                 UPDATE pgdw.metric_loads SET synced_to = {} WHERE job = 'm'; CHECKPOINT;",
                history.start
            ),
        );
        eprintln!("{way}: loading {days} days x {series} series...");
        let loading = Arc::new(AtomicBool::new(true));
        let lags = Arc::new(Mutex::new((Vec::<f64>::new(), 0f64)));
        let sampler = {
            let (loading, lags) = (loading.clone(), lags.clone());
            let mut client = w.client_db("warehouse");
            std::thread::spawn(move || {
                while loading.load(Ordering::Relaxed) {
                    if let Ok(row) = client.query_one(
                        "SELECT coalesce(extract(epoch FROM replay_lag), 0)::float8 * 1000, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8
                           FROM pg_stat_replication LIMIT 1",
                        &[],
                    ) {
                        let mut l = lags.lock().unwrap();
                        l.0.push(row.get(0));
                        l.1 = l.1.max(row.get::<_, f64>(1));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let watching = viewers_at.map(|base| {
            let (base, loading) = (base.to_string(), loading.clone());
            std::thread::spawn(move || {
                viewers(
                    &base,
                    PANELS,
                    clients,
                    Arc::new(move || loading.load(Ordering::Relaxed)),
                )
            })
        });
        let t = Instant::now();
        let loaded = rt
            .block_on(pgdw::metrics_load::run(&pool, &pool, "m", None))
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(loaded.by_insert, 0, "every chunk by COPY");
        loading.store(false, Ordering::Relaxed);
        let panels = watching.map(|h| h.join().unwrap());
        sampler.join().unwrap();
        let (mut lag, max_bytes) = lags.lock().unwrap().clone();
        lag.sort_by(f64::total_cmp);
        Load {
            way,
            rows: sql(&w, "SELECT count(*) FROM samples").parse().unwrap(),
            secs,
            panels,
            lag_p99_ms: percentile(&lag, 0.99),
            lag_max_bytes: max_bytes,
        }
    };

    // What `standby create --sync` sets (the subscriptions aside: this warehouse has none).
    let name = sql(
        &w,
        "SELECT substr(slot_name, 14) FROM pg_replication_slots WHERE slot_name LIKE 'pgdw_standby_%'",
    );
    let synchronous = |on: bool| {
        let names = if on {
            format!("ANY 1 (\"{name}\")")
        } else {
            String::new()
        };
        sql(
            &w,
            &format!("ALTER SYSTEM SET synchronous_standby_names = '{names}'"),
        );
        sql(&w, "SELECT pg_reload_conf()");
    };
    // A warm-up load first (caches, partitions), then each way per round in turn; the
    // fastest round of each is kept.
    load("warm-up", None);
    let mut rounds: Vec<Vec<Load>> = Vec::new();
    let mut sync_state = String::new();
    for round in 1..=ROUNDS {
        eprintln!("round {round}/{ROUNDS}");
        synchronous(false);
        let mut r = vec![
            load("no viewers", None),
            load("viewers on the primary", Some(&on_primary.url)),
            load("viewers on the standby", Some(&on_standby.url)),
        ];
        synchronous(true);
        sync_state = sql(&w, "SELECT sync_state FROM pg_stat_replication");
        r.push(load("no viewers, standby synchronous", None));
        rounds.push(r);
    }
    on_primary.stop();
    on_standby.stop();
    let results: Vec<Load> = (0..rounds[0].len())
        .map(|i| {
            let mut of_way: Vec<Load> = rounds.iter_mut().map(|r| r.remove(0)).collect();
            let _ = i;
            of_way.sort_by(|a, b| a.secs.total_cmp(&b.secs));
            of_way.remove(0)
        })
        .collect();

    // Failover: the primary dies; the standby is promoted and written to.
    let died = Instant::now();
    let pid = cluster.running_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = standby.pgdw(PGDW.as_ref(), &["standby", "promote"]);
    assert!(out.status.success(), "{}", pgdw_testkit::transcript(&out));
    sql(&standby, "CREATE TABLE after_failover AS SELECT 1 AS v");
    let failover = died.elapsed().as_secs_f64();
    let kept: i64 = sql(&standby, "SELECT count(*) FROM samples")
        .parse()
        .unwrap();

    println!(
        "standby: {days} days x {series} series at 60 s loaded by binary COPY; {clients} viewers over 2 SQL panels; {}",
        if pinned {
            "the primary's server on core 0, the standby's on core 1"
        } else {
            "one core: the servers share it"
        }
    );
    let base = results[0].rows as f64 / results[0].secs;
    for r in &results {
        let rate = r.rows as f64 / r.secs;
        let panels = r
            .panels
            .as_ref()
            .map(|p| {
                format!(
                    "; panels {:.0}/s p50 {:.1} ms p95 {:.1} ms ({} failed)",
                    p.per_sec, p.p50_ms, p.p95_ms, p.failures
                )
            })
            .unwrap_or_default();
        println!(
            "  {:<34} {:>9} rows in {:>6.2} s = {:>8.0} samples/s ({:.3}x no viewers); replay lag p99 {:.0} ms, max {:.1} MB{panels}",
            r.way,
            r.rows,
            r.secs,
            rate,
            rate / base,
            r.lag_p99_ms,
            r.lag_max_bytes / 1048576.0
        );
    }
    println!("  synchronous standby's sync_state during the last load: {sync_state}");
    println!(
        "  failover: {failover:.2} s from SIGKILL of the primary to the first write on the promoted standby ({kept} samples there)"
    );
    assert!(
        results
            .iter()
            .all(|r| r.rows == results[0].rows && r.rows > 0),
        "every load loads the same rows"
    );
}
