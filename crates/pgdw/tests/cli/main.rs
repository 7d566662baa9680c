//! The `pgdw` command, run as a user would, against throwaway clusters on free ports.

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
