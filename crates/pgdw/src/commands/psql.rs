use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use crate::target::Target;

/// Replace this process with psql connected to the warehouse.
pub fn run(target: &Target, args: &[String]) -> anyhow::Result<ExitCode> {
    let mut cmd = match target {
        Target::External { url } => {
            let mut c = Command::new("psql");
            c.arg(url);
            c
        }
        Target::Embedded { data_dir } => {
            let cluster = super::running_cluster(data_dir)?;
            let mut c = Command::new(cluster.bindir().join("psql"));
            c.arg("-h")
                .arg(cluster.socket_dir())
                .arg("-p")
                .arg(cluster.port().to_string())
                .arg("-U")
                .arg(&cluster.state().superuser)
                .arg("-d")
                .arg(&cluster.state().database);
            c
        }
    };
    let err = cmd.args(args).exec();
    Err(anyhow::anyhow!("could not run psql: {err}"))
}
