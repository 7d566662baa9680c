//! One module per subcommand.

mod demo;
mod down;
mod env;
mod migrate;
mod psql;
mod serve;
mod status;
mod up;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::target::Target;

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let target = Target::from_args(&cli.target);
    match cli.command {
        Command::Up(args) => up::run(&target, &args).await,
        Command::Down(args) => down::run(&target, &args),
        Command::Status(args) => status::run(&target, &args).await,
        Command::Psql { args } => psql::run(&target, &args),
        Command::Env => env::run(&target),
        Command::Init { dir } => migrate::init(&dir),
        Command::Demo(args) => demo::run(&target, &args).await,
        Command::Serve(args) => serve::run(&target, &args).await,
        Command::Migrate { project } => migrate::run(&target, &project).await,
    }
}

/// The embedded cluster at `data_dir`, or a friendly error when there is none yet.
fn existing_cluster(data_dir: &std::path::Path) -> anyhow::Result<pgdw_cluster::Cluster> {
    pgdw_cluster::Cluster::open_existing(data_dir, None)?.ok_or_else(|| {
        anyhow::anyhow!(
            "there is no warehouse in {}; create one with `pgdw up`",
            data_dir.display()
        )
    })
}

/// The embedded cluster at `data_dir`, insisting that it runs.
fn running_cluster(data_dir: &std::path::Path) -> anyhow::Result<pgdw_cluster::Cluster> {
    let cluster = existing_cluster(data_dir)?;
    if cluster.running_pid().is_none() {
        anyhow::bail!(
            "the warehouse in {} is not running; start it with `pgdw up`",
            data_dir.display()
        );
    }
    Ok(cluster)
}
