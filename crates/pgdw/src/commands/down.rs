use std::process::ExitCode;
use std::time::Duration;

use pgdw_cluster::StopOutcome;

use crate::cli::DownArgs;
use crate::target::Target;

pub fn run(target: &Target, args: &DownArgs) -> anyhow::Result<ExitCode> {
    let data_dir = match target {
        Target::External { .. } => {
            anyhow::bail!("DATABASE_URL is set: pgdw does not stop servers it did not start")
        }
        Target::Embedded { data_dir } => data_dir,
    };
    let Some(cluster) = pgdw_cluster::Cluster::open_existing(data_dir, None)? else {
        outln!("no warehouse in {}; nothing to stop", data_dir.display());
        return Ok(ExitCode::SUCCESS);
    };
    match cluster.stop(Duration::from_secs(args.timeout))? {
        StopOutcome::Stopped => outln!("stopped"),
        StopOutcome::StoppedImmediately => outln!(
            "stopped immediately after {} s without a clean shutdown; the next start runs crash recovery",
            args.timeout
        ),
        StopOutcome::AlreadyStopped => outln!("already stopped"),
    }
    Ok(ExitCode::SUCCESS)
}
