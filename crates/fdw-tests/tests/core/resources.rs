//! Cancel, statement_timeout, and memory over a long scan.

use std::time::{Duration, Instant};

use super::{setup, source};

#[test]
fn statement_timeout_stops_a_scan_waiting_on_http() {
    let src = source();
    let w = setup(&src.url());
    w.sql(
        "CREATE FOREIGN TABLE slow (id bigint) SERVER api OPTIONS (object 'http', path '/slow');",
    );
    let mut c = w.client();
    c.batch_execute("SET statement_timeout = '300ms'").unwrap();
    let start = Instant::now();
    let err = c.simple_query("SELECT * FROM slow").unwrap_err();
    let took = start.elapsed();
    assert!(
        format!("{err:?}").contains("canceling statement due to statement timeout"),
        "{err:?}"
    );
    // The source answers after 30 s: stopping well before shows the timeout interrupted the
    // wait (how fast exactly is a benchmark's question, not a test's).
    assert!(
        took < Duration::from_secs(15),
        "stopped {took:?} after start (timeout 300 ms, source 30 s)"
    );
    c.batch_execute("RESET statement_timeout").unwrap();
    assert_eq!(c.query_one("SELECT 1", &[]).unwrap().get::<_, i32>(0), 1);
    w.assert_no_crash();
}

#[test]
fn cancel_stops_a_scan_waiting_on_http() {
    let src = source();
    let w = setup(&src.url());
    w.sql(
        "CREATE FOREIGN TABLE slow (id bigint) SERVER api OPTIONS (object 'http', path '/slow');",
    );
    let mut c = w.client();
    let token = c.cancel_token();
    let backend: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let watcher = w.client();
    let canceller = std::thread::spawn(move || {
        // Cancel once the scan is running (waiting on the source), not before.
        let mut watcher = watcher;
        let active = pgdw_testkit::wait_for(Duration::from_secs(30), || {
            watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE '%FROM slow%'",
                    &[&backend],
                )
                .unwrap()
                .get::<_, i64>(0)
                == 1
        });
        assert!(active, "the scan never started");
        let sent = Instant::now();
        token.cancel_query(postgres::NoTls).unwrap();
        sent
    });
    let err = c.simple_query("SELECT * FROM slow").unwrap_err();
    let stopped = Instant::now();
    let sent = canceller.join().unwrap();
    assert!(
        format!("{err:?}").contains("canceling statement due to user request"),
        "{err:?}"
    );
    let latency = stopped.duration_since(sent);
    // Well before the source's 30 s answer.
    assert!(latency < Duration::from_secs(15), "cancel took {latency:?}");
    w.assert_no_crash();
}

/// Peak resident memory of a backend, in kB.
fn peak_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn fifty_million_rows_stream_in_flat_memory() {
    let w = setup("http://127.0.0.1:9");
    w.sql(
        "CREATE FOREIGN TABLE small (n bigint, label text) SERVER api OPTIONS (object 'series', rows '1000000');
         CREATE FOREIGN TABLE big (n bigint, label text) SERVER api OPTIONS (object 'series', rows '50000000', batch '10000');",
    );
    let mut c = w.client();
    // JIT would map ~60 MB of libLLVM for the big query's cost estimate; that is not the scan.
    c.batch_execute("SET jit = off").unwrap();
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let small: i64 = c
        .query_one("SELECT count(label) FROM small", &[])
        .unwrap()
        .get(0);
    assert_eq!(small, 1_000_000);
    let after_small = peak_kb(pid);
    let big: (i64, i64) = {
        let r = c
            .query_one("SELECT count(label), max(n) FROM big", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(big, (50_000_000, 49_999_999));
    let after_big = peak_kb(pid);
    eprintln!("backend peak RSS: {after_small} kB after 1M rows, {after_big} kB after 50M rows");
    assert!(
        after_big < after_small + 32 * 1024,
        "peak memory grew with the row count: {after_small} kB after 1M rows, {after_big} kB after 50M"
    );
    w.assert_no_crash();
}
