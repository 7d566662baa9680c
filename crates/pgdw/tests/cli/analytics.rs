//! Product analytics (`pgdw.events` and the functions answering over it), against plain-SQL
//! references of the semantics written here over the raw events, on random data with
//! the edge cases: ties at step boundaries, a user doing step 1 twice, steps exactly at
//! `t1 + within`, events at midnight UTC, users erased, late events, updated names and
//! times, a partition created later and partitions expired, a session in another time zone;
//! and the hll and tdigest sketches rollups keep, against exact answers.

use pgdw_testkit::TempWarehouse;

use super::support::{converges, query, warehouse, Worker};

/// The columns of the test's table, for the functions' scanning path.
const COLS: &str =
    "user_column => 'user_id', time_column => 'occurred_at', name_column => 'event_name'";

/// `got` and `want` hold the same rows (as multisets); else the test fails showing some.
fn same(w: &TempWarehouse, what: &str, got: &str, want: &str) {
    let diff = query(
        w,
        &format!(
            "SET TimeZone = 'Pacific/Chatham';
             WITH g AS ({got}), r AS ({want}),
             d AS ((SELECT 'got' AS side, * FROM (TABLE g EXCEPT ALL TABLE r) x)
                   UNION ALL (SELECT 'want', * FROM (TABLE r EXCEPT ALL TABLE g) y))
             SELECT count(*) || coalesce(' ' || (SELECT string_agg(d::text, ' ') FROM (SELECT * FROM d LIMIT 6) d), '')
               FROM d"
        ),
    );
    assert_eq!(diff, "0", "{what}: rows that differ (side, row...)");
    let n = query(w, &format!("SELECT count(*) FROM ({want}) x"));
    assert!(
        n != "0",
        "{what}: the reference is empty, so the check proves nothing"
    );
}

/// `B`: today's midnight UTC, as a timestamptz literal's text.
fn base(w: &TempWarehouse) -> String {
    query(
        w,
        "SELECT to_char(date_trunc('day', now() AT TIME ZONE 'UTC'), 'YYYY-MM-DD') || ' 00:00:00+00'",
    )
}

fn active_ref(b: &str, since: i32, until: i32) -> String {
    format!(
        "SELECT (d AT TIME ZONE 'UTC')::date AS day,
                (SELECT count(DISTINCT user_id) FROM ref.events e WHERE e.occurred_at >= d AND e.occurred_at < d + interval '1 day'),
                (SELECT count(DISTINCT user_id) FROM ref.events e WHERE e.occurred_at >= d - interval '6 days' AND e.occurred_at < d + interval '1 day'),
                (SELECT count(DISTINCT user_id) FROM ref.events e WHERE e.occurred_at >= d - interval '29 days' AND e.occurred_at < d + interval '1 day')
           FROM generate_series(timestamptz '{b}' + interval '{since} days', timestamptz '{b}' + interval '{until} days' - interval '1 day', interval '1 day') d"
    )
}

fn active(b: &str, since: i32, until: i32, extra: &str) -> String {
    format!("SELECT * FROM pgdw.active_users('app.events', since => (timestamptz '{b}' + interval '{since} days')::date,
                    until => (timestamptz '{b}' + interval '{until} days')::date {extra})")
}

/// Three steps, by brute force over every chain of distinct events.
fn funnel_ref(b: &str, steps: [&str; 3], within: &str, since: i32, until: i32) -> String {
    let [s1, s2, s3] = steps;
    format!(
        "WITH p AS (SELECT timestamptz '{b}' + interval '{since} days' AS since, timestamptz '{b}' + interval '{until} days' AS until, interval '{within}' AS w),
         e1 AS (SELECT e.* FROM ref.events e, p WHERE e.event_name = '{s1}' AND e.occurred_at >= p.since AND e.occurred_at < p.until),
         r1 AS (SELECT DISTINCT user_id FROM e1),
         r2 AS (SELECT DISTINCT a.user_id FROM e1 a JOIN ref.events b ON b.user_id = a.user_id AND b.event_id <> a.event_id, p
                 WHERE b.event_name = '{s2}' AND b.occurred_at >= a.occurred_at AND b.occurred_at <= a.occurred_at + p.w),
         r3 AS (SELECT DISTINCT a.user_id FROM e1 a JOIN ref.events b ON b.user_id = a.user_id AND b.event_id <> a.event_id
                  JOIN ref.events c ON c.user_id = a.user_id AND c.event_id NOT IN (a.event_id, b.event_id), p
                 WHERE b.event_name = '{s2}' AND b.occurred_at >= a.occurred_at AND c.event_name = '{s3}'
                   AND c.occurred_at >= b.occurred_at AND c.occurred_at <= a.occurred_at + p.w),
         n (step, event, users) AS (VALUES (1, '{s1}', (SELECT count(*) FROM r1)), (2, '{s2}', (SELECT count(*) FROM r2)), (3, '{s3}', (SELECT count(*) FROM r3)))
         SELECT step, event, users, CASE WHEN step = 1 THEN 1 WHEN (SELECT users FROM n WHERE step = 1) = 0 THEN 0
                                         ELSE round(users::numeric / (SELECT users FROM n WHERE step = 1), 4) END FROM n"
    )
}

fn funnel(b: &str, steps: [&str; 3], within: &str, since: i32, until: i32, extra: &str) -> String {
    let [s1, s2, s3] = steps;
    format!("SELECT * FROM pgdw.funnel('app.events', steps => ARRAY['{s1}', '{s2}', '{s3}'], within => interval '{within}',
                    since => timestamptz '{b}' + interval '{since} days', until => timestamptz '{b}' + interval '{until} days' {extra})")
}

fn retention_ref(
    b: &str,
    cohort_event: &str,
    return_event: &str,
    period: &str,
    periods: i32,
    since: i32,
    until: i32,
) -> String {
    format!(
        "WITH p AS (SELECT timestamptz '{b}' + interval '{since} days' AS since, timestamptz '{b}' + interval '{until} days' AS until,
                           interval '1 {period}' AS step, {return_event}::text AS ret),
         f AS (SELECT user_id, min(occurred_at) AS first_at FROM ref.events WHERE event_name = '{cohort_event}' GROUP BY 1),
         c AS (SELECT f.user_id, date_trunc('{period}', f.first_at AT TIME ZONE 'UTC') AS cohort FROM f, p
                WHERE date_trunc('{period}', f.first_at AT TIME ZONE 'UTC') >= p.since AT TIME ZONE 'UTC'
                  AND date_trunc('{period}', f.first_at AT TIME ZONE 'UTC') < p.until AT TIME ZONE 'UTC')
         SELECT c.cohort::date, n, (SELECT count(*) FROM c x WHERE x.cohort = c.cohort),
                count(*) FILTER (WHERE EXISTS (SELECT 1 FROM ref.events e WHERE e.user_id = c.user_id AND (p.ret IS NULL OR e.event_name = p.ret)
                                                 AND e.occurred_at >= (c.cohort + n * p.step) AT TIME ZONE 'UTC'
                                                 AND e.occurred_at < (c.cohort + (n + 1) * p.step) AT TIME ZONE 'UTC')),
                round(count(*) FILTER (WHERE EXISTS (SELECT 1 FROM ref.events e WHERE e.user_id = c.user_id AND (p.ret IS NULL OR e.event_name = p.ret)
                                                 AND e.occurred_at >= (c.cohort + n * p.step) AT TIME ZONE 'UTC'
                                                 AND e.occurred_at < (c.cohort + (n + 1) * p.step) AT TIME ZONE 'UTC'))::numeric
                      / (SELECT count(*) FROM c x WHERE x.cohort = c.cohort), 4)
           FROM c, p, generate_series(0, {periods} - 1) n GROUP BY c.cohort, n"
    )
}

/// A retention question: cohort event, return event (SQL), period, periods, since and until
/// in days from B.
type Retention<'a> = (&'a str, &'a str, &'a str, i32, i32, i32);

fn retention(b: &str, q: Retention, extra: &str) -> String {
    let (cohort_event, return_event, period, periods, since, until) = q;
    format!("SELECT * FROM pgdw.retention('app.events', cohort_event => '{cohort_event}', return_event => {return_event}, period => '{period}',
                    periods => {periods}, since => timestamptz '{b}' + interval '{since} days', until => timestamptz '{b}' + interval '{until} days' {extra})")
}

/// `event` is SQL (a literal or NULL); since and until in hours from B.
fn trend_ref(b: &str, event: &str, bucket: &str, since: i32, until: i32) -> String {
    format!(
        "WITH p AS (SELECT timestamptz '{b}' + interval '{since} hours' AS since, timestamptz '{b}' + interval '{until} hours' AS until, {event}::text AS ev)
         SELECT s AT TIME ZONE 'UTC', count(e.event_id), count(DISTINCT e.user_id)
           FROM p CROSS JOIN LATERAL generate_series(date_trunc('{bucket}', p.since AT TIME ZONE 'UTC'), p.until AT TIME ZONE 'UTC' - interval '1 microsecond', interval '1 {bucket}') s
           LEFT JOIN ref.events e ON e.occurred_at >= s AT TIME ZONE 'UTC' AND e.occurred_at < (s + interval '1 {bucket}') AT TIME ZONE 'UTC'
                                 AND e.occurred_at >= p.since AND e.occurred_at < p.until AND (p.ev IS NULL OR e.event_name = p.ev)
          GROUP BY s"
    )
}

fn trend(b: &str, event: &str, bucket: &str, since: i32, until: i32, extra: &str) -> String {
    format!("SELECT * FROM pgdw.trend('app.events', event => {event}, bucket => '{bucket}',
                    since => timestamptz '{b}' + interval '{since} hours', until => timestamptz '{b}' + interval '{until} hours' {extra})")
}

/// Every answer the test checks, registered (and, while the raw events are all there, the
/// scanning path too) against its reference.
fn check_all(w: &TempWarehouse, b: &str, with_scan: bool) {
    let scan = format!(", {COLS}");
    let mut extras = vec![("registered", String::new())];
    if with_scan {
        extras.push(("scanning", scan.clone()));
        extras.push(("registered, scan => true", ", scan => true".into()));
    }
    for (how, extra) in &extras {
        let x = extra.as_str();
        let (f1, f2) = (
            ["signup", "create_project", "invite_member"],
            ["search", "page_view", "create_project"],
        );
        let cases = [
            ("active_users", active(b, -29, 1, x), active_ref(b, -29, 1)),
            (
                "funnel",
                funnel(b, f1, "2 days", -29, -1, x),
                funnel_ref(b, f1, "2 days", -29, -1),
            ),
            (
                "funnel within 0",
                funnel(b, f1, "0", -29, 1, x),
                funnel_ref(b, f1, "0", -29, 1),
            ),
            (
                "funnel of frequent events",
                funnel(b, f2, "6 hours", -20, -5, x),
                funnel_ref(b, f2, "6 hours", -20, -5),
            ),
            (
                "weekly retention",
                retention(b, ("signup", "NULL", "week", 5, -35, 1), x),
                retention_ref(b, "signup", "NULL", "week", 5, -35, 1),
            ),
            (
                "daily retention of page views",
                retention(b, ("signup", "'page_view'", "day", 8, -30, -2), x),
                retention_ref(b, "signup", "'page_view'", "day", 8, -30, -2),
            ),
            (
                "monthly retention",
                retention(
                    b,
                    ("create_project", "'invite_member'", "month", 3, -70, 1),
                    x,
                ),
                retention_ref(b, "create_project", "'invite_member'", "month", 3, -70, 1),
            ),
            (
                "hourly trend",
                trend(b, "'page_view'", "hour", -72, 0, x),
                trend_ref(b, "'page_view'", "hour", -72, 0),
            ),
            (
                "daily trend of every event",
                trend(b, "NULL", "day", -29 * 24, 24, x),
                trend_ref(b, "NULL", "day", -29 * 24, 24),
            ),
            (
                "weekly trend",
                trend(b, "NULL", "week", -31 * 24, 24, x),
                trend_ref(b, "NULL", "week", -31 * 24, 24),
            ),
            (
                "monthly trend",
                trend(b, "'signup'", "month", -62 * 24, 31 * 24, x),
                trend_ref(b, "'signup'", "month", -62 * 24, 31 * 24),
            ),
            (
                "minute trend",
                trend(b, "'signup'", "minute", -5 * 24, -4 * 24, x),
                trend_ref(b, "'signup'", "minute", -5 * 24, -4 * 24),
            ),
            (
                "hourly trend not on the hour",
                trend(b, "NULL", "hour", -100, -3, x),
                trend_ref(b, "NULL", "hour", -100, -3),
            ),
        ];
        for (what, got, want) in &cases {
            same(w, &format!("{what}, {how}"), got, want);
        }
    }
}

/// The events of 80 users over the 29 days to today in pg_partman's daily partitions, with the
/// edge cases, and their copy in `ref.events` that the references read.
fn app() -> (TempWarehouse, String) {
    let w = warehouse();
    let b = base(&w);
    query(
        &w,
        &format!(
            "CREATE SCHEMA app; CREATE SCHEMA ref;
             CREATE TABLE app.events (event_id bigserial, user_id bigint NOT NULL, occurred_at timestamptz NOT NULL,
                                      event_name text NOT NULL, properties jsonb, PRIMARY KEY (event_id, occurred_at))
               PARTITION BY RANGE (occurred_at);
             SELECT pgdw.partition_daily('app.events', 'occurred_at', retention => '30 days');
             SELECT setseed(0.27);
             INSERT INTO app.events (user_id, occurred_at, event_name)
             SELECT 1 + floor(random() * 80)::int, timestamptz '{b}' - interval '29 days' + random() * interval '29 days',
                    (ARRAY['signup', 'create_project', 'invite_member', 'page_view', 'page_view', 'search'])[1 + floor(random() * 6)::int]
               FROM generate_series(1, 2500);
             -- Exact boundaries: midnight UTC, a tie between steps, the last step exactly at t1 + within,
             -- one a microsecond after it, and step 1 done twice with only the second chain completing.
             INSERT INTO app.events (user_id, occurred_at, event_name) VALUES
                 (1001, timestamptz '{b}' - interval '5 days', 'signup'),
                 (1001, timestamptz '{b}' - interval '5 days', 'create_project'),
                 (1001, timestamptz '{b}' - interval '3 days', 'invite_member'),
                 (1002, timestamptz '{b}' - interval '5 days', 'signup'),
                 (1002, timestamptz '{b}' - interval '4 days', 'create_project'),
                 (1002, timestamptz '{b}' - interval '3 days' + interval '1 microsecond', 'invite_member'),
                 (1003, timestamptz '{b}' - interval '20 days', 'signup'),
                 (1003, timestamptz '{b}' - interval '11 days', 'signup'),
                 (1003, timestamptz '{b}' - interval '10 days', 'create_project'),
                 (1003, timestamptz '{b}' - interval '9 days' - interval '1 hour', 'invite_member'),
                 (1004, timestamptz '{b}' - interval '1 microsecond', 'signup'),
                 (1004, timestamptz '{b}', 'page_view');
             CREATE TABLE ref.events AS TABLE app.events;"
        ),
    );
    (w, b)
}

/// Apply the same statement to the app's events and to the reference's copy.
fn both(w: &TempWarehouse, sql: &str) {
    query(
        w,
        &format!(
            "{}; {}",
            sql.replace("{t}", "app.events"),
            sql.replace("{t}", "ref.events")
        ),
    );
}

fn caught_up(w: &TempWarehouse) {
    converges(w, "SELECT pgdw.derived_backlog()", "0");
}

#[test]
fn every_answer_equals_its_reference_through_changes_and_expiry() {
    let (w, b) = app();
    // Before registration: the scanning path alone.
    same(
        &w,
        "active_users, not registered",
        &active(&b, -29, 1, &format!(", {COLS}")),
        &active_ref(&b, -29, 1),
    );
    let said = query(
        &w,
        "SELECT pgdw.events('app.events', user_column => 'user_id', time_column => 'occurred_at', name_column => 'event_name')",
    );
    assert_eq!(
        said,
        format!(
            "app.events: analytics kept from its changes ({} users)",
            query(&w, "SELECT count(DISTINCT user_id) FROM app.events")
        )
    );
    assert_eq!(
        query(&w, "SELECT pgdw.events('app.events', user_column => 'user_id', time_column => 'occurred_at', name_column => 'event_name')"),
        "app.events is kept already"
    );
    check_all(&w, &b, true);

    let _worker = Worker::start(&w, &["--concurrency", "2", "--poll", "200ms"]);
    // Late events for 25 days back, a user erased, names and times updated, a partition
    // created later (ten days ahead) with events in it.
    both(&w, &format!("INSERT INTO {{t}} (event_id, user_id, occurred_at, event_name) VALUES
                 (900001, 1005, timestamptz '{b}' - interval '25 days' + interval '3 hours', 'signup'),
                 (900002, 1005, timestamptz '{b}' - interval '24 days', 'create_project'),
                 (900003, 3, timestamptz '{b}' - interval '25 days', 'search')"));
    both(&w, "DELETE FROM {t} WHERE user_id = 7");
    both(
        &w,
        "UPDATE {t} SET event_name = 'search' WHERE event_id % 17 = 0",
    );
    both(&w, "UPDATE {t} SET occurred_at = occurred_at + interval '1 day' WHERE event_id % 23 = 0 AND user_id <> 1004");
    query(&w, &format!("CREATE TABLE app.events_ahead PARTITION OF app.events
                          FOR VALUES FROM ('{b}'::timestamptz + interval '10 days') TO ('{b}'::timestamptz + interval '11 days')"));
    both(
        &w,
        &format!(
            "INSERT INTO {{t}} (event_id, user_id, occurred_at, event_name) VALUES
                 (900004, 1006, timestamptz '{b}' + interval '10 days 2 hours', 'signup'),
                 (900005, 2, timestamptz '{b}' + interval '10 days 3 hours', 'page_view')"
        ),
    );
    caught_up(&w);
    check_all(&w, &b, true);
    same(
        &w,
        "active_users ahead",
        &active(&b, 5, 15, ""),
        &active_ref(&b, 5, 15),
    );

    // Retention: every partition older than 10 days expires. The answers stay what the raw
    // events said (ref.events keeps them).
    query(
        &w,
        "UPDATE partman.part_config SET retention = '10 days' WHERE parent_table = 'app.events'",
    );
    let dropped: i64 = query(&w, "SELECT pgdw.partition_maintenance()")
        .parse()
        .unwrap();
    assert!(
        dropped >= 18,
        "expected the partitions older than 10 days dropped, got {dropped}"
    );
    assert_eq!(query(&w, &format!("SELECT count(*) FROM app.events WHERE occurred_at < timestamptz '{b}' - interval '11 days'")), "0");
    caught_up(&w);
    check_all(&w, &b, false);
    // And a change after expiry is still reflected.
    both(
        &w,
        &format!(
            "INSERT INTO {{t}} (event_id, user_id, occurred_at, event_name) VALUES
                 (900006, 1005, timestamptz '{b}' - interval '2 days', 'invite_member')"
        ),
    );
    both(
        &w,
        "DELETE FROM {t} WHERE user_id = 11 AND occurred_at >= now() - interval '9 days'",
    );
    caught_up(&w);
    check_all(&w, &b, false);
    // Forgetting takes every object of the registration away, the source's index too.
    assert_eq!(query(&w, "SELECT pgdw.events_forget('app.events')"), "t");
    assert_eq!(
        query(&w, "SELECT (SELECT count(*) FROM pg_class WHERE relname LIKE 'events\\_%' AND relnamespace = 'pgdw'::regnamespace)
                        + (SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'pgdw\\_events\\_%')
                        + (SELECT count(*) FROM pgdw.rollups) + (SELECT count(*) FROM pgdw.event_tables)"),
        "0"
    );
}

#[test]
fn bad_input_is_refused_naming_the_argument() {
    let (w, b) = app();
    query(&w, "SELECT pgdw.events('app.events', user_column => 'user_id', time_column => 'occurred_at', name_column => 'event_name')");
    let refused = |sql: &str, want: &str| {
        let out = w.pgdw(
            super::support::PGDW.as_ref(),
            &["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success() && err.contains(want),
            "{sql}: want an error containing {want:?}, got {err}"
        );
    };
    let since = format!("timestamptz '{b}' - interval '7 days'");
    refused("SELECT * FROM pgdw.active_users('app.nothing', since => date '2026-11-01', until => date '2026-12-01')",
            "pgdw.active_users: tbl: the table app.nothing does not exist");
    refused(&format!("SELECT * FROM pgdw.trend('ref.events', event => NULL, bucket => 'day', since => {since}, until => now())"),
            "pgdw.trend: tbl: ref.events is not registered for analytics, and its columns are not given");
    refused(&format!("SELECT * FROM pgdw.trend('ref.events', event => NULL, bucket => 'day', since => {since}, until => now(),
                                               user_column => 'user_id', time_column => 'at', name_column => 'event_name')"),
            "pgdw.trend: time_column: ref.events has no column at");
    refused(&format!("SELECT * FROM pgdw.funnel('app.events', steps => '{{}}', within => interval '1 day', since => {since}, until => now())"),
            "pgdw.funnel: steps must name at least one event");
    refused(&format!("SELECT * FROM pgdw.retention('app.events', cohort_event => 'signup', return_event => NULL, period => 'fortnight',
                                                   periods => 4, since => {since}, until => now())"),
            "pgdw.retention: period must be day, week or month (got fortnight)");
    refused(&format!("SELECT * FROM pgdw.trend('app.events', event => NULL, bucket => 'second', since => {since}, until => now())"),
            "pgdw.trend: bucket must be minute, hour, day, week or month (got second)");
    refused(&format!("SELECT * FROM pgdw.funnel('app.events', steps => ARRAY['signup'], within => interval '1 day', since => now(), until => {since})"),
            "pgdw.funnel: since");
    refused("SELECT * FROM pgdw.active_users('app.events', since => date '2026-12-01', until => date '2026-12-01')",
            "pgdw.active_users: since (2026-12-01) must be before until (2026-12-01)");
    // A dropped table: its registration goes with it, and the answers say it does not exist.
    query(&w, "DROP TABLE app.events");
    refused("SELECT * FROM pgdw.active_users('app.events', since => date '2026-11-01', until => date '2026-12-01')",
            "tbl: the table app.events does not exist");
}

/// A replicated event table (rows applied by logical replication's worker, which fires only
/// row triggers): registered in the warehouse, every answer equals the scan of the replica's
/// rows after inserts, updates and deletes on the source.
#[test]
fn a_replicated_event_table_is_kept_from_the_applied_changes() {
    let events = "SELECT count(*) || ':' || coalesce(sum(event_id * 7 + user_id)::text, '') || ':' || coalesce(max(occurred_at)::text, '') FROM events";
    let f = super::replicate::Fixture::replicating(
        "CREATE TABLE events (event_id bigint PRIMARY KEY, user_id bigint NOT NULL, occurred_at timestamptz NOT NULL, event_name text NOT NULL);
         SELECT setseed(0.5);
         INSERT INTO events SELECT g, 1 + floor(random() * 40)::int, now() - random() * interval '20 days',
                                   (ARRAY['signup', 'create_project', 'invite_member', 'page_view'])[1 + floor(random() * 4)::int]
           FROM generate_series(1, 1500) g;",
        "[replicate.app]\nsource = \"env:CP_URL\"\ntables = [\"public.events\"]\n",
        events,
    );
    query(&f.wh, "SELECT pgdw.events('public.events', user_column => 'user_id', time_column => 'occurred_at', name_column => 'event_name')");
    let _worker = Worker::start(&f.wh, &["--poll", "200ms"]);
    query(
        &f.source,
        "INSERT INTO events SELECT g, 1 + g % 50, now() - (g % 19) * interval '1 day', 'signup' FROM generate_series(5001, 5300) g;
         UPDATE events SET event_name = 'create_project', occurred_at = occurred_at + interval '2 hours' WHERE event_id % 11 = 0;
         DELETE FROM events WHERE user_id = 3;",
    );
    f.converges(events);
    caught_up(&f.wh);
    let (w, range) = (&f.wh, "since => now() - interval '25 days', until => now()");
    let cols =
        "user_column => 'user_id', time_column => 'occurred_at', name_column => 'event_name'";
    for (what, call) in [
        ("active_users", "active_users('events', since => current_date - 25, until => current_date + 1{x})".to_string()),
        ("funnel", format!("funnel('events', steps => ARRAY['signup', 'create_project', 'invite_member'], within => interval '3 days', {range}{{x}})")),
        ("retention", format!("retention('events', cohort_event => 'signup', return_event => NULL, period => 'day', periods => 10, {range}{{x}})")),
        ("trend", format!("trend('events', event => NULL, bucket => 'hour', {range}{{x}})")),
    ] {
        same(
            w,
            what,
            &format!("SELECT * FROM pgdw.{}", call.replace("{x}", "")),
            &format!("SELECT * FROM pgdw.{}", call.replace("{x}", &format!(", {cols}"))),
        );
    }
}

/// hll and tdigest sketches in an hourly rollup, merged by a daily rollup chained to it, kept
/// by a worker through new requests: the daily uniques within 10% of the exact count (hll
/// default 2^11 registers: 2.3% standard error, more than 4 of them) and the p95 within one
/// percentile rank (docs/analytics.md has the measured errors).
#[test]
fn sketches_in_chained_rollups_stay_within_their_bounds() {
    let w = warehouse();
    let load = "INSERT INTO app.requests (at, endpoint, user_id, latency_ms)
                SELECT date_trunc('day', now()) - interval '2 days' + random() * interval '3 days', 'GET /' || (g % 3),
                       floor(random() * 20000)::bigint, 5 + 1000 * random() * random()
                  FROM generate_series(1, 60000) g";
    query(
        &w,
        &format!(
            "CREATE SCHEMA app;
             CREATE TABLE app.requests (id bigserial PRIMARY KEY, at timestamptz NOT NULL, endpoint text NOT NULL,
                                        user_id bigint NOT NULL, latency_ms double precision NOT NULL);
             {load};
             SELECT pgdw.rollup('app.requests_hourly',
                 $$SELECT endpoint, date_trunc('hour', at) AS hour, count(*) AS requests,
                          hll_add_agg(hll_hash_bigint(user_id)) AS users, tdigest(latency_ms, 100) AS latency
                     FROM app.requests GROUP BY 1, 2$$, 'app.requests', ARRAY['endpoint', $$date_trunc('hour', at)$$]);
             SELECT pgdw.rollup('app.requests_daily',
                 $$SELECT endpoint, date_trunc('day', hour) AS day, sum(requests) AS requests,
                          hll_union_agg(users) AS users, tdigest(latency) AS latency
                     FROM app.requests_hourly GROUP BY 1, 2$$, 'app.requests_hourly', ARRAY['endpoint', $$date_trunc('day', hour)$$]);"
        ),
    );
    let _worker = Worker::start(&w, &["--poll", "200ms"]);
    query(&w, load);
    query(&w, "DELETE FROM app.requests WHERE id % 10 = 0");
    caught_up(&w);
    let exact = "SELECT endpoint, date_trunc('day', at) AS day, count(*) AS requests, count(DISTINCT user_id) AS users,
                        percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95
                   FROM app.requests GROUP BY 1, 2";
    let worst = query(
        &w,
        &format!(
            "WITH s AS (SELECT endpoint, day, requests, hll_cardinality(users) AS users,
                               (SELECT tdigest_percentile(latency, 0.95) FROM app.requests_daily x
                                 WHERE x.endpoint = d.endpoint AND x.day = d.day) AS p95
                          FROM app.requests_daily d)
             SELECT count(*), bool_and(s.requests = e.requests),
                    round(max(abs(s.users - e.users) / e.users)::numeric, 4) < 0.10,
                    max(abs((SELECT count(*) FILTER (WHERE r.latency_ms <= s.p95)::float8 / count(*) FROM app.requests r
                              WHERE r.endpoint = s.endpoint AND date_trunc('day', r.at) = s.day) - 0.95)) < 0.01
               FROM s JOIN ({exact}) e USING (endpoint, day)"
        ),
    );
    let groups = query(&w, &format!("SELECT count(*) FROM ({exact}) e"));
    assert_eq!(
        worst,
        format!("{groups}|t|t|t"),
        "groups, requests exact, uniques within 10%, p95 within a rank"
    );
}
