//! The refresh runtime pgdw installs in schema pgdw, through SQL on a real warehouse with
//! pg_cron and pg_partman.

use pgdw_testkit::TempWarehouse;

use super::support::{ok, query, warehouse};

fn sql_err(w: &TempWarehouse, sql: &str) -> String {
    let out = w.pgdw(
        super::support::PGDW.as_ref(),
        &["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
    );
    assert!(!out.status.success(), "should fail: {sql}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn intervals_become_cron_and_scheduling_is_idempotent() {
    let w = warehouse();
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
    let w = warehouse();
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
    let w = warehouse();
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
    let w = warehouse();
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
    let w = warehouse();
    query(
        &w,
        "CREATE TABLE src (id int PRIMARY KEY, v text); INSERT INTO src VALUES (1, 'x');
         CREATE TABLE tgt (id int PRIMARY KEY, v text);
         SELECT pgdw.schedule('every-minute', '1 minute',
                $$CALL pgdw.run('every-minute', 'SELECT * FROM pgdw.sync(''tgt'', ''src'', ''{id}'')')$$);",
    );
    // The next minute boundary, plus pg_cron's own latency: poll, bounded.
    assert!(
        pgdw_cluster::process::wait_for(std::time::Duration::from_secs(90), || query(
            &w,
            "SELECT count(*) FROM pgdw.runs WHERE job = 'every-minute'"
        ) != "0"),
        "pg_cron never ran the job"
    );
    assert_eq!(query(&w, "SELECT status || ' ' || rows_inserted FROM pgdw.runs WHERE job = 'every-minute' ORDER BY id LIMIT 1"), "succeeded 1");
    assert_eq!(query(&w, "SELECT v FROM tgt"), "x");
}

/// The statement is built from arrays of quoted names and a quoted watermark: a column named
/// `a, b` and a text watermark holding " WHERE " are data, not syntax.
#[test]
fn sync_takes_awkward_column_names_and_watermarks() {
    let w = warehouse();
    query(
        &w,
        r#"CREATE TABLE src (id int PRIMARY KEY, "a, b" text, "Mark" text);
           CREATE TABLE tgt (LIKE src INCLUDING ALL);
           INSERT INTO src VALUES (1, 'one', 'x WHERE y'), (2, 'two', 'x WHERE z');"#,
    );
    let sync = r#"SELECT inserted || '/' || updated FROM pgdw.sync('tgt', 'src', '{id}', 'Mark')"#;
    assert_eq!(query(&w, sync), "2/0");
    assert_eq!(
        query(
            &w,
            "SELECT value FROM pgdw.watermarks WHERE job = 'sync:tgt'"
        ),
        "x WHERE z"
    );
    // Only rows past the watermark are read: an edit behind it stays behind.
    query(
        &w,
        r#"UPDATE src SET "a, b" = 'ONE' WHERE id = 1; INSERT INTO src VALUES (3, 'three', 'x WHERE zz')"#,
    );
    assert_eq!(query(&w, sync), "1/0");
    assert_eq!(
        query(
            &w,
            r#"SELECT string_agg(id || '=' || "a, b", ',' ORDER BY id) FROM tgt"#
        ),
        "1=one,2=two,3=three"
    );
    // A key-only table: rows are inserted once and never "updated".
    query(
        &w,
        "CREATE TABLE ksrc (k text PRIMARY KEY); CREATE TABLE ktgt (k text PRIMARY KEY); \
         INSERT INTO ksrc VALUES ('a'), ('b');",
    );
    let ksync = "SELECT inserted || '/' || updated FROM pgdw.sync('ktgt', 'ksrc', '{k}')";
    assert_eq!(query(&w, ksync), "2/0");
    assert_eq!(query(&w, ksync), "0/0");
    let err = sql_err(&w, "SELECT * FROM pgdw.sync('ktgt', 'ksrc', '{nope}')");
    assert!(
        err.contains("has no column nope (the key argument)"),
        "{err}"
    );
}

/// pg_cron's scheduled run and a manual one overlapped and re-read each other's window: a job
/// runs once at a time. A second start waits for the first to commit, then reads from the
/// watermark it left, and records that it waited.
#[test]
fn a_job_never_runs_twice_at_once() {
    let w = warehouse();
    query(
        &w,
        "CREATE TABLE src (id int PRIMARY KEY, at timestamptz); CREATE TABLE tgt (LIKE src INCLUDING ALL); \
         INSERT INTO src SELECT g, now() - interval '1 hour' FROM generate_series(1, 100) g;",
    );
    let call = "CALL pgdw.run('j', 'SELECT * FROM pgdw.sync(''tgt'', ''src'', ''{id}'', ''at'')')";
    let mut first = w.client_db("warehouse");
    let mut tx = first.transaction().unwrap();
    tx.batch_execute(call).unwrap();
    let second = {
        let mut c = w.client_db("warehouse");
        std::thread::spawn(move || c.batch_execute(call).unwrap())
    };
    // The second is blocked on the first's lock, not running.
    let mut watcher = w.client_db("warehouse");
    assert!(
        pgdw_cluster::process::wait_for(std::time::Duration::from_secs(30), || {
            watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory' AND query LIKE 'CALL pgdw.run(''j''%'",
                    &[],
                )
                .unwrap()
                .get::<_, i64>(0)
                == 1
        }),
        "the second run never waited"
    );
    tx.commit().unwrap();
    second.join().unwrap();
    assert_eq!(
        query(
            &w,
            "SELECT string_agg(status || ' +' || rows_inserted || ' waited:' || (waited IS NOT NULL), ', ' ORDER BY id) FROM pgdw.runs WHERE job = 'j'"
        ),
        "succeeded +100 waited:false, succeeded +0 waited:true",
        "the second read nothing again"
    );
}

/// When cron fires, computed in SQL: the times every reader of `pgdw.job_freshness` shares.
#[test]
fn cron_fire_times_follow_cron_including_day_of_month_or_week() {
    let w = warehouse();
    let fires = |schedule: &str, at: &str| {
        query(
            &w,
            &format!(
                "SET timezone = 'UTC'; SELECT concat_ws(' | ', prev2, prev1, next1) \
                 FROM pgdw.cron_fires('{schedule}', '{at}')"
            ),
        )
    };
    // 2025-11-22 was a Saturday.
    assert_eq!(
        fires("*/5 * * * *", "2025-11-22 00:23:20+00"),
        "2025-11-22 00:15:00+00 | 2025-11-22 00:20:00+00 | 2025-11-22 00:25:00+00"
    );
    assert_eq!(
        fires("@hourly", "2025-11-22 00:23:20+00"),
        "2025-11-21 23:00:00+00 | 2025-11-22 00:00:00+00 | 2025-11-22 01:00:00+00"
    );
    assert_eq!(
        fires("0 0 * * 0", "2025-11-22 00:23:20+00"),
        "2025-11-09 00:00:00+00 | 2025-11-16 00:00:00+00 | 2025-11-23 00:00:00+00"
    );
    // Both day fields restricted: the 1st of the month OR any Monday (cron and pg_cron).
    assert_eq!(
        fires("30 6 1 * 1", "2025-11-22 00:00:00+00"),
        "2025-11-10 06:30:00+00 | 2025-11-17 06:30:00+00 | 2025-11-24 06:30:00+00"
    );
    assert_eq!(
        fires("30 6 1 * 1", "2025-11-30 12:00:00+00"),
        "2025-11-17 06:30:00+00 | 2025-11-24 06:30:00+00 | 2025-12-01 06:30:00+00"
    );
    // 2025-10-01 was a Wednesday: it fires as the 1st, between two Mondays.
    assert_eq!(
        fires("30 6 1 * 1", "2025-10-02 12:00:00+00"),
        "2025-09-29 06:30:00+00 | 2025-10-01 06:30:00+00 | 2025-10-06 06:30:00+00"
    );
    // Only the day of month restricted: only it counts.
    assert_eq!(
        fires("0 0 1 * *", "2025-11-22 00:00:00+00"),
        "2025-10-01 00:00:00+00 | 2025-11-01 00:00:00+00 | 2025-12-01 00:00:00+00"
    );
    assert_eq!(fires("not a schedule", "2025-11-22 00:00:00+00"), "");
    assert_eq!(fires("61 * * * *", "2025-11-22 00:00:00+00"), "");
}

/// Stale and failing for every pg_cron job: a pgdw job that never succeeded becomes stale two
/// periods after it was scheduled, and a job scheduled directly with cron.schedule is read
/// from pg_cron's own run details.
#[test]
fn job_freshness_covers_never_succeeded_and_plain_cron_jobs() {
    let w = warehouse();
    query(
        &w,
        "SELECT pgdw.schedule('never-ok', '5 minutes', $$CALL pgdw.run('never-ok', 'SELECT 1/0')$$); \
         SELECT cron.schedule('plain', '*/10 * * * *', 'SELECT 1');",
    );
    let row = |job: &str| {
        query(
            &w,
            &format!(
                "SELECT concat_ws(',', coalesce(last_status, '-'), stale, failing, extract(epoch FROM period)::int) \
                 FROM pgdw.job_freshness WHERE job = '{job}'"
            ),
        )
    };
    assert_eq!(row("never-ok"), "-,f,f,300", "just scheduled: neither");
    query(&w, "CALL pgdw.run('never-ok', 'SELECT 1/0')");
    assert_eq!(row("never-ok"), "failed,f,t,300");
    // Scheduled (and first run) eleven minutes ago, never a success: stale.
    query(
        &w,
        "UPDATE pgdw.schedules SET scheduled_at = now() - interval '11 minutes' WHERE job = 'never-ok'; \
         UPDATE pgdw.runs SET started_at = now() - interval '11 minutes' WHERE job = 'never-ok'",
    );
    assert_eq!(row("never-ok"), "failed,t,t,300");
    // pg_cron's own record of a job that pgdw.run never saw.
    assert_eq!(row("plain"), "-,f,f,600");
    query(
        &w,
        "INSERT INTO cron.job_run_details (jobid, runid, job_pid, database, username, command, status, return_message, start_time, end_time) \
         SELECT jobid, 1, 0, 'warehouse', 'postgres', 'SELECT 1', 'failed', 'boom', now() - interval '25 minutes', now() - interval '25 minutes' \
           FROM cron.job WHERE jobname = 'plain'",
    );
    assert_eq!(row("plain"), "failed,t,t,600");
    assert_eq!(
        query(
            &w,
            "SELECT last_error FROM pgdw.job_freshness WHERE job = 'plain'"
        ),
        "boom"
    );
}

/// SQL written for pg_partman where it lives in `public` (seed 001, Tembo's prometheus_fdw
/// example) calls it unqualified; it runs as written, while pg_partman keeps its own schema.
#[test]
fn pg_partman_called_unqualified_works_as_published() {
    let w = warehouse();
    query(
        &w,
        "CREATE TABLE metric_values (label_id bigint, time bigint NOT NULL, value float8) PARTITION BY RANGE (time)",
    );
    query(
        &w,
        "SELECT create_parent(p_parent_table := 'public.metric_values', p_control := 'time', p_type := 'native', \
         p_interval := 'daily', p_automatic_maintenance := 'on', p_start_partition := to_char(now() - interval '2 days', 'YYYY-MM-DD'), \
         p_epoch := 'seconds', p_premake := 3)",
    );
    query(
        &w,
        "UPDATE part_config SET retention = '30 days', retention_keep_table = false WHERE parent_table = 'public.metric_values'",
    );
    assert_eq!(
        query(
            &w,
            "SELECT retention FROM partman.part_config WHERE parent_table = 'public.metric_values'"
        ),
        "30 days"
    );
    assert!(
        query(
            &w,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'metric_values'::regclass"
        )
        .parse::<i32>()
        .unwrap()
            >= 5
    );
    assert_eq!(
        query(
            &w,
            "SELECT extnamespace::regnamespace FROM pg_extension WHERE extname = 'pg_partman'"
        ),
        "partman",
        "pg_partman keeps its own schema"
    );
    // A search_path the owner chose is kept at the next `pgdw up`.
    query(&w, "ALTER DATABASE warehouse SET search_path = public");
    ok(&w, &["up"]);
    assert_eq!(query(&w, "SHOW search_path"), "public");
}

/// SQLAlchemy 1.4 (Superset) lists schemas with `nspname NOT LIKE 'pg_%'`: `pgdw` is not
/// among them, `dw` is, and a BI role with rights on `public` and `dw` only reads pgdw's run
/// log, freshness and alerts there.
#[test]
fn bi_tools_find_pgdws_tables_in_a_schema_they_list() {
    let w = warehouse();
    query(&w, "CALL pgdw.run('j', 'SELECT 1')");
    let listed = query(
        &w,
        "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname NOT LIKE 'pg_%' AND nspname IN ('pgdw', 'dw')",
    );
    assert_eq!(listed, "dw");
    query(
        &w,
        "CREATE ROLE superset LOGIN; ALTER ROLE superset SET default_transaction_read_only = on; \
         GRANT USAGE ON SCHEMA public, dw TO superset; GRANT SELECT ON ALL TABLES IN SCHEMA public, dw TO superset;",
    );
    assert_eq!(
        query(
            &w,
            "SET ROLE superset; SELECT (SELECT count(*) FROM dw.runs WHERE job = 'j') || ' ' || \
             (SELECT count(*) FROM dw.job_freshness) || ' ' || (SELECT count(*) FROM dw.alert_events) || ' ' || \
             (SELECT count(*) FROM dw.replication)"
        ),
        "1 0 0 0"
    );
    let denied = w.pgdw(
        super::support::PGDW.as_ref(),
        &[
            "psql",
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "SET ROLE superset; SELECT count(*) FROM pgdw.runs",
        ],
    );
    assert!(String::from_utf8_lossy(&denied.stderr).contains("permission denied for schema pgdw"));
}

/// The runtime records its version, and `pgdw up` over the previous release's runtime (which
/// recorded none) upgrades it to exactly what a fresh install makes: the same `pg_dump
/// --schema-only`, object for object.
#[test]
fn up_upgrades_the_previous_releases_runtime_to_a_fresh_installs_schema() {
    let w = warehouse();
    assert_eq!(
        query(&w, "SELECT pgdw.version()"),
        pgdw::runtime::VERSION.to_string()
    );
    let fresh = w.schema_dump("warehouse");
    w.psql_db(
        "warehouse",
        "DROP SCHEMA pgdw, dw CASCADE; DROP SCHEMA IF EXISTS pgdw_retired",
    )
    .expect("the runtime dropped");
    w.psql_db("warehouse", include_str!("fixtures/runtime_0.sql"))
        .expect("the previous release's runtime installs");
    // Commands that need the runtime refuse an older one until `pgdw up` upgrades it.
    let (_, err) = super::support::fails(&w, &["doctor"]);
    assert!(
        err.contains("runtime is version 0") && err.contains("pgdw up"),
        "{err}"
    );
    ok(&w, &["up"]);
    let upgraded = w.schema_dump("warehouse");
    if upgraded != fresh {
        let (a, b): (Vec<&str>, Vec<&str>) = (fresh.lines().collect(), upgraded.lines().collect());
        let only = |x: &[&str], y: &[&str]| -> Vec<String> {
            x.iter()
                .filter(|l| !y.contains(l))
                .map(|l| l.to_string())
                .collect()
        };
        panic!(
            "the upgraded schema differs from a fresh install's\nonly in the fresh one:\n{}\nonly in the upgraded one:\n{}",
            only(&a, &b).join("\n"),
            only(&b, &a).join("\n")
        );
    }
    assert_eq!(
        query(&w, "SELECT pgdw.version()"),
        pgdw::runtime::VERSION.to_string()
    );
}

/// Rules the runtime's SQL and pgdw's Rust both need are written once in each language and
/// held together here: the comment that names a statement's job, panel or alert, and the
/// subscription name of a `[replicate.NAME]` section.
#[test]
fn rules_written_in_sql_and_in_rust_agree() {
    let w = warehouse();
    for label in [
        "pgdw job: a */ DROP /* b",
        "plain",
        "x/**/y",
        "*/*/",
        "pgdw panel: Über ✓",
    ] {
        assert_eq!(
            query(
                &w,
                &format!("SELECT pgdw.sql_comment({})", pgdw::quote::literal(label))
            ),
            pgdw::quote::comment(label),
            "{label}"
        );
    }
    assert_eq!(
        query(&w, "SELECT pgdw.subscription_name('app_1')"),
        pgdw::replicate::config::object_name("app_1")
    );
}

/// A job runs once at a time whichever way it runs: a metric load's chunk waits for the lock
/// a `pgdw.run` of the same job holds (pgdw.job_lock, one key for both).
#[test]
fn a_metric_loads_chunk_and_a_run_of_the_same_job_exclude_each_other() {
    let w = warehouse();
    let mut holder = w.client_db("warehouse");
    let mut tx = holder.transaction().unwrap();
    tx.batch_execute("CALL pgdw.run('metrics-x', 'SELECT 1')")
        .unwrap();
    let err = w
        .psql_db(
            "warehouse",
            "SET lock_timeout = '300ms'; SELECT pgdw.metrics_chunk('metrics-x', 60, 0)",
        )
        .unwrap_err();
    assert!(err.contains("lock timeout"), "{err}");
    // Another job's chunk does not wait (it fails at once: no such load).
    let err = w
        .psql_db(
            "warehouse",
            "SET lock_timeout = '300ms'; SELECT pgdw.metrics_chunk('metrics-y', 60, 0)",
        )
        .unwrap_err();
    assert!(!err.contains("lock timeout"), "{err}");
    tx.rollback().unwrap();
}
