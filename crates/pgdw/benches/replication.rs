//! Replication: commit-to-visible latency while a writer commits a sustained mix of inserts,
//! updates and deletes on the source, against `pgdw.sync` over postgres_fdw polled every
//! minute (the batch path) in the same run; the initial copy's rows/s against COPY of the same
//! rows; and the WAL the slot retains while only unpublished tables change.
//!
//!     cargo bench -p pgdw --bench replication -- [STREAM_SECS] [IDLE_SECS] [ROWS_PER_SEC]
//!                                                   (defaults 120, 600, 2000)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgdw_testkit::bench::{arg, percentile as pct};
use pgdw_testkit::TempWarehouse;

const PGDW: &str = env!("CARGO_BIN_EXE_pgdw");
const COPY_ROWS: i64 = 500_000;

fn up() -> TempWarehouse {
    let w = TempWarehouse::new();
    let out = w.pgdw(PGDW.as_ref(), &["up"]);
    assert!(out.status.success(), "{}", pgdw_testkit::transcript(&out));
    w
}

fn sql(w: &TempWarehouse, q: &str) -> String {
    w.psql_db("warehouse", q)
        .unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn main() {
    let stream_secs = arg(0, 120);
    let idle_secs = arg(1, 600);
    let rate = arg(2, 2000);
    let source = up();
    let wh = up();
    sql(
        &source,
        &format!(
            "CREATE TABLE events (id bigserial PRIMARY KEY, k int NOT NULL, v text, at timestamptz NOT NULL DEFAULT now());
             INSERT INTO events (k, v) SELECT g % 1000, md5(g::text) FROM generate_series(1, {COPY_ROWS}) g;
             CREATE TABLE markers (id bigint PRIMARY KEY, written_at timestamptz NOT NULL);
             CREATE TABLE unpublished (id bigserial PRIMARY KEY, v text);"
        ),
    );
    let url = source.cluster().unwrap().database_url();
    let project = tempfile::tempdir().unwrap();
    let init = wh.pgdw(PGDW.as_ref(), &["init", project.path().to_str().unwrap()]);
    assert!(init.status.success());
    std::fs::write(
        project.path().join("pgdw.toml"),
        "[replicate.bench]\nsource = \"env:BENCH_URL\"\ntables = [\"public.events\", \"public.markers\"]\n",
    )
    .unwrap();

    // Baseline for the copy: COPY of the same rows between the same two servers.
    sql(&wh, "CREATE TABLE copy_baseline (id bigint PRIMARY KEY, k int NOT NULL, v text, at timestamptz NOT NULL)");
    let c = source.cluster().unwrap();
    let w = wh.cluster().unwrap();
    let psql = c.bindir().join("psql");
    let t = Instant::now();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{psql} -XAtq -h '{}' -p {} -U postgres -d warehouse -c 'COPY events TO STDOUT' | {psql} -XAtq -h '{}' -p {} -U postgres -d warehouse -c 'COPY copy_baseline FROM STDIN'",
            c.socket_dir().display(), c.port(), w.socket_dir().display(), w.port(),
            psql = psql.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let copy_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let out = std::process::Command::new(PGDW)
        .env_remove("DATABASE_URL")
        .env("PGDW_DATA_DIR", wh.data_dir())
        .env("BENCH_URL", &url)
        .args(["migrate", "--project"])
        .arg(project.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", pgdw_testkit::transcript(&out));
    assert!(pgdw_testkit::wait_for(Duration::from_secs(600), || {
        sql(
            &wh,
            "SELECT count(*) FILTER (WHERE srsubstate <> 'r') FROM pg_subscription_rel",
        ) == "0"
            && sql(&wh, "SELECT count(*) FROM pg_subscription_rel") == "2"
    }));
    let initial_secs = t.elapsed().as_secs_f64();
    println!(
        "initial copy: {COPY_ROWS} rows in {initial_secs:.2} s ({:.0} rows/s, including set-up); COPY of the same rows {copy_secs:.2} s ({:.0} rows/s); ratio {:.2}",
        COPY_ROWS as f64 / initial_secs,
        COPY_ROWS as f64 / copy_secs,
        copy_secs / initial_secs
    );

    // The batch path over the same source, for the same markers.
    sql(
        &wh,
        &format!(
            "CREATE SERVER src FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '{}', dbname 'warehouse');
             CREATE USER MAPPING FOR CURRENT_USER SERVER src OPTIONS (user 'postgres', password '{}');
             CREATE SCHEMA f; IMPORT FOREIGN SCHEMA public LIMIT TO (markers) FROM SERVER src INTO f;
             CREATE TABLE markers_polled (id bigint PRIMARY KEY, written_at timestamptz NOT NULL);",
            c.port(),
            c.state().password
        ),
    );

    eprintln!("streaming: {rate} rows/s (60% inserts, 30% updates, 10% deletes) for {stream_secs} s, a marker every 100 ms");
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        let mut client = source.client_db("warehouse");
        std::thread::spawn(move || {
            let batch = (rate / 100).max(1) as i64; // every 10 ms
            let start = Instant::now();
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let ins = batch * 6 / 10;
                let upd = batch * 3 / 10;
                let del = batch - ins - upd;
                client
                    .batch_execute(&format!(
                        "BEGIN;
                         INSERT INTO events (k, v) SELECT g % 1000, 'live' FROM generate_series(1, {ins}) g;
                         UPDATE events SET v = 'updated' WHERE id IN (SELECT id FROM events ORDER BY id DESC LIMIT {upd});
                         DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT {del});
                         COMMIT;"
                    ))
                    .unwrap();
                n += 1;
                written.fetch_add(batch as u64, Ordering::Relaxed);
                let due = start + Duration::from_millis(10 * n);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };
    let marker = {
        let stop = stop.clone();
        let mut client = source.client_db("warehouse");
        std::thread::spawn(move || {
            let mut id = 0i64;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                client
                    .execute("INSERT INTO markers VALUES ($1, clock_timestamp())", &[&id])
                    .unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
            id
        })
    };
    let poller = {
        let stop = stop.clone();
        let mut client = wh.client_db("warehouse");
        std::thread::spawn(move || {
            // pg_cron's schedule, every minute: the batch path's freshness.
            let mut next = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    client
                        .batch_execute(
                            "SELECT * FROM pgdw.sync('markers_polled', 'f.markers', '{id}')",
                        )
                        .unwrap();
                    next += Duration::from_secs(60);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // Watch both copies: when each marker becomes visible, against its commit on the source.
    let mut reader = wh.client_db("warehouse");
    let (mut seen_rep, mut seen_poll) = (0i64, 0i64);
    let (mut rep_lat, mut poll_lat) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut last_report = Instant::now();
    while started.elapsed() < Duration::from_secs(stream_secs) {
        for (table, seen, lat) in [
            ("markers", &mut seen_rep, &mut rep_lat),
            ("markers_polled", &mut seen_poll, &mut poll_lat),
        ] {
            let rows = reader
                .query(
                    &format!("SELECT id, extract(epoch FROM clock_timestamp() - written_at)::float8 FROM {table} WHERE id > $1 ORDER BY id"),
                    &[&*seen],
                )
                .unwrap();
            for r in rows {
                *seen = r.get(0);
                lat.push(r.get::<_, f64>(1) * 1000.0);
            }
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "  {:>4} s: {} rows written, {} markers replicated, {} polled",
                started.elapsed().as_secs(),
                written.load(Ordering::Relaxed),
                rep_lat.len(),
                poll_lat.len()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let markers = marker.join().unwrap();
    poller.join().unwrap();
    let achieved = written.load(Ordering::Relaxed) as f64 / stream_secs as f64;
    rep_lat.sort_by(f64::total_cmp);
    poll_lat.sort_by(f64::total_cmp);
    println!("streaming: {achieved:.0} rows/s written for {stream_secs} s; {markers} markers");
    println!(
        "{:<28} {:>8} {:>10} {:>10} {:>10}",
        "commit to visible", "markers", "p50 ms", "p99 ms", "max ms"
    );
    for (name, lat) in [
        ("replication", &rep_lat),
        ("pgdw.sync every minute", &poll_lat),
    ] {
        println!(
            "{name:<28} {:>8} {:>10.1} {:>10.1} {:>10.1}",
            lat.len(),
            pct(lat, 0.5),
            pct(lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN)
        );
    }
    println!(
        "p99 ratio, polling / replication: {:.0}x",
        pct(&poll_lat, 0.99) / pct(&rep_lat, 0.99)
    );

    eprintln!("idle: only an unpublished table changes on the source for {idle_secs} s");
    let mut client = source.client_db("warehouse");
    let started = Instant::now();
    let mut max_retained = 0i64;
    let mut written_bytes = 0i64;
    let start_lsn: i64 = client
        .query_one("SELECT (pg_current_wal_lsn() - '0/0')::bigint", &[])
        .unwrap()
        .get(0);
    while started.elapsed() < Duration::from_secs(idle_secs) {
        client
            .batch_execute(
                "INSERT INTO unpublished (v) SELECT repeat('x', 200) FROM generate_series(1, 2000)",
            )
            .unwrap();
        let row = client
            .query_one(
                "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint, (pg_current_wal_lsn() - '0/0')::bigint FROM pg_replication_slots WHERE slot_name = 'pgdw_bench'",
                &[],
            )
            .unwrap();
        let retained: i64 = row.get(0);
        written_bytes = row.get::<_, i64>(1) - start_lsn;
        max_retained = max_retained.max(retained);
        std::thread::sleep(Duration::from_millis(500));
    }
    let retained: i64 = client
        .query_one(
            "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = 'pgdw_bench'",
            &[],
        )
        .unwrap()
        .get(0);
    println!(
        "idle source ({idle_secs} s, {:.0} MB of WAL written to unpublished tables): the slot retains {:.1} MB at the end, {:.1} MB at most",
        written_bytes as f64 / 1048576.0,
        retained as f64 / 1048576.0,
        max_retained as f64 / 1048576.0
    );
}
