use std::net::TcpListener;
use std::time::Duration;

use pgdw_testkit::TempWarehouse;

use super::support::{fails, ok, query, warehouse};

#[test]
fn up_installs_every_extension_and_down_up_keeps_data() {
    let w = TempWarehouse::new();
    let out = ok(&w, &["up"]);
    assert!(out.contains("created a new warehouse cluster"), "{out}");
    let exts = query(
        &w,
        "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension",
    );
    assert_eq!(
        exts,
        "clerk_fdw,hll,pg_cron,pg_partman,pg_stat_statements,plpgsql,postgres_fdw,prometheus_fdw,tdigest"
    );
    assert_eq!(
        query(
            &w,
            "SELECT extnamespace::regnamespace FROM pg_extension WHERE extname = 'pg_partman'"
        ),
        "partman"
    );
    // The warehouse settings are in force.
    assert_eq!(query(&w, "SHOW wal_level"), "logical");
    assert_eq!(query(&w, "SHOW cron.use_background_workers"), "on");
    assert_eq!(
        query(&w, "SHOW shared_preload_libraries"),
        "pg_cron,pg_stat_statements"
    );
    assert_eq!(query(&w, "SHOW server_encoding"), "UTF8");
    assert_eq!(
        query(&w, "SHOW shared_buffers"),
        "128MB",
        "sized from PGDW_MEMORY=1GB"
    );

    query(
        &w,
        "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')",
    );
    assert!(ok(&w, &["down"]).contains("stopped"));
    assert!(w.cluster().unwrap().running_pid().is_none());
    ok(&w, &["up"]);
    assert_eq!(query(&w, "SELECT v FROM kept"), "still here");
}

#[test]
fn up_twice_is_harmless_and_down_twice_too() {
    let w = warehouse();
    let port = w.cluster().unwrap().port();
    let again = ok(&w, &["up"]);
    assert!(
        again.contains(&format!("already running on 127.0.0.1:{port}")),
        "{again}"
    );
    assert!(ok(&w, &["down"]).contains("stopped"));
    assert!(ok(&w, &["down"]).contains("already stopped"));
}

#[test]
fn status_reports_running_and_stopped() {
    let w = warehouse();
    let s = ok(&w, &["status"]);
    assert!(s.contains("warehouse: running"), "{s}");
    assert!(s.contains("PostgreSQL 15"), "{s}");
    assert!(s.contains("pg_partman"), "{s}");
    let json: serde_json::Value = serde_json::from_str(&ok(&w, &["status", "--json"])).unwrap();
    assert_eq!(json["running"], true);
    assert_eq!(json["port"], w.cluster().unwrap().port());
    assert!(json["data_dir_bytes"].as_u64().unwrap() > 1_000_000);
    ok(&w, &["down"]);
    let out = w.pgdw(super::support::PGDW.as_ref(), &["status"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stopped status exits 3 like pg_ctl"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("not running"));
}

#[test]
fn two_warehouses_run_side_by_side() {
    let a = TempWarehouse::new();
    let b = TempWarehouse::new();
    ok(&a, &["up"]);
    ok(&b, &["up"]);
    assert_ne!(a.cluster().unwrap().port(), b.cluster().unwrap().port());
    query(&a, "CREATE TABLE only_in_a ()");
    assert_eq!(query(&b, "SELECT to_regclass('only_in_a') IS NULL"), "t");
    assert_eq!(query(&a, "SELECT to_regclass('only_in_a') IS NULL"), "f");
}

#[test]
fn env_gives_a_password_protected_tcp_url() {
    let w = warehouse();
    let env = ok(&w, &["env"]);
    let url = env
        .lines()
        .find_map(|l| l.strip_prefix("export DATABASE_URL="))
        .unwrap()
        .trim_matches('\'')
        .to_string();
    let c = w.cluster().unwrap();
    assert!(
        url.contains(&format!("@127.0.0.1:{}/warehouse", c.port())),
        "{url}"
    );
    let psql = c.bindir().join("psql");
    let good = std::process::Command::new(&psql)
        .args([url.as_str(), "-XAtc", "SELECT current_user"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&good.stdout).trim(),
        "postgres",
        "{good:?}"
    );
    let wrong = url.replace(&c.state().password, "wrong-password");
    let bad = std::process::Command::new(&psql)
        .args([wrong.as_str(), "-XAtc", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("password authentication failed"));
}

#[test]
fn stale_pidfile_after_a_crash_is_recovered() {
    let w = warehouse();
    query(&w, "CREATE TABLE survived AS SELECT 42 AS v");
    let pid = w.cluster().unwrap().running_pid().unwrap();
    // Crash: the postmaster dies without cleaning up; its children follow it.
    nix_kill(pid);
    wait_until(Duration::from_secs(20), || children_of(pid) == 0);
    assert!(
        w.data_dir().join("postmaster.pid").exists(),
        "a crash leaves the pidfile"
    );
    ok(&w, &["up"]);
    assert_eq!(query(&w, "SELECT v FROM survived"), "42");
}

/// A backend busy in a CPU-bound statement outlives its SIGKILLed postmaster (it notices only
/// when it next waits) and holds the old shared memory, which made the next start fail with
/// "pre-existing shared memory block ... is still in use". `pgdw up` ends it and says so.
#[test]
fn backends_that_outlive_a_killed_postmaster_are_ended_by_up() {
    let w = warehouse();
    query(&w, "CREATE TABLE survived AS SELECT 42 AS v");
    let mut busy = std::process::Command::new(super::support::PGDW)
        .env_remove("DATABASE_URL")
        .env("PGDW_DATA_DIR", w.data_dir())
        .args(["psql", "-c", "DO $$ BEGIN LOOP END LOOP; END $$"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(20), || {
        query(
            &w,
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'DO $$ BEGIN LOOP%'",
        ) == "1"
    });
    let pid = w.cluster().unwrap().running_pid().unwrap();
    nix_kill(pid);
    wait_until(Duration::from_secs(20), || {
        w.cluster().unwrap().running_pid().is_none()
    });
    // The idle children (checkpointer, walwriter, launchers) notice the death at their next
    // wait and go, on a loaded machine some seconds later; the busy backend never waits.
    let data_dir = pgdw_cluster::place::resolve(&w.data_dir()).unwrap();
    wait_until(Duration::from_secs(30), || {
        pgdw_cluster::process::server_processes(&data_dir).len() <= 1
    });
    assert_eq!(
        pgdw_cluster::process::server_processes(&data_dir).len(),
        1,
        "the busy backend outlived its postmaster"
    );
    let out = w.pgdw(super::support::PGDW.as_ref(), &["up"]);
    assert!(out.status.success(), "{}", pgdw_testkit::transcript(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("1 server processes of this data directory outlived their postmaster"),
        "{}",
        pgdw_testkit::transcript(&out)
    );
    assert_eq!(query(&w, "SELECT v FROM survived"), "42");
    let _ = busy.kill();
    let _ = busy.wait();
}

#[test]
fn pidfile_naming_another_live_process_is_stale() {
    let w = warehouse();
    ok(&w, &["down"]);
    // After a reboot the old PID may belong to an unrelated program: this test process.
    let fake = format!("{}\n{}\n", std::process::id(), w.data_dir().display());
    std::fs::write(w.data_dir().join("postmaster.pid"), fake).unwrap();
    let out = w.pgdw(super::support::PGDW.as_ref(), &["up"]);
    assert!(out.status.success(), "{}", pgdw_testkit::transcript(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stale"));
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let w = TempWarehouse::new();
    let taken = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (_, err) = fails(&w, &["up", "--port", &port]);
    assert!(
        err.contains(&format!("port {port} on 127.0.0.1 is already in use")),
        "{err}"
    );
    assert!(
        err.contains("--port"),
        "the error says how to fix it: {err}"
    );
    // Following the advice: another port, while the first stays taken.
    let other = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let other_port = other.local_addr().unwrap().port().to_string();
    drop(other);
    ok(&w, &["up", "--port", &other_port]);
    assert_eq!(query(&w, "SHOW port"), other_port);
    drop(taken);
}

#[test]
fn a_port_pgdw_chose_and_another_program_took_is_chosen_again() {
    let w = TempWarehouse::new();
    let (mut cluster, created) = pgdw_cluster::Cluster::open_or_init(&pgdw_cluster::Options {
        data_dir: w.data_dir(),
        memory: Some(1 << 30),
        ..Default::default()
    })
    .unwrap();
    assert!(created);
    let chosen = cluster.port();
    // Another program binds the port between pgdw choosing it and the server starting.
    let thief = TcpListener::bind(("127.0.0.1", chosen)).unwrap();
    cluster.start(Duration::from_secs(60)).unwrap();
    let port = cluster.port();
    assert_ne!(port, chosen);
    // Remembered: the next command finds the server on the new port.
    let out = ok(&w, &["up"]);
    assert!(
        out.contains(&format!("already running on 127.0.0.1:{port}")),
        "{out}"
    );
    assert_eq!(query(&w, "SHOW port"), port.to_string());
    drop(thief);
}

#[test]
fn a_data_directory_of_another_major_version_is_refused() {
    let w = warehouse();
    ok(&w, &["down"]);
    std::fs::write(w.data_dir().join("PG_VERSION"), "14\n").unwrap();
    let (_, err) = fails(&w, &["up"]);
    assert!(err.contains("created by PostgreSQL 14"), "{err}");
    assert!(err.contains("runs PostgreSQL 15"), "{err}");
    assert!(err.contains("pg_upgrade"), "{err}");
}

#[test]
fn commands_on_a_missing_warehouse_say_how_to_create_one() {
    let w = TempWarehouse::new();
    let (_, err) = fails(&w, &["psql", "-c", "select 1"]);
    assert!(err.contains("pgdw up"), "{err}");
    assert!(ok(&w, &["down"]).contains("nothing to stop"));
}

fn nix_kill(pid: i32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Number of live processes whose parent is `pid`.
fn children_of(pid: i32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .map(|p| p.trim() == pid.to_string())
                .unwrap_or(false)
        })
        .count()
}

fn wait_until(limit: Duration, cond: impl FnMut() -> bool) {
    assert!(
        pgdw_cluster::process::wait_for(limit, cond),
        "condition not met within {limit:?}"
    );
}

/// A checkout in root's home (mode 0700): the server's `postgres` user cannot enter it.
#[test]
fn up_works_below_a_private_directory() {
    use std::os::unix::fs::PermissionsExt;
    let w = TempWarehouse::at("home/checkout/.pgdw/data");
    let home = w.root().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = ok(&w, &["up"]);
    assert!(out.contains("started PostgreSQL"), "{out}");
    query(&w, "CREATE TABLE kept AS SELECT 'here' AS v");
    let real = std::fs::canonicalize(w.data_dir()).unwrap();
    assert!(real.join("PG_VERSION").exists());
    if nix::unistd::Uid::effective().is_root() {
        assert!(
            real.starts_with(pgdw_cluster::place::RELOCATED_ROOT),
            "the files live where postgres can reach them: {}",
            real.display()
        );
        // The place is remembered: status names it, down and up find it again.
        let status = ok(&w, &["status"]);
        assert!(status.contains(&real.display().to_string()), "{status}");
    }
    ok(&w, &["down"]);
    ok(&w, &["up"]);
    assert_eq!(query(&w, "SELECT v FROM kept"), "here");
}

#[test]
fn a_data_directory_with_quotes_and_spaces_works() {
    let w = TempWarehouse::at("it's odd");
    ok(&w, &["up"]);
    let dir = w.data_dir().display().to_string();
    assert_eq!(
        query(&w, "SHOW unix_socket_directories"),
        format!("\"{}\"", dir.replace('"', "\"\""))
    );
    assert_eq!(query(&w, "SHOW cron.database_name"), "warehouse");
}

#[test]
fn a_data_directory_pg_ctl_cannot_take_is_refused_before_anything_is_made() {
    for name in ["a\nb", "a\"b", "$HOME", "a,b"] {
        let w = TempWarehouse::at(name);
        let (_, err) = fails(&w, &["up"]);
        assert!(err.contains("cannot be given to PostgreSQL"), "{err}");
        assert!(err.contains("choose a --data-dir without it"), "{err}");
        assert!(!w.data_dir().exists());
    }
}

#[test]
fn a_failed_initdb_leaves_nothing_behind() {
    use std::os::unix::fs::PermissionsExt;
    let w = TempWarehouse::new();
    // PostgreSQL binaries whose initdb fails, as a full disk would make it.
    let bindir = w.root().join("bin");
    std::fs::create_dir(&bindir).unwrap();
    for (name, body) in [
        ("postgres", "exit 0"),
        ("initdb", "echo 'initdb: error: disk full' >&2; exit 1"),
    ] {
        let p = bindir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(w.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(super::support::PGDW)
        .env_remove("DATABASE_URL")
        .env("PGDW_DATA_DIR", w.data_dir())
        .env("PGDW_PG_BINDIR", &bindir)
        .arg("up")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("disk full"),
        "{out:?}"
    );
    assert!(!w.data_dir().exists(), "no half-made data directory");
}
