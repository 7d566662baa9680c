//! `pgdw doctor` on a warehouse with many objects: TABLES tables with an index each (so twice
//! as many relations), 50 of them with 20,000 rows (analyzed, so the column-order check has
//! work), against the same command on the fresh warehouse (the baseline: process start,
//! connection, the checks on an empty catalog). Goal: under 2 s at 10,000 tables and indexes.
//!
//!     cargo bench -p pgdw --bench doctor -- [TABLES]      (default 10000)

use std::time::Instant;

use pgdw_testkit::bench::{arg, percentile};
use pgdw_testkit::TempWarehouse;

const PGDW: &str = env!("CARGO_BIN_EXE_pgdw");

/// Five runs of `pgdw doctor --json`: sorted seconds, and the findings of the last.
fn doctor(w: &TempWarehouse) -> (Vec<f64>, usize) {
    let mut times = Vec::new();
    let mut findings = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let out = w.pgdw(PGDW.as_ref(), &["doctor", "--json"]);
        times.push(start.elapsed().as_secs_f64());
        assert!(
            out.status.code().unwrap_or(2) <= 1,
            "{}",
            pgdw_testkit::transcript(&out)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        findings = json["findings"].as_array().unwrap().len();
    }
    times.sort_by(f64::total_cmp);
    (times, findings)
}

fn main() {
    let tables = arg(0, 10_000);
    let w = TempWarehouse::new();
    let out = w.pgdw(PGDW.as_ref(), &["up"]);
    assert!(out.status.success(), "{}", pgdw_testkit::transcript(&out));
    let sql = |s: &str| {
        let out = w.pgdw(
            PGDW.as_ref(),
            &["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", s],
        );
        assert!(out.status.success(), "{}", pgdw_testkit::transcript(&out));
    };
    let (base, base_findings) = doctor(&w);

    eprintln!("creating {tables} tables with an index each...");
    let chunk = 500u64;
    for from in (0..tables).step_by(chunk as usize) {
        sql(&format!(
            "DO $$ BEGIN FOR i IN {from}..{} LOOP
               EXECUTE format('CREATE TABLE t%s (id bigint PRIMARY KEY, flag boolean, amount bigint, note text)', i);
             END LOOP; END $$",
            (from + chunk).min(tables) - 1
        ));
        eprint!(".");
    }
    eprintln!();
    sql("DO $$ BEGIN FOR i IN 0..49 LOOP
           EXECUTE format('INSERT INTO t%s SELECT g, g %% 2 = 0, g, ''n'' FROM generate_series(1, 20000) g', i);
           EXECUTE format('ANALYZE t%s', i);
         END LOOP; END $$");
    let (many, many_findings) = doctor(&w);

    println!("\npgdw doctor (5 runs each, process start to exit):");
    let top = many[4].max(base[4]);
    for (name, t, n) in [
        (
            "fresh warehouse (baseline)".to_string(),
            &base,
            base_findings,
        ),
        (
            format!("{tables} tables + {tables} indexes"),
            &many,
            many_findings,
        ),
    ] {
        println!(
            "  {name:<32} p50 {:>6.3} s  max {:>6.3} s  ({n} findings) {}",
            percentile(t, 0.5),
            t[4],
            "#".repeat((t[4] / top * 40.0).round().max(1.0) as usize)
        );
    }
    println!(
        "  => {:.1}x the baseline; goal: under 2 s ({})",
        percentile(&many, 0.5) / percentile(&base, 0.5),
        if many[4] < 2.0 { "met" } else { "NOT met" }
    );
}
