//! The embedded PostgreSQL cluster that pgdw runs when no `DATABASE_URL` is given.
//!
//! This crate only manages processes and files (initdb, pg_ctl, configuration, the pidfile,
//! and the local Prometheus of the demo and the tests); it never speaks SQL. The `pgdw` crate connects afterwards to install extensions.

mod conf;
mod error;
mod os_user;
pub mod place;
pub mod process;
pub mod prometheus;
mod sizing;
pub mod standby;
mod state;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use error::ClusterError;
use error::IoContext;
pub use os_user::ServerUser;
pub use sizing::{machine_memory, parse_size, MemorySettings};
pub use state::{StandbyRef, State};

/// The database inside the cluster that holds the warehouse; pg_cron runs its jobs there.
pub const WAREHOUSE_DB: &str = "warehouse";
/// The PostgreSQL major version pgdw is built for.
pub const PG_MAJOR: &str = "15";
const SERVER_LOG: &str = "server.log";
const PGDW_CONF: &str = "pgdw.conf";
/// How long backends that outlived their postmaster get to end on their own, then to be gone
/// after SIGKILL.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// How to open (or create) a cluster.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub data_dir: PathBuf,
    /// Port to listen on; a free one is chosen at creation when None, then remembered.
    pub port: Option<u16>,
    /// Memory budget in bytes to size settings from; the machine's memory when None.
    pub memory: Option<u64>,
    /// Where initdb, pg_ctl and postgres live; see [`default_bindir`].
    pub bindir: Option<PathBuf>,
}

/// A cluster on disk, running or not.
#[derive(Debug)]
pub struct Cluster {
    data_dir: PathBuf,
    bindir: PathBuf,
    user: ServerUser,
    state: State,
    memory: MemorySettings,
    /// pgdw chose the port itself when it created this cluster (no `--port`): a port another
    /// program takes between that choice and the server binding it is chosen again instead
    /// of reported, since nobody asked for that number.
    port_chosen: bool,
}

/// How many times a port pgdw chose is chosen again when it is taken before the server binds it.
const PORT_RETRIES: usize = 5;

#[derive(Debug, PartialEq, Eq)]
pub enum StartOutcome {
    Started,
    AlreadyRunning,
}

#[derive(Debug, PartialEq, Eq)]
pub enum StopOutcome {
    Stopped,
    /// The fast shutdown did not finish in time; an immediate one did.
    StoppedImmediately,
    AlreadyStopped,
}

/// `PGDW_PG_BINDIR`, else Debian's PostgreSQL 15 location, else `pg_config --bindir`.
pub fn default_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PGDW_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{PG_MAJOR}/bin"));
    if debian.join("postgres").exists() {
        return debian;
    }
    Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or(debian)
}

impl Cluster {
    /// Whether `dir` already holds a cluster (anything at all: it is then never initialized over).
    pub fn exists(dir: &Path) -> bool {
        fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    }

    /// Open the cluster in `opts.data_dir`, creating it with initdb when the directory is
    /// missing or empty. Returns the cluster and whether it was just created.
    pub fn open_or_init(opts: &Options) -> Result<(Cluster, bool), ClusterError> {
        let bindir = opts.bindir.clone().unwrap_or_else(default_bindir);
        if !bindir.join("postgres").exists() {
            return Err(ClusterError::BinariesMissing(bindir));
        }
        let requested = absolute(&opts.data_dir)?;
        let user = ServerUser::detect()?;
        let created = !Cluster::exists(&place::resolve(&requested)?);
        let data_dir = if created && !place::is_relocated(&requested) {
            check_socket_path(&requested)?;
            conf::check_data_dir(&requested)?;
            place::place_new(&requested, &user)?
        } else {
            place::resolve(&requested)?
        };
        check_socket_path(&data_dir)?;
        conf::check_data_dir(&data_dir)?;
        let memory = MemorySettings::for_budget(
            opts.memory
                .or_else(machine_memory)
                .unwrap_or(4 * 1024 * 1024 * 1024),
        );

        let state = if created {
            let port = match opts.port {
                Some(p) => p,
                None => free_port()?,
            };
            let state = State::new(port, WAREHOUSE_DB);
            init(&requested, &data_dir, &bindir, &user, &state)?;
            state
        } else {
            check_version(&data_dir, &bindir)?;
            let mut state = State::load(&data_dir)?
                .ok_or_else(|| ClusterError::NotADataDir(data_dir.clone()))?;
            if let Some(p) = opts.port {
                if p != state.port {
                    state.port = p;
                    state.save(&data_dir)?;
                }
            }
            state
        };
        Ok((
            Cluster {
                data_dir,
                bindir,
                user,
                state,
                memory,
                port_chosen: created && opts.port.is_none(),
            },
            created,
        ))
    }

    /// Open an existing cluster without creating anything (for status, down, env).
    pub fn open_existing(
        data_dir: &Path,
        bindir: Option<PathBuf>,
    ) -> Result<Option<Cluster>, ClusterError> {
        let data_dir = place::resolve(data_dir)?;
        if !Cluster::exists(&data_dir) {
            return Ok(None);
        }
        let bindir = bindir.unwrap_or_else(default_bindir);
        check_version(&data_dir, &bindir)?;
        let state =
            State::load(&data_dir)?.ok_or_else(|| ClusterError::NotADataDir(data_dir.clone()))?;
        Ok(Some(Cluster {
            data_dir,
            bindir,
            user: ServerUser::detect()?,
            state,
            memory: MemorySettings::for_budget(machine_memory().unwrap_or(4 << 30)),
            port_chosen: false,
        }))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    pub fn port(&self) -> u16 {
        self.state.port
    }
    pub fn state(&self) -> &State {
        &self.state
    }
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }
    /// The unix socket lives in the data directory itself (mode 0700), where trust auth is safe.
    pub fn socket_dir(&self) -> &Path {
        &self.data_dir
    }
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join(SERVER_LOG)
    }

    /// A libpq URL over TCP with the generated password, for tools outside this machine's user.
    pub fn database_url(&self) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            self.state.superuser, self.state.password, self.state.port, self.state.database
        )
    }

    /// The PID of the running postmaster, if it is running. A pidfile whose process is gone
    /// (a crash, a reboot) is reported as not running.
    pub fn running_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        // /proc/<pid>/stat is "pid (comm) state ...". A zombie (a crashed postmaster nobody
        // reaped yet) holds its PID but is not running.
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = &stat[open + 1..close];
        let state = stat[close + 1..].trim_start().chars().next()?;
        let alive = !matches!(state, 'Z' | 'X' | 'x');
        (alive && (comm == "postgres" || comm == "postmaster")).then_some(pid)
    }

    /// Write the settings pgdw owns, then start the server and wait (bounded) until it accepts
    /// connections. Starting a running cluster is a no-op. When pgdw chose the port and another
    /// program took it first, a new port is chosen and remembered.
    pub fn start(&mut self, timeout: Duration) -> Result<StartOutcome, ClusterError> {
        let mut attempts = 0;
        loop {
            match self.start_once(timeout) {
                Err(ClusterError::PortInUse { .. })
                    if self.port_chosen && attempts < PORT_RETRIES =>
                {
                    attempts += 1;
                    self.state.port = free_port()?;
                    self.state.save(&self.data_dir)?;
                }
                other => return other,
            }
        }
    }

    fn start_once(&self, timeout: Duration) -> Result<StartOutcome, ClusterError> {
        if self.running_pid().is_some() {
            return Ok(StartOutcome::AlreadyRunning);
        }
        self.check_not_superseded()?;
        self.remove_stale_pidfile()?;
        self.end_orphaned_backends()?;
        if TcpListener::bind(("127.0.0.1", self.state.port)).is_err() {
            return Err(ClusterError::PortInUse {
                port: self.state.port,
            });
        }
        self.write_conf()?;
        self.user.announce();
        let log = self.log_path();
        let log_start = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let out = self
            .user
            .command(&self.bindir.join("pg_ctl"))
            .arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&log)
            .arg("-w")
            .arg("-t")
            .arg(timeout.as_secs().max(1).to_string())
            .arg("-s")
            .stdin(Stdio::null())
            .output()
            .context(|| "running pg_ctl start".into())?;
        if out.status.success() {
            return Ok(StartOutcome::Started);
        }
        // Free when checked above, taken by the time the postmaster bound it.
        if lost_the_port(&log, log_start) {
            return Err(ClusterError::PortInUse {
                port: self.state.port,
            });
        }
        let log = tail(&log, 20);
        if String::from_utf8_lossy(&out.stderr).contains("did not start in time")
            || String::from_utf8_lossy(&out.stdout).contains("did not start in time")
        {
            return Err(ClusterError::NotReady {
                secs: timeout.as_secs(),
                log,
            });
        }
        Err(ClusterError::CommandFailed {
            what: "pg_ctl start".into(),
            status: out.status.to_string(),
            log: if log.is_empty() {
                String::from_utf8_lossy(&out.stderr).into_owned()
            } else {
                log
            },
        })
    }

    /// Stop gracefully (fast mode: running queries are cancelled, data is flushed); after
    /// `timeout`, stop immediately. A stopped cluster is success.
    pub fn stop(&self, timeout: Duration) -> Result<StopOutcome, ClusterError> {
        let Some(pid) = self.running_pid() else {
            self.remove_stale_pidfile()?;
            return Ok(StopOutcome::AlreadyStopped);
        };
        if self.pg_ctl_stop("fast", timeout)? {
            return Ok(StopOutcome::Stopped);
        }
        if self.pg_ctl_stop("immediate", Duration::from_secs(10))? {
            return Ok(StopOutcome::StoppedImmediately);
        }
        Err(ClusterError::StopFailed { pid })
    }

    fn pg_ctl_stop(&self, mode: &str, timeout: Duration) -> Result<bool, ClusterError> {
        let status = self
            .user
            .command(&self.bindir.join("pg_ctl"))
            .args(["stop", "-s", "-w", "-m", mode, "-t"])
            .arg(timeout.as_secs().max(1).to_string())
            .arg("-D")
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context(|| "running pg_ctl stop".into())?;
        Ok(status.success() || self.running_pid().is_none())
    }

    /// Backends that outlived their postmaster (it was SIGKILLed, say) hold its shared memory:
    /// wait a little for them, end them, and say so, before a new postmaster starts.
    fn end_orphaned_backends(&self) -> Result<(), ClusterError> {
        let (ended, left) = process::end_orphaned_backends(&self.data_dir, ORPHAN_GRACE);
        if ended.is_empty() {
            return Ok(());
        }
        if left {
            return Err(ClusterError::OrphanedBackends { pids: ended });
        }
        eprintln!(
            "pgdw: {} server processes of this data directory outlived their postmaster (pids {}); ended them before starting",
            ended.len(),
            ended.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
        );
        Ok(())
    }

    fn remove_stale_pidfile(&self) -> Result<(), ClusterError> {
        let pidfile = self.data_dir.join("postmaster.pid");
        if pidfile.exists() && self.running_pid().is_none() {
            eprintln!(
                "pgdw: removing stale {} (its server is no longer running)",
                pidfile.display()
            );
            fs::remove_file(&pidfile).context(|| format!("removing {}", pidfile.display()))?;
            // The socket and its lock file live in the data directory, which only this cluster
            // uses; a lock naming a dead (or zombie) postmaster would block the next start.
            for entry in fs::read_dir(&self.data_dir)
                .context(|| format!("reading {}", self.data_dir.display()))?
            {
                let path = entry
                    .context(|| "reading the data directory".into())?
                    .path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.starts_with(".s.PGSQL.") {
                    fs::remove_file(&path).context(|| format!("removing {}", path.display()))?;
                }
            }
        }
        Ok(())
    }

    fn write_conf(&self) -> Result<(), ClusterError> {
        let conf = format!(
            "# Written by pgdw at every `pgdw up`. Put your own settings in postgresql.auto.conf\n\
             # (ALTER SYSTEM), which PostgreSQL reads after this file.\n\
             port = {port}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = {sock}\n\
             unix_socket_permissions = 0700\n\
             shared_preload_libraries = 'pg_cron,pg_stat_statements'\n\
             cron.database_name = {db}\n\
             cron.use_background_workers = on\n\
             cron.max_running_jobs = 16\n\
             max_worker_processes = 32\n\
             wal_level = logical\n\
             # On a standby: the primary keeps the rows its long queries read (a panel is not\n\
             # cancelled by replay); ignored on a primary.\n\
             hot_standby_feedback = on\n\
             # A slot (this cluster as a replication source) keeps at most this much WAL: a\n\
             # consumer gone for good cannot fill the disk; its slot is then lost, and pgdw\n\
             # copies afresh.\n\
             max_slot_wal_keep_size = 4GB\n\
             # Logical replication starts table copies and retries after 1 s, not 5.\n\
             wal_retrieve_retry_interval = 1s\n\
             wal_compression = lz4\n\
             password_encryption = 'scram-sha-256'\n\
             log_line_prefix = '%m [%p] %q%u@%d '\n\
             {memory}",
            port = self.state.port,
            sock = conf::socket_directories(&self.data_dir)?,
            db = conf::quote(&self.state.database)?,
            memory = self.memory.to_conf(),
        );
        let path = self.data_dir.join(PGDW_CONF);
        fs::write(&path, conf).context(|| format!("writing {}", path.display()))?;
        self.user.own(&path)
    }

    /// Total size of the data directory in bytes.
    pub fn disk_usage(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(meta) = fs::symlink_metadata(p) else {
                return 0;
            };
            if meta.is_dir() {
                fs::read_dir(p)
                    .map(|d| d.flatten().map(|e| walk(&e.path())).sum())
                    .unwrap_or(0)
            } else {
                meta.len()
            }
        }
        walk(&self.data_dir)
    }

    /// The version of the binaries this cluster runs with, e.g. "PostgreSQL 15.20 (Debian ...)".
    pub fn server_version(&self) -> String {
        let out = Command::new(self.bindir.join("postgres"))
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        match out.strip_prefix("postgres (PostgreSQL) ") {
            Some(v) => format!("PostgreSQL {v}"),
            None => out,
        }
    }
}

fn init(
    requested: &Path,
    data_dir: &Path,
    bindir: &Path,
    user: &ServerUser,
    state: &State,
) -> Result<(), ClusterError> {
    user.announce();
    fs::create_dir_all(data_dir).context(|| format!("creating {}", data_dir.display()))?;
    user.own(data_dir)?;
    let result = run_initdb(data_dir, bindir, user, state);
    if result.is_err() {
        // Leave nothing half-made behind (nor a link to it): the next `up` starts from scratch.
        let _ = place::remove(requested);
    }
    result
}

fn run_initdb(
    data_dir: &Path,
    bindir: &Path,
    user: &ServerUser,
    state: &State,
) -> Result<(), ClusterError> {
    // The password reaches initdb through a private file, never a command line.
    let pw_dir = std::env::temp_dir().join(format!(
        "pgdw-initdb-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    fs::create_dir_all(&pw_dir).context(|| format!("creating {}", pw_dir.display()))?;
    let pwfile = pw_dir.join("pw");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&pwfile)
            .context(|| format!("writing {}", pwfile.display()))?;
        f.write_all(state.password.as_bytes())
            .context(|| format!("writing {}", pwfile.display()))?;
    }
    user.own(&pw_dir)?;
    let out = user
        .command(&bindir.join("initdb"))
        .arg("-D")
        .arg(data_dir)
        .args(["-U", &state.superuser, "-E", "UTF8", "--no-locale"])
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .stdin(Stdio::null())
        .output()
        .context(|| "running initdb".into());
    let _ = fs::remove_dir_all(&pw_dir);
    let out = out?;
    if !out.status.success() {
        return Err(ClusterError::CommandFailed {
            what: "initdb".into(),
            status: out.status.to_string(),
            log: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let hba =
        "# Written by pgdw: trust only on the unix socket inside the data directory (mode 0700),\n\
               # a password for TCP, and TCP only on 127.0.0.1.\n\
               local all all trust\n\
               host  all all 127.0.0.1/32 scram-sha-256\n\
               local replication all trust\n\
               host  replication all 127.0.0.1/32 scram-sha-256\n";
    fs::write(data_dir.join("pg_hba.conf"), hba).context(|| "writing pg_hba.conf".into())?;
    let conf_path = data_dir.join("postgresql.conf");
    let mut conf = fs::read_to_string(&conf_path).context(|| "reading postgresql.conf".into())?;
    conf.push_str(&format!("\ninclude_if_exists = '{PGDW_CONF}'\n"));
    fs::write(&conf_path, conf).context(|| "writing postgresql.conf".into())?;
    state.save(data_dir)?;
    user.own(data_dir)
}

/// The data directory must match the server's major version: PostgreSQL cannot read another's.
fn check_version(data_dir: &Path, bindir: &Path) -> Result<(), ClusterError> {
    let found = fs::read_to_string(data_dir.join("PG_VERSION"))
        .map_err(|_| ClusterError::NotADataDir(data_dir.to_path_buf()))?;
    let found = found.trim().to_string();
    if found != PG_MAJOR {
        return Err(ClusterError::MajorVersionMismatch {
            dir: data_dir.to_path_buf(),
            found,
            expected: PG_MAJOR.into(),
            bindir: bindir.to_path_buf(),
        });
    }
    Ok(())
}

fn check_socket_path(data_dir: &Path) -> Result<(), ClusterError> {
    let socket = data_dir.join(".s.PGSQL.65535.lock");
    if socket.as_os_str().len() > 107 {
        return Err(ClusterError::SocketPathTooLong(socket));
    }
    Ok(())
}

fn absolute(p: &Path) -> Result<PathBuf, ClusterError> {
    std::path::absolute(p).context(|| format!("resolving {}", p.display()))
}

/// A port that is free on 127.0.0.1 right now, chosen at random outside the kernel's
/// ephemeral range: ports from that range are handed to every outgoing connection and every
/// `bind(0)` on the machine, so one found free there is often taken again before the server
/// binds it.
pub fn free_port() -> Result<u16, ClusterError> {
    use rand::Rng;
    let (low, high) = ephemeral_range();
    let mut rng = rand::thread_rng();
    for _ in 0..200 {
        let p: u16 = rng.gen_range(10_000..=65_535);
        if (low..=high).contains(&p) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return Ok(p);
        }
    }
    let l = TcpListener::bind(("127.0.0.1", 0)).context(|| "finding a free port".into())?;
    Ok(l.local_addr()
        .context(|| "finding a free port".into())?
        .port())
}

/// `net.ipv4.ip_local_port_range`, Linux's default when it cannot be read.
fn ephemeral_range() -> (u16, u16) {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// Whether the server log written since `from` says the postmaster could not bind its port.
fn lost_the_port(log: &Path, from: u64) -> bool {
    let text = fs::read(log).unwrap_or_default();
    let new = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
    new.contains("could not bind") && new.contains("Address already in use")
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postmaster_that_lost_its_port_is_told_from_other_failures() {
        let dir = std::env::temp_dir().join(format!("pgdw-lost-port-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("server.log");
        let before = "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use\n";
        fs::write(&log, before).unwrap();
        let from = before.len() as u64;
        // Only what this start wrote counts: an old failure is history.
        assert!(!lost_the_port(&log, from));
        let mut f = fs::OpenOptions::new().append(true).open(&log).unwrap();
        use std::io::Write;
        f.write_all(b"LOG:  starting PostgreSQL 15\nFATAL:  could not load library\n")
            .unwrap();
        assert!(!lost_the_port(&log, from));
        f.write_all(
            b"LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use\n\
              HINT:  Is another postmaster already running on port 36759?\n\
              FATAL:  could not create any TCP/IP sockets\n",
        )
        .unwrap();
        assert!(lost_the_port(&log, from));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_chosen_port_is_outside_the_ephemeral_range() {
        let (low, high) = ephemeral_range();
        for _ in 0..20 {
            let p = free_port().unwrap();
            assert!(!(low..=high).contains(&p), "{p} in {low}..={high}");
        }
    }
}
