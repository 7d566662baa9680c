//! Requests per second and p95 latency of `pgdw serve` under concurrent viewers: 1, 16 and 64
//! clients each looping over every built-in panel (jobs, alerts, partitions) and the status and
//! alerts endpoints, over real HTTP on loopback. Baseline in the same run: `/healthz`, which
//! touches no database, at the same concurrency; the ratio tells what the pools cost.
//!
//!     cargo bench -p pgdw --bench serve_load [-- SECONDS]      (default 10 s per round)

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{viewers, Round};

use pgdw::serve::{self, reader::Reader};
use pgdw_testkit::TempWarehouse;

const PANELS: &[&str] = &[
    "api/dashboards/ops/panels/0",
    "api/dashboards/ops/panels/1",
    "api/dashboards/ops/panels/2",
    "api/status",
    "api/alerts",
];

fn round(base: &str, paths: &[&str], clients: usize, secs: u64) -> Round {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut r = viewers(
        base,
        paths,
        clients,
        Arc::new(move || Instant::now() < until),
    );
    r.per_sec = r.requests as f64 / secs as f64;
    r
}

fn main() {
    let secs: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let w = TempWarehouse::new();
    let up = w.pgdw(env!("CARGO_BIN_EXE_pgdw").as_ref(), &["up"]);
    assert!(up.status.success(), "{}", pgdw_testkit::transcript(&up));
    w.psql_db(
        "warehouse",
        "SELECT pgdw.schedule('job-' || g, '5 minutes', 'SELECT 1') FROM generate_series(1, 20) g;
         CREATE TABLE events (at timestamptz NOT NULL, v int) PARTITION BY RANGE (at);
         SELECT pgdw.partition_daily('events', 'at');",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ops.toml"),
        "title = \"Ops\"\n\
         [[panels]]\ntitle = \"Jobs\"\nkind = \"table\"\nbuiltin = \"jobs\"\n\
         [[panels]]\ntitle = \"Alerts\"\nkind = \"table\"\nbuiltin = \"alerts\"\n\
         [[panels]]\ntitle = \"Partitions\"\nkind = \"table\"\nbuiltin = \"partitions\"\n",
    )
    .unwrap();
    let cluster = w.cluster().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let running = rt
        .block_on(serve::start(serve::Options::local(
            pgdw::target::embedded_options(&cluster, "warehouse"),
            Reader::Socket,
            dir.path().to_path_buf(),
        )))
        .unwrap();
    println!("serve_load: {secs} s per round, built-in panels + status + alerts vs /healthz");
    println!(
        "{:>8} {:>10} {:>10} {:>9} {:>9} {:>9} {:>12} {:>10}",
        "clients", "panels/s", "failures", "p50 ms", "p95 ms", "health/s", "health p95", "ratio"
    );
    for clients in [1, 16, 64] {
        let base = round(&running.url, &["healthz"], clients, secs);
        let r = round(&running.url, PANELS, clients, secs);
        println!(
            "{clients:>8} {:>10.0} {:>10} {:>9.1} {:>9.1} {:>9.0} {:>12.1} {:>10.3}",
            r.per_sec,
            r.failures,
            r.p50_ms,
            r.p95_ms,
            base.per_sec,
            base.p95_ms,
            r.per_sec / base.per_sec
        );
        assert_eq!(
            r.failures, 0,
            "{} of {} requests failed",
            r.failures, r.requests
        );
    }
    running.stop();
}
