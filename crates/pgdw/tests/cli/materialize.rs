//! Materialized columns (`pgdw.materialize`), computed by real `pgdw worker` processes.

use pgdw_testkit::TempWarehouse;

use super::support::{converges, fails, ok, query, warehouse, Worker};

/// A worker that picks up changes quickly.
pub fn worker(w: &TempWarehouse) -> Worker {
    Worker::start(w, &["--concurrency", "4", "--poll", "200ms"])
}

/// Venues whose country and name key derive from their city and name; `computed` counts the
/// function's calls, so a recomputation shows.
const VENUES: &str = "
    CREATE SEQUENCE derive_calls;
    CREATE TABLE venue (id int PRIMARY KEY, name text NOT NULL, city_id int NOT NULL, notes text);
    INSERT INTO venue SELECT g, 'Venue ' || g, g % 10, 'n' FROM generate_series(1, 3000) g;
    ALTER TABLE venue ADD COLUMN country text, ADD COLUMN name_key text, ADD COLUMN computed bigint;
    CREATE FUNCTION venue_derive(v venue) RETURNS TABLE (country text, name_key text, computed bigint)
    LANGUAGE sql AS $$ SELECT 'C' || v.city_id || CASE WHEN v.city_id = 7 THEN (v.id / (v.id - 77))::text ELSE '' END,
                              lower(v.name), nextval('derive_calls') $$;";

const WRONG: &str = "SELECT count(*) FROM venue WHERE id <> 77
                        AND (name_key IS DISTINCT FROM lower(name) OR country NOT LIKE 'C' || city_id || '%')";

#[test]
fn derived_columns_follow_their_dependencies_only() {
    let w = warehouse();
    query(&w, VENUES);
    let said = query(
        &w,
        "SELECT pgdw.materialize('venue', 'venue_derive', depends_on => '{name,city_id}')",
    );
    assert_eq!(
        said,
        "venue_derive(venue) computes country, name_key, computed of venue; 3000 rows to compute"
    );
    assert_eq!(
        query(&w, "SELECT pgdw.materialize_pending('venue')"),
        "3000"
    );
    let _worker = worker(&w);
    converges(&w, "SELECT pgdw.materialize_pending('venue')", "0");
    // Every row computed but 77, whose function raised: set aside with its error, the rest
    // not held up.
    assert_eq!(query(&w, WRONG), "0");
    assert_eq!(
        query(&w, "SELECT count(*) FROM venue WHERE materialized_at IS NOT NULL AND materialized_at > '-infinity'"),
        "2999"
    );
    assert_eq!(
        query(
            &w,
            "SELECT table_name || ' ' || key || ': ' || error FROM pgdw.materialize_failed"
        ),
        "venue {\"id\": 77}: division by zero"
    );
    // The row set aside, changed so that its function no longer raises: computed, its failure
    // gone; changed back: set aside again.
    query(&w, "UPDATE venue SET city_id = 3 WHERE id = 77");
    converges(
        &w,
        "SELECT country || ' ' || (SELECT count(*) FROM pgdw.materialize_failed) FROM venue WHERE id = 77",
        "C3 0",
    );
    query(&w, "UPDATE venue SET city_id = 7 WHERE id = 77");
    converges(
        &w,
        "SELECT count(*) || ' ' || min(materialized_at) FROM venue WHERE id = 77 OR materialized_at IS NULL",
        "1 -infinity",
    );

    // A change of a column the values do not depend on: nothing recomputed. A change of one
    // they do: recomputed. Inserted rows: computed.
    let before = query(&w, "SELECT computed FROM venue WHERE id = 1");
    query(&w, "UPDATE venue SET notes = 'other' WHERE id = 1");
    assert_eq!(
        query(
            &w,
            "SELECT materialized_at IS NOT NULL FROM venue WHERE id = 1"
        ),
        "t"
    );
    query(
        &w,
        "UPDATE venue SET city_id = 3 WHERE id = 2; INSERT INTO venue (id, name, city_id) VALUES (5000, 'New Place', 4)",
    );
    converges(
        &w,
        "SELECT string_agg(coalesce(country, '-') || '/' || coalesce(name_key, '-'), ' ' ORDER BY id) FROM venue WHERE id IN (2, 5000)",
        "C3/venue 2 C4/new place",
    );
    assert_eq!(query(&w, "SELECT computed FROM venue WHERE id = 1"), before);

    // The function fixed and registered again: the row set aside is computed.
    query(
        &w,
        "CREATE OR REPLACE FUNCTION venue_derive(v venue) RETURNS TABLE (country text, name_key text, computed bigint)
         LANGUAGE sql AS $$ SELECT 'C' || v.city_id, lower(v.name), nextval('derive_calls') $$",
    );
    let again = query(
        &w,
        "SELECT pgdw.materialize('venue', 'venue_derive', depends_on => '{name,city_id}')",
    );
    assert!(
        again.contains("1 rows that failed before are retried"),
        "{again}"
    );
    converges(
        &w,
        "SELECT country || ' ' || (SELECT count(*) FROM pgdw.materialize_failed) FROM venue WHERE id = 77",
        "C7 0",
    );

    // A second function for a new column: only that column is computed for existing rows
    // (the first function is not called again, materialized_at stays).
    let calls = query(&w, "SELECT sum(computed) FROM venue");
    let stamps = query(
        &w,
        "SELECT md5(string_agg(materialized_at::text, ',' ORDER BY id)) FROM venue",
    );
    query(
        &w,
        "ALTER TABLE venue ADD COLUMN name_len int;
         CREATE FUNCTION venue_len(v venue) RETURNS TABLE (name_len int) LANGUAGE sql AS $$ SELECT length(v.name) $$;
         SELECT pgdw.materialize('venue', 'venue_len', depends_on => '{name}')",
    );
    converges(
        &w,
        "SELECT count(*) FROM venue WHERE name_len IS DISTINCT FROM length(name)",
        "0",
    );
    converges(&w, "SELECT pgdw.materialize_pending('venue')", "0");
    assert_eq!(query(&w, "SELECT sum(computed) FROM venue"), calls);
    assert_eq!(
        query(
            &w,
            "SELECT md5(string_agg(materialized_at::text, ',' ORDER BY id)) FROM venue"
        ),
        stamps
    );
    // Registered twice: the same triggers, one registration each.
    query(
        &w,
        "SELECT pgdw.materialize('venue', 'venue_len', depends_on => '{name}')",
    );
    assert_eq!(
        query(&w, "SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'venue'::regclass"),
        "pgdw_materialize_insert,pgdw_materialize_record_applied,pgdw_materialize_record_insert,\
         pgdw_materialize_update"
    );
    assert_eq!(query(&w, "SELECT count(*) FROM pgdw.materializations"), "2");
}

#[test]
fn bad_registrations_are_refused_with_nothing_installed() {
    let w = warehouse();
    query(
        &w,
        "CREATE TABLE nokey (id int, name text, derived text);
         CREATE FUNCTION nokey_derive(r nokey) RETURNS TABLE (derived text) LANGUAGE sql AS $$ SELECT r.name $$;
         CREATE TABLE venue (id int PRIMARY KEY, name text, derived text);
         CREATE FUNCTION venue_wrong(v venue) RETURNS TABLE (missing_col text, derived int) LANGUAGE sql AS $$ SELECT 'x', 1 $$;
         CREATE FUNCTION venue_ok(v venue) RETURNS TABLE (derived text) LANGUAGE sql AS $$ SELECT v.name $$;
         CREATE FUNCTION venue_scalar(v venue) RETURNS text LANGUAGE sql AS $$ SELECT v.name $$;",
    );
    for (sql, expected) in [
        (
            "SELECT pgdw.materialize('nokey', 'nokey_derive')",
            "nokey has no primary key",
        ),
        (
            "SELECT pgdw.materialize('venue', 'venue_nope')",
            "there is no function venue_nope(venue)",
        ),
        (
            "SELECT pgdw.materialize('venue', 'venue_wrong')",
            "returns columns venue has not (with these types): missing_col text, derived integer",
        ),
        (
            "SELECT pgdw.materialize('venue', 'venue_scalar')",
            "must return TABLE (column type, ...)",
        ),
        (
            "SELECT pgdw.materialize('venue', 'venue_ok', depends_on => '{name,nope}')",
            "venue has no column nope (depends_on)",
        ),
        (
            "SELECT pgdw.materialize('venue', 'venue_ok', depends_on => '{derived}')",
            "cannot compute derived",
        ),
        (
            "SELECT pgdw.materialize('no_table', 'venue_ok')",
            "relation \"no_table\" does not exist",
        ),
    ] {
        let (_, err) = fails(&w, &["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        assert!(err.contains(expected), "{sql}: {err}");
    }
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM pg_attribute WHERE attname = 'materialized_at'"
        ),
        "0"
    );
    assert_eq!(query(&w, "SELECT count(*) FROM pgdw.materializations"), "0");
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgdw%'"
        ),
        "0"
    );
}

#[test]
fn partitioned_tables_and_partitions_created_later() {
    let w = warehouse();
    query(
        &w,
        "CREATE TABLE events (id bigint, day date, kind text, kind_upper text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
         CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2026-01-02');
         CREATE TABLE events_2 PARTITION OF events FOR VALUES FROM ('2026-01-02') TO ('2026-01-03');
         INSERT INTO events SELECT g, date '2026-01-01' + g % 2, 'kind ' || g FROM generate_series(1, 1000) g;
         CREATE FUNCTION events_derive(e events) RETURNS TABLE (kind_upper text) LANGUAGE sql AS $$ SELECT upper(e.kind) $$;
         SELECT pgdw.materialize('events', 'events_derive', depends_on => '{kind}')",
    );
    let _worker = worker(&w);
    converges(
        &w,
        "SELECT count(*) FILTER (WHERE kind_upper = upper(kind)) FROM events",
        "1000",
    );
    query(
        &w,
        "CREATE TABLE events_3 PARTITION OF events FOR VALUES FROM ('2026-01-03') TO ('2026-01-04');
         INSERT INTO events_3 (id, day, kind) VALUES (5000, '2026-01-03', 'late partition');
         UPDATE events SET kind = 'changed' WHERE id = 1",
    );
    converges(
        &w,
        "SELECT string_agg(kind_upper, ',' ORDER BY id) FROM events WHERE id IN (1, 5000)",
        "CHANGED,LATE PARTITION",
    );
}

#[test]
fn tables_filled_by_pgdw_sync() {
    let w = warehouse();
    query(
        &w,
        "CREATE TABLE src_orgs (id int PRIMARY KEY, name text, plan text);
         INSERT INTO src_orgs SELECT g, 'Org ' || g, 'free' FROM generate_series(1, 200) g;
         CREATE TABLE orgs (id int PRIMARY KEY, name text, plan text, tier int);
         CREATE FUNCTION orgs_tier(o orgs) RETURNS TABLE (tier int) LANGUAGE sql
           AS $$ SELECT CASE o.plan WHEN 'enterprise' THEN 3 WHEN 'pro' THEN 2 ELSE 1 END $$;
         SELECT pgdw.materialize('orgs', 'orgs_tier', depends_on => '{plan}');
         SELECT * FROM pgdw.sync('orgs', 'src_orgs', '{id}')",
    );
    let _worker = worker(&w);
    converges(&w, "SELECT sum(tier) FROM orgs", "200");
    // The sync leaves the derived column alone, and a changed plan is recomputed.
    query(
        &w,
        "UPDATE src_orgs SET plan = 'pro' WHERE id <= 10; SELECT * FROM pgdw.sync('orgs', 'src_orgs', '{id}')",
    );
    converges(&w, "SELECT sum(tier) FROM orgs", "210");
}

#[test]
fn rows_changed_while_workers_compute_them_end_computed_from_their_last_version() {
    let w = warehouse();
    // An inlinable function (the workers' statement joins it like a view would), on a table
    // with a dropped column (the row passed to it is rebuilt from the columns left).
    query(
        &w,
        "CREATE TABLE item (id int PRIMARY KEY, junk int, name text NOT NULL, seats int NOT NULL DEFAULT 0);
         ALTER TABLE item DROP COLUMN junk;
         INSERT INTO item (id, name) SELECT g, 'item ' || g FROM generate_series(1, 20000) g;
         ALTER TABLE item ADD COLUMN name_key text;
         CREATE FUNCTION item_key(i item) RETURNS TABLE (name_key text) LANGUAGE sql STABLE
           AS $$ SELECT upper(i.name) || ':' || length(i.name) $$;
         SELECT pgdw.materialize('item', 'item_key', depends_on => '{name}')",
    );
    let _worker = worker(&w);
    // 300 committed renames of 2,000 rows each, overlapping the workers' batches (a batch
    // reads rows a rename then changes, a rename waits for a batch's locks), and changes of a
    // column the key does not depend on among them.
    query(
        &w,
        "DO $$ BEGIN
           FOR i IN 1..300 LOOP
             UPDATE item SET name = name || '.' WHERE id % 10 = i % 10;
             UPDATE item SET seats = seats + 1 WHERE id % 7 = i % 7;
             COMMIT;
           END LOOP;
         END $$",
    );
    converges(&w, "SELECT pgdw.materialize_pending('item')", "0");
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM item WHERE name_key IS DISTINCT FROM upper(name) || ':' || length(name)"
        ),
        "0",
        "every row's key from its last name"
    );
    assert_eq!(
        query(&w, "SELECT count(*) FROM pgdw.materialize_failed"),
        "0"
    );
}

#[test]
fn a_dropped_table_is_forgotten_and_the_others_go_on() {
    let w = warehouse();
    query(
        &w,
        "CREATE TABLE a (id int PRIMARY KEY, v text, v_upper text);
         CREATE TABLE b (id int PRIMARY KEY, v text, v_upper text);
         INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 100) g;
         INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 100) g;
         CREATE FUNCTION a_upper(r a) RETURNS TABLE (v_upper text) LANGUAGE sql AS $$ SELECT upper(r.v) $$;
         CREATE FUNCTION b_upper(r b) RETURNS TABLE (v_upper text) LANGUAGE sql AS $$ SELECT upper(r.v) $$;
         SELECT pgdw.materialize('a', 'a_upper', depends_on => '{v}');
         SELECT pgdw.materialize('b', 'b_upper', depends_on => '{v}')",
    );
    let _worker = worker(&w);
    converges(&w, "SELECT count(*) FROM b WHERE v_upper = upper(v)", "100");
    query(
        &w,
        "DROP TABLE a CASCADE; UPDATE b SET v = 'changed' WHERE id = 1",
    );
    converges(&w, "SELECT v_upper FROM b WHERE id = 1", "CHANGED");
    assert_eq!(
        query(
            &w,
            "SELECT string_agg(tbl::text, ',') FROM pgdw.materializations"
        ),
        "b"
    );
}

/// `n_tup_upd` and `n_tup_hot_upd` of a table once they reach `updates` (statistics reach
/// pg_stat_user_tables when a backend commits or goes idle, up to seconds later).
fn updates(w: &TempWarehouse, table: &str, updates: i64) -> (i64, i64) {
    converges(
        w,
        &format!("SELECT n_tup_upd >= {updates} FROM pg_stat_user_tables WHERE relid = '{table}'::regclass"),
        "t",
    );
    let got = query(
        w,
        &format!("SELECT n_tup_upd || ' ' || n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = '{table}'::regclass"),
    );
    let (a, b) = got.split_once(' ').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

/// The pending set lives outside the rows: no index names materialized_at or a derived column,
/// so a worker's write-back of a 1% change is a HOT update (on a table with the fillfactor the
/// docs recommend, vacuumed after its first computation).
#[test]
fn write_backs_are_hot_updates() {
    let w = warehouse();
    query(
        &w,
        "CREATE TABLE place (id bigint PRIMARY KEY, name text NOT NULL, city_id int NOT NULL) WITH (fillfactor = 90);
         CREATE INDEX ON place (city_id);
         INSERT INTO place SELECT g, 'Place ' || g, g % 100 FROM generate_series(1, 20000) g;
         ALTER TABLE place ADD COLUMN name_key text;
         CREATE FUNCTION place_key(p place) RETURNS TABLE (name_key text) LANGUAGE sql STABLE
           AS $$ SELECT lower(p.name) $$;
         SELECT pgdw.materialize('place', 'place_key', depends_on => '{name}')",
    );
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
              WHERE i.indrelid = 'place'::regclass AND a.attname IN ('materialized_at', 'name_key')
                 OR i.indrelid = 'place'::regclass AND pg_get_expr(i.indpred, i.indrelid) IS NOT NULL"
        ),
        "0",
        "no index names materialized_at or a derived column"
    );
    let first = worker(&w);
    converges(&w, "SELECT pgdw.materialize_pending('place')", "0");
    // Stopped, not killed: a killed worker's running task keeps its table's slot until its
    // lease expires, and the next worker would wait for that.
    first.stop();
    query(&w, "VACUUM place");
    let (before, _) = updates(&w, "place", 20_000);
    // 1% renamed (200 rows), then computed by a worker.
    query(
        &w,
        "UPDATE place SET name = name || ' bis' WHERE id % 100 = 7",
    );
    let (renamed, hot_renamed) = updates(&w, "place", before + 200);
    assert_eq!(query(&w, "SELECT pgdw.materialize_pending('place')"), "200");
    let _worker = worker(&w);
    converges(&w, "SELECT pgdw.materialize_pending('place')", "0");
    let (after, hot_after) = updates(&w, "place", renamed + 200);
    assert_eq!(after - renamed, 200, "one write-back a row");
    assert!(
        hot_after - hot_renamed >= 180,
        "{} of 200 write-backs were HOT",
        hot_after - hot_renamed
    );
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM place WHERE name_key IS DISTINCT FROM lower(name)"
        ),
        "0"
    );
    // A user's index on a derived column makes its write-backs non-HOT again: doctor says so.
    let finding = "SELECT coalesce(string_agg(object, ','), '') FROM pgdw.doctor() WHERE check_name = 'materialized_column_index'";
    assert_eq!(query(&w, finding), "");
    query(&w, "CREATE INDEX place_key_idx ON place (name_key)");
    assert_eq!(query(&w, finding), "public.place_key_idx");
}

/// A table registered under the contract before the pending set (a partial index on
/// `materialized_at IS NULL`, the previous release's SQL) is moved over at `pgdw up`: the
/// index dropped, its waiting rows still waiting, its computed rows untouched.
#[test]
fn a_table_registered_before_the_pending_set_is_upgraded_at_up() {
    let w = warehouse();
    w.psql_db(
        "warehouse",
        include_str!("fixtures/materialize_before_pending_sets.sql"),
    )
    .expect("the previous release's materialize.sql installs");
    // The previous release recorded no runtime version (version 0 to `pgdw up`).
    query(&w, "DELETE FROM pgdw.runtime_version");
    query(&w, VENUES);
    query(
        &w,
        "SELECT pgdw.materialize('venue', 'venue_derive', depends_on => '{name,city_id}');
         DELETE FROM pgdw.task_ready; DELETE FROM pgdw.materialize_slots",
    );
    // Half computed by the previous release's batches; then some renamed (pending again).
    for _ in 0..3 {
        query(&w, "SELECT pgdw.materialize_batch('venue', 500)");
    }
    query(
        &w,
        "UPDATE venue SET name = name || '!' WHERE id IN (2, 3, 5)",
    );
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'venue_pgdw_pending'"
        ),
        "1"
    );
    let waiting = query(
        &w,
        "SELECT count(*) FROM venue WHERE materialized_at IS NULL",
    );
    assert_ne!(waiting, "0");
    query(
        &w,
        "CREATE TABLE computed_before AS SELECT id, materialized_at FROM venue WHERE materialized_at IS NOT NULL",
    );
    let touched = "SELECT count(*) FROM computed_before c JOIN venue v USING (id) WHERE v.materialized_at IS DISTINCT FROM c.materialized_at";

    ok(&w, &["up"]);
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'venue_pgdw_pending'"
        ),
        "0"
    );
    assert_eq!(
        query(&w, "SELECT pgdw.materialize_pending('venue')"),
        waiting
    );
    assert_eq!(query(&w, touched), "0", "nothing computed was touched");
    let _worker = worker(&w);
    converges(&w, "SELECT pgdw.materialize_pending('venue')", "0");
    assert_eq!(query(&w, WRONG), "0");
    assert_eq!(
        query(&w, touched),
        "0",
        "the rows computed before were not computed again"
    );
    assert_ne!(query(&w, "SELECT count(*) FROM computed_before"), "0");
}

/// The pending set holds no dead tuples whatever the changes (writers only insert into it, a
/// drained part is TRUNCATEd), and is empty once the workers caught up: a million changes.
#[test]
fn the_pending_set_stays_free_of_dead_tuples_through_a_million_changes() {
    let w = warehouse();
    query(
        &w,
        "CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL);
         INSERT INTO counter SELECT g, 0 FROM generate_series(1, 100000) g;
         ALTER TABLE counter ADD COLUMN twice int;
         CREATE FUNCTION counter_twice(c counter) RETURNS TABLE (twice int) LANGUAGE sql STABLE AS $$ SELECT c.n * 2 $$;
         SELECT pgdw.materialize('counter', 'counter_twice', depends_on => '{n}')",
    );
    let _worker = worker(&w);
    for _ in 0..10 {
        query(&w, "UPDATE counter SET n = n + 1");
    }
    converges(&w, "SELECT pgdw.materialize_pending('counter')", "0");
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM counter WHERE twice IS DISTINCT FROM n * 2"
        ),
        "0"
    );
    let set = query(
        &w,
        "SELECT pgdw.materialize_set(id) FROM pgdw.materialize_sets WHERE tbl = 'counter'::regclass",
    );
    converges(&w, &format!("SELECT count(*) FROM {set}"), "0");
    assert_eq!(
        query(
            &w,
            &format!("SELECT coalesce(sum(n_dead_tup + n_tup_upd + n_tup_del), 0) || ' ' || coalesce(sum(pg_relation_size(relid)), 0)
                        FROM pg_stat_user_tables WHERE relid IN (SELECT relid FROM pg_partition_tree('{set}'))")
        ),
        "0 0",
        "no dead tuple, no update or delete, and nothing kept"
    );
}
