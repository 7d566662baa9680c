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

use crate::target::{existing_cluster, running_cluster};
