//! `pgdw init` and `pgdw migrate`: sqlx's migrator on a project, and secrets from the
//! environment into user mappings.

use std::process::{Command, Output, Stdio};

use pgdw_testkit::{transcript, TempWarehouse};

use super::support::{ok, query, warehouse, PGDW};

fn migrate(w: &TempWarehouse, project: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(PGDW);
    cmd.env_remove("DATABASE_URL")
        .env("PGDW_DATA_DIR", w.data_dir())
        .args(["migrate", "--project"])
        .arg(project)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn a_project_migrates_once_and_refuses_an_edited_migration() {
    let w = warehouse();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("wh");
    let init = ok(&w, &["init", project.to_str().unwrap()]);
    assert!(init.contains("created a pgdw project"), "{init}");
    // The scaffolded dashboard is one `pgdw serve` accepts.
    let dashboards = pgdw::dashboards::load_dir(&project.join("dashboards")).unwrap();
    assert_eq!(dashboards.len(), 1);
    assert_eq!(dashboards[0].panels.len(), 2);
    std::fs::write(
        project.join("migrations/00000000000002_tables.sql"),
        "CREATE TABLE ingested_clusters (instance_id text PRIMARY KEY, state text);",
    )
    .unwrap();
    let out = migrate(&w, &project, &[]);
    assert!(out.status.success(), "{}", transcript(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("applied 2 tables"), "{stdout}");
    assert_eq!(
        query(&w, "SELECT to_regclass('ingested_clusters') IS NOT NULL"),
        "t"
    );
    let again = migrate(&w, &project, &[]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date (2 applied)"));

    std::fs::write(
        project.join("migrations/00000000000002_tables.sql"),
        "CREATE TABLE ingested_clusters (instance_id text PRIMARY KEY, state text, extra int);",
    )
    .unwrap();
    let edited = migrate(&w, &project, &[]);
    assert!(!edited.status.success());
    let err = String::from_utf8_lossy(&edited.stderr);
    assert!(
        err.contains("migration 00000000000002_tables.sql was changed after it was applied"),
        "{err}"
    );
}

#[test]
fn a_failing_migration_is_rolled_back_and_named() {
    let w = warehouse();
    let dir = tempfile::tempdir().unwrap();
    ok(&w, &["init", dir.path().to_str().unwrap()]);
    std::fs::write(
        dir.path().join("migrations/00000000000002_bad.sql"),
        "CREATE TABLE half_done (id int); SELECT 1 / 0;",
    )
    .unwrap();
    let out = migrate(&w, dir.path(), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("migration 00000000000002_bad.sql failed and was rolled back"),
        "{err}"
    );
    assert_eq!(query(&w, "SELECT to_regclass('half_done') IS NULL"), "t");
}

/// A running warehouse and a project declaring a Clerk server whose key comes from
/// $TEST_CLERK_KEY.
fn clerk_project() -> (TempWarehouse, tempfile::TempDir) {
    let w = warehouse();
    let dir = tempfile::tempdir().unwrap();
    ok(&w, &["init", dir.path().to_str().unwrap()]);
    std::fs::write(
        dir.path().join("migrations/00000000000002_clerk.sql"),
        "CREATE SERVER clerk_server FOREIGN DATA WRAPPER clerk_fdw OPTIONS (api_url 'http://127.0.0.1:9/v1');",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pgdw.toml"),
        "[secrets.clerk_server]\napi_key = \"env:TEST_CLERK_KEY\"\n",
    )
    .unwrap();
    (w, dir)
}

#[test]
fn secrets_come_from_the_environment_into_user_mappings() {
    let (w, dir) = clerk_project();
    let missing = migrate(&w, dir.path(), &[]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr)
        .contains("comes from $TEST_CLERK_KEY, which is not set"));
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM pg_foreign_server WHERE srvname = 'clerk_server'"
        ),
        "0",
        "nothing applied"
    );

    let out = migrate(
        &w,
        dir.path(),
        &[("TEST_CLERK_KEY", "sk_test_from_env_777")],
    );
    assert!(out.status.success(), "{}", transcript(&out));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("sk_test_from_env_777"), "{all}");
    assert_eq!(
        query(
            &w,
            "SELECT umoptions::text FROM pg_user_mappings WHERE srvname = 'clerk_server'"
        ),
        "{api_key=sk_test_from_env_777}"
    );
    // A new key replaces the old one.
    let out = migrate(&w, dir.path(), &[("TEST_CLERK_KEY", "sk_test_rotated")]);
    assert!(out.status.success(), "{}", transcript(&out));
    assert_eq!(
        query(
            &w,
            "SELECT umoptions::text FROM pg_user_mappings WHERE srvname = 'clerk_server'"
        ),
        "{api_key=sk_test_rotated}"
    );
}

/// pg_stat_statements keeps utility statements verbatim and the server log keeps a failing
/// statement: a secret must be in neither, nor in pgdw's own output, whether migrate succeeds
/// or fails.
#[test]
fn secrets_never_reach_statement_text_logs_or_output() {
    const KEY: &str = "sk_test_never_in_text_4242";
    let (w, dir) = clerk_project();
    let good = migrate(&w, dir.path(), &[("TEST_CLERK_KEY", KEY)]);
    assert!(good.status.success(), "{}", transcript(&good));
    // The validator refuses this option: the ALTER fails with the secret in it.
    std::fs::write(
        dir.path().join("pgdw.toml"),
        "[secrets.clerk_server]\nno_such_option = \"env:TEST_CLERK_KEY\"\n",
    )
    .unwrap();
    let bad = migrate(&w, dir.path(), &[("TEST_CLERK_KEY", KEY)]);
    assert!(!bad.status.success(), "{}", transcript(&bad));
    let said = format!("{}{}", transcript(&good), transcript(&bad));
    assert!(
        said.contains("no_such_option"),
        "the failure is explained: {said}"
    );
    assert!(!said.contains(KEY), "{said}");
    assert_eq!(
        query(
            &w,
            &format!("SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%{KEY}%'")
        ),
        "0"
    );
    assert!(
        query(
            &w,
            "SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%pgdw.set_option%'"
        ) != "0",
        "the calls themselves are tracked, with their parameters as $n"
    );
    let log = w.server_log();
    assert!(
        log.contains("no_such_option"),
        "the failure is logged: {log}"
    );
    assert!(!log.contains(KEY), "{log}");
}

/// `_` in an option name is not a wildcard: `api_key` is not `apiXkey`.
#[test]
fn option_names_are_compared_exactly() {
    let w = warehouse();
    let dir = tempfile::tempdir().unwrap();
    ok(&w, &["init", dir.path().to_str().unwrap()]);
    std::fs::write(
        dir.path().join("migrations/00000000000002_server.sql"),
        "CREATE FOREIGN DATA WRAPPER anything; \
         CREATE SERVER s FOREIGN DATA WRAPPER anything OPTIONS (\"apiXkey\" 'other'); \
         CREATE USER MAPPING FOR CURRENT_USER SERVER s OPTIONS (\"apiXkey\" 'other');",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("pgdw.toml"),
        "[servers.s]\napi_key = \"env:OPT\"\n[secrets.s]\napi_key = \"env:OPT\"\n",
    )
    .unwrap();
    let out = migrate(&w, dir.path(), &[("OPT", "mine")]);
    assert!(out.status.success(), "{}", transcript(&out));
    assert_eq!(
        query(
            &w,
            "SELECT srvoptions::text FROM pg_foreign_server WHERE srvname = 's'"
        ),
        "{apiXkey=other,api_key=mine}"
    );
    assert_eq!(
        query(
            &w,
            "SELECT umoptions::text FROM pg_user_mappings WHERE srvname = 's'"
        ),
        "{apiXkey=other,api_key=mine}"
    );
}
