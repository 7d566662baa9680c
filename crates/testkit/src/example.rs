//! examples/customer-warehouse, as tests and benchmarks apply it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{transcript, TempWarehouse};

/// The example project in this checkout.
pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/customer-warehouse")
}

/// The example copied into `dir` without its `[replicate.control_plane]` section (up to the
/// next blank line), as its pgdw.toml tells a user whose source cannot grant REPLICATION to
/// do: migration 2 then creates the control plane's tables and polls them.
pub fn polling_copy(dir: &Path) -> PathBuf {
    let example = path();
    for sub in ["migrations", "dashboards"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
        for e in fs::read_dir(example.join(sub)).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), dir.join(sub).join(e.file_name())).unwrap();
        }
    }
    let toml = fs::read_to_string(example.join("pgdw.toml")).unwrap();
    let (before, rest) = toml
        .split_once("[replicate.control_plane]")
        .expect("the example replicates the control plane");
    let after = rest.split_once("\n\n").map(|(_, a)| a).unwrap_or_default();
    fs::write(dir.join("pgdw.toml"), format!("{before}{after}")).unwrap();
    dir.to_path_buf()
}

/// The example's polling variant migrated into `w` (started) by the `pgdw` binary at `pgdw`,
/// its sources addressed nowhere: the migrations only declare them, so nothing is reached.
pub fn migrate_unreachable(w: &TempWarehouse, pgdw: &Path) {
    let copy = tempfile::tempdir().unwrap();
    let project = polling_copy(copy.path());
    let out = Command::new(pgdw)
        .env_remove("DATABASE_URL")
        .env("PGDW_DATA_DIR", w.data_dir())
        .envs([
            ("CONTROL_PLANE_HOST", "/nonexistent"),
            ("CONTROL_PLANE_PORT", "5432"),
            ("CONTROL_PLANE_DB", "control_plane"),
            ("CLERK_API_URL", "http://127.0.0.1:9/v1"),
            ("CLERK_SECRET_KEY", "sk_test_unreachable"),
            ("PROMETHEUS_URL", "http://127.0.0.1:9"),
        ])
        .args(["migrate", "--project"])
        .arg(&project)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", transcript(&out));
}
