//! Rollups held to a peer's test suite: the cases of pg_ivm's regression and isolation tests
//! (`sql/pg_ivm.sql`, `sql/create_immv.sql`, its isolation specs) that gave wrong answers
//! silently, each now exact or refused at registration with a clear error. The data is ours.

use std::thread;

use pgdw_testkit::TempWarehouse;

use super::rollup::register;
use super::support::{converges, ok, query, warehouse, Worker, PGDW};

/// A warehouse with `shop.orders` (plain, no partitions: pg_ivm's cases are single tables).
fn shop() -> TempWarehouse {
    let w = warehouse();
    query(
        &w,
        "CREATE SCHEMA shop;
         CREATE TABLE shop.orders (id bigint, customer_id int, product_id int NOT NULL, amount numeric NOT NULL);
         INSERT INTO shop.orders SELECT g, g % 10, g % 7, g FROM generate_series(1, 200) g",
    );
    w
}

fn refused(w: &TempWarehouse, name: &str, q: &str, source: &str, keys: &str) -> String {
    w.psql_db(
        "warehouse",
        &format!("SELECT pgdw.rollup('{name}', $q${q}$q$, source => '{source}', keys => {keys})"),
    )
    .expect_err("refused")
}

/// What psql printed on stderr (warnings) for statements that succeed.
fn warnings(w: &TempWarehouse, sql: &str) -> String {
    let out = w.pgdw(
        PGDW.as_ref(),
        &["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
    );
    assert!(out.status.success(), "{}", pgdw_testkit::transcript(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The rollup equals its query run whole, both ways and counting duplicates.
fn equals(w: &TempWarehouse, rollup: &str, q: &str) {
    assert_eq!(
        query(
            w,
            &format!(
                "SELECT (SELECT count(*) FROM (TABLE {rollup} EXCEPT ALL {q}) a) + (SELECT count(*) FROM ({q} EXCEPT ALL TABLE {rollup}) b)"
            )
        ),
        "0",
        "{rollup} differs from its query"
    );
    assert_eq!(
        query(w, &format!("SELECT pgdw.rollup_verify('{rollup}')")),
        "0"
    );
}

/// Statements run as a psql script: one session, each statement its own transaction (a
/// `CALL` that commits cannot share one).
fn script(w: &TempWarehouse, sql: &str) -> String {
    w.psql_db("warehouse", sql)
        .unwrap_or_else(|e| panic!("SQL failed:\n{sql}\n--- error:\n{e}"))
}

fn nothing_installed(w: &TempWarehouse) {
    assert_eq!(
        query(
            w,
            "SELECT (SELECT count(*) FROM pgdw.rollups) || ' ' || (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgdw_rollup%')
                    || ' ' || (to_regclass('r') IS NULL)"
        ),
        "0 0 true"
    );
}

/// Case 1: The stored query and keys are resolved in the schemas they were registered with, not the
/// search_path of whoever runs, verifies or writes.
#[test]
fn a_rollup_reads_the_tables_it_was_registered_with_whatever_the_search_path() {
    let w = shop();
    query(
        &w,
        "CREATE SCHEMA other; CREATE TABLE other.orders (LIKE shop.orders);
         INSERT INTO other.orders SELECT g, g % 10, 0, 1000000 FROM generate_series(1, 50) g;
         CREATE SCHEMA fns;
         CREATE FUNCTION fns.bucket(c int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT c / 3'",
    );
    let q =
        "SELECT fns.bucket(customer_id) AS bucket, sum(amount) AS revenue FROM orders GROUP BY 1";
    query(
        &w,
        "SET search_path = shop, fns, public;
         SELECT pgdw.rollup('public.by_bucket', $q$SELECT bucket(customer_id) AS bucket, sum(amount) AS revenue FROM orders GROUP BY 1$q$,
                            source => 'shop.orders', keys => ARRAY['bucket(customer_id)'])",
    );
    // A writer whose path has neither schema (the key's function is not on it), and a run and
    // a verify whose path finds another `orders` first.
    query(
        &w,
        "SET search_path = public; INSERT INTO shop.orders VALUES (1000, 4, 1, 7)",
    );
    script(
        &w,
        "SET search_path = other, fns, public; CALL pgdw.rollup_run('public.by_bucket')",
    );
    let shop_q = q.replace("FROM orders", "FROM shop.orders");
    equals(&w, "by_bucket", &shop_q);
    assert_eq!(
        script(
            &w,
            "SET search_path = other, fns, public; SELECT pgdw.rollup_verify('public.by_bucket')"
        ),
        "0",
        "verify compares with the registered tables, not other.orders"
    );
    // And a worker (its own default path) keeps it.
    let _worker = Worker::start(&w, &["--poll", "200ms"]);
    query(
        &w,
        "UPDATE shop.orders SET amount = amount + 1 WHERE customer_id = 9",
    );
    converges(
        &w,
        &format!(
            "SELECT (SELECT dirty_groups FROM pgdw.rollup_lag('by_bucket')) = 0
                AND NOT EXISTS (TABLE by_bucket EXCEPT ALL {shop_q}) AND NOT EXISTS ({shop_q} EXCEPT ALL TABLE by_bucket)"
        ),
        "t",
    );
}

/// Case 2: LIMIT/OFFSET and window functions make a group's row depend on other groups.
#[test]
fn limit_offset_and_window_functions_are_refused() {
    let w = shop();
    let cases = [
        (
            "SELECT customer_id, count(*) AS n FROM shop.orders GROUP BY 1 ORDER BY 2 DESC LIMIT 3",
            "uses LIMIT or OFFSET",
        ),
        (
            "SELECT customer_id, count(*) AS n FROM shop.orders GROUP BY 1 ORDER BY 1 OFFSET 2",
            "uses LIMIT or OFFSET",
        ),
        (
            "SELECT customer_id, rank() OVER (ORDER BY count(*)) AS r FROM shop.orders GROUP BY 1",
            "uses a window function",
        ),
        (
            "SELECT customer_id, sum(count(*)) OVER () AS share FROM shop.orders GROUP BY 1",
            "uses a window function",
        ),
    ];
    for (q, want) in cases {
        let err = refused(&w, "r", q, "shop.orders", "ARRAY['customer_id']");
        assert!(err.contains(want), "want {want:?} in:\n{err}");
        assert!(err.contains("depends on other groups"), "{err}");
    }
    nothing_installed(&w);
}

/// Case 3: A source with inheritance children: their changes are captured too, children created,
/// attached (INHERIT) and detached (NO INHERIT) later included.
#[test]
fn changes_to_inheritance_children_are_captured() {
    let w = shop();
    query(
        &w,
        "CREATE TABLE shop.orders_2025 () INHERITS (shop.orders);
         INSERT INTO shop.orders_2025 SELECT g, g % 10, g % 7, g FROM generate_series(201, 300) g",
    );
    let q = "SELECT customer_id, count(*) AS orders, sum(amount) AS revenue FROM shop.orders GROUP BY 1";
    register(&w, "by_customer", q, "shop.orders", "ARRAY['customer_id']");
    equals(&w, "by_customer", q);
    script(
        &w,
        "INSERT INTO shop.orders_2025 VALUES (301, 42, 1, 5);
         UPDATE shop.orders_2025 SET amount = amount * 2 WHERE customer_id = 3;
         DELETE FROM shop.orders_2025 WHERE customer_id = 4;
         UPDATE shop.orders SET customer_id = 43 WHERE id = 250;
         CREATE TABLE shop.orders_2024 (note text) INHERITS (shop.orders);
         INSERT INTO shop.orders_2024 VALUES (400, 44, 1, 9, 'x');
         CREATE TABLE shop.orders_old (id bigint, customer_id int, product_id int NOT NULL, amount numeric NOT NULL);
         INSERT INTO shop.orders_old VALUES (500, 45, 1, 11), (501, 1, 1, 13);
         ALTER TABLE shop.orders_old INHERIT shop.orders;
         CALL pgdw.rollup_run('by_customer')",
    );
    equals(&w, "by_customer", q);
    assert_eq!(
        query(
            &w,
            "SELECT string_agg(customer_id || '=' || orders, ',' ORDER BY customer_id) FROM by_customer WHERE customer_id > 40"
        ),
        "42=1,43=1,44=1,45=1"
    );
    // Leaving the tree takes the rows out; a child dropped makes every group recomputed.
    script(
        &w,
        "ALTER TABLE shop.orders_old NO INHERIT shop.orders;
         DROP TABLE shop.orders_2024;
         CALL pgdw.rollup_run('by_customer')",
    );
    equals(&w, "by_customer", q);
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'shop.orders_old'::regclass AND tgname LIKE 'pgdw_rollup%'"
        ),
        "0"
    );
}

/// Case 4: Keys must be unique in the query's result: refused at registration, a recompute that
/// meets a repeated one fails (the rollup left as it was), and verify counts duplicates.
#[test]
fn keys_that_repeat_are_refused_and_never_dropped_silently() {
    let w = shop();
    // No GROUP BY, keys repeating: customer_id is in many rows.
    let err = refused(
        &w,
        "r",
        "SELECT customer_id, amount FROM shop.orders",
        "shop.orders",
        "ARRAY['customer_id']",
    );
    assert!(
        err.contains("gives the group (") && err.contains("more than once"),
        "{err}"
    );
    // The same with no value column (DO NOTHING dropped the second row unseen).
    let err = refused(
        &w,
        "r",
        "SELECT customer_id FROM shop.orders",
        "shop.orders",
        "ARRAY['customer_id']",
    );
    assert!(err.contains("more than once"), "{err}");
    nothing_installed(&w);

    // Unique today (id), repeated by a later row: the run fails and says why.
    let q = "SELECT id, amount FROM shop.orders WHERE product_id = 1";
    register(&w, "big_orders", q, "shop.orders", "ARRAY['id']");
    equals(&w, "big_orders", q);
    query(&w, "INSERT INTO shop.orders VALUES (8, 1, 1, 99)");
    let err = w
        .psql_db("warehouse", "CALL pgdw.rollup_run('big_orders')")
        .expect_err("a repeated key fails the run");
    assert!(err.contains("gives the group (8) more than once"), "{err}");
    assert_eq!(
        query(&w, "SELECT pgdw.rollup_verify('big_orders')"),
        "1",
        "verify sees the group the query gives twice"
    );
    assert_eq!(
        query(
            &w,
            "SELECT (SELECT dirty_groups FROM pgdw.rollup_lag('big_orders'))"
        ),
        "1",
        "the change is kept for the next run"
    );
}

/// Case 5: Keys that are not the query's GROUP BY are refused, even when their types match and
/// their values overlap (the old check over the data let them through).
#[test]
fn keys_that_are_not_the_group_by_are_refused() {
    let w = shop();
    let err = refused(
        &w,
        "r",
        "SELECT customer_id, count(*) AS n FROM shop.orders GROUP BY 1",
        "shop.orders",
        "ARRAY['product_id']",
    );
    assert!(
        err.contains("groups by (orders.customer_id), but its keys over a row of shop.orders are (product_id)"),
        "{err}"
    );
    let err = refused(
        &w,
        "r",
        "SELECT o.customer_id AS c, o.product_id AS p, count(*) AS n FROM shop.orders o GROUP BY 1, 2",
        "shop.orders",
        "ARRAY['customer_id', 'customer_id']",
    );
    assert!(err.contains("but its keys over a row of"), "{err}");
    nothing_installed(&w);
    // The same expressions written otherwise are accepted: an alias, positions, casts.
    let q = "SELECT o.customer_id, (o.amount / 10)::int AS band, count(*) AS n FROM shop.orders o GROUP BY o.customer_id, 2";
    register(
        &w,
        "bands",
        q,
        "shop.orders",
        "ARRAY['customer_id', '(amount / 10)::int']",
    );
    equals(&w, "bands", q);
}

fn isolation_levels() -> [&'static str; 3] {
    ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]
}

const BY_CUSTOMER: &str =
    "SELECT customer_id, count(*) AS orders, sum(amount) AS revenue FROM shop.orders GROUP BY 1";

fn register_by_customer() -> String {
    format!(
        "SELECT pgdw.rollup('by_customer', $q${BY_CUSTOMER}$q$, source => 'shop.orders', keys => ARRAY['customer_id'])"
    )
}

/// Case 6: Isolation: a registration only in READ COMMITTED (a REPEATABLE READ snapshot would miss
/// rows committed while it waits for writers); writers at every level, in each commit order
/// against the registration and against a run, all captured.
#[test]
fn registrations_and_writers_race_safely_at_every_isolation_level() {
    let w = shop();
    for level in ["REPEATABLE READ", "SERIALIZABLE"] {
        let err = w
            .psql_db(
                "warehouse",
                &format!(
                    "BEGIN ISOLATION LEVEL {level};
                     SELECT pgdw.rollup('by_customer', $q${BY_CUSTOMER}$q$, source => 'shop.orders', keys => ARRAY['customer_id'])"
                ),
            )
            .expect_err("refused");
        assert!(
            err.contains("pgdw.rollup: run it in a READ COMMITTED transaction"),
            "{err}"
        );
    }
    nothing_installed(&w);

    let mut id = 10_000;
    for level in isolation_levels() {
        // A writer's transaction open across the registration, committing first: the
        // registration waits for it and its row is in the fill.
        let mut a = w.client_db("warehouse");
        id += 1;
        a.batch_execute(&format!(
            "BEGIN ISOLATION LEVEL {level}; INSERT INTO shop.orders VALUES ({id}, 1, 1, 1000)"
        ))
        .unwrap();
        let registering = {
            let mut b = w.client_db("warehouse");
            thread::spawn(move || b.batch_execute(&register_by_customer()))
        };
        converges(
            &w,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pgdw.rollup(%'",
            "1",
        );
        a.batch_execute("COMMIT").unwrap();
        registering.join().unwrap().unwrap();
        equals(&w, "by_customer", BY_CUSTOMER);

        // A writer whose snapshot predates a new registration (taken before it began),
        // writing after it committed: still captured.
        query(
            &w,
            "DROP TABLE by_customer; SELECT pgdw.rollup_forget('public.by_customer')",
        );
        id += 1;
        a.batch_execute(&format!(
            "BEGIN ISOLATION LEVEL {level}; SELECT count(*) FROM shop.orders"
        ))
        .unwrap();
        query(&w, &register_by_customer());
        a.batch_execute(&format!(
            "INSERT INTO shop.orders VALUES ({id}, 2, 1, 2000); COMMIT"
        ))
        .unwrap();
        query(&w, "CALL pgdw.rollup_run('by_customer')");
        equals(&w, "by_customer", BY_CUSTOMER);

        // A writer inside a run: it wrote before the run switched the changes partition and
        // commits while the run waits for it.
        id += 1;
        a.batch_execute(&format!(
            "BEGIN ISOLATION LEVEL {level}; INSERT INTO shop.orders VALUES ({id}, 3, 1, 3000)"
        ))
        .unwrap();
        query(&w, "INSERT INTO shop.orders VALUES (0, 3, 1, 1)");
        let running = {
            let mut b = w.client_db("warehouse");
            thread::spawn(move || b.batch_execute("CALL pgdw.rollup_run('by_customer')"))
        };
        converges(
            &w,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pgdw.rollup_run(%'",
            "1",
        );
        a.batch_execute("COMMIT").unwrap();
        running.join().unwrap().unwrap();
        query(&w, "CALL pgdw.rollup_run('by_customer')");
        equals(&w, "by_customer", BY_CUSTOMER);

        // A writer whose snapshot predates a run's switch of the changes partition, writing
        // after the run committed (into the partition the run emptied).
        id += 1;
        a.batch_execute(&format!(
            "BEGIN ISOLATION LEVEL {level}; SELECT count(*) FROM shop.orders"
        ))
        .unwrap();
        script(
            &w,
            "INSERT INTO shop.orders VALUES (0, 3, 1, 1); CALL pgdw.rollup_run('by_customer')",
        );
        a.batch_execute(&format!(
            "UPDATE shop.orders SET customer_id = 5 WHERE customer_id = 4 AND id < 100;
             INSERT INTO shop.orders VALUES ({id}, 3, 1, 3000); COMMIT"
        ))
        .unwrap();
        query(&w, "CALL pgdw.rollup_run('by_customer')");
        equals(&w, "by_customer", BY_CUSTOMER);
        query(
            &w,
            "DROP TABLE by_customer; SELECT pgdw.rollup_forget('public.by_customer')",
        );
    }
    // Runs refuse a snapshot older than their lock too.
    query(&w, &register_by_customer());
    let err = w
        .psql_db(
            "warehouse",
            "SET default_transaction_isolation = 'repeatable read'; CALL pgdw.rollup_run('by_customer')",
        )
        .expect_err("refused");
    assert!(
        err.contains(
            "pgdw.rollup_run: run it in a READ COMMITTED transaction (this one is REPEATABLE READ)"
        ),
        "{err}"
    );
}

/// Case 7: A query that reads other tables is named at registration (a warning, recorded, shown by
/// status and doctor): their changes are not captured.
#[test]
fn a_query_reading_other_tables_is_named_at_registration() {
    let w = shop();
    query(
        &w,
        "CREATE TABLE shop.customers (id int PRIMARY KEY, region text);
         INSERT INTO shop.customers SELECT g, 'r' || (g % 3) FROM generate_series(0, 9) g",
    );
    let said = warnings(
        &w,
        "SELECT pgdw.rollup('by_customer_region',
           $q$SELECT o.customer_id, count(*) AS orders, max(c.region) AS region
                FROM shop.orders o LEFT JOIN shop.customers c ON c.id = o.customer_id GROUP BY 1$q$,
           source => 'shop.orders', keys => ARRAY['customer_id'])",
    );
    assert!(
        said.contains("WARNING:  pgdw.rollup: the query of by_customer_region also reads shop.customers: their changes are not captured"),
        "{said}"
    );
    // One that reads only its source says nothing.
    assert_eq!(warnings(&w, &format!("SELECT pgdw.rollup('by_customer', $q${BY_CUSTOMER}$q$, source => 'shop.orders', keys => ARRAY['customer_id'])")), "");
    assert_eq!(
        query(
            &w,
            "SELECT also_reads FROM pgdw.rollup_status WHERE rollup = 'by_customer_region'"
        ),
        "{shop.customers}"
    );
    let status = ok(&w, &["status"]);
    assert!(
        status.contains("also reads shop.customers: changes there are not captured"),
        "{status}"
    );
    let doctor: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(
        &w.pgdw(PGDW.as_ref(), &["doctor", "--json"]).stdout,
    ))
    .unwrap();
    assert!(
        doctor.to_string().contains("rollup_reads_uncaptured"),
        "{doctor}"
    );
}

/// Case 8: A rollup whose table is replaced by another tool (dbt's --full-refresh drops and
/// recreates it) is reported where it is seen until it is registered again.
#[test]
fn a_rollup_whose_table_is_replaced_is_reported_until_registered_again() {
    let w = shop();
    register(
        &w,
        "by_customer",
        BY_CUSTOMER,
        "shop.orders",
        "ARRAY['customer_id']",
    );
    query(
        &w,
        &format!("DROP TABLE by_customer; CREATE TABLE by_customer AS {BY_CUSTOMER}"),
    );
    let status = ok(&w, &["status"]);
    assert!(
        status.contains("rollup public.by_customer (from shop.orders): no longer kept since")
            && status.contains("its table was dropped (DROP TABLE)"),
        "{status}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&w, &["status", "--json"])).unwrap();
    assert_eq!(
        json["queue"]["lost_rollups"][0]["name"], "public.by_customer",
        "{json}"
    );
    let doctor = w.pgdw(PGDW.as_ref(), &["doctor"]);
    let printed = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        !doctor.status.success()
            && printed.contains("rollup_lost")
            && printed.contains("SELECT pgdw.rollup('public.by_customer'"),
        "{printed}"
    );
    // The doctor's advice, run as it is, keeps it again; then nothing is reported.
    let advice = query(
        &w,
        "SELECT advice FROM pgdw.doctor() WHERE check_name = 'rollup_lost'",
    );
    let register_again = advice
        .strip_prefix("register it again: ")
        .and_then(|a| a.split("; or,").next())
        .unwrap();
    query(&w, &format!("DROP TABLE by_customer; {register_again}"));
    assert_eq!(query(&w, "SELECT count(*) FROM pgdw.rollups_lost"), "0");
    assert!(!ok(&w, &["status"]).contains("no longer kept"));
    // A source dropped: reported too; forgotten on request.
    query(&w, "DROP TABLE shop.orders CASCADE");
    assert_eq!(
        query(&w, "SELECT reason FROM pgdw.rollups_lost"),
        "its source shop.orders was dropped (DROP TABLE)"
    );
    assert_eq!(
        query(&w, "SELECT pgdw.rollup_forget('public.by_customer')"),
        "t"
    );
    assert_eq!(query(&w, "SELECT count(*) FROM pgdw.rollups_lost"), "0");
}

/// Clearer refusals: grouping sets, json keys, a statement that is not a SELECT, no keys (and
/// the whole-source form the error suggests, kept on an empty source too); json values work.
#[test]
fn unclear_errors_are_said_clearly_and_the_forms_they_suggest_work() {
    let w = shop();
    let cases = [
        (
            refused(&w, "r", "SELECT customer_id, product_id, count(*) AS n FROM shop.orders GROUP BY GROUPING SETS ((customer_id, product_id), (customer_id))", "shop.orders", "ARRAY['customer_id', 'product_id']"),
            "uses GROUPING SETS, ROLLUP or CUBE",
        ),
        (
            refused(&w, "r", "SELECT customer_id, product_id, count(*) AS n FROM shop.orders GROUP BY ROLLUP (customer_id, product_id)", "shop.orders", "ARRAY['customer_id', 'product_id']"),
            "uses GROUPING SETS, ROLLUP or CUBE",
        ),
        (
            refused(&w, "r", "SELECT json_build_object('c', customer_id) AS c, count(*) AS n FROM shop.orders GROUP BY customer_id", "shop.orders", "ARRAY[$$json_build_object('c', customer_id)$$]"),
            "a key of r cannot be compared, so cannot name a group: c (json)",
        ),
        (
            refused(&w, "r", "DELETE FROM shop.orders RETURNING customer_id", "shop.orders", "ARRAY['customer_id']"),
            "the query of r must be a SELECT (it begins DELETE FROM shop.orders",
        ),
        (
            refused(&w, "r", "SELECT count(*) AS n FROM shop.orders", "shop.orders", "'{}'"),
            "SELECT true AS whole, count(*) AS n FROM ... with keys => ARRAY['true']",
        ),
        (
            refused(&w, "r", "SELECT customer_id, count(*) AS n FROM shop.orders", "shop.orders", "ARRAY['customer_id']"),
            "the query of r does not run",
        ),
        (
            refused(&w, "r", "SELECT 1 AS one, count(*) AS n FROM shop.orders", "shop.orders", "ARRAY['customer_id']"),
            "has no GROUP BY (one row over the whole source), so its keys must be constants; customer_id is not",
        ),
    ];
    for (err, want) in cases {
        assert!(err.contains(want), "want {want:?} in:\n{err}");
        assert!(err.contains("pgdw.rollup"), "{err}");
    }
    nothing_installed(&w);

    // The whole-source form, on an empty source, then through changes and back to empty.
    query(
        &w,
        "CREATE TABLE shop.refunds (order_id bigint, amount numeric NOT NULL)",
    );
    let totals = "SELECT true AS whole, count(*) AS refunds, coalesce(sum(amount), 0) AS refunded FROM shop.refunds";
    assert_eq!(
        register(&w, "refund_totals", totals, "shop.refunds", "ARRAY['true']"),
        "refund_totals keeps 1 groups of shop.refunds by (whole)"
    );
    assert_eq!(
        query(&w, "SELECT refunds || ' ' || refunded FROM refund_totals"),
        "0 0"
    );
    script(
        &w,
        "INSERT INTO shop.refunds VALUES (1, 5), (2, 7); CALL pgdw.rollup_run('refund_totals')",
    );
    assert_eq!(
        query(&w, "SELECT refunds || ' ' || refunded FROM refund_totals"),
        "2 12"
    );
    script(
        &w,
        "DELETE FROM shop.refunds; CALL pgdw.rollup_run('refund_totals')",
    );
    assert_eq!(
        query(&w, "SELECT refunds || ' ' || refunded FROM refund_totals"),
        "0 0"
    );
    equals(&w, "refund_totals", totals);

    // A json value (json_agg) is compared as its text.
    let amounts =
        "SELECT customer_id, json_agg(amount ORDER BY id) AS amounts FROM shop.orders GROUP BY 1";
    register(
        &w,
        "amounts",
        amounts,
        "shop.orders",
        "ARRAY['customer_id']",
    );
    script(
        &w,
        "UPDATE shop.orders SET amount = amount + 1 WHERE customer_id = 2; CALL pgdw.rollup_run('amounts')",
    );
    assert_eq!(query(&w, "SELECT pgdw.rollup_verify('amounts')"), "0");
    assert_eq!(
        query(
            &w,
            "SELECT amounts::text = (SELECT json_agg(amount ORDER BY id)::text FROM shop.orders WHERE customer_id = 2) FROM amounts WHERE customer_id = 2"
        ),
        "t"
    );
}
