//! `pgdw doctor`: each check made to fire by a real condition in a throwaway warehouse, and
//! silent once the condition is gone.

use std::collections::BTreeSet;

use pgdw_testkit::TempWarehouse;
use serde_json::Value;

use super::support::{converges, ok, query, warehouse, PGDW};

/// `pgdw doctor --json` with thresholds of zero for sessions; its exit code and findings.
fn doctor(w: &TempWarehouse) -> (i32, Vec<Value>) {
    let out = w.pgdw(
        PGDW.as_ref(),
        &[
            "doctor",
            "--json",
            "--idle-in-transaction",
            "0",
            "--long-query",
            "1h",
        ],
    );
    let code = out.status.code().unwrap();
    assert!(code == 0 || code == 1, "{}", pgdw_testkit::transcript(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    (code, json["findings"].as_array().unwrap().clone())
}

/// The findings of `check` about objects containing `object`, at warning or above.
fn problems<'a>(findings: &'a [Value], check: &str, object: &str) -> Vec<&'a Value> {
    findings
        .iter()
        .filter(|f| {
            f["check"] == check
                && f["severity"] != "info"
                && f["object"].as_str().unwrap().contains(object)
        })
        .collect()
}

/// Nothing at warning or above, and the exit code says so.
fn assert_healthy(code: i32, findings: &[Value]) {
    let serious: Vec<&Value> = findings
        .iter()
        .filter(|f| f["severity"] != "info")
        .collect();
    assert!(serious.is_empty(), "{serious:#?}");
    assert_eq!(code, 0);
}

#[test]
fn a_fresh_warehouse_is_healthy_and_the_json_is_stable() {
    let w = warehouse();
    let (code, findings) = doctor(&w);
    assert_healthy(code, &findings);
    // The documented fields, and nothing else (docs/doctor.md).
    for f in &findings {
        let keys: BTreeSet<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["advice", "check", "figure", "object", "severity", "value"]),
            "{f}"
        );
    }
    // The seed's settings are named, with why.
    assert!(findings
        .iter()
        .any(|f| f["check"] == "setting" && f["object"] == "join_collapse_limit"));
    let text = ok(&w, &["doctor"]);
    assert!(text.contains("0 critical, 0 warnings"), "{text}");
    // Every check is a function of its own, and pgdw.doctor combines each of them.
    assert_eq!(
        query(
            &w,
            "SELECT string_agg(p.proname, ',' ORDER BY p.proname) FROM pg_proc p
              WHERE p.pronamespace = 'pgdw'::regnamespace AND p.proname LIKE 'doctor\\_%'
                AND position('pgdw.' || p.proname || '(' IN
                             (SELECT prosrc FROM pg_proc WHERE oid = 'pgdw.doctor(interval, interval, bigint, bigint, bigint)'::regprocedure)) = 0"
        ),
        "",
        "checks pgdw.doctor does not call"
    );
}

/// `long_running_query`: a statement running past the threshold is named with the command that
/// cancels it; once it ended, nothing is said.
#[test]
fn a_long_running_query_is_named_until_it_ends() {
    let w = warehouse();
    let sleeper = {
        let mut c = w.client_db("warehouse");
        std::thread::spawn(move || {
            let _ = c.batch_execute("SET application_name = 'sleeper'; SELECT pg_sleep(120)");
        })
    };
    converges(
        &w,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sleeper' AND state = 'active'
            AND now() - query_start > interval '1 second'",
        "1",
    );
    let found = "SELECT count(*) || ' ' || coalesce(min(advice), '') FROM pgdw.doctor(long_query => '1 second')
                  WHERE check_name = 'long_running_query' AND object LIKE '%(sleeper)'";
    let got = query(&w, found);
    assert!(got.starts_with("1 SELECT pg_cancel_backend("), "{got}");
    query(
        &w,
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'sleeper'",
    );
    sleeper.join().unwrap();
    assert_eq!(query(&w, found), "0");
}

/// `top_statement_total_time`: the statements that take the most time are named, normalized
/// (pg_stat_statements' text, never a literal), as information, never as a problem.
#[test]
fn the_statements_taking_the_most_time_are_named_normalized() {
    let w = warehouse();
    for _ in 0..3 {
        query(&w, "SELECT count(*) FROM generate_series(1, 3000000)");
    }
    let (_, findings) = doctor(&w);
    let top: Vec<&Value> = findings
        .iter()
        .filter(|f| f["check"] == "top_statement_total_time")
        .collect();
    assert!(
        top.iter().any(|f| f["object"]
            .as_str()
            .unwrap()
            .contains("generate_series($1, $2)")),
        "{top:#?}"
    );
    assert!(top.iter().all(|f| f["severity"] == "info"), "{top:#?}");
    // A fresh database is far from wraparound: said as information.
    assert!(
        findings.iter().any(|f| f["check"] == "wraparound"
            && f["object"] == "database warehouse"
            && f["severity"] == "info"),
        "{findings:#?}"
    );
}

#[test]
fn locks_idle_transactions_and_the_xmin_horizon() {
    let w = warehouse();
    query(&w, "CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 100)");
    let mut holder = w.client_db("warehouse");
    holder
        .batch_execute(
            "SET application_name = 'holder'; BEGIN; UPDATE accounts SET balance = 0 WHERE id = 1",
        )
        .unwrap();
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let waiting = {
        let mut waiter = w.client_db("warehouse");
        std::thread::spawn(move || {
            waiter
                .batch_execute("SET application_name = 'waiter'; UPDATE accounts SET balance = balance + 1 WHERE id = 1")
                .unwrap();
        })
    };
    converges(
        &w,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'waiter' AND wait_event_type = 'Lock'",
        "1",
    );

    let (code, findings) = doctor(&w);
    assert_eq!(code, 1);
    let blocked = problems(&findings, "blocked_session", "(waiter)");
    assert_eq!(blocked.len(), 1, "{findings:#?}");
    let figure = blocked[0]["figure"].as_str().unwrap();
    assert!(
        figure.contains(&format!(
            "held by pid {holder_pid} (holder, idle in transaction"
        )),
        "{figure}"
    );
    assert_eq!(
        blocked[0]["advice"],
        format!(
            "SELECT pg_terminate_backend({holder_pid}); -- the blocker is idle in its transaction"
        )
    );
    let idle = problems(&findings, "idle_in_transaction", "(holder)");
    assert_eq!(idle.len(), 1, "{findings:#?}");
    let horizon = problems(&findings, "xmin_horizon", "(holder)");
    assert_eq!(horizon.len(), 1, "{findings:#?}");
    assert!(horizon[0]["figure"]
        .as_str()
        .unwrap()
        .contains("VACUUM cannot remove"));

    // The holder commits: the waiter goes on, and nothing is left to say.
    holder.batch_execute("COMMIT").unwrap();
    waiting.join().unwrap();
    let (_, findings) = doctor(&w);
    for check in ["blocked_session", "idle_in_transaction", "xmin_horizon"] {
        assert!(
            problems(&findings, check, "").is_empty(),
            "{check}: {findings:#?}"
        );
    }
}

#[test]
fn tables_indexes_columns_and_slots() {
    let w = warehouse();
    query(
        &w,
        "CREATE TABLE churned (id int, v text) WITH (autovacuum_enabled = false);
         INSERT INTO churned SELECT g, 'value ' || g FROM generate_series(1, 20000) g;
         DELETE FROM churned WHERE id > 1000;
         CREATE TABLE lookups (id int PRIMARY KEY, b int);
         INSERT INTO lookups SELECT g, g * 7 FROM generate_series(1, 100000) g;
         CREATE INDEX lookups_b ON lookups (b);
         CREATE INDEX lookups_b_again ON lookups (b);
         CREATE TABLE padded (a boolean, b bigint, c boolean, d bigint, e boolean, f bigint);
         INSERT INTO padded SELECT true, g, false, g, true, g FROM generate_series(1, 20000) g;
         ANALYZE padded; ANALYZE lookups;",
    );
    query(
        &w,
        "SELECT pg_create_logical_replication_slot('forgotten', 'pgoutput')",
    );
    // The table is read by its primary key only: its other indexes are never scanned.
    query(&w, "SELECT b FROM lookups WHERE id = 5");

    let (code, findings) = doctor(&w);
    assert_eq!(code, 1);
    let dead = problems(&findings, "table_dead_tuples", "churned");
    assert_eq!(dead.len(), 1, "{findings:#?}");
    assert!(
        dead[0]["figure"]
            .as_str()
            .unwrap()
            .starts_with("95.0% dead (19000 dead, 1000 live rows")
            && dead[0]["figure"]
                .as_str()
                .unwrap()
                .ends_with("autovacuum is disabled on it"),
        "{}",
        dead[0]["figure"]
    );
    assert_eq!(
        dead[0]["advice"],
        "VACUUM (ANALYZE) public.churned; ALTER TABLE public.churned RESET (autovacuum_enabled);"
    );
    let unused: BTreeSet<&str> = problems(&findings, "unused_index", "lookups")
        .iter()
        .map(|f| f["object"].as_str().unwrap())
        .collect();
    assert_eq!(
        unused,
        BTreeSet::from(["public.lookups_b", "public.lookups_b_again"])
    );
    let duplicate = problems(&findings, "duplicate_index", "lookups");
    assert_eq!(duplicate.len(), 1, "{findings:#?}");
    assert_eq!(duplicate[0]["advice"], "DROP INDEX public.lookups_b_again;");
    let padding = problems(&findings, "column_padding", "padded");
    assert_eq!(padding.len(), 1, "{findings:#?}");
    assert_eq!(padding[0]["value"], 21.0);
    assert!(padding[0]["advice"]
        .as_str()
        .unwrap()
        .ends_with("b, d, f, a, c, e"));
    let slot = problems(&findings, "replication_slot", "forgotten");
    assert_eq!(slot.len(), 1, "{findings:#?}");
    assert!(slot[0]["figure"].as_str().unwrap().contains("inactive"));

    // Each condition gone: vacuumed, the index used and its twin dropped, the columns in a
    // better order, the slot dropped.
    query(
        &w,
        "DROP INDEX lookups_b_again;
         DROP TABLE padded;
         CREATE TABLE padded (b bigint, d bigint, f bigint, a boolean, c boolean, e boolean);
         INSERT INTO padded SELECT g, g, g, true, false, true FROM generate_series(1, 20000) g;
         ANALYZE padded;",
    );
    query(&w, "SELECT pg_drop_replication_slot('forgotten')");
    query(&w, "VACUUM churned");
    query(
        &w,
        "SET enable_seqscan = off; SELECT count(*) FROM lookups WHERE b = 35",
    );
    let (code, findings) = doctor(&w);
    assert_healthy(code, &findings);
}

/// `setting`: an unlimited `max_slot_wal_keep_size` with a replication slot is a warning (an
/// abandoned slot would keep WAL until the disk is full), named with the command that bounds
/// it; bounded again, it is not.
#[test]
fn an_unbounded_slot_wal_keep_size_with_a_slot_is_a_warning() {
    let w = warehouse();
    let warned = || {
        let (_, findings) = doctor(&w);
        problems(&findings, "setting", "max_slot_wal_keep_size")
            .iter()
            .map(|f| f["advice"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    query(
        &w,
        "SELECT pg_create_physical_replication_slot('doctor_test')",
    );
    assert!(
        warned().is_empty(),
        "bounded by the embedded cluster's own setting"
    );
    query(&w, "ALTER SYSTEM SET max_slot_wal_keep_size = -1");
    query(&w, "SELECT pg_reload_conf()");
    converges(&w, "SHOW max_slot_wal_keep_size", "-1");
    let advice = warned();
    assert_eq!(advice.len(), 1);
    assert!(
        advice[0].starts_with("ALTER SYSTEM SET max_slot_wal_keep_size"),
        "{advice:?}"
    );
    query(&w, "ALTER SYSTEM RESET max_slot_wal_keep_size");
    query(&w, "SELECT pg_reload_conf()");
    converges(&w, "SHOW max_slot_wal_keep_size", "4GB");
    assert!(warned().is_empty());
}
