//! `pgdw init` and `pgdw migrate`: sqlx's migrator on a project, and secrets from the
//! environment into user mappings.

use std::process::{Command, Output, Stdio};

use pgdw_testkit::{transcript, TempWarehouse};

use super::{ok, query, PGDW};

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
    let w = TempWarehouse::new();
    ok(&w, &["up"]);
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
    let w = TempWarehouse::new();
    ok(&w, &["up"]);
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

#[test]
fn secrets_come_from_the_environment_into_user_mappings() {
    let w = TempWarehouse::new();
    ok(&w, &["up"]);
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
