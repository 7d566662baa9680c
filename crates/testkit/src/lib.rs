//! Test support shared by the integration tests of every crate.
//!
//! [`TempWarehouse`] owns a temporary data directory; dropping it stops any server started
//! there (immediately: tests do not need a clean shutdown) and deletes the directory, so a
//! failing test leaves nothing running.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pgdw_cluster::Cluster;

/// A temporary directory holding one embedded warehouse.
pub struct TempWarehouse {
    dir: tempfile::TempDir,
}

impl Default for TempWarehouse {
    fn default() -> Self {
        Self::new()
    }
}

impl TempWarehouse {
    pub fn new() -> Self {
        // Short paths: the server's unix socket lives in the data directory.
        let dir = tempfile::Builder::new()
            .prefix("pgdw-t")
            .tempdir_in("/tmp")
            .expect("create temp dir");
        TempWarehouse { dir }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Run the `pgdw` binary at `bin` against this warehouse (DATABASE_URL removed).
    pub fn pgdw(&self, bin: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin);
        cmd.env_remove("DATABASE_URL")
            .env("PGDW_DATA_DIR", self.data_dir())
            .env("PGDW_MEMORY", "1GB")
            .args(args)
            .stdin(Stdio::null());
        cmd.output().expect("run pgdw")
    }

    pub fn cluster(&self) -> Option<Cluster> {
        Cluster::open_existing(&self.data_dir(), None)
            .ok()
            .flatten()
    }
}

impl Drop for TempWarehouse {
    fn drop(&mut self) {
        if let Some(c) = self.cluster() {
            let _ = c.stop(Duration::from_secs(5));
        }
    }
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn transcript(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
