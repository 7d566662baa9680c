//! `[replicate.NAME]`: logical replication from a real source cluster into the warehouse,
//! set up by `pgdw migrate`, watched by `pgdw status`, torn down without leaving a slot.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pgdw_testkit::{transcript, wait_for, TempWarehouse};

use super::support::{ok, query, PGDW};

/// A source cluster, a warehouse, and a project replicating `tables` from the source.
pub(super) struct Fixture {
    pub(super) source: TempWarehouse,
    pub(super) wh: TempWarehouse,
    pub(super) project: tempfile::TempDir,
    pub(super) url: String,
}

impl Fixture {
    fn new(setup_source: &str) -> Fixture {
        let source = TempWarehouse::new();
        ok(&source, &["up"]);
        query(&source, setup_source);
        let wh = TempWarehouse::new();
        ok(&wh, &["up"]);
        let project = tempfile::tempdir().unwrap();
        ok(&wh, &["init", project.path().to_str().unwrap()]);
        let url = source.cluster().unwrap().database_url();
        Fixture {
            source,
            wh,
            project,
            url,
        }
    }

    /// The organizations replicated (SECTION), copied and streaming.
    pub(super) fn streaming() -> Fixture {
        Fixture::replicating(ORGS, SECTION, ALL_ORGS)
    }

    /// The source set up by `setup_source`, replicated by the project's `section` (whose
    /// source is `env:CP_URL`), once `check` gives the same on both sides.
    pub(super) fn replicating(setup_source: &str, section: &str, check: &str) -> Fixture {
        let f = Fixture::new(setup_source);
        f.config(section);
        f.migrate();
        f.converges(check);
        f
    }

    fn config(&self, section: &str) {
        std::fs::write(self.project.path().join("pgdw.toml"), section).unwrap();
    }

    /// `pgdw replicate resync cp`: its output, insisting it succeeded.
    pub(super) fn resync(&self) -> String {
        let out = Command::new(PGDW)
            .env_remove("DATABASE_URL")
            .env("PGDW_DATA_DIR", self.wh.data_dir())
            .env("CP_URL", &self.url)
            .args(["replicate", "resync", "cp", "--project"])
            .arg(self.project.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", transcript(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn migrate_with(&self, url: &str) -> Output {
        Command::new(PGDW)
            .env_remove("DATABASE_URL")
            .env("PGDW_DATA_DIR", self.wh.data_dir())
            .env("CP_URL", url)
            .args(["migrate", "--project"])
            .arg(self.project.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn migrate(&self) -> String {
        let out = self.migrate_with(&self.url);
        assert!(out.status.success(), "{}", transcript(&out));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains(&self.source.cluster().unwrap().state().password),
            "{all}"
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Wait (bounded) until `sql` gives the same answer in the warehouse as on the source.
    pub(super) fn converges(&self, sql: &str) {
        let want = query(&self.source, sql);
        let mut got = String::new();
        let same = wait_for(Duration::from_secs(90), || {
            got = query(&self.wh, sql);
            got == want
        });
        assert!(same, "{sql}\n  source:    {want}\n  warehouse: {got}");
    }

    fn status(&self) -> serde_json::Value {
        let out = self.wh.pgdw(PGDW.as_ref(), &["status", "--json"]);
        assert!(out.status.success(), "{}", transcript(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["replication"].clone()
    }
}

const ORGS: &str = "CREATE TABLE organizations (id int PRIMARY KEY, name text NOT NULL, plan text);
    INSERT INTO organizations SELECT g, 'org ' || g, 'free' FROM generate_series(1, 100) g;
    CREATE TABLE instances (id bigint PRIMARY KEY, org int, state text);
    INSERT INTO instances SELECT g, g % 100 + 1, 'Up' FROM generate_series(1, 300) g;
    CREATE TABLE unpublished (id serial PRIMARY KEY, v text);";

const SECTION: &str = "[replicate.cp]\nsource = \"env:CP_URL\"\ntables = [\"public.organizations\"]\nmax_lag = \"30s\"\n";

pub(super) const ALL_ORGS: &str = "SELECT count(*) || ':' || coalesce(string_agg(id || name || coalesce(plan, '-'), ',' ORDER BY id), '') FROM organizations";

#[test]
fn the_initial_copy_then_inserts_updates_and_deletes_arrive() {
    let f = Fixture::new(ORGS);
    f.config(SECTION);
    let out = f.migrate();
    assert!(
        out.contains("created public.organizations in the warehouse"),
        "{out}"
    );
    assert!(out.contains("subscription pgdw_cp created"), "{out}");
    // The source's definition: types, NOT NULL, primary key.
    assert_eq!(
        query(&f.wh, "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull, ', ' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'public.organizations'::regclass AND attnum > 0"),
        "id integer true, name text true, plan text false"
    );
    assert_eq!(query(&f.wh, "SELECT count(*) FROM pg_index WHERE indrelid = 'public.organizations'::regclass AND indisprimary"), "1");
    f.converges(ALL_ORGS);
    query(&f.source, "INSERT INTO organizations VALUES (101, 'new', NULL); UPDATE organizations SET plan = 'pro' WHERE id % 7 = 0; DELETE FROM organizations WHERE id % 10 = 0;");
    f.converges(ALL_ORGS);
    // Running it again changes nothing.
    let oid = query(
        &f.wh,
        "SELECT oid FROM pg_subscription WHERE subname = 'pgdw_cp'",
    );
    let again = f.migrate();
    assert!(!again.contains("[replicate.cp]"), "{again}");
    assert_eq!(
        query(
            &f.wh,
            "SELECT oid FROM pg_subscription WHERE subname = 'pgdw_cp'"
        ),
        oid
    );
    // A new source URL (here the same server, another option) moves the subscription to it.
    let moved = f.migrate_with(&format!("{}?connect_timeout=10", f.url));
    assert!(
        String::from_utf8_lossy(&moved.stdout)
            .contains("subscription pgdw_cp uses the new source URL"),
        "{}",
        transcript(&moved)
    );
    assert_eq!(
        query(&f.wh, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'pgdw' AND column_name LIKE '%conninfo%'"),
        "0",
        "no digest of the password where the reader role can read it"
    );
    query(
        &f.source,
        "INSERT INTO organizations VALUES (102, 'after the move', NULL)",
    );
    f.converges(ALL_ORGS);
    // Status: the subscription, its table ready, the slot reserved.
    let mut status = serde_json::Value::Null;
    assert!(
        wait_for(Duration::from_secs(60), || {
            status = f.status();
            status[0]["state"] == "OK"
        }),
        "{status}"
    );
    assert_eq!(
        status[0]["tables"],
        serde_json::json!([["public.organizations", "ready"]])
    );
    assert_eq!(status[0]["wal_status"], "reserved");
    let text = ok(&f.wh, &["status"]);
    assert!(
        text.contains("replication:") && text.contains("cp") && text.contains("[OK]"),
        "{text}"
    );
}

#[test]
fn tables_are_added_and_removed() {
    let f = Fixture::streaming();
    f.config(&SECTION.replace(
        "[\"public.organizations\"]",
        "[\"public.organizations\", \"instances\"]",
    ));
    let out = f.migrate();
    assert!(
        out.contains("replicating public.instances: copying it, then streaming"),
        "{out}"
    );
    f.converges("SELECT count(*), sum(id), sum(org) FROM instances");
    f.config(SECTION);
    let out = f.migrate();
    assert!(
        out.contains(
            "stopped replicating public.instances; its copy in the warehouse stays as it was"
        ),
        "{out}"
    );
    assert_eq!(query(&f.source, "SELECT string_agg(tablename, ',') FROM pg_publication_tables WHERE pubname = 'pgdw_cp'"), "organizations");
    assert_eq!(
        query(
            &f.wh,
            "SELECT count(*) FROM pg_subscription_rel WHERE srrelid = 'public.instances'::regclass"
        ),
        "0"
    );
    assert_eq!(
        query(&f.wh, "SELECT count(*) FROM instances"),
        "300",
        "the copy stays"
    );
    // The rest keeps streaming.
    query(
        &f.source,
        "UPDATE organizations SET name = 'renamed' WHERE id = 1",
    );
    f.converges(ALL_ORGS);
}

#[test]
fn a_column_added_on_the_source_while_rows_stream_loses_no_row() {
    let f = Fixture::streaming();
    query(&f.source, "INSERT INTO organizations SELECT g, 'before ' || g FROM generate_series(1001, 1100) g;
                      ALTER TABLE organizations ADD COLUMN region text NOT NULL DEFAULT 'eu';
                      INSERT INTO organizations SELECT g, 'after ' || g, 'pro', 'us' FROM generate_series(1101, 1200) g;");
    // `pgdw status` (as the running `pgdw serve` does every few seconds) adds the column; the
    // apply worker, stopped on it, resumes by itself.
    let want = query(&f.source, "SELECT count(*) FROM organizations");
    let mut status = serde_json::Value::Null;
    assert!(
        wait_for(Duration::from_secs(90), || {
            status = f.status();
            query(&f.wh, "SELECT count(*) FROM organizations") == want
        }),
        "{status}"
    );
    f.converges("SELECT count(*) || ':' || string_agg(id || coalesce(region, '-'), ',' ORDER BY id) FROM organizations WHERE id > 1100");
    f.converges(ALL_ORGS);
}

#[test]
fn rows_written_while_the_warehouse_is_down_arrive_exactly_once() {
    let f = Fixture::streaming();
    ok(&f.wh, &["down"]);
    query(&f.source, "INSERT INTO organizations SELECT g, 'while down' FROM generate_series(2001, 3000) g; DELETE FROM organizations WHERE id < 50;");
    ok(&f.wh, &["up"]);
    f.converges(ALL_ORGS);
}

#[test]
fn the_source_restarting_mid_stream_loses_nothing() {
    let f = Fixture::streaming();
    query(
        &f.source,
        "INSERT INTO organizations SELECT g, 'before restart' FROM generate_series(4001, 4500) g",
    );
    ok(&f.source, &["down"]);
    ok(&f.source, &["up"]);
    query(
        &f.source,
        "INSERT INTO organizations SELECT g, 'after restart' FROM generate_series(4501, 5000) g",
    );
    f.converges(ALL_ORGS);
}

#[test]
fn removing_the_section_drops_the_subscription_and_its_slot() {
    let f = Fixture::streaming();
    f.config("");
    let out = f.migrate();
    assert!(
        out.contains(
            "[replicate.cp] removed: subscription pgdw_cp and its slot on the source dropped"
        ),
        "{out}"
    );
    assert_eq!(query(&f.wh, "SELECT count(*) FROM pg_subscription"), "0");
    assert_eq!(
        query(&f.source, "SELECT count(*) FROM pg_replication_slots"),
        "0",
        "no orphaned slot"
    );
    assert_eq!(query(&f.source, "SELECT count(*) FROM pg_publication"), "0");
    assert_eq!(
        query(&f.wh, "SELECT count(*) FROM organizations"),
        "100",
        "the copy stays"
    );
    // And it can come back, from a fresh copy.
    f.config(SECTION);
    f.migrate();
    query(&f.source, "INSERT INTO organizations VALUES (7777, 'back')");
    f.converges(ALL_ORGS);
}

#[test]
fn bad_sources_are_refused_with_nothing_created() {
    let f = Fixture::new(&format!(
        "{ORGS} CREATE TABLE no_key (v text); CREATE VIEW a_view AS SELECT 1 AS x;
         CREATE ROLE plain LOGIN PASSWORD 'plain-pw-123'; GRANT SELECT ON organizations TO plain;"
    ));
    query(&f.wh, "CREATE TABLE public.instances (mine int)");
    // pgdw's own clusters bound slots; a source that does not is warned about.
    query(&f.source, "ALTER SYSTEM SET max_slot_wal_keep_size = -1");
    query(&f.source, "SELECT pg_reload_conf()");
    assert!(wait_for(Duration::from_secs(10), || query(
        &f.source,
        "SHOW max_slot_wal_keep_size"
    ) == "-1"));
    f.config("[replicate.cp]\nsource = \"env:CP_URL\"\ntables = [\"no_key\", \"nope\", \"a_view\", \"instances\"]\n");
    let out = f.migrate_with(&f.url);
    assert!(!out.status.success(), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "nothing was changed",
        "public.no_key has no primary key or replica identity",
        "REPLICA IDENTITY FULL",
        "the source has no table public.nope",
        "public.a_view on the source is not a table",
        "the warehouse has a table public.instances that pgdw did not create",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
    assert!(
        err.contains("max_slot_wal_keep_size = -1"),
        "the WAL risk is said: {err}"
    );
    // A role that may not replicate.
    f.config(SECTION);
    let port = f.source.cluster().unwrap().port();
    let out = f.migrate_with(&format!(
        "postgres://plain:plain-pw-123@127.0.0.1:{port}/warehouse"
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the source role plain may not replicate: ALTER ROLE \"plain\" REPLICATION"),
        "{err}"
    );
    assert!(!err.contains("plain-pw-123"), "{err}");
    // wal_level.
    // wal_level, and too few slots and WAL senders.
    query(&f.source, "ALTER SYSTEM SET wal_level = replica");
    query(&f.source, "ALTER SYSTEM SET max_replication_slots = 1");
    query(&f.source, "ALTER SYSTEM SET max_wal_senders = 1");
    ok(&f.source, &["down"]);
    ok(&f.source, &["up"]);
    let out = f.migrate_with(&f.url);
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "the source has wal_level = replica: set wal_level = logical",
        "max_replication_slots = 1 in use; pgdw needs 2 free",
        "max_wal_senders = 1 in use; pgdw needs 2 free",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
    assert_eq!(query(&f.wh, "SELECT count(*) FROM pg_subscription"), "0");
    assert_eq!(
        query(&f.wh, "SELECT to_regclass('public.organizations') IS NULL"),
        "t"
    );
    assert_eq!(
        query(&f.source, "SELECT count(*) FROM pg_replication_slots"),
        "0"
    );
    assert_eq!(query(&f.source, "SELECT count(*) FROM pg_publication"), "0");
}

#[test]
fn a_lagging_subscription_shows_as_lagging_and_fires_its_alert() {
    let f = Fixture::new(ORGS);
    f.config(&SECTION.replace("30s", "1s"));
    f.migrate();
    f.converges(ALL_ORGS);
    // The apply worker waits on a lock in the warehouse while the source writes.
    let mut blocker = f.wh.client_db("warehouse");
    let mut tx = blocker.transaction().unwrap();
    tx.batch_execute("LOCK TABLE organizations IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    query(&f.source, "UPDATE organizations SET plan = 'late'");
    let mut status = serde_json::Value::Null;
    assert!(
        wait_for(Duration::from_secs(60), || {
            status = f.status();
            status[0]["state"] == "LAGGING"
        }),
        "{status}"
    );
    assert!(status[0]["lag_bytes"].as_i64().unwrap() > 0, "{status}");
    let fired = query(&f.wh, &pgdw::replicate::alert_rule().sql);
    assert!(fired.starts_with("cp: LAGGING"), "{fired}");
    tx.rollback().unwrap();
    f.converges(ALL_ORGS);
    assert!(wait_for(Duration::from_secs(60), || f.status()[0]["state"] == "OK"));
}

/// The source bounds the WAL a slot may hold: while the warehouse is down, writes beyond it
/// invalidate the slot. Status says LOST; `pgdw migrate` copies afresh instead of continuing
/// with a silent gap.
#[test]
fn a_lost_slot_shows_as_lost_and_migrate_copies_afresh() {
    let f = Fixture::new(ORGS);
    query(&f.source, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
    query(&f.source, "SELECT pg_reload_conf()");
    f.config(SECTION);
    let out = f.migrate_with(&f.url);
    assert!(out.status.success(), "{}", transcript(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("max_slot_wal_keep_size = -1"),
        "a bound is no warning"
    );
    f.converges(ALL_ORGS);
    ok(&f.wh, &["down"]);
    query(
        &f.source,
        "UPDATE organizations SET plan = 'gap' WHERE id <= 10",
    );
    assert!(
        wait_for(Duration::from_secs(60), || {
            query(
                &f.source,
                "INSERT INTO unpublished (v) SELECT repeat('x', 1000) FROM generate_series(1, 5000)",
            );
            query(&f.source, "SELECT pg_switch_wal()");
            query(&f.source, "CHECKPOINT");
            query(
                &f.source,
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'pgdw_cp'",
            ) == "lost"
        }),
        "the slot was never invalidated"
    );
    ok(&f.wh, &["up"]);
    let mut status = serde_json::Value::Null;
    assert!(
        wait_for(Duration::from_secs(30), || {
            status = f.status();
            status[0]["state"] == "LOST"
        }),
        "{status}"
    );
    let out = f.migrate();
    assert!(
        out.contains("lost WAL on the source (max_slot_wal_keep_size): copying every table afresh"),
        "{out}"
    );
    f.converges(ALL_ORGS);
    assert!(wait_for(Duration::from_secs(60), || f.status()[0]["state"] == "OK"));
}

/// `pgdw replicate resync NAME`: the same fresh copy, asked for.
#[test]
fn resync_copies_a_section_afresh() {
    let f = Fixture::streaming();
    // A row only the warehouse has (written by hand): a fresh copy removes it.
    query(
        &f.wh,
        "INSERT INTO organizations VALUES (-1, 'stray', NULL)",
    );
    assert!(f.resync().contains("copying every table afresh"));
    f.converges(ALL_ORGS);
    assert_eq!(
        query(&f.source, "SELECT count(*) FROM pg_replication_slots"),
        "1"
    );
}

/// `pgdw serve` with replication: it samples the source, shows the built-in panel, and
/// evaluates the built-in `replication` alert rule without the project naming it.
#[test]
fn serve_watches_replication_with_its_panel_and_alert() {
    let f = Fixture::streaming();
    let dashboards = f.project.path().join("dashboards");
    std::fs::write(
        dashboards.join("ops.toml"),
        "title = \"Ops\"\n[[panels]]\ntitle = \"Replication\"\nkind = \"table\"\nbuiltin = \"replication\"\n",
    )
    .unwrap();
    let cluster = f.wh.cluster().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let running = rt
        .block_on(pgdw::serve::start(pgdw::serve::Options {
            alert_every: Duration::from_secs(1),
            ..pgdw::serve::Options::local(
                pgdw::target::embedded_options(&cluster, "warehouse"),
                pgdw::serve::reader::Reader::Socket,
                dashboards,
            )
        }))
        .unwrap();
    let url = format!("{}api/dashboards/ops/panels/0", running.url);
    let mut panel = serde_json::Value::Null;
    assert!(
        wait_for(Duration::from_secs(60), || {
            panel = serde_json::from_str(&ureq::get(&url).call().unwrap().into_string().unwrap())
                .unwrap();
            panel["rows"][0][1] == "OK"
        }),
        "{panel}"
    );
    assert_eq!(panel["rows"][0][0], "cp");
    assert_eq!(panel["rows"][0][4], "1/1", "tables ready");
    assert!(
        wait_for(Duration::from_secs(30), || query(
            &f.wh,
            "SELECT state FROM pgdw.alert_state WHERE alert = 'replication'"
        ) == "ok"),
        "the built-in rule is evaluated"
    );
    running.stop();
}

/// Materialized columns on a replica: rows applied by the subscription are computed too.
#[test]
fn materialized_columns_on_a_replica() {
    let f = Fixture::streaming();
    query(
        &f.wh,
        "ALTER TABLE organizations ADD COLUMN name_upper text;
         CREATE FUNCTION organizations_upper(o organizations) RETURNS TABLE (name_upper text)
           LANGUAGE sql AS $$ SELECT upper(o.name) $$;
         SELECT pgdw.materialize('organizations', 'organizations_upper', depends_on => '{name}')",
    );
    let _worker = super::materialize::worker(&f.wh);
    super::support::converges(
        &f.wh,
        "SELECT count(*) FROM organizations WHERE name_upper IS NULL",
        "0",
    );
    query(
        &f.source,
        "INSERT INTO organizations VALUES (500, 'streamed in', NULL); UPDATE organizations SET name = 'renamed' WHERE id = 3",
    );
    super::support::converges(
        &f.wh,
        "SELECT string_agg(name_upper, ',' ORDER BY id) FROM organizations WHERE id IN (3, 500)",
        "RENAMED,STREAMED IN",
    );
}

#[test]
fn a_rollup_of_a_replica_follows_the_source() {
    let f = Fixture::streaming();
    let plans = "SELECT plan, count(*) AS organizations, count(DISTINCT length(name)) AS name_lengths FROM organizations GROUP BY 1";
    query(
        &f.wh,
        &format!("SELECT pgdw.rollup('plans', $q${plans}$q$, source => 'organizations', keys => ARRAY['plan'])"),
    );
    let _worker = super::materialize::worker(&f.wh);
    // Rows applied by the subscription's apply worker (row triggers only, as a replica):
    // an insert into a new group, a move between groups, a group emptied by a delete, a
    // NULL group.
    query(
        &f.source,
        "INSERT INTO organizations VALUES (500, 'streamed in', 'enterprise');
         UPDATE organizations SET plan = 'pro' WHERE id <= 30;
         UPDATE organizations SET plan = NULL WHERE id = 31;
         INSERT INTO organizations VALUES (501, 'short-lived', 'trial');
         DELETE FROM organizations WHERE id = 501",
    );
    f.converges(ALL_ORGS);
    super::support::converges(
        &f.wh,
        &format!(
            "SELECT (SELECT dirty_groups FROM pgdw.rollup_lag('plans')) = 0
                AND NOT EXISTS (TABLE plans EXCEPT {plans}) AND NOT EXISTS ({plans} EXCEPT TABLE plans)"
        ),
        "t",
    );
    assert_eq!(
        query(
            &f.wh,
            "SELECT string_agg(coalesce(plan, '-') || '=' || organizations, ',' ORDER BY plan NULLS FIRST) FROM plans"
        ),
        "-=1,enterprise=1,free=69,pro=30"
    );
}
