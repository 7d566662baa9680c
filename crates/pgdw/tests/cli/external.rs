//! DATABASE_URL mode: pgdw uses a server it did not start and explains what is missing there.

use std::process::{Command, Output, Stdio};

use pgdw_testkit::{transcript, TempWarehouse};

use super::support::{ok, query, PGDW};

fn with_url(url: &str, data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(PGDW)
        .env("DATABASE_URL", url)
        .env("PGDW_DATA_DIR", data_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn database_url_mode_uses_the_server_and_never_starts_one() {
    let server = TempWarehouse::new();
    ok(&server, &["up"]);
    let url = server.cluster().unwrap().database_url();
    let elsewhere = tempfile::tempdir().unwrap();
    let data_dir = elsewhere.path().join("never-created");

    let out = with_url(&url, &data_dir, &["up"]);
    assert!(out.status.success(), "{}", transcript(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("does not start or stop it"), "{stdout}");
    assert!(
        !stdout.contains(&server.cluster().unwrap().state().password),
        "the password is never printed"
    );
    assert!(
        !data_dir.exists(),
        "DATABASE_URL mode must not create a cluster"
    );

    let status = with_url(&url, &data_dir, &["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["mode"], "external");
    assert_eq!(json["report"]["problems"].as_array().unwrap().len(), 0);

    let down = with_url(&url, &data_dir, &["down"]);
    assert!(!down.status.success());
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("does not stop servers it did not start")
    );
    assert!(server.cluster().unwrap().running_pid().is_some());
}

#[test]
fn database_url_mode_names_what_the_server_lacks() {
    let server = TempWarehouse::new();
    ok(&server, &["up"]);
    query(
        &server,
        "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
    );
    ok(&server, &["down"]);
    // ALTER SYSTEM wins over pgdw's settings, and the embedded `up` explains the loss too.
    let (_, err) = super::support::fails(&server, &["up"]);
    assert!(err.contains("pg_cron is not preloaded"), "{err}");
    let url = server.cluster().unwrap().database_url();
    let dir = tempfile::tempdir().unwrap();

    let out = with_url(&url, dir.path(), &["up"]);
    assert!(!out.status.success(), "{}", transcript(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pg_cron is not preloaded"), "{err}");
    assert!(err.contains("shared_preload_libraries"), "{err}");

    let status = with_url(&url, dir.path(), &["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("problem: pg_cron is not preloaded"));
}

#[test]
fn an_unreachable_database_url_is_an_error_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = pgdw_cluster::free_port().unwrap();
    let url = format!("postgres://me:hunter2secret@127.0.0.1:{port}/db");
    let out = with_url(&url, dir.path(), &["status"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("hunter2secret"), "{err}");
}

/// Every user of the machine can read a process's command line: the password goes to psql
/// through its environment.
#[test]
fn psql_gets_the_password_from_the_environment_not_the_command_line() {
    let server = TempWarehouse::new();
    ok(&server, &["up"]);
    let c = server.cluster().unwrap();
    let url = c.database_url();
    let elsewhere = tempfile::tempdir().unwrap();
    // psql's `\!` runs a shell whose parent is psql: it prints psql's own command line.
    let out = with_url(
        &url,
        elsewhere.path(),
        &[
            "psql",
            "-XAt",
            "-c",
            "SELECT 'connected as ' || current_user",
            "-c",
            r#"\! tr '\0' ' ' < /proc/$PPID/cmdline"#,
        ],
    );
    assert!(out.status.success(), "{}", transcript(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("connected as postgres"), "{stdout}");
    assert!(stdout.contains("psql"), "{stdout}");
    assert!(stdout.contains("127.0.0.1"), "{stdout}");
    assert!(!stdout.contains(&c.state().password), "{stdout}");
}
