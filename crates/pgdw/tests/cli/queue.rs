//! The work queue and `pgdw worker`: real worker processes against a real warehouse.

use std::time::Duration;

use pgdw_testkit::wait_for;

use super::support::{converges, ok, query, warehouse, Worker};

#[test]
fn a_backlog_is_processed_by_several_workers_each_task_once() {
    let w = warehouse();
    query(
        &w,
        "CREATE TABLE done_log (n int, at timestamptz DEFAULT clock_timestamp());
         SELECT count(pgdw.enqueue('sql', jsonb_build_object('sql', format('INSERT INTO done_log (n) VALUES (%s)', g))))
           FROM generate_series(1, 2000) g",
    );
    let workers: Vec<Worker> = (0..3)
        .map(|_| Worker::start(&w, &["--concurrency", "4"]))
        .collect();
    converges(
        &w,
        "SELECT count(*) FROM pgdw.task_history WHERE state = 'succeeded'",
        "2000",
    );
    // Each task ran exactly once (its insert is in the same transaction as its run), on the
    // first attempt, and the hot tables are empty.
    assert_eq!(
        query(
            &w,
            "SELECT count(*) || ' ' || count(DISTINCT n) FROM done_log"
        ),
        "2000 2000"
    );
    assert_eq!(
        query(&w, "SELECT max(attempts) FROM pgdw.task_history"),
        "1"
    );
    assert_eq!(
        query(
            &w,
            "SELECT (SELECT count(*) FROM pgdw.task_log) + (SELECT count(*) FROM pgdw.task_ready)"
        ),
        "0"
    );
    // Three workers took part, and status shows them.
    assert_eq!(
        query(&w, "SELECT count(DISTINCT worker) FROM pgdw.task_history"),
        "3"
    );
    let status = ok(&w, &["status"]);
    assert!(status.contains("queue: 0 due"), "{status}");
    assert!(status.contains("3 workers"), "{status}");
    let json: serde_json::Value = serde_json::from_str(&ok(&w, &["status", "--json"])).unwrap();
    assert_eq!(json["queue"]["workers"], 3, "{json}");
    assert_eq!(json["queue"]["succeeded_last_hour"], 2000, "{json}");
    drop(workers);
}

#[test]
fn a_worker_killed_mid_task_loses_nothing() {
    let w = warehouse();
    // Each task waits, then records itself (idempotent: a task may run again after a crash).
    query(
        &w,
        "CREATE TABLE done_log (n int PRIMARY KEY);
         SELECT count(pgdw.enqueue('sql', jsonb_build_object('sql',
                  format('INSERT INTO done_log SELECT %s FROM pg_sleep(1.5) ON CONFLICT DO NOTHING', g))))
           FROM generate_series(1, 6) g",
    );
    let first = Worker::start(&w, &["--concurrency", "6", "--lease", "2s"]);
    converges(
        &w,
        "SELECT count(*) FROM pgdw.tasks WHERE state = 'running'",
        "6",
    );
    first.signal(nix::sys::signal::Signal::SIGKILL);
    let out = first.wait();
    assert!(!out.status.success());
    // Nothing finished: the leases hold the tasks until they expire, then another worker
    // takes them again as second attempts.
    let second = Worker::start(&w, &["--concurrency", "6", "--lease", "2s"]);
    converges(
        &w,
        "SELECT count(*) || ' ' || min(attempts) FROM pgdw.task_history WHERE state = 'succeeded'",
        "6 2",
    );
    assert_eq!(query(&w, "SELECT count(*) FROM done_log"), "6");
    drop(second);
}

#[test]
fn failures_are_retried_with_backoff_then_recorded() {
    let w = warehouse();
    let failing = query(
        &w,
        "SELECT pgdw.enqueue('sql', '{\"sql\": \"SELECT 1 / (random() * 0)::int\"}', now(), 3)",
    );
    let unknown = query(&w, "SELECT pgdw.enqueue('no-such-kind')");
    let malformed = query(
        &w,
        "SELECT pgdw.enqueue('sql', '{\"statement\": \"SELECT 1\"}')",
    );
    let _worker = Worker::start(&w, &[]);
    converges(
        &w,
        &format!("SELECT count(*) FROM pgdw.task_history WHERE id IN ({failing}, {unknown}, {malformed})"),
        "3",
    );
    let row = |id: &str| {
        query(
            &w,
            &format!("SELECT state || ' after ' || attempts || ': ' || error FROM pgdw.tasks WHERE id = {id}"),
        )
    };
    assert_eq!(row(&failing), "failed after 3: division by zero");
    assert_eq!(
        row(&unknown),
        "failed after 1: no worker task kind \"no-such-kind\" (pgdw worker runs: noop, sql, materialize, rollup, metrics)"
    );
    assert!(row(&malformed).starts_with("failed after 1: a sql task's payload needs"));
    // Backoff: the attempts were at least 1 s, then 2 s apart (each a run in pgdw.runs).
    let gaps = query(
        &w,
        &format!("SELECT string_agg((extract(epoch FROM started_at - lag) >= expect)::text, ',' ORDER BY id)
                    FROM (SELECT id, started_at, lag(started_at) OVER (ORDER BY id), power(2, row_number() OVER (ORDER BY id) - 2) AS expect
                            FROM pgdw.runs WHERE job = 'task:{failing}') r WHERE lag IS NOT NULL"),
    );
    assert_eq!(gaps, "true,true");
    // The status counts the failures.
    let status = ok(&w, &["status"]);
    assert!(status.contains("3 failed in the last day"), "{status}");
}

#[test]
fn an_idle_worker_wakes_on_notify_within_100_ms() {
    let w = warehouse();
    query(&w, "CREATE TABLE woke (id bigint, at timestamptz)");
    // A long poll: only a notification can start a task promptly.
    let _worker = Worker::start(&w, &["--poll", "60s"]);
    converges(
        &w,
        "SELECT count(*) FROM pgdw.workers WHERE stopped_at IS NULL",
        "1",
    );
    let mut waits = Vec::new();
    for _ in 0..5 {
        // Idle: nothing due, nothing running.
        converges(&w, "SELECT due + running FROM pgdw.queue", "0");
        let id = query(
            &w,
            "SELECT pgdw.enqueue('sql', '{\"sql\": \"INSERT INTO woke SELECT 0, clock_timestamp()\"}')",
        );
        converges(
            &w,
            &format!("SELECT count(*) FROM pgdw.task_history WHERE id = {id}"),
            "1",
        );
        // From the enqueuing transaction's commit to the task's run starting, on the
        // server's clock.
        let ms: f64 = query(
            &w,
            &format!("SELECT extract(epoch FROM r.started_at - h.enqueued_at) * 1000
                        FROM pgdw.runs r, pgdw.task_history h WHERE r.job = 'task:{id}' AND h.id = {id}"),
        )
        .parse()
        .unwrap();
        waits.push(ms);
    }
    waits.sort_by(f64::total_cmp);
    assert!(
        waits[2] < 100.0,
        "median wake-up {} ms: {waits:?}",
        waits[2]
    );
}

#[test]
fn sigterm_lets_running_tasks_finish() {
    let w = warehouse();
    query(&w, "CREATE TABLE done_log (n int)");
    let worker = Worker::start(&w, &[]);
    let id = query(
        &w,
        "SELECT pgdw.enqueue('sql', '{\"sql\": \"INSERT INTO done_log SELECT 1 FROM pg_sleep(1)\"}')",
    );
    converges(
        &w,
        "SELECT count(*) FROM pgdw.tasks WHERE state = 'running'",
        "1",
    );
    let out = worker.stop();
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped after 1 tasks"));
    assert_eq!(
        query(&w, &format!("SELECT state FROM pgdw.tasks WHERE id = {id}")),
        "succeeded"
    );
    assert_eq!(query(&w, "SELECT count(*) FROM done_log"), "1");
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM pgdw.workers WHERE stopped_at IS NOT NULL"
        ),
        "1"
    );
}

#[test]
fn tasks_enqueued_for_later_wait_until_then() {
    let w = warehouse();
    let later = query(
        &w,
        "SELECT pgdw.enqueue('noop', '{}', now() + interval '2 seconds')",
    );
    let _worker = Worker::start(&w, &["--poll", "200ms"]);
    assert_eq!(
        query(
            &w,
            &format!("SELECT state FROM pgdw.tasks WHERE id = {later}")
        ),
        "scheduled"
    );
    converges(
        &w,
        &format!("SELECT state FROM pgdw.tasks WHERE id = {later}"),
        "succeeded",
    );
    assert_eq!(
        query(&w, &format!("SELECT finished_at - enqueued_at >= interval '2 seconds' FROM pgdw.task_history WHERE id = {later}")),
        "t"
    );
    // Bad input is refused with nothing queued.
    let (_, err) = super::support::fails(
        &w,
        &[
            "psql",
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "SELECT pgdw.enqueue('')",
        ],
    );
    assert!(err.contains("a task needs a kind"), "{err}");
}

#[test]
fn a_worker_outlives_a_warehouse_restart() {
    let w = warehouse();
    let mut worker = Worker::start(&w, &["--concurrency", "2", "--poll", "200ms"]);
    let said = worker.follow_stderr();
    query(
        &w,
        "CREATE TABLE done_log (n int);
         SELECT pgdw.enqueue('sql', '{\"sql\": \"INSERT INTO done_log VALUES (1)\"}')",
    );
    converges(&w, "SELECT count(*) FROM done_log", "1");
    // The server stopped under the worker, until its look at the queue fails (a connection
    // is waited for 30 s first), then started again.
    ok(&w, &["down"]);
    assert!(
        wait_for(Duration::from_secs(90), || said
            .lock()
            .unwrap()
            .contains("looking at the queue")),
        "the worker says it cannot reach the queue: {}",
        said.lock().unwrap()
    );
    assert!(worker.running(), "the worker is still running");
    ok(&w, &["up"]);
    query(
        &w,
        "SELECT pgdw.enqueue('sql', '{\"sql\": \"INSERT INTO done_log VALUES (2)\"}')",
    );
    converges(
        &w,
        "SELECT string_agg(n::text, ',' ORDER BY n) FROM done_log",
        "1,2",
    );
    worker.stop();
}
