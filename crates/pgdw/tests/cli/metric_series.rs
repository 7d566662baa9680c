//! `dw.metric_series`: a panel's range and width answered from the coarsest rollup that fits,
//! equal to the same aggregate over the raw samples at every resolution it picks, before and
//! after the workers apply what changed.

use pgdw_testkit::TempWarehouse;

use super::support::{fails, query, query_as, warehouse};

const T0: i64 = 1_700_000_000;
const DAY: i64 = 86_400;

/// Three series of one metric and one of another, a sample a minute (one series with a
/// day-long gap) over 40 days; the hourly rollup from the samples, the daily from the hourly.
fn metric_warehouse() -> TempWarehouse {
    let w = warehouse();
    query(
        &w,
        &format!(
            "SELECT setseed(0.42);
             CREATE TABLE metric_labels (id bigserial PRIMARY KEY, name text NOT NULL, labels jsonb NOT NULL, UNIQUE (name, labels));
             CREATE TABLE metric_values (label_id bigint NOT NULL, time bigint NOT NULL, value float8 NOT NULL, PRIMARY KEY (label_id, time));
             CREATE INDEX ON metric_values (label_id, (time / 3600 * 3600));
             INSERT INTO metric_labels (name, labels) VALUES
               ('cpu', '{{\"instance\": \"a\", \"org\": \"o1\"}}'), ('cpu', '{{\"instance\": \"b\", \"org\": \"o1\"}}'),
               ('cpu', '{{\"instance\": \"c\", \"org\": \"o2\"}}'), ('memory', '{{\"instance\": \"a\", \"org\": \"o1\"}}');
             INSERT INTO metric_values
             SELECT l.id, t, round((random() * 100 * l.id)::numeric, 3)
               FROM metric_labels l, generate_series({T0}, {T0} + 40 * {DAY}, 60) t
              WHERE NOT (l.id = 2 AND t BETWEEN {T0} + 10 * {DAY} AND {T0} + 11 * {DAY});
             SELECT pgdw.rollup('metric_hourly',
               $$SELECT label_id, time / 3600 * 3600 AS hour, sum(value) AS sum, min(value) AS min, max(value) AS max, count(*) AS samples
                   FROM metric_values GROUP BY 1, 2$$,
               source => 'metric_values', keys => ARRAY['label_id', 'time / 3600 * 3600']);
             SELECT pgdw.rollup('metric_daily',
               $$SELECT label_id, hour / 86400 * 86400 AS day, sum(sum) AS sum, min(min) AS min, max(max) AS max, sum(samples)::bigint AS samples
                   FROM metric_hourly GROUP BY 1, 2$$,
               source => 'metric_hourly', keys => ARRAY['label_id', 'hour / 86400 * 86400']);
             SELECT pgdw.metric_resolutions('metric_values', '{{\"metric_daily\": \"1 day\", \"metric_hourly\": \"1 hour\"}}',
                                            labels => 'metric_labels');"
        ),
    );
    w
}

/// For one metric, filter, range and width: what was read (a rollup or `raw`), how many points
/// the raw samples give in the buckets it chose, how many points differ from them, and
/// whether every series has at most max_points.
fn compare(
    w: &TempWarehouse,
    metric: &str,
    filter: &str,
    from: i64,
    to: i64,
    points: i32,
) -> String {
    let args =
        format!("'{metric}', '{filter}', to_timestamp({from}), to_timestamp({to}), {points}");
    query(
        w,
        &format!(
            "WITH r AS (SELECT * FROM pgdw.metric_series_resolution('metric_values', to_timestamp({from}), to_timestamp({to}), {points})),
                  a AS (SELECT * FROM dw.metric_series({args})),
                  b AS (SELECT to_timestamp(v.time / r.bucket_seconds * r.bucket_seconds) AS time, l.labels,
                               avg(v.value) AS avg, min(v.value) AS min, max(v.value) AS max, count(*) AS samples
                          FROM r, metric_values v JOIN metric_labels l ON l.id = v.label_id
                         WHERE l.name = '{metric}' AND l.labels @> '{filter}'
                           AND v.time >= {from}::bigint / r.bucket_seconds * r.bucket_seconds
                           AND v.time < ceil({to}::numeric / r.bucket_seconds) * r.bucket_seconds
                         GROUP BY 1, 2)
             SELECT coalesce((SELECT rollup::text FROM r), 'raw') || ' ' || (SELECT count(*) FROM b) || ' ' ||
                    (SELECT count(*) FROM a FULL JOIN b USING (time, labels)
                      WHERE a.samples IS DISTINCT FROM b.samples OR a.min IS DISTINCT FROM b.min
                         OR a.max IS DISTINCT FROM b.max OR abs(a.avg - b.avg) > 1e-9 * greatest(1, abs(b.avg))) || ' ' ||
                    coalesce((SELECT max(n) <= {points} FROM (SELECT count(*) AS n FROM a GROUP BY labels) x), true)"
        ),
    )
}

/// Every range of the test, with the resolution that fits it.
const RANGES: &[(&str, &str, i64, i64, i32, &str)] = &[
    // A panel over an hour, a point a minute: the samples.
    (
        "cpu",
        "{}",
        T0 + 5 * DAY + 1234,
        T0 + 5 * DAY + 1234 + 3600,
        60,
        "raw",
    ),
    // Two days in 48 points: hours.
    ("cpu", "{}", T0 + 3 * DAY, T0 + 5 * DAY, 48, "metric_hourly"),
    // Across the gap of series b, by organization, a point per 5 hours.
    (
        "cpu",
        "{\"org\": \"o1\"}",
        T0 + 9 * DAY + 999,
        T0 + 12 * DAY,
        15,
        "metric_hourly",
    ),
    // Thirty days in 30 points: days; in 1,000 points: 43 minutes each, samples.
    ("cpu", "{}", T0, T0 + 30 * DAY, 30, "metric_daily"),
    ("cpu", "{}", T0, T0 + 30 * DAY, 1000, "raw"),
    // The whole history in 10 points (4 days each), one series of another metric.
    ("memory", "{}", T0 - DAY, T0 + 41 * DAY, 10, "metric_daily"),
    (
        "cpu",
        "{\"instance\": \"c\"}",
        T0 - DAY,
        T0 + 41 * DAY,
        200,
        "metric_hourly",
    ),
];

fn all_equal(w: &TempWarehouse, when: &str) {
    for (metric, filter, from, to, points, want) in RANGES {
        let got = compare(w, metric, filter, *from, *to, *points);
        let parts: Vec<&str> = got.split(' ').collect();
        assert_eq!(
            parts[0], *want,
            "{when}: {metric} {filter} {from}..{to} in {points}: {got}"
        );
        assert!(
            parts[1].parse::<i64>().unwrap() > 0,
            "{when}: no points at all: {got}"
        );
        assert_eq!(parts[2], "0", "{when}: points differ from the samples' ({metric} {filter} {from}..{to} in {points}): {got}");
        assert_eq!(
            parts[3], "true",
            "{when}: more than {points} points in a series: {got}"
        );
    }
}

#[test]
fn every_resolution_answers_as_the_samples_do_before_and_after_the_rollups_catch_up() {
    let w = metric_warehouse();
    all_equal(&w, "registered");

    // Late samples in old hours, a corrected value, a deleted sample, a new series: nothing
    // applied yet, the buckets they touch are read from the samples.
    query(
        &w,
        &format!(
            "INSERT INTO metric_values VALUES (1, {T0} + 3 * {DAY} + 30, 100000), (2, {T0} + 10 * {DAY} + 7230, -50),
                                              (3, {T0} + 20 * {DAY} + 17, 0.5);
             UPDATE metric_values SET value = value + 1000 WHERE label_id = 3 AND time BETWEEN {T0} + 25 * {DAY} AND {T0} + 25 * {DAY} + 600;
             DELETE FROM metric_values WHERE label_id = 1 AND time = {T0} + 4 * {DAY};
             INSERT INTO metric_labels (name, labels) VALUES ('cpu', '{{\"instance\": \"d\", \"org\": \"o2\"}}');
             INSERT INTO metric_values SELECT currval('metric_labels_id_seq'), t, 7 FROM generate_series({T0} + 4 * {DAY}, {T0} + 6 * {DAY}, 60) t;"
        ),
    );
    assert_ne!(
        query(&w, "SELECT count(*) FROM pgdw.metric_stale('metric_daily')"),
        "0"
    );
    all_equal(&w, "changed, nothing applied");

    // The hourly rollup applied, the daily not yet.
    query(&w, "CALL pgdw.rollup_run('metric_hourly')");
    assert_eq!(
        query(
            &w,
            "SELECT dirty_groups FROM pgdw.rollup_lag('metric_hourly')"
        ),
        "0"
    );
    assert_ne!(
        query(
            &w,
            "SELECT dirty_groups FROM pgdw.rollup_lag('metric_daily')"
        ),
        "0"
    );
    all_equal(&w, "hourly applied");

    query(&w, "CALL pgdw.rollup_run('metric_daily')");
    assert_eq!(
        query(&w, "SELECT count(*) FROM pgdw.metric_stale('metric_daily')"),
        "0"
    );
    all_equal(&w, "both applied");

    // A rollup to be recomputed whole (its source truncated) is not read: the samples are.
    query(&w, "TRUNCATE metric_values");
    let got = compare(&w, "cpu", "{}", T0, T0 + 30 * DAY, 30);
    assert_eq!(got, "raw 0 0 true");
}

#[test]
fn a_reader_role_calls_it_and_is_refused_what_it_cannot_read() {
    let w = metric_warehouse();
    // The role of docs/bi-tools.md: no USAGE on schema pgdw, whose functions it calls.
    query(
        &w,
        "CREATE ROLE superset LOGIN; ALTER ROLE superset SET default_transaction_read_only = on;
         GRANT USAGE ON SCHEMA public, dw TO superset; GRANT SELECT ON ALL TABLES IN SCHEMA public, dw TO superset;",
    );
    let series = format!(
        "SELECT count(*) || ' ' || sum(samples) FROM dw.metric_series('cpu', '{{}}', to_timestamp({T0}), to_timestamp({T0} + 30 * {DAY}), 30)"
    );
    // As the owner sees it (whose answers the other tests check against the samples).
    let want = query(&w, &series);
    assert!(!want.starts_with("0 "), "{want}");
    assert_eq!(query_as(&w, "superset", &series).unwrap(), want);
    // A rollup it may not read: refused, naming the table, never answered from it.
    query(&w, "REVOKE SELECT ON metric_daily FROM superset");
    let err = query_as(&w, "superset", &series).unwrap_err();
    assert!(
        err.contains("permission denied for table public.metric_daily"),
        "{err}"
    );
}

#[test]
fn declarations_and_ranges_that_cannot_work_are_refused_clearly() {
    let w = metric_warehouse();
    let refused = |sql: &str, says: &str| {
        let (_, err) = fails(&w, &["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        assert!(
            err.contains(says),
            "{sql}\nshould say {says:?}, said: {err}"
        );
    };
    // The width must be the buckets' width: the key is checked, not trusted.
    refused(
        "SELECT pgdw.metric_resolutions('metric_values', '{\"metric_hourly\": \"2 hours\"}', labels => 'metric_labels')",
        "puts time 7199 in bucket 3600, not 0: its buckets are not 7200 s wide",
    );
    refused(
        "SELECT pgdw.metric_resolutions('metric_values', '{\"metric_labels\": \"1 hour\"}', labels => 'metric_labels')",
        "metric_labels is not a rollup",
    );
    refused(
        "SELECT pgdw.metric_resolutions('metric_values', '{\"metric_daily\": \"1 day\"}', labels => 'metric_labels')",
        "metric_daily is built on metric_hourly, which is neither metric_values nor a finer rollup declared with it",
    );
    refused(
        "SELECT pgdw.metric_resolutions('metric_values', '{\"metric_hourly\": \"soon\"}', labels => 'metric_labels')",
        "must be an interval such as '1 hour', not soon",
    );
    refused(
        "SELECT pgdw.metric_resolutions('metric_values', '{}')",
        "no metric load writes metric_values, so its labels table is not known",
    );
    refused(
        "SELECT pgdw.rollup('metric_counts', $$SELECT label_id, time / 3600 * 3600 AS hour, count(*) AS n FROM metric_values GROUP BY 1, 2$$,
                            source => 'metric_values', keys => ARRAY['label_id', 'time / 3600 * 3600']);
         SELECT pgdw.metric_resolutions('metric_values', '{\"metric_counts\": \"1 hour\"}', labels => 'metric_labels')",
        "metric_counts needs columns min, max, samples (the count) and sum or avg; it has n",
    );
    refused(
        &format!("SELECT * FROM dw.metric_series('cpu', '{{}}', to_timestamp({T0}), to_timestamp({T0}), 10)"),
        "from must be before to",
    );
    refused(
        &format!("SELECT * FROM dw.metric_series('cpu', '{{}}', to_timestamp({T0}), to_timestamp({T0} + 60), 0)"),
        "max_points must be at least 1, not 0",
    );
    // A failed declaration keeps the one before.
    assert_eq!(
        query(&w, "SELECT string_agg(rollup::text || ' ' || width, ', ' ORDER BY width) FROM pgdw.metric_tiers"),
        "metric_hourly 3600, metric_daily 86400"
    );
}
