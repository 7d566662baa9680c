use std::path::PathBuf;

/// Everything that can go wrong while managing the embedded cluster.
///
/// Messages are written for the person at the terminal: what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("PostgreSQL binaries not found in {0}; run scripts/setup.sh or set PGDW_PG_BINDIR")]
    BinariesMissing(PathBuf),

    #[error(
        "data directory {dir} was created by PostgreSQL {found}, but this pgdw runs PostgreSQL {expected} \
         ({bindir}); upgrade it with pg_upgrade or choose another --data-dir"
    )]
    MajorVersionMismatch {
        dir: PathBuf,
        found: String,
        expected: String,
        bindir: PathBuf,
    },

    #[error("{0} exists but is not a PostgreSQL data directory made by pgdw (no PG_VERSION or pgdw.json); choose an empty or new --data-dir")]
    NotADataDir(PathBuf),

    #[error(
        "port {port} on 127.0.0.1 is already in use by another program; choose another with --port"
    )]
    PortInUse { port: u16 },

    #[error(
        "server processes {pids:?} of this data directory outlived their postmaster and could not be ended; \
         end them (kill -9) before starting it again"
    )]
    OrphanedBackends { pids: Vec<i32> },

    #[error("unix socket path {0} is longer than the 107 bytes the kernel allows; use a shorter --data-dir")]
    SocketPathTooLong(PathBuf),

    #[error("{} cannot be given to PostgreSQL: {reason}; choose a --data-dir without it", .value.display())]
    UnwritableSetting { value: PathBuf, reason: String },

    #[error("the OS user `postgres` does not exist; PostgreSQL refuses to run as root, so pgdw needs it (apt-get install postgresql-15 creates it)")]
    NoPostgresUser,

    #[error("{what} failed ({status}){}", log_tail(.log))]
    CommandFailed {
        what: String,
        status: String,
        log: String,
    },

    #[error("PostgreSQL did not become ready within {secs} s{}", log_tail(.log))]
    NotReady { secs: u64, log: String },

    #[error("could not stop PostgreSQL (pid {pid}) even in immediate mode")]
    StopFailed { pid: i32 },

    #[error(
        "this data directory was the warehouse's primary, but its standby {standby} ({dir}) was promoted and \
         is the warehouse now; starting this one would make two writers. Make it a standby of the new \
         primary (`pgdw --data-dir {dir} standby create ...` into an empty directory) or delete it"
    )]
    Superseded { standby: String, dir: PathBuf },

    #[error("{0} is not a standby (no standby.signal): only a standby can be promoted")]
    NotAStandby(PathBuf),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is corrupt: {source}")]
    BadState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn log_tail(log: &str) -> String {
    if log.trim().is_empty() {
        String::new()
    } else {
        format!("; last lines of the server log:\n{}", log.trim_end())
    }
}

/// Attach a human context to an io::Error; the one conversion point for I/O failures.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, ClusterError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, ClusterError> {
        self.map_err(|source| ClusterError::Io {
            context: what(),
            source,
        })
    }
}
