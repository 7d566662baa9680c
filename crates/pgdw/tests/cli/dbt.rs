//! dbt (dbt-core and dbt-postgres 1.11 in target/dbt-venv, made by scripts/setup.sh) on the
//! warehouse, as docs/dbt.md says: the transformation role, the profile from `pgdw env`, the
//! example project of integrations/dbt, `pgdw_rollup` models kept exact between dbt runs, and
//! source freshness that agrees with `pgdw status`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgdw_testkit::{transcript, TempWarehouse};

use super::support::{converges, ok, query, query_as, warehouse, Worker};

const PASSWORD: &str = "choose-one";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../integrations/dbt/example")
}

/// The first ```sql block of a section of docs/dbt.md, as written.
fn docs_sql(section: &str) -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dbt.md"))
            .unwrap();
    let from = doc
        .find(section)
        .unwrap_or_else(|| panic!("docs/dbt.md has no {section}"));
    let rest = &doc[from..];
    let start = rest.find("```sql\n").unwrap() + "```sql\n".len();
    let end = start + rest[start..].find("```").unwrap();
    rest[start..end].to_string()
}

/// The app's events and the shop's customers and orders, loaded by two jobs every minute
/// (pg_cron runs them): load-shop succeeds; load-events last succeeded three hours ago (its run
/// log as pgdw.run writes it) and fails since (its source is gone).
fn shop_warehouse() -> TempWarehouse {
    let w = warehouse();
    query(
        &w,
        "SELECT setseed(0.5);
         CREATE SCHEMA app; CREATE SCHEMA shop;
         CREATE TABLE app.events (event_id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id bigint NOT NULL,
                                  occurred_at timestamptz NOT NULL, event_name text NOT NULL, properties jsonb);
         CREATE INDEX ON app.events (user_id, date_trunc('day', occurred_at AT TIME ZONE 'UTC'));
         INSERT INTO app.events (user_id, occurred_at, event_name)
         SELECT 1 + (random() * 40)::int, now() - random() * interval '20 days',
                (ARRAY['session_start', 'session_end', 'page_view'])[1 + (random() * 2)::int]
           FROM generate_series(1, 5000);
         CREATE TABLE shop.customers (id bigint PRIMARY KEY, name text);
         INSERT INTO shop.customers SELECT i, 'customer ' || i FROM generate_series(1, 20) i;
         CREATE TABLE shop.orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES shop.customers,
                                   created_at timestamptz NOT NULL, amount numeric NOT NULL);
         CREATE INDEX ON shop.orders (customer_id, date_trunc('day', created_at AT TIME ZONE 'UTC'));
         INSERT INTO shop.orders (customer_id, created_at, amount)
         SELECT 1 + (random() * 19)::int, now() - random() * interval '30 days', round((random() * 100)::numeric, 2)
           FROM generate_series(1, 2000);
         SELECT pgdw.schedule('load-shop', '1 minute', $$CALL pgdw.run('load-shop', 'SELECT 1')$$);
         SELECT pgdw.schedule('load-events', '1 minute', $$CALL pgdw.run('load-events', 'SELECT * FROM app.gone')$$);
         INSERT INTO pgdw.runs (job, started_at, finished_at, status)
         VALUES ('load-events', now() - interval '3 hours', now() - interval '3 hours' + interval '2 s', 'succeeded');",
    );
    query(&w, "CALL pgdw.run('load-shop', 'SELECT 1')");
    // The role of docs/dbt.md, section 1, as written.
    query(&w, &docs_sql("## 1. A role for transformations"));
    w
}

/// A dbt command in the example project, with the profile's variables from `pgdw env` and the
/// role's password; dbt's own files in `work` (tests run side by side).
fn dbt(w: &TempWarehouse, work: &Path, args: &[&str]) -> Output {
    let env = ok(w, &["env"]);
    let mut cmd =
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dbt-venv/bin/dbt"));
    for line in env.lines() {
        let Some(assignment) = line.strip_prefix("export ") else {
            continue;
        };
        let (k, v) = assignment.split_once('=').unwrap();
        if ["PGHOST", "PGPORT", "PGDATABASE"].contains(&k) {
            cmd.env(k, v.trim_matches('\''));
        }
    }
    cmd.current_dir(example_dir())
        .args(args)
        .env("DBT_PASSWORD", PASSWORD)
        .env("DBT_PROFILES_DIR", example_dir())
        .env("DBT_TARGET_PATH", work.join("target"))
        .env("DBT_LOG_PATH", work.join("logs"))
        .env("DBT_PACKAGES_INSTALL_PATH", work.join("dbt_packages"))
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("DO_NOT_TRACK", "1")
        .env_remove("PGUSER")
        .env_remove("PGPASSWORD")
        .env_remove("DATABASE_URL");
    cmd.output().unwrap()
}

fn dbt_ok(w: &TempWarehouse, work: &Path, args: &[&str]) -> String {
    let out = dbt(w, work, args);
    assert!(
        out.status.success(),
        "dbt {args:?} failed\n{}",
        transcript(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Rows of the model and of its query that the other lacks (0: equal).
fn differences(w: &TempWarehouse, model: &str, query_sql: &str) -> String {
    query(w, &format!("SELECT {}", differences_sql(model, query_sql)))
}

const SESSIONS: &str = "SELECT user_id, date_trunc('day', occurred_at AT TIME ZONE 'UTC') AS session_day,
        count(*) FILTER (WHERE event_name = 'session_start') AS starts,
        count(*) FILTER (WHERE event_name = 'session_end') AS ends,
        user_id || '_' || to_char(date_trunc('day', occurred_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS session_day_user
   FROM app.events GROUP BY 1, 2";
const SESSIONS_INCREMENTAL: &str = "SELECT user_id || '_' || to_char(date_trunc('day', occurred_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD'),
        user_id, date_trunc('day', occurred_at AT TIME ZONE 'UTC'),
        count(*) FILTER (WHERE event_name = 'session_start'), count(*) FILTER (WHERE event_name = 'session_end')
   FROM app.events GROUP BY 1, 2, 3";
const ORDERS: &str = "SELECT customer_id, date_trunc('day', created_at AT TIME ZONE 'UTC') AS day, count(*) AS orders, sum(amount) AS revenue
   FROM shop.orders GROUP BY 1, 2";

#[test]
fn the_example_project_runs_and_pgdw_keeps_its_rollups_exact_between_dbt_runs() {
    let w = shop_warehouse();
    let work = tempfile::tempdir().unwrap();
    dbt_ok(&w, work.path(), &["deps"]);
    let run = dbt_ok(&w, work.path(), &["run"]);
    assert!(run.contains("Completed successfully"), "{run}");
    dbt_ok(&w, work.path(), &["test"]);
    assert_eq!(differences(&w, "analytics.sessions_daily", SESSIONS), "0");
    assert_eq!(
        differences(
            &w,
            "analytics.sessions_daily_incremental",
            SESSIONS_INCREMENTAL
        ),
        "0"
    );
    assert_eq!(differences(&w, "analytics.orders_daily", ORDERS), "0");
    assert_eq!(
        query(
            &w,
            "SELECT string_agg(name::text, ', ' ORDER BY name::text) FROM pgdw.rollups"
        ),
        "analytics.orders_daily, analytics.sessions_daily"
    );

    // Between dbt runs: late events (10 days old), an update, deletes, new orders, a worker.
    let _worker = Worker::start(&w, &[]);
    query(
        &w,
        "INSERT INTO app.events (user_id, occurred_at, event_name)
         SELECT 1 + i % 7, now() - interval '10 days' - i * interval '1 minute', 'session_start' FROM generate_series(1, 30) i;
         UPDATE app.events SET event_name = 'session_end' WHERE event_id IN (SELECT event_id FROM app.events WHERE event_name = 'page_view' LIMIT 40);
         DELETE FROM app.events WHERE event_id IN (SELECT event_id FROM app.events ORDER BY occurred_at LIMIT 25);
         INSERT INTO shop.orders (customer_id, created_at, amount) VALUES (3, now() - interval '25 days', 12.5), (4, now(), 99);
         DELETE FROM shop.orders WHERE id = 1;",
    );
    converges(
        &w,
        &format!(
            "SELECT {}",
            differences_sql("analytics.sessions_daily", SESSIONS)
        ),
        "0",
    );
    converges(
        &w,
        &format!(
            "SELECT {}",
            differences_sql("analytics.orders_daily", ORDERS)
        ),
        "0",
    );

    // A second dbt run changes nothing of the rollups: same tables, same registrations.
    let before = query(
        &w,
        "SELECT string_agg(name::oid || ' ' || created_at, ', ' ORDER BY name::text) FROM pgdw.rollups",
    );
    let again = dbt_ok(&w, work.path(), &["run"]);
    assert!(again.contains("is kept from"), "{again}");
    assert_eq!(
        query(&w, "SELECT string_agg(name::oid || ' ' || created_at, ', ' ORDER BY name::text) FROM pgdw.rollups"),
        before
    );
    // dbt's incremental run rewrote its three days, and missed the late events.
    assert_ne!(
        differences(
            &w,
            "analytics.sessions_daily_incremental",
            SESSIONS_INCREMENTAL
        ),
        "0"
    );
    assert_eq!(differences(&w, "analytics.sessions_daily", SESSIONS), "0");

    // A changed model rebuilds (a new column); --full-refresh rebuilds too; both stay exact.
    dbt_ok(
        &w,
        work.path(),
        &[
            "run",
            "--select",
            "orders_daily",
            "--vars",
            "{orders_with_largest: true}",
        ],
    );
    assert_eq!(
        differences(
            &w,
            "analytics.orders_daily",
            &ORDERS.replace("AS revenue", "AS revenue, max(amount) AS largest")
        ),
        "0"
    );
    let oid = query(&w, "SELECT 'analytics.sessions_daily'::regclass::oid");
    dbt_ok(&w, work.path(), &["run", "--full-refresh"]);
    assert_ne!(
        query(&w, "SELECT 'analytics.sessions_daily'::regclass::oid"),
        oid
    );
    assert_eq!(differences(&w, "analytics.sessions_daily", SESSIONS), "0");
    assert_eq!(
        differences(
            &w,
            "analytics.sessions_daily_incremental",
            SESSIONS_INCREMENTAL
        ),
        "0"
    );
    assert_eq!(query(&w, "SELECT count(*) FROM pgdw.rollups_lost"), "0");
    dbt_ok(&w, work.path(), &["test"]);
    dbt_ok(&w, work.path(), &["docs", "generate"]);
    let catalog = std::fs::read_to_string(work.path().join("target/catalog.json")).unwrap();
    assert!(
        catalog.contains("model.pgdw_example.sessions_daily"),
        "{catalog}"
    );
}

fn differences_sql(model: &str, query_sql: &str) -> String {
    format!(
        "(SELECT count(*) FROM (TABLE {model} EXCEPT ALL {query_sql}) a)
         + (SELECT count(*) FROM ({query_sql} EXCEPT ALL TABLE {model}) b)"
    )
}

#[test]
fn dbt_source_freshness_says_what_pgdw_status_says() {
    let w = shop_warehouse();
    let work = tempfile::tempdir().unwrap();
    dbt_ok(&w, work.path(), &["deps"]);
    // A stale source is an error: dbt exits non-zero.
    let out = dbt(&w, work.path(), &["source", "freshness"]);
    assert!(!out.status.success(), "{}", transcript(&out));
    let sources: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work.path().join("target/sources.json")).unwrap(),
    )
    .unwrap();
    let status = |id: &str| -> (String, String) {
        let r = sources["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["unique_id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {sources}"));
        (
            r["status"].as_str().unwrap().to_string(),
            r["max_loaded_at"].as_str().unwrap_or("").to_string(),
        )
    };
    let (events, events_at) = status("source.pgdw_example.app.events");
    let (orders, orders_at) = status("source.pgdw_example.shop.orders");
    assert_eq!(events, "error");
    assert_eq!(orders, "pass");
    // The same moments pgdw's run log has, to the second.
    for (job, at) in [("load-events", &events_at), ("load-shop", &orders_at)] {
        let secs = query(
            &w,
            &format!("SELECT extract(epoch FROM last_success)::bigint FROM dw.job_freshness WHERE job = '{job}'"),
        );
        let dbt_secs = query(
            &w,
            &format!("SELECT extract(epoch FROM '{at}'::timestamptz)::bigint"),
        );
        assert_eq!(secs, dbt_secs, "{job}: pgdw {secs}, dbt {at}");
    }
    let status_out = ok(&w, &["status"]);
    let line = |job: &str| {
        status_out
            .lines()
            .find(|l| l.trim_start().starts_with(job))
            .unwrap()
            .to_string()
    };
    let events_line = line("load-events");
    assert!(
        (events_line.contains("[STALE]") || events_line.contains("[FAILING]"))
            && events_line.contains("fresh as of 3 h ago"),
        "{status_out}"
    );
    assert!(line("load-shop").contains("[ok]"), "{status_out}");
}

#[test]
fn the_transformation_role_reads_sources_and_nothing_of_pgdw() {
    let w = shop_warehouse();
    query(
        &w,
        "CREATE SERVER vault FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'localhost', dbname 'x');
         CREATE USER MAPPING FOR postgres SERVER vault OPTIONS (user 'u', password 'the-secret');",
    );
    let as_role = |sql: &str| query_as(&w, "transform", sql);
    assert_eq!(
        as_role("SELECT count(*) FROM shop.customers").unwrap(),
        "20"
    );
    for sql in [
        "SELECT count(*) FROM pgdw.runs",
        "SELECT pgdw.rollup('x', 'SELECT 1 AS a', 'shop.orders', ARRAY['1'])",
        "SELECT pgdw.version()",
    ] {
        let err = as_role(sql).unwrap_err();
        assert!(
            err.contains("permission denied for schema pgdw"),
            "{sql}: {err}"
        );
    }
    let err = as_role("INSERT INTO shop.customers VALUES (99, 'x')").unwrap_err();
    assert!(
        err.contains("permission denied for table customers"),
        "{err}"
    );
    assert_eq!(
        as_role("SELECT coalesce(array_to_string(umoptions, ','), 'hidden') FROM pg_user_mappings WHERE srvname = 'vault'").unwrap(),
        "hidden"
    );
    // Its own schema, and a rollup through dw.rollup; never a query that runs its own code
    // as pgdw's workers, nor one reading what it may not read.
    as_role("CREATE SCHEMA analytics").unwrap();
    as_role(
        "SELECT dw.rollup('analytics.per_customer', 'SELECT customer_id, count(*) AS n FROM shop.orders GROUP BY 1',
                          'shop.orders', ARRAY['customer_id'])",
    )
    .unwrap();
    assert_eq!(
        as_role("SELECT sum(n) FROM analytics.per_customer").unwrap(),
        "2000"
    );
    as_role("CREATE FUNCTION analytics.mine(bigint) RETURNS bigint LANGUAGE sql AS 'SELECT $1'")
        .unwrap();
    let err = as_role(
        "SELECT dw.rollup('analytics.sneaky', 'SELECT analytics.mine(customer_id) AS c, count(*) AS n FROM shop.orders GROUP BY 1',
                          'shop.orders', ARRAY['analytics.mine(customer_id)'])",
    )
    .unwrap_err();
    assert!(
        err.contains("function analytics.mine(bigint) (owned by transform)"),
        "{err}"
    );
    query(&w, "CREATE TABLE shop.private (customer_id bigint); REVOKE SELECT ON shop.private FROM transform");
    let err = as_role(
        "SELECT dw.rollup('analytics.peek', 'SELECT o.customer_id, count(p.*) AS n FROM shop.orders o LEFT JOIN shop.private p USING (customer_id) GROUP BY 1',
                          'shop.orders', ARRAY['customer_id'])",
    )
    .unwrap_err();
    assert!(err.contains("shop.private (no SELECT)"), "{err}");
    // The rollup table is the owner's: the role reads it and cannot add a trigger to it.
    let err = as_role("CREATE TRIGGER t BEFORE INSERT ON analytics.per_customer FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()").unwrap_err();
    assert!(
        err.contains("permission denied for table per_customer"),
        "{err}"
    );
}
