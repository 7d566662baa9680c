//! Metric loads (`pgdw.load_metrics`) against a real Prometheus: the workers' binary COPY and
//! the foreign table's INSERT ... SELECT load the same rows; a window loaded twice is not
//! doubled; a failed load keeps what it had; bad definitions are refused, installing nothing.

use pgdw_testkit::prometheus::{History, Prometheus};
use pgdw_testkit::TempWarehouse;

use super::support::{converges, query};

/// Two days at a one-minute step of three series whose labels need quoting and escaping,
/// with the values Prometheus writes specially (NaN, infinities, exponents); ends four hours
/// before the last whole hour (promtool backfills blocks behind Prometheus' head).
fn prometheus() -> (Prometheus, i64, i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = (now / 3600 - 4) * 3600;
    let start = end - 2 * 86_400 + 60;
    let mut om = String::from("# TYPE load_test gauge\n");
    let series = [
        r#"instance="a",zone="eu-1""#,
        r#"instance="b \"quoted\" \\ back",zone="eu-1""#,
        r#"instance="c — ünïcode",zone="us-2""#,
    ];
    for (s, labels) in series.iter().enumerate() {
        for p in 0..=(end - start) / 60 {
            let v = match (s, p % 500) {
                (0, 7) => "NaN".to_string(),
                (1, 8) => "+Inf".to_string(),
                (1, 9) => "-Inf".to_string(),
                (2, _) => format!("{}e-3", p * 7 % 100_003),
                _ => format!("{}.25", (p * 31 + s as i64) % 997),
            };
            om.push_str(&format!("load_test{{{labels}}} {v} {}\n", start + p * 60));
        }
    }
    om.push_str("# EOF\n");
    (Prometheus::start(&om), start, end)
}

/// The samples a range query at a one-minute step returns for the three series: each point,
/// and five more after the last (Prometheus' five-minute lookback repeats the last value).
fn samples(start: i64, end: i64) -> i64 {
    3 * ((end - start) / 60 + 1 + 5)
}

/// A warehouse reading `prom` through the foreign table `metrics` (on a wrapper named as the
/// seeds name theirs, `prometheus_wrapper`: a wrapper is what its handler is), with a load of `metric`
/// for each name: its labels and samples tables in a schema of that name (samples in daily
/// partitions, as the example's), registered from `since` ago. The tests tick by hand:
/// pg_cron's minutely ticks would race them.
fn loads(prom: &Prometheus, metric: &str, since: &str, names: &[&str]) -> TempWarehouse {
    let w = super::support::warehouse();
    let mut sql = format!(
        "CREATE FOREIGN DATA WRAPPER prometheus_wrapper HANDLER prometheus_fdw_handler VALIDATOR prometheus_fdw_validator;
         CREATE SERVER prom FOREIGN DATA WRAPPER prometheus_wrapper OPTIONS (base_url '{}');
         CREATE FOREIGN TABLE metrics (metric_name text, metric_labels jsonb, metric_time bigint, metric_value float8)
           SERVER prom OPTIONS (object 'metrics', step '1m');",
        prom.url()
    );
    for n in names {
        sql.push_str(&format!(
            "CREATE SCHEMA {n};
             CREATE TABLE {n}.labels (id bigserial PRIMARY KEY, name text NOT NULL, labels jsonb NOT NULL, UNIQUE (name, labels));
             CREATE TABLE {n}.samples (label_id bigint NOT NULL REFERENCES {n}.labels (id), time bigint NOT NULL,
                                       value float8 NOT NULL, UNIQUE (label_id, time)) PARTITION BY RANGE (time);
             SELECT pgdw.partition_daily('{n}.samples', 'time', retention => '30 days');
             SELECT pgdw.load_metrics('{n}', 'metrics', '{metric}', '{n}.samples', '{n}.labels', since => '{since}');
             UPDATE cron.job SET active = false WHERE jobname = '{n}';"
        ));
    }
    query(&w, &sql);
    w
}

/// The two loads the same rows are compared between: `fdw` and `copy`.
fn warehouse(prom: &Prometheus) -> TempWarehouse {
    loads(prom, "load_test", "3 days", &["fdw", "copy"])
}

/// Rows of a load as a user reads them: label set, time, value.
fn rows(schema: &str) -> String {
    format!(
        "SELECT l.name, l.labels, s.time, s.value FROM {schema}.samples s JOIN {schema}.labels l ON l.id = s.label_id"
    )
}

fn differing(w: &TempWarehouse) -> String {
    query(
        w,
        &format!(
            "SELECT count(*) FROM (({a} EXCEPT ALL {b}) UNION ALL ({b} EXCEPT ALL {a})) d",
            a = rows("fdw"),
            b = rows("copy")
        ),
    )
}

/// The last run of a job: status, rows inserted, error.
fn last_run(w: &TempWarehouse, job: &str) -> String {
    query(
        w,
        &format!(
            "SELECT status || ' ' || coalesce(rows_inserted::text, '-') || ' ' || coalesce(error, '')
               FROM pgdw.runs WHERE job = '{job}' ORDER BY id DESC LIMIT 1"
        ),
    )
}

#[test]
fn the_workers_copy_and_the_foreign_table_load_the_same_rows() {
    let (prom, start, end) = prometheus();
    let w = warehouse(&prom);
    let expected = samples(start, end);

    // No worker: the tick loads through the foreign table, in its own run.
    query(&w, "CALL pgdw.metrics_tick('fdw')");
    assert_eq!(last_run(&w, "fdw"), format!("succeeded {expected}"));

    // With a worker: the tick queues a task, and a second tick while it is queued does not.
    let _worker = super::materialize::worker(&w);
    converges(&w, "SELECT pgdw.workers_running()", "t");
    query(
        &w,
        "CALL pgdw.metrics_tick('copy'); CALL pgdw.metrics_tick('copy')",
    );
    converges(
        &w,
        "SELECT status FROM pgdw.runs WHERE job = 'copy' ORDER BY id DESC LIMIT 1",
        "succeeded",
    );
    assert_eq!(last_run(&w, "copy"), format!("succeeded {expected}"));
    // The task's completion is recorded just after its run: wait for it, then no other.
    converges(
        &w,
        "SELECT count(*) FROM pgdw.task_history WHERE kind = 'metrics'",
        "1",
    );
    assert_eq!(
        query(&w, "SELECT count(*) FROM pgdw.tasks WHERE kind = 'metrics'"),
        "1"
    );
    // Every sample went by binary COPY, at most six hours per transaction (aligned, so none
    // spans two daily partitions), not through the foreign table.
    assert_eq!(
        query(
            &w,
            "SELECT sum(calls) >= 3 * 4 AND sum(rows) = (SELECT count(*) FROM copy.samples) FROM pg_stat_statements
              WHERE query LIKE '/* pgdw job: copy */ COPY copy.samples %FROM STDIN (FORMAT binary)'"
        ),
        "t"
    );

    assert_eq!(
        query(&w, &format!("SELECT count(*) FROM ({}) r", rows("copy"))),
        expected.to_string()
    );
    assert_eq!(differing(&w), "0");
    // Including the values Prometheus writes as words, and the labels that needed escaping.
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FILTER (WHERE value = 'NaN') || ' ' || count(*) FILTER (WHERE value = 'Infinity')
                    || ' ' || count(*) FILTER (WHERE value = '-Infinity')
               FROM copy.samples"
        ),
        query(
            &w,
            "SELECT count(*) FILTER (WHERE value = 'NaN') || ' ' || count(*) FILTER (WHERE value = 'Infinity')
                    || ' ' || count(*) FILTER (WHERE value = '-Infinity')
               FROM fdw.samples"
        )
    );
    assert_eq!(
        query(
            &w,
            "SELECT labels->>'instance' FROM copy.labels WHERE labels->>'instance' LIKE 'b%'"
        ),
        r#"b "quoted" \ back"#
    );
    // Both watermarks where the loads stopped (a minute behind the clock when each ran, in
    // whole seconds), and
    // the job's freshness from these runs.
    assert_eq!(
        query(
            &w,
            "SELECT bool_and(synced_to BETWEEN extract(epoch FROM now() - interval '5 minutes')
                                          AND extract(epoch FROM now())::bigint - 59)
               FROM pgdw.metric_loads"
        ),
        "t"
    );
    assert_eq!(
        query(
            &w,
            "SELECT last_status || ' ' || rows_inserted FROM pgdw.job_freshness WHERE job = 'copy'"
        ),
        format!("succeeded {expected}")
    );
}

/// A session option set for the whole database (`prometheus_fdw.step`) reaches the workers'
/// loads as it reaches the foreign table's scans (one option merge, `Options::for_scan`): the
/// two loads stay equal, at the coarser step.
#[test]
fn a_step_set_for_the_database_reaches_both_loads() {
    let (prom, start, end) = prometheus();
    let w = warehouse(&prom);
    query(
        &w,
        "ALTER DATABASE warehouse SET prometheus_fdw.step = '5m'",
    );
    // Every session from now on has it: this tick's, and the worker's, started after.
    query(&w, "CALL pgdw.metrics_tick('fdw')");
    let _worker = super::materialize::worker(&w);
    converges(&w, "SELECT pgdw.workers_running()", "t");
    query(&w, "CALL pgdw.metrics_tick('copy')");
    converges(
        &w,
        "SELECT status FROM pgdw.runs WHERE job = 'copy' ORDER BY id DESC LIMIT 1",
        "succeeded",
    );
    assert_eq!(differing(&w), "0");
    let loaded: i64 = query(&w, "SELECT count(*) FROM copy.samples")
        .parse()
        .unwrap();
    assert!(
        loaded > 0 && loaded < samples(start, end) / 3,
        "a 5-minute step loads a fifth of the 1-minute samples: {loaded} of {}",
        samples(start, end)
    );
}

#[test]
fn a_window_loaded_before_is_not_loaded_twice() {
    let (prom, start, end) = prometheus();
    let w = warehouse(&prom);
    let expected = samples(start, end);
    let _worker = super::materialize::worker(&w);
    query(&w, "SELECT pgdw.enqueue('metrics', '{\"job\": \"copy\"}')");
    converges(&w, "SELECT coalesce(max(rows_inserted), 0) FROM pgdw.runs WHERE job = 'copy' AND status = 'succeeded'", &expected.to_string());
    // The watermark forgotten (a redefinition, a restore): the windows hold samples already,
    // so they go through INSERT ... ON CONFLICT DO NOTHING instead of a COPY that would stop
    // at the first duplicate.
    query(
        &w,
        "UPDATE pgdw.metric_loads SET synced_to = NULL WHERE job = 'copy'",
    );
    query(&w, "SELECT pgdw.enqueue('metrics', '{\"job\": \"copy\"}')");
    converges(
        &w,
        "SELECT count(*) FROM pgdw.runs WHERE job = 'copy' AND status = 'succeeded'",
        "2",
    );
    assert_eq!(last_run(&w, "copy"), "succeeded 0");
    assert_eq!(
        query(&w, "SELECT count(*) FROM copy.samples"),
        expected.to_string()
    );
}

#[test]
fn a_failed_load_keeps_what_it_had_and_says_why() {
    let (prom, start, end) = prometheus();
    let w = warehouse(&prom);
    let expected = samples(start, end);
    // A token on the user mapping, set as pgdw sets secrets: the worker reads it from the
    // catalog, and no statement text holds it.
    query(
        &w,
        "SELECT pgdw.set_option('user mapping', 'prom', 'bearer_token', 'tok-SECRET-1234')",
    );
    let _worker = super::materialize::worker(&w);
    query(&w, "SELECT pgdw.enqueue('metrics', '{\"job\": \"copy\"}')");
    converges(&w, "SELECT coalesce(max(rows_inserted), 0) FROM pgdw.runs WHERE job = 'copy' AND status = 'succeeded'", &expected.to_string());
    let watermark = query(
        &w,
        "SELECT synced_to FROM pgdw.metric_loads WHERE job = 'copy'",
    );

    // Prometheus gone: the run fails with the cause; data and watermark stay.
    drop(prom);
    query(
        &w,
        "UPDATE pgdw.metric_loads SET lag = '-2 hours' WHERE job = 'copy'",
    );
    query(
        &w,
        "SELECT pgdw.enqueue('metrics', '{\"job\": \"copy\"}', max_attempts => 1)",
    );
    converges(
        &w,
        "SELECT status FROM pgdw.runs WHERE job = 'copy' ORDER BY id DESC LIMIT 1",
        "failed",
    );
    let run = last_run(&w, "copy");
    assert!(
        run.contains("cannot reach Prometheus at http://127.0.0.1:"),
        "{run}"
    );
    assert_eq!(
        query(&w, "SELECT count(*) FROM copy.samples"),
        expected.to_string()
    );
    assert_eq!(
        query(
            &w,
            "SELECT synced_to FROM pgdw.metric_loads WHERE job = 'copy'"
        ),
        watermark
    );
    converges(
        &w,
        "SELECT state || ' ' || (error LIKE '%cannot reach Prometheus%') FROM pgdw.task_history WHERE kind = 'metrics' ORDER BY id DESC LIMIT 1",
        "failed true",
    );
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%tok-SECRET-1234%'"
        ),
        "0"
    );
}

#[test]
fn bad_definitions_are_refused_and_install_nothing() {
    let w = super::support::warehouse();
    query(
        &w,
        "CREATE SERVER prom FOREIGN DATA WRAPPER prometheus_fdw OPTIONS (base_url 'http://127.0.0.1:1');
         CREATE FOREIGN TABLE metrics (metric_name text, metric_labels jsonb, metric_time bigint, metric_value float8)
           SERVER prom OPTIONS (object 'metrics');
         CREATE FOREIGN TABLE series (metric_name text, metric_labels jsonb) SERVER prom OPTIONS (object 'series');
         CREATE TABLE labels (id bigserial PRIMARY KEY, name text NOT NULL, labels jsonb NOT NULL, UNIQUE (name, labels));
         CREATE TABLE loose_labels (id bigserial PRIMARY KEY, name text NOT NULL, labels jsonb NOT NULL);
         CREATE TABLE samples (label_id bigint NOT NULL, time bigint NOT NULL, value float8 NOT NULL);
         CREATE TABLE stamped (label_id bigint NOT NULL, time timestamptz NOT NULL, value float8 NOT NULL);
         CREATE TABLE plain (metric_name text, metric_labels jsonb, metric_time bigint, metric_value float8);
         CREATE SERVER clerk FOREIGN DATA WRAPPER clerk_fdw;
         CREATE FOREIGN TABLE clerk_users (user_id text) SERVER clerk OPTIONS (object 'users');",
    );
    let refused = |args: &str| {
        let out = w
            .psql_db(
                "warehouse",
                &format!("SELECT pgdw.load_metrics('bad', {args})"),
            )
            .expect_err(args);
        out
    };
    for (args, says) in [
        (
            "'plain', 'up', 'samples', 'labels'",
            "plain is not a prometheus_fdw foreign table",
        ),
        (
            "'clerk_users', 'up', 'samples', 'labels'",
            "clerk_users is not a prometheus_fdw foreign table",
        ),
        (
            "'series', 'up', 'samples', 'labels'",
            "series reads Prometheus' series (object 'series'), not range queries",
        ),
        (
            "'metrics', '', 'samples', 'labels'",
            "metric needs the metric's name",
        ),
        (
            "'metrics', 'up', 'stamped', 'labels'",
            "stamped needs a column time of type integer or bigint, not timestamp with time zone",
        ),
        (
            "'metrics', 'up', 'labels', 'labels'",
            "labels needs a column label_id of type integer or bigint, and has none",
        ),
        (
            "'metrics', 'up', 'samples', 'loose_labels'",
            "loose_labels needs a unique constraint on (name, labels)",
        ),
        (
            "'metrics', 'up', 'samples', 'labels', every => '7 minutes'",
            "does not divide an hour",
        ),
    ] {
        let err = refused(args);
        assert!(err.contains(says), "{args}: {err}");
    }
    assert_eq!(
        query(
            &w,
            "SELECT (SELECT count(*) FROM pgdw.metric_loads) || ' ' || (SELECT count(*) FROM cron.job WHERE jobname = 'bad')"
        ),
        "0 0"
    );
    // Twice the same: one load, one job.
    query(
        &w,
        "SELECT pgdw.load_metrics('good', 'metrics', 'up', 'samples', 'labels');
         SELECT pgdw.load_metrics('good', 'metrics', 'up', 'samples', 'labels', every => '5 minutes');",
    );
    assert_eq!(
        query(
            &w,
            "SELECT (SELECT count(*) FROM pgdw.metric_loads) || ' ' || (SELECT schedule FROM cron.job WHERE jobname = 'good')"
        ),
        "1 */5 * * * *"
    );
}

#[test]
fn a_stopping_worker_ends_a_long_load_after_its_chunk_and_the_next_run_goes_on() {
    // 20 days of 40 series at a minute: a load of some seconds, in 81 chunks.
    let history = History::new("long_load", 20, 40, 60);
    let prom = Prometheus::with_history(&history);
    let total = history.series * (history.points() + 5);
    let w = loads(&prom, "long_load", "21 days", &["long"]);
    let worker = super::materialize::worker(&w);
    query(&w, "SELECT pgdw.enqueue('metrics', '{\"job\": \"long\"}')");
    converges(
        &w,
        "SELECT coalesce(max(rows_inserted), 0) > 0 FROM pgdw.runs WHERE job = 'long'",
        "t",
    );
    // Stopped while loading: it ends after the chunk it writes, not after the whole window.
    worker.stop();
    let stopped: Vec<i64> = query(
        &w,
        "SELECT rows_inserted || ' ' || (SELECT count(*) FROM long.samples) FROM pgdw.runs
          WHERE job = 'long' AND status = 'succeeded'",
    )
    .split(' ')
    .map(|n| n.parse().unwrap())
    .collect();
    assert_eq!(stopped[0], stopped[1], "the run counts what it committed");
    assert!(
        stopped[0] > 0 && stopped[0] < total,
        "stopped midway: {stopped:?} of {total}"
    );
    // The next run goes on from the watermark: every sample once.
    let _worker = super::materialize::worker(&w);
    query(&w, "SELECT pgdw.enqueue('metrics', '{\"job\": \"long\"}')");
    converges(
        &w,
        "SELECT count(*) FROM pgdw.runs WHERE job = 'long' AND status = 'succeeded'",
        "2",
    );
    assert_eq!(
        query(&w, "SELECT count(*) FROM long.samples"),
        total.to_string()
    );
}
