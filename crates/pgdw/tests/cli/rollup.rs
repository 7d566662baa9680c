//! Incremental rollups (`pgdw.rollup`), kept by real `pgdw worker` processes: after any mix
//! of changes, once the worker caught up, the rollup equals its query, both ways.

use pgdw_testkit::{wait_for, TempWarehouse};

use super::support::{converges, ok, query, warehouse, Worker};

/// The issue's contract, exactly.
const ORDERS_DAILY: &str = "SELECT customer_id, date_trunc('day', created_at) AS day,
           count(*) AS orders, sum(amount) AS revenue, count(DISTINCT product_id) AS products
      FROM shop.orders GROUP BY 1, 2";

pub fn register(w: &TempWarehouse, name: &str, query_: &str, source: &str, keys: &str) -> String {
    query(
        w,
        &format!(
            "SELECT pgdw.rollup('{name}', $q${query_}$q$, source => '{source}', keys => {keys})"
        ),
    )
}

fn orders_daily(w: &TempWarehouse) -> String {
    register(
        w,
        "orders_daily",
        ORDERS_DAILY,
        "shop.orders",
        "ARRAY['customer_id', $$date_trunc('day', created_at)$$]",
    )
}

/// Orders over the last 8 days in pg_partman's daily partitions (pgdw.partition_daily),
/// 50 customers, some without one (NULL keys are groups too).
fn shop() -> TempWarehouse {
    let w = warehouse();
    query(
        &w,
        "CREATE SCHEMA shop;
         CREATE TABLE shop.orders (id bigserial, customer_id int,
             created_at timestamptz NOT NULL, amount numeric NOT NULL, product_id int NOT NULL)
           PARTITION BY RANGE (created_at);
         CREATE INDEX ON shop.orders (customer_id, created_at);
         SELECT pgdw.partition_daily('shop.orders', 'created_at', retention => '10 days');
         INSERT INTO shop.orders (customer_id, created_at, amount, product_id)
         SELECT nullif(g % 51, 50), now() - (g % 8) * interval '1 day' - (g % 97) * interval '1 minute',
                (g % 13) * 1.25, g % 7
           FROM generate_series(1, 20000) g",
    );
    w
}

fn worker(w: &TempWarehouse) -> Worker {
    Worker::start(w, &["--concurrency", "2", "--poll", "200ms"])
}

/// Wait until `rollup` has nothing left to apply and equals `query_`, both ways.
fn exact(w: &TempWarehouse, rollup: &str, query_: &str) {
    converges(
        w,
        &format!(
            "SELECT (SELECT dirty_groups = 0 AND NOT recompute_all FROM pgdw.rollup_lag('{rollup}'))
                AND NOT EXISTS (TABLE {rollup} EXCEPT {query_})
                AND NOT EXISTS ({query_} EXCEPT TABLE {rollup})"
        ),
        "t",
    );
}

#[test]
fn a_rollup_stays_exact_through_every_kind_of_change() {
    let w = shop();
    assert_eq!(
        orders_daily(&w),
        format!(
            "orders_daily keeps {} groups of shop.orders by (customer_id, day)",
            query(&w, &format!("SELECT count(*) FROM ({ORDERS_DAILY}) q"))
        )
    );
    // The same call again changes nothing.
    assert_eq!(
        orders_daily(&w),
        "orders_daily is kept from shop.orders already"
    );
    let _worker = worker(&w);
    exact(&w, "orders_daily", ORDERS_DAILY);

    // Random inserts (some into new groups), updates moving rows between customers and
    // days (both groups change), updates inside a group, deletes emptying whole groups.
    for round in 0..3 {
        query(
            &w,
            &format!(
                "INSERT INTO shop.orders (customer_id, created_at, amount, product_id)
                 SELECT (random() * 60)::int, now() - random() * interval '7 days', round((random() * 100)::numeric, 2), (random() * 9)::int
                   FROM generate_series(1, 300);
                 UPDATE shop.orders SET customer_id = (random() * 60)::int, created_at = created_at - interval '1 day'
                  WHERE id % 97 = {round};
                 UPDATE shop.orders SET amount = amount + 1, product_id = 8 WHERE id % 89 = {round};
                 DELETE FROM shop.orders WHERE id % 83 = {round}"
            ),
        );
        exact(&w, "orders_daily", ORDERS_DAILY);
    }
    query(
        &w,
        "DELETE FROM shop.orders WHERE customer_id BETWEEN 10 AND 12",
    );
    exact(&w, "orders_daily", ORDERS_DAILY);
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM orders_daily WHERE customer_id BETWEEN 10 AND 12"
        ),
        "0",
        "emptied groups are deleted"
    );
    assert_eq!(
        query(
            &w,
            "SELECT count(*) > 0 FROM orders_daily WHERE customer_id IS NULL"
        ),
        "t"
    );

    // A partition truncated: every group is recomputed.
    query(
        &w,
        "DO $$ BEGIN EXECUTE format('TRUNCATE %s', (SELECT inhrelid::regclass FROM pg_inherits
            WHERE inhparent = 'shop.orders'::regclass AND inhrelid::regclass::text LIKE '%' || to_char(now() - interval '2 days', 'YYYY_MM_DD'))); END $$",
    );
    exact(&w, "orders_daily", ORDERS_DAILY);

    // Retention (pg_partman detaches, then drops): the old days' groups go.
    let old_days = "SELECT count(*) FROM orders_daily WHERE day < date_trunc('day', now() - interval '4 days')";
    assert_ne!(query(&w, old_days), "0");
    query(
        &w,
        "UPDATE partman.part_config SET retention = '4 days' WHERE parent_table = 'shop.orders';
         SELECT pgdw.partition_maintenance()",
    );
    exact(&w, "orders_daily", ORDERS_DAILY);
    assert_eq!(query(&w, old_days), "0");
    // Read from the detached partitions, not by recomputing every group.
    assert_eq!(
        query(
            &w,
            "SELECT last_run->>'full' FROM pgdw.rollups WHERE name = 'orders_daily'::regclass"
        ),
        "false"
    );

    // The whole source truncated.
    query(&w, "TRUNCATE shop.orders");
    exact(&w, "orders_daily", ORDERS_DAILY);
    assert_eq!(query(&w, "SELECT count(*) FROM orders_daily"), "0");

    // pgdw status lists the rollup, caught up.
    let status = ok(&w, &["status"]);
    assert!(
        status.contains("rollup orders_daily (from shop.orders): caught up"),
        "{status}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&w, &["status", "--json"])).unwrap();
    assert_eq!(json["queue"]["rollups"][0]["dirty_groups"], 0, "{json}");
}

#[test]
fn a_partition_created_after_the_rollup_is_captured() {
    let w = shop();
    orders_daily(&w);
    // A partition past pg_partman's premade ones (as its maintenance makes each day), and
    // rows written into it directly and through the parent.
    query(
        &w,
        "CREATE TABLE shop.orders_later PARTITION OF shop.orders
           FOR VALUES FROM (date_trunc('day', now()) + interval '20 days') TO (date_trunc('day', now()) + interval '21 days');
         INSERT INTO shop.orders (customer_id, created_at, amount, product_id)
         VALUES (7, date_trunc('day', now()) + interval '20 days 1 hour', 5, 1);
         INSERT INTO shop.orders_later (customer_id, created_at, amount, product_id)
         VALUES (7, date_trunc('day', now()) + interval '20 days 2 hours', 6, 2)",
    );
    let _worker = worker(&w);
    exact(&w, "orders_daily", ORDERS_DAILY);
    assert_eq!(
        query(
            &w,
            "SELECT orders || ' ' || revenue FROM orders_daily WHERE day = date_trunc('day', now()) + interval '20 days'"
        ),
        "2 11"
    );
    // Detached with its rows, then attached again: they leave, then come back.
    query(
        &w,
        "ALTER TABLE shop.orders DETACH PARTITION shop.orders_later",
    );
    exact(&w, "orders_daily", ORDERS_DAILY);
    query(
        &w,
        "ALTER TABLE shop.orders ATTACH PARTITION shop.orders_later
           FOR VALUES FROM (date_trunc('day', now()) + interval '20 days') TO (date_trunc('day', now()) + interval '21 days')",
    );
    exact(&w, "orders_daily", ORDERS_DAILY);
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM orders_daily WHERE day > now() + interval '19 days'"
        ),
        "1"
    );
}

#[test]
fn a_bulk_load_is_one_trigger_call_and_stays_exact() {
    let w = shop();
    orders_daily(&w);
    // A million rows in one statement: the capture function runs once, not a million times.
    let calls = query(
        &w,
        "SET track_functions = 'pl';
         INSERT INTO shop.orders (customer_id, created_at, amount, product_id)
         SELECT g % 1000, now() - (g % 7) * interval '1 day', g % 100, g % 11 FROM generate_series(1, 1000000) g;
         SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname LIKE 'rollup\\_capture%'",
    );
    assert_eq!(calls, "1");
    let _worker = worker(&w);
    exact(&w, "orders_daily", ORDERS_DAILY);
}

#[test]
fn two_rollups_on_one_source_and_writers_never_wait() {
    let w = shop();
    orders_daily(&w);
    let by_product =
        "SELECT product_id, count(*) AS orders, max(amount) AS largest FROM shop.orders GROUP BY 1";
    register(
        &w,
        "orders_by_product",
        by_product,
        "shop.orders",
        "ARRAY['product_id']",
    );

    // Two writers in open transactions changing the same groups: neither waits for the
    // other (statement_timeout would fail the second).
    let mut a = w.client_db("warehouse");
    let mut b = w.client_db("warehouse");
    a.batch_execute("SET statement_timeout = '5s'; BEGIN; INSERT INTO shop.orders (customer_id, created_at, amount, product_id) VALUES (1, now(), 1000, 3)").unwrap();
    b.batch_execute("SET statement_timeout = '5s'; BEGIN; INSERT INTO shop.orders (customer_id, created_at, amount, product_id) VALUES (1, now(), 2000, 3); UPDATE shop.orders SET amount = amount + 1 WHERE customer_id = 1 AND product_id = 3").unwrap();
    a.batch_execute("UPDATE shop.orders SET product_id = 4 WHERE customer_id = 2")
        .unwrap();
    b.batch_execute("COMMIT").unwrap();
    a.batch_execute("COMMIT").unwrap();

    let _worker = worker(&w);
    exact(&w, "orders_daily", ORDERS_DAILY);
    exact(&w, "orders_by_product", by_product);
    assert_eq!(
        query(
            &w,
            "SELECT largest FROM orders_by_product WHERE product_id = 3"
        ),
        "2001"
    );
    // The query changed: rebuilt (another column), the same call again a no-op.
    let by_product2 = "SELECT product_id, count(*) AS orders, min(amount) AS smallest FROM shop.orders GROUP BY 1";
    assert!(register(
        &w,
        "orders_by_product",
        by_product2,
        "shop.orders",
        "ARRAY['product_id']"
    )
    .ends_with("(rebuilt: the query changed)"));
    query(&w, "DELETE FROM shop.orders WHERE product_id = 3");
    exact(&w, "orders_by_product", by_product2);
    exact(&w, "orders_daily", ORDERS_DAILY);
    assert_eq!(
        query(&w, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'shop.orders'::regclass AND tgname LIKE 'pgdw_rollup%'"),
        "10",
        "each rollup has its five triggers, the old one's are gone"
    );
}

/// A rollup `slow_revenue` whose recompute is slow (each group's value takes 0.15 s), over
/// ten groups of the shop's orders; its query.
fn slow_rollup() -> (TempWarehouse, &'static str) {
    let w = shop();
    query(
        &w,
        "CREATE FUNCTION slow_sum(numeric) RETURNS numeric LANGUAGE sql AS $$ SELECT $1 FROM pg_sleep(0.15) $$",
    );
    let slow = "SELECT customer_id, sum(slow_sum(amount)) AS revenue FROM shop.orders WHERE product_id = 99 GROUP BY 1";
    register(
        &w,
        "slow_revenue",
        slow,
        "shop.orders",
        "ARRAY['customer_id']",
    );
    query(
        &w,
        "INSERT INTO shop.orders (customer_id, created_at, amount, product_id)
         SELECT g, now(), g, 99 FROM generate_series(1, 10) g",
    );
    (w, slow)
}

#[test]
fn a_worker_killed_mid_recompute_loses_nothing() {
    let (w, slow) = slow_rollup();
    let first = Worker::start(
        &w,
        &["--concurrency", "2", "--poll", "200ms", "--lease", "2s"],
    );
    converges(
        &w,
        "SELECT count(*) FROM pgdw.tasks WHERE kind = 'rollup' AND state = 'running'",
        "1",
    );
    drop(first); // SIGKILL
    query(
        &w,
        "INSERT INTO shop.orders (customer_id, created_at, amount, product_id) VALUES (3, now(), 100, 99)",
    );
    let _second = worker(&w);
    exact(&w, "slow_revenue", slow);
    assert_eq!(
        query(&w, "SELECT revenue FROM slow_revenue WHERE customer_id = 3"),
        "103"
    );
}

/// The warehouse's machine dies while a worker recomputes a rollup, and comes back: the
/// interrupted run's groups and the changes since are recomputed as soon as it is up (the
/// worker records the lost attempt once the warehouse answers; the retry waits its first
/// backoff, not the lease), and the rollup equals its query again.
#[test]
fn the_warehouse_dying_mid_recompute_loses_nothing_and_recovers_at_once() {
    let (w, slow) = slow_rollup();
    // The default lease (60 s): recovery must not wait for it.
    let _worker = Worker::start(&w, &["--concurrency", "2", "--poll", "200ms"]);
    converges(
        &w,
        "SELECT count(*) FROM pgdw.tasks WHERE kind = 'rollup' AND state = 'running'",
        "1",
    );
    super::support::machine_dies(&w);
    let back = std::time::Instant::now();
    ok(&w, &["up"]);
    query(
        &w,
        "INSERT INTO shop.orders (customer_id, created_at, amount, product_id) VALUES (3, now(), 100, 99)",
    );
    let exact_now = format!(
        "SELECT (SELECT dirty_groups = 0 AND NOT recompute_all FROM pgdw.rollup_lag('slow_revenue'))
            AND NOT EXISTS (TABLE slow_revenue EXCEPT {slow}) AND NOT EXISTS ({slow} EXCEPT TABLE slow_revenue)"
    );
    assert!(
        wait_for(std::time::Duration::from_secs(30), || query(&w, &exact_now)
            == "t"),
        "not exact 30 s after the restart: {}",
        query(&w, "SELECT * FROM pgdw.rollup_verify('slow_revenue')")
    );
    eprintln!(
        "rollup exact {:.1} s after the warehouse came back",
        back.elapsed().as_secs_f64()
    );
    assert_eq!(
        query(&w, "SELECT revenue FROM slow_revenue WHERE customer_id = 3"),
        "103"
    );
}

#[test]
fn bad_registrations_are_refused_with_nothing_installed() {
    let w = shop();
    query(
        &w,
        "CREATE VIEW shop.orders_view AS SELECT * FROM shop.orders; CREATE TABLE taken (x int)",
    );
    let refused = |name: &str, q: &str, source: &str, keys: &str| {
        w.psql_db(
            "warehouse",
            &format!(
                "SELECT pgdw.rollup('{name}', $q${q}$q$, source => '{source}', keys => {keys})"
            ),
        )
        .expect_err("refused")
    };
    let cases = [
        (
            refused("r", ORDERS_DAILY, "shop.orders_view", "ARRAY['customer_id', 'created_at']"),
            "shop.orders_view is not a table (a view)",
        ),
        (
            refused("r", "SELECT nope FROM shop.orders GROUP BY 1", "shop.orders", "ARRAY['customer_id']"),
            "the query of r does not run: column \"nope\" does not exist",
        ),
        (
            refused("r", ORDERS_DAILY, "shop.orders", "ARRAY['customer_id', 'nope']"),
            "the keys of r are not expressions over a row of shop.orders",
        ),
        (
            refused("r", ORDERS_DAILY, "shop.orders", "ARRAY['customer_id', 'created_at::date']"),
            "created_at::date is date over shop.orders but the query's day is timestamp with time zone",
        ),
        (
            refused("r", ORDERS_DAILY, "shop.orders", "ARRAY['customer_id', $$date_trunc('hour', created_at)$$]"),
            "groups by (orders.customer_id, (date_trunc('day'::text, orders.created_at))), but its keys over a row of shop.orders are (customer_id, date_trunc('hour', created_at))",
        ),
        (
            refused("taken", ORDERS_DAILY, "shop.orders", "ARRAY['customer_id', $$date_trunc('day', created_at)$$]"),
            "taken exists and is not a rollup",
        ),
        (
            refused("r", "SELECT customer_id, count(*) + 0 FROM shop.orders GROUP BY 1", "shop.orders", "ARRAY['customer_id']"),
            "name the query's columns of r",
        ),
    ];
    for (err, want) in cases {
        assert!(err.contains(want), "want {want:?} in:\n{err}");
    }
    assert_eq!(
        query(
            &w,
            "SELECT (SELECT count(*) FROM pgdw.rollups) || ' ' || (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgdw_rollup%')
                    || ' ' || (to_regclass('r') IS NULL)"
        ),
        "0 0 true"
    );
    // Dropping a rollup's table unregisters it and takes its triggers off the source.
    orders_daily(&w);
    query(&w, "DROP TABLE orders_daily");
    assert_eq!(
        query(
            &w,
            "SELECT (SELECT count(*) FROM pgdw.rollups) || ' ' || (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgdw_rollup%')"
        ),
        "0 0"
    );
}

#[test]
fn a_role_without_pgdw_creates_tables_as_before() {
    let w = shop();
    orders_daily(&w);
    // The partition event triggers fire for every role's DDL; they must not fail it.
    query(
        &w,
        "CREATE ROLE plain LOGIN; GRANT CREATE, USAGE ON SCHEMA public TO plain; GRANT USAGE ON SCHEMA shop TO plain",
    );
    assert_eq!(
        query(
            &w,
            "SET ROLE plain;
             CREATE TEMP TABLE scratch (a int);
             CREATE TABLE public.notes (a int);
             ALTER TABLE public.notes ADD COLUMN b int;
             SELECT count(*) FROM pg_tables WHERE tablename = 'notes'"
        ),
        "1"
    );
}
