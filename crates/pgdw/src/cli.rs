//! The command line: parsed here, executed in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pgdw",
    version,
    about = "A customer data warehouse that lives entirely in PostgreSQL"
)]
pub struct Cli {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Which Postgres the commands talk to.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Use this server instead of the embedded one; pgdw then never starts or stops a server.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Data directory of the embedded cluster.
    #[arg(
        long,
        env = "PGDW_DATA_DIR",
        default_value = ".pgdw/data",
        global = true
    )]
    pub data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create (if needed) and start the embedded warehouse, then install its extensions.
    Up(UpArgs),
    /// Stop the embedded warehouse (fast shutdown, then immediate after a timeout).
    Down(DownArgs),
    /// Show whether the warehouse runs, where, and which extensions it has.
    Status(StatusArgs),
    /// Check the database's health (statements, bloat, indexes, locks, transactions, slots,
    /// wraparound, settings, column order); exit 1 when a finding is a warning or worse.
    Doctor(DoctorArgs),
    /// Run psql against the warehouse; arguments after `--` go to psql.
    Psql {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print DATABASE_URL and PG* variables as shell exports: `eval "$(pgdw env)"`.
    Env,
    /// Create a warehouse project: pgdw.toml, migrations/, dashboards/.
    Init { dir: PathBuf },
    /// Run the whole system here: warehouse, control plane, Clerk emulator, Prometheus, the
    /// example project, every job once, the answers; then keep refreshing until Ctrl-C.
    Demo(DemoArgs),
    /// Serve the project's dashboards (web UI and JSON per panel) and evaluate its alerts.
    Serve(ServeArgs),
    /// Apply a project's migrations (sqlx's format and migrator) and its secrets.
    Migrate {
        /// The project directory (holding pgdw.toml).
        #[arg(long, default_value = ".")]
        project: PathBuf,
    },
    /// Run tasks from the warehouse's queue (`pgdw.enqueue`) and compute materialized
    /// columns, until SIGINT or SIGTERM (which let running tasks finish).
    Worker(WorkerArgs),
    /// Replication of the project's `[replicate.NAME]` sections (`pgdw migrate` sets it up).
    #[command(subcommand)]
    Replicate(ReplicateCommand),
    /// Hot standbys of the embedded warehouse: PostgreSQL's streaming replication (docs/standby.md).
    #[command(subcommand)]
    Standby(StandbyCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum StandbyCommand {
    /// Make a hot standby of this warehouse in DIR (pg_basebackup on a physical slot), start
    /// it and wait until it streams.
    Create {
        /// The standby's data directory (new or empty).
        dir: PathBuf,
        /// Its port on 127.0.0.1 (default: a free one).
        #[arg(long)]
        port: Option<u16>,
        /// Synchronous: a commit returns only once the standby has it, so a failover loses
        /// no acknowledged commit (and no replicated change).
        #[arg(long)]
        sync: bool,
        /// Its name (its slot is pgdw_standby_NAME); default: DIR's last component.
        #[arg(long)]
        name: Option<String>,
    },
    /// Promote this standby (--data-dir): it becomes the warehouse.
    Promote,
    /// Stop the standby in DIR and drop its slot on this warehouse.
    Remove {
        /// The standby's data directory.
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ReplicateCommand {
    /// Copy every table of a section afresh: a new slot and subscription, the replicas emptied
    /// first (after a lost slot, or to be sure nothing is missing).
    Resync {
        /// The section's name: `control_plane` for `[replicate.control_plane]`.
        name: String,
        /// The project directory (holding pgdw.toml).
        #[arg(long, default_value = ".")]
        project: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Port on 127.0.0.1 (default: a free port chosen at creation, then kept).
    #[arg(long)]
    pub port: Option<u16>,
    /// Memory budget to size PostgreSQL's memory settings from (default: this machine's memory).
    #[arg(long, env = "PGDW_MEMORY", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Seconds to wait for the server to accept connections.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Seconds to wait for a fast shutdown before shutting down immediately.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON instead of text (fields: docs/doctor.md).
    #[arg(long)]
    pub json: bool,
    /// A session idle in its transaction longer than this is a finding (0: any).
    #[arg(long, default_value = "1m", value_parser = parse_threshold)]
    pub idle_in_transaction: std::time::Duration,
    /// A statement running longer than this is a finding (0: any).
    #[arg(long, default_value = "5m", value_parser = parse_threshold)]
    pub long_query: std::time::Duration,
    /// Unused indexes smaller than this are not worth a finding.
    #[arg(long, default_value = "1MB", value_parser = parse_size)]
    pub min_index_size: u64,
}

fn parse_size(s: &str) -> Result<u64, String> {
    pgdw_cluster::parse_size(s)
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Compare the answers with the generator's ground truth and exit (non-zero on a mismatch).
    #[arg(long)]
    pub check: bool,
    /// With --check, also stop the warehouse afterwards.
    #[arg(long)]
    pub down: bool,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Clerk users to generate (organizations are a fifth of that).
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Days of per-instance metrics history to backfill into Prometheus.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub days: u32,
    /// Seconds between two live changes of the control plane and Clerk (sign-ups, instances,
    /// state changes, deletions) while the demo runs.
    #[arg(long, default_value_t = 20)]
    pub tick: u64,
    /// Where to serve the dashboards (another free port if this one is taken).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: std::net::SocketAddr,
    /// Memory budget for the embedded warehouse.
    #[arg(long, env = "PGDW_MEMORY", value_parser = parse_size)]
    pub memory: Option<u64>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Tasks run at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// How long a claimed task stays this worker's without a renewal; a worker that dies
    /// loses its tasks to another one after this.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub lease: std::time::Duration,
    /// The longest idle wait between looks at the queue (notifications wake it sooner).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub poll: std::time::Duration,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    pgdw_fdw_api::duration::parse(s)
}

/// A duration, or 0 (every case counts).
fn parse_threshold(s: &str) -> Result<std::time::Duration, String> {
    if s.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    parse_duration(s)
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The project directory (holding pgdw.toml and dashboards/).
    #[arg(long, default_value = ".")]
    pub project: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "PGDW_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: std::net::SocketAddr,
    /// A read-only role's URL for panels and alert rules (default: pgdw creates pgdw_reader).
    #[arg(long, env = "PGDW_READER_URL", hide_env_values = true)]
    pub reader_url: Option<String>,
    /// Run panels and alert rules on this hot standby (its data directory; `pgdw standby
    /// create` made it), as pgdw_reader over its socket; the owner's work stays here.
    #[arg(long, env = "PGDW_READER_DATA_DIR")]
    pub reader_data_dir: Option<PathBuf>,
}
