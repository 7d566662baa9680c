//! The real-time seed's `sessions_daily` over EVENTS events (30 days, USERS users), kept two
//! ways in one warehouse by integrations/dbt/example: dbt's incremental model (delete+insert of
//! the last 3 days at every `dbt run`) and `pgdw_rollup` (kept by `pgdw worker`). For ROUNDS
//! rounds of 1,000 events (half on time, half 4 to 20 days late): the rollup's time from the
//! commit until no change is left to apply and the groups it recomputed, against `dbt run`'s
//! time (whole, and the model's own SQL from run_results.json), the rows it rewrote, and the
//! rows its lookback missed (model rows that differ from the query afterwards).
//!
//!     cargo bench -p pgdw --features demo --bench dbt_sessions -- [EVENTS] [USERS] [ROUNDS]   (10000000 100000 3)

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgdw_testkit::bench::arg;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn main() {
    let events = arg(0, 10_000_000) as i64;
    let users = arg(1, 100_000) as i64;
    let rounds = arg(2, 3) as usize;
    let dbt_bin = root().join("target/dbt-venv/bin/dbt");
    assert!(
        dbt_bin.exists(),
        "run scripts/setup.sh first: it makes target/dbt-venv"
    );
    let (w, _) = common::fresh_warehouse();
    let sql = |q: &str| common::sql(&w, q);
    let t = Instant::now();
    sql("CREATE SCHEMA app; CREATE SCHEMA shop;
         CREATE TABLE app.events (event_id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id bigint NOT NULL,
                                  occurred_at timestamptz NOT NULL, event_name text NOT NULL, properties jsonb);
         CREATE TABLE shop.customers (id bigint PRIMARY KEY);
         CREATE TABLE shop.orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL, created_at timestamptz NOT NULL, amount numeric NOT NULL);");
    let chunk = 1_000_000;
    for from in (0..events).step_by(chunk as usize) {
        let n = chunk.min(events - from);
        sql(&format!(
            "INSERT INTO app.events (user_id, occurred_at, event_name)
             SELECT 1 + floor({users} * power(random(), 2))::bigint, now() - random() * interval '30 days',
                    (ARRAY['session_start', 'session_end', 'page_view', 'page_view'])[1 + floor(random() * 4)::int]
               FROM generate_series(1, {n})"
        ));
        eprintln!("  {} events ({:.0} s)", from + n, t.elapsed().as_secs_f64());
    }
    sql("CREATE INDEX ON app.events (user_id, date_trunc('day', occurred_at AT TIME ZONE 'UTC'));
         CREATE INDEX ON app.events (occurred_at);
         CREATE INDEX ON shop.orders (customer_id, date_trunc('day', created_at AT TIME ZONE 'UTC'));
         VACUUM ANALYZE app.events;");
    sql(&section_sql());
    let env = {
        let out = w.pgdw(common::PGDW.as_ref(), &["env"]);
        String::from_utf8(out.stdout).unwrap()
    };
    let work = tempfile::tempdir().unwrap();
    let dbt = |args: &[&str]| -> f64 {
        let mut cmd = Command::new(&dbt_bin);
        for line in env.lines() {
            if let Some((k, v)) = line.strip_prefix("export ").and_then(|a| a.split_once('=')) {
                if ["PGHOST", "PGPORT", "PGDATABASE"].contains(&k) {
                    cmd.env(k, v.trim_matches('\''));
                }
            }
        }
        let dir = root().join("integrations/dbt/example");
        let t = Instant::now();
        let out = cmd
            .current_dir(&dir)
            .args(args)
            .env("DBT_PASSWORD", "choose-one")
            .env("DBT_PROFILES_DIR", &dir)
            .env("DBT_TARGET_PATH", work.path().join("target"))
            .env("DBT_LOG_PATH", work.path().join("logs"))
            .env(
                "DBT_PACKAGES_INSTALL_PATH",
                work.path().join("dbt_packages"),
            )
            .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            .env("DO_NOT_TRACK", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dbt {args:?}\n{}",
            pgdw_testkit::transcript(&out)
        );
        t.elapsed().as_secs_f64()
    };
    let model_secs = || -> f64 {
        let results: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(work.path().join("target/run_results.json")).unwrap(),
        )
        .unwrap();
        results["results"][0]["execution_time"].as_f64().unwrap()
    };
    dbt(&["deps"]);
    let first = dbt(&[
        "run",
        "--select",
        "sessions_daily",
        "sessions_daily_incremental",
    ]);
    eprintln!("{events} events loaded; first dbt run (both models built) {first:.1} s");

    let mut worker = Command::new(common::PGDW)
        .arg("worker")
        .env("PGDW_DATA_DIR", w.data_dir())
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    println!("round  pgdw: to exact  groups  | dbt run  model SQL  rows rewritten  rows missed (cumulative)");
    for round in 1..=rounds {
        let t = Instant::now();
        sql(&format!(
            "INSERT INTO app.events (user_id, occurred_at, event_name)
             SELECT 1 + floor({users} * power(random(), 2))::bigint,
                    CASE WHEN i % 2 = 0 THEN now() - random() * interval '1 hour'
                         ELSE now() - interval '4 days' - random() * interval '16 days' END,
                    (ARRAY['session_start', 'session_end'])[1 + i % 2]
               FROM generate_series(1, 1000) i"
        ));
        loop {
            let lag = sql("SELECT dirty_groups || ' ' || recompute_all FROM pgdw.rollup_lag('analytics.sessions_daily')");
            if lag == "0 false" {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(600),
                "the rollup did not catch up: {lag}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let exact = t.elapsed().as_secs_f64();
        let groups = sql("SELECT last_run->>'groups' FROM pgdw.rollups WHERE name = 'analytics.sessions_daily'::regclass");
        let run = dbt(&["run", "--select", "sessions_daily_incremental"]);
        let model = model_secs();
        let rewritten = sql(
            "SELECT count(*) FROM analytics.sessions_daily_incremental
              WHERE session_day >= date_trunc('day', now() AT TIME ZONE 'UTC') - interval '3 days'",
        );
        let missed = sql(
            "SELECT count(*) FROM (SELECT user_id, session_day, starts, ends FROM analytics.sessions_daily
                                   EXCEPT SELECT user_id, session_day, starts, ends FROM analytics.sessions_daily_incremental) x",
        );
        let rollup_wrong = sql(
            "SELECT count(*) FROM (SELECT user_id, date_trunc('day', occurred_at AT TIME ZONE 'UTC'),
                                          count(*) FILTER (WHERE event_name = 'session_start'), count(*) FILTER (WHERE event_name = 'session_end')
                                     FROM app.events GROUP BY 1, 2
                                   EXCEPT SELECT user_id, session_day, starts, ends FROM analytics.sessions_daily) x",
        );
        assert_eq!(rollup_wrong, "0", "the rollup differs from its query");
        println!(
            "{round:>5}  {:>13.0} ms {groups:>7}  | {run:>6.1} s {model:>8.2} s {rewritten:>15} {missed:>12}",
            exact * 1000.0
        );
    }
    let _ = worker.kill();
    let _ = worker.wait();
}

/// docs/dbt.md's role, section 1, as written.
fn section_sql() -> String {
    let doc = std::fs::read_to_string(root().join("docs/dbt.md")).unwrap();
    let rest = &doc[doc.find("## 1. A role for transformations").unwrap()..];
    let start = rest.find("```sql\n").unwrap() + 7;
    let end = start + rest[start..].find("```").unwrap();
    rest[start..end].to_string()
}
