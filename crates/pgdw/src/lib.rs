//! pgdw: the command that runs the warehouse. `main` parses arguments and calls [`run`].

#[macro_use]
pub mod out;

pub mod alerts;
pub mod cli;
pub mod clock;
mod commands;
#[cfg(feature = "demo")]
pub mod controlplane;
pub mod dashboards;
pub mod health;
#[cfg(feature = "demo")]
pub mod instance_metrics;
pub mod jobs;
pub mod metrics_load;
pub mod project;
pub mod quote;
pub mod replicate;
pub mod requirements;
pub mod runtime;
pub mod secrets;
pub mod serve;
pub mod standby;
pub mod target;
pub mod worker;

use std::process::ExitCode;

/// Run one command to completion.
pub fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(commands::dispatch(cli))
}
