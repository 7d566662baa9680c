//! Test support shared by the integration tests of every crate.
//!
//! [`TempWarehouse`] owns a temporary data directory; dropping it stops any server started
//! there (immediately: tests do not need a clean shutdown) and deletes the directory, so a
//! failing test leaves nothing running.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pgdw_cluster::{Cluster, Options};

pub mod bench;
pub mod example;
pub mod http;
pub mod prometheus;

pub use pgdw_cluster::free_port;
pub use pgdw_cluster::process::wait_for;

/// A temporary directory holding one embedded warehouse.
pub struct TempWarehouse {
    dir: tempfile::TempDir,
    /// The data directory's path below `dir`.
    data: PathBuf,
}

impl Default for TempWarehouse {
    fn default() -> Self {
        Self::new()
    }
}

impl TempWarehouse {
    pub fn new() -> Self {
        Self::at("data")
    }

    /// A warehouse whose data directory is `relative` below a new temporary directory (for
    /// paths with awkward characters, or below a private parent).
    pub fn at(relative: &str) -> Self {
        // Short paths: the server's unix socket lives in the data directory.
        let dir = tempfile::Builder::new()
            .prefix("pgdw-t")
            .tempdir_in("/tmp")
            .expect("create temp dir");
        TempWarehouse {
            data: PathBuf::from(relative),
            dir,
        }
    }

    /// The temporary directory holding the data directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join(&self.data)
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

    /// Create and start the cluster directly (without the pgdw binary), for SQL-level tests
    /// that use the `postgres` database.
    pub fn started() -> Self {
        let w = TempWarehouse::new();
        let (mut cluster, _) = Cluster::open_or_init(&Options {
            data_dir: w.data_dir(),
            memory: Some(1 << 30),
            ..Options::default()
        })
        .expect("create cluster");
        cluster
            .start(Duration::from_secs(60))
            .expect("start cluster");
        w
    }

    /// Run SQL through psql in one session; Ok(stdout) or Err(stderr). Output is unaligned,
    /// tuples only, `|`-separated.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_db("postgres", sql)
    }

    /// `psql` in database `db`.
    pub fn psql_db(&self, db: &str, sql: &str) -> Result<String, String> {
        use std::io::Write;
        let c = self.cluster().expect("a cluster");
        let mut child = Command::new(c.bindir().join("psql"))
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(c.socket_dir())
            .args([
                "-p",
                &c.port().to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-f",
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `pg_dump --schema-only` of database `db`: every definition, no data.
    pub fn schema_dump(&self, db: &str) -> String {
        let c = self.cluster().expect("a cluster");
        let out = Command::new(c.bindir().join("pg_dump"))
            .args(["--schema-only", "--no-owner", "-h"])
            .arg(c.socket_dir())
            .args(["-p", &c.port().to_string(), "-U", "postgres", "-d", db])
            .output()
            .expect("run pg_dump");
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // pg_dump 15.14 and later wrap the dump in `\restrict KEY`, a new random key each time.
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// `psql`, insisting on success.
    pub fn sql(&self, sql: &str) -> String {
        self.psql(sql)
            .unwrap_or_else(|e| panic!("SQL failed:\n{sql}\n--- error:\n{e}"))
    }

    /// `psql`, insisting on failure; returns the error text.
    pub fn sql_err(&self, sql: &str) -> String {
        match self.psql(sql) {
            Ok(out) => panic!("SQL should have failed:\n{sql}\n--- output:\n{out}"),
            Err(e) => e,
        }
    }

    /// A client session (for tests that need one backend across statements).
    pub fn client(&self) -> postgres::Client {
        self.client_db("postgres")
    }

    /// A client session in database `db`.
    pub fn client_db(&self, db: &str) -> postgres::Client {
        let c = self.cluster().expect("a cluster");
        postgres::Config::new()
            .host_path(c.socket_dir())
            .port(c.port())
            .user("postgres")
            .dbname(db)
            .connect(postgres::NoTls)
            .expect("connect")
    }

    /// The server log so far.
    pub fn server_log(&self) -> String {
        let dir = pgdw_cluster::place::resolve(&self.data_dir()).expect("data directory");
        std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
    }

    /// Panics if any backend crashed (a signal, a PANIC, or a restart after one).
    pub fn assert_no_crash(&self) {
        let log = self.server_log();
        for bad in [
            "terminated by signal",
            "PANIC:",
            "was terminated",
            "all server processes terminated",
        ] {
            assert!(
                !log.contains(bad),
                "the server log shows a crash ({bad}):\n{log}"
            );
        }
    }
}

impl Drop for TempWarehouse {
    fn drop(&mut self) {
        if let Some(c) = self.cluster() {
            let _ = c.stop(Duration::from_secs(5));
        }
        // A cluster relocated out of a private directory lives elsewhere: remove it too.
        if pgdw_cluster::place::is_relocated(&self.data_dir()) {
            let _ = pgdw_cluster::place::remove(&self.data_dir());
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
