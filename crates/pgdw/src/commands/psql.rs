use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use crate::target::{self, Target};

/// Replace this process with psql connected to the warehouse.
pub fn run(target: &Target, args: &[String]) -> anyhow::Result<ExitCode> {
    let mut cmd = match target {
        Target::External { url } => {
            // The password goes through the environment: a command line is visible to every
            // user of the machine (`ps`), the environment only to the process's owner.
            let (url, password) = target::split_password(url);
            let mut c = Command::new("psql");
            c.arg(url);
            if let Some(pw) = password {
                c.env("PGPASSWORD", pw);
            }
            c
        }
        Target::Embedded { data_dir } => {
            let cluster = crate::target::running_cluster(data_dir)?;
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
