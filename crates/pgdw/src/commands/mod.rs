//! One module per subcommand.

#[cfg(feature = "demo")]
mod demo;
mod doctor;
mod down;
mod env;
mod migrate;
mod psql;
mod serve;
mod status;
mod up;
mod worker;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::target::Target;

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let target = Target::from_args(&cli.target);
    match cli.command {
        Command::Up(args) => up::run(&target, &args).await,
        Command::Down(args) => down::run(&target, &args),
        Command::Status(args) => status::run(&target, &args).await,
        Command::Doctor(args) => doctor::run(&target, &args).await,
        Command::Psql { args } => psql::run(&target, &args),
        Command::Env => env::run(&target),
        Command::Init { dir } => migrate::init(&dir),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(&target, &args).await,
        #[cfg(not(feature = "demo"))]
        Command::Demo(_) => anyhow::bail!(
            "this pgdw was built without the demo (it would ship the Clerk emulator and the data \
             generators); build it with `cargo build --release -p pgdw --features demo`, as \
             scripts/setup.sh does"
        ),
        Command::Serve(args) => serve::run(&target, &args).await,
        Command::Migrate { project } => migrate::run(&target, &project).await,
        Command::Worker(args) => worker::run(&target, &args).await,
        Command::Replicate(crate::cli::ReplicateCommand::Resync { name, project }) => {
            migrate::resync(&target, &project, &name).await
        }
        Command::Standby(cmd) => standby(&target, cmd).await,
    }
}

async fn standby(target: &Target, cmd: crate::cli::StandbyCommand) -> anyhow::Result<ExitCode> {
    use crate::cli::StandbyCommand as S;
    match cmd {
        S::Create {
            dir,
            port,
            sync,
            name,
        } => crate::standby::create(target, &dir, name.as_deref(), port, sync).await?,
        S::Promote => crate::standby::promote(target).await?,
        S::Remove { dir } => crate::standby::remove(target, &dir).await?,
    }
    Ok(ExitCode::SUCCESS)
}
