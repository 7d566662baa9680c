//! The refresh runtime pgdw installs in schema pgdw, through SQL on a real warehouse with
//! pg_cron and pg_partman.

use pgdw_testkit::TempWarehouse;

use super::{ok, query};

fn up() -> TempWarehouse {
    let w = TempWarehouse::new();
    ok(&w, &["up"]);
    w
}

fn sql_err(w: &TempWarehouse, sql: &str) -> String {
    let out = w.pgdw(
        super::PGDW.as_ref(),
        &["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
    );
    assert!(!out.status.success(), "should fail: {sql}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn intervals_become_cron_and_scheduling_is_idempotent() {
    let w = up();
    for (every, cron) in [
        ("5 minutes", "*/5 * * * *"),
        ("1 minute", "* * * * *"),
        ("1 hour", "0 * * * *"),
        ("6 hours", "0 */6 * * *"),
        ("1 day", "0 0 * * *"),
        ("*/10 * * * *", "*/10 * * * *"),
        ("@hourly", "@hourly"),
    ] {
        assert_eq!(
            query(&w, &format!("SELECT pgdw.cron_schedule('{every}')")),
            cron,
            "{every}"
        );
    }
    assert!(
        sql_err(&w, "SELECT pgdw.cron_schedule('30 seconds')").contains("schedules by the minute")
    );
    assert!(
        sql_err(&w, "SELECT pgdw.cron_schedule('7 minutes')").contains("does not divide an hour")
    );
    assert!(sql_err(&w, "SELECT pgdw.cron_schedule('often')")
        .contains("neither cron syntax nor an interval"));
    // The seeds' schedule, through the helper, twice.
    query(
        &w,
        "SELECT pgdw.schedule('update-clusters', '5 minutes', 'SELECT 1')",
    );
    query(
        &w,
        "SELECT pgdw.schedule('update-clusters', '5 minutes', 'SELECT 1')",
    );
    assert_eq!(
        query(&w, "SELECT count(*) || ' ' || max(schedule) FROM cron.job WHERE jobname = 'update-clusters'"),
        "1 */5 * * * *"
    );
}

#[test]
fn runs_are_logged_and_a_failure_keeps_the_previous_data() {
    let w = up();
    query(
        &w,
        "CREATE TABLE src (id int PRIMARY KEY, name text, updated_at timestamptz NOT NULL);
         INSERT INTO src VALUES (1, 'a', '2026-01-01'), (2, 'b', '2026-01-01'), (3, 'c', '2026-01-01');
         CREATE TABLE tgt (id int PRIMARY KEY, name text, updated_at timestamptz NOT NULL);",
    );
    let sync = "CALL pgdw.run('sync-tgt', $$SELECT * FROM pgdw.sync('tgt', 'src', '{id}', 'updated_at')$$)";
    query(&w, sync);
    query(&w, sync);
    query(
        &w,
        "UPDATE src SET name = 'B', updated_at = '2026-01-02' WHERE id = 2; DELETE FROM src WHERE id = 3;
         INSERT INTO src VALUES (4, 'd', '2026-01-03');",
    );
    query(&w, sync);
    assert_eq!(
        query(&w, "SELECT string_agg(format('%s/%s/%s', rows_inserted, rows_updated, rows_deleted), ' ' ORDER BY id) FROM pgdw.runs WHERE job = 'sync-tgt'"),
        "3/0/0 0/0/0 1/1/1",
        "first load, an idempotent re-run, then one insert, one update, one delete"
    );
    assert_eq!(
        query(&w, "SELECT string_agg(name, ',' ORDER BY id) FROM tgt"),
        "a,B,d"
    );
    // A row committed late, stamped with the earlier now() of its long transaction, behind a
    // row that was already synced: the watermark stays a minute behind the clock, so it is
    // picked up.
    query(&w, "INSERT INTO src VALUES (5, 'recent', now())");
    query(&w, sync);
    query(
        &w,
        "INSERT INTO src VALUES (6, 'late', now() - interval '30 seconds')",
    );
    query(&w, sync);
    assert_eq!(
        query(&w, "SELECT string_agg(format('%s/%s/%s', rows_inserted, rows_updated, rows_deleted), ' ' ORDER BY id) FROM (SELECT * FROM pgdw.runs WHERE job = 'sync-tgt' ORDER BY id DESC LIMIT 2) r"),
        "1/0/0 1/0/0"
    );
    assert_eq!(
        query(&w, "SELECT value::timestamptz < now() - interval '59 seconds' FROM pgdw.watermarks WHERE job = 'sync:tgt'"),
        "t",
        "the watermark stays behind the clock"
    );
    query(
        &w,
        "DELETE FROM src WHERE id > 4; DELETE FROM tgt WHERE id > 4",
    );
    // A source that fails mid-way: the target keeps its rows, the run records why.
    query(&w, "CREATE VIEW broken AS SELECT id, name, updated_at + interval '1 day' AS updated_at FROM src WHERE 1 / (id - 4) IS NOT NULL");
    query(
        &w,
        "CALL pgdw.run('sync-broken', $$SELECT * FROM pgdw.sync('tgt', 'broken', '{id}')$$)",
    );
    assert_eq!(
        query(
            &w,
            "SELECT status || ': ' || error FROM pgdw.runs WHERE job = 'sync-broken'"
        ),
        "failed: division by zero"
    );
    assert_eq!(
        query(&w, "SELECT string_agg(name, ',' ORDER BY id) FROM tgt"),
        "a,B,d"
    );
}

#[test]
fn daily_partitions_keep_backfills_out_of_the_default_and_retention_drops_old_ones() {
    let w = up();
    query(
        &w,
        "CREATE TABLE metric_values (label_id bigint NOT NULL, time bigint NOT NULL, value float8 NOT NULL)
           PARTITION BY RANGE (time);
         SELECT pgdw.partition_daily('public.metric_values', 'time');
         SELECT pgdw.partition_daily('public.metric_values', 'time');
         INSERT INTO metric_values
         SELECT 1, extract(epoch FROM now() - d * interval '1 day')::bigint, d FROM generate_series(0, 29) d;",
    );
    assert_eq!(
        query(&w, "SELECT count(*) FROM metric_values_default"),
        "0",
        "a 30-day backfill has partitions"
    );
    let before: i64 = query(
        &w,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'metric_values'::regclass",
    )
    .parse()
    .unwrap();
    assert!(before >= 32, "{before} partitions");
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM cron.job WHERE jobname = 'pgdw-partman-maintenance'"
        ),
        "1"
    );
    query(&w, "UPDATE partman.part_config SET retention = '5 days' WHERE parent_table = 'public.metric_values'");
    // What the scheduled maintenance job runs.
    query(
        &w,
        &query(
            &w,
            "SELECT command FROM cron.job WHERE jobname = 'pgdw-partman-maintenance'",
        ),
    );
    let after: i64 = query(
        &w,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'metric_values'::regclass",
    )
    .parse()
    .unwrap();
    assert!(
        after <= before - 24,
        "old partitions dropped: {before} -> {after}"
    );
    let oldest: i64 = query(
        &w,
        "SELECT max(extract(day FROM now() - to_timestamp(time))) FROM metric_values",
    )
    .parse()
    .unwrap();
    assert!(
        oldest <= 6,
        "rows older than the retention went with their partitions ({oldest} days)"
    );
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'metric_values_p%'"
        ),
        (after - 1).to_string(),
        "dropped, not detached: retention_keep_table = false"
    );
}

#[test]
fn status_shows_runs_freshness_failures_and_partitions() {
    let w = up();
    query(
        &w,
        "SELECT pgdw.schedule('good-job', '5 minutes', $$CALL pgdw.run('good-job', 'SELECT 1')$$);
         SELECT pgdw.schedule('bad-job', '1 hour', $$CALL pgdw.run('bad-job', 'SELECT 1/0')$$);",
    );
    query(&w, "CALL pgdw.run('good-job', 'SELECT 1')");
    query(&w, "CALL pgdw.run('bad-job', 'SELECT 1/0')");
    query(
        &w,
        "CREATE TABLE metric_values (label_id bigint NOT NULL, time bigint NOT NULL, value float8 NOT NULL)
           PARTITION BY RANGE (time);
         SELECT pgdw.partition_daily('public.metric_values', 'time');
         INSERT INTO metric_values VALUES (1, extract(epoch FROM now() - interval '90 days')::bigint, 1);",
    );
    let text = ok(&w, &["status"]);
    assert!(
        text.contains("good-job") && text.contains("[ok] last succeeded"),
        "{text}"
    );
    assert!(
        text.contains("bad-job") && text.contains("[FAILING] last failed"),
        "{text}"
    );
    assert!(text.contains("error: division by zero"), "{text}");
    assert!(text.contains("public.metric_values"), "{text}");
    assert!(
        text.contains("WARNING: 1 rows in the default partition"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&w, &["status", "--json"])).unwrap();
    let jobs = json["freshness"]["jobs"].as_array().unwrap();
    let good = jobs.iter().find(|j| j["name"] == "good-job").unwrap();
    assert_eq!(good["period_secs"], 300);
    assert_eq!(good["failing"], false);
    assert!(good["next_run"].as_i64().unwrap() > json["freshness"]["now"].as_i64().unwrap());
    let bad = jobs.iter().find(|j| j["name"] == "bad-job").unwrap();
    assert_eq!(bad["failing"], true);
    assert_eq!(json["freshness"]["partitioned"][0]["default_rows"], 1);
}

#[test]
fn pg_cron_runs_a_scheduled_job_in_a_background_worker() {
    let w = up();
    query(
        &w,
        "CREATE TABLE src (id int PRIMARY KEY, v text); INSERT INTO src VALUES (1, 'x');
         CREATE TABLE tgt (id int PRIMARY KEY, v text);
         SELECT pgdw.schedule('every-minute', '1 minute',
                $$CALL pgdw.run('every-minute', 'SELECT * FROM pgdw.sync(''tgt'', ''src'', ''{id}'')')$$);",
    );
    // The next minute boundary, plus pg_cron's own latency: poll, bounded.
    let start = std::time::Instant::now();
    while query(
        &w,
        "SELECT count(*) FROM pgdw.runs WHERE job = 'every-minute'",
    ) == "0"
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(90),
            "pg_cron never ran the job"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(query(&w, "SELECT status || ' ' || rows_inserted FROM pgdw.runs WHERE job = 'every-minute' ORDER BY id LIMIT 1"), "succeeded 1");
    assert_eq!(query(&w, "SELECT v FROM tgt"), "x");
}
