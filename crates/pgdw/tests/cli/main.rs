//! The `pgdw` command, run as a user would, against throwaway clusters on free ports.

mod analytics;
mod bi;
#[cfg(feature = "demo")]
mod browser;
#[cfg(feature = "demo")]
mod controlplane;
#[cfg(feature = "demo")]
mod demo;
mod doctor;
mod embedded;
#[cfg(feature = "demo")]
mod example;
mod external;
mod materialize;
mod metrics_load;
mod migrate;
mod output;
mod queue;
mod replicate;
mod rollup;
mod rollup_cases;
mod runtime;
mod serve;
mod standby;

use std::process::Output;

use pgdw_testkit::{transcript, TempWarehouse};

pub const PGDW: &str = env!("CARGO_BIN_EXE_pgdw");

/// Run pgdw and insist that it succeeded.
pub fn ok(w: &TempWarehouse, args: &[&str]) -> String {
    let out = w.pgdw(PGDW.as_ref(), args);
    assert!(
        out.status.success(),
        "pgdw {args:?} failed\n{}",
        transcript(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Run pgdw and insist that it failed; returns stderr.
pub fn fails(w: &TempWarehouse, args: &[&str]) -> (Output, String) {
    let out = w.pgdw(PGDW.as_ref(), args);
    assert!(
        !out.status.success(),
        "pgdw {args:?} should have failed\n{}",
        transcript(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, err)
}

/// One value from a query, through `pgdw psql`.
pub fn query(w: &TempWarehouse, sql: &str) -> String {
    ok(w, &["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .trim()
        .to_string()
}

/// The warehouse's machine dies: every process of the server at once (SIGKILL). Killing only
/// the postmaster is another fault: its backends live on until they next wait, and an apply
/// worker among them goes on applying and confirming changes without the synchronous standby
/// (PostgreSQL cancels the wait once the postmaster is gone); docs/standby.md says so.
pub fn machine_dies(w: &TempWarehouse) {
    use nix::sys::signal::{kill, Signal};
    let dir = pgdw_cluster::place::resolve(&w.data_dir()).unwrap();
    // Frozen first, all of them, then killed: killed one by one, a process still running
    // would see its postmaster gone meanwhile, which no machine's death lets it see.
    // The second look finds what was forked during the first (the postmaster is stopped then).
    let signal_all = |signal| {
        for pid in pgdw_cluster::process::server_processes(&dir) {
            let _ = kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    };
    signal_all(Signal::SIGSTOP);
    signal_all(Signal::SIGSTOP);
    signal_all(Signal::SIGKILL);
    assert!(pgdw_testkit::wait_for(
        std::time::Duration::from_secs(10),
        || { pgdw_cluster::process::server_processes(&dir).is_empty() }
    ));
}
