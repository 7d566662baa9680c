use std::process::ExitCode;
use std::time::Duration;

use pgdw_cluster::{Cluster, Options, StartOutcome};

use crate::cli::UpArgs;
use crate::requirements::{self, Report};
use crate::target::{self, Target};

pub async fn run(target: &Target, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let report = match target {
        Target::External { url } => {
            if args.port.is_some() || args.memory.is_some() {
                anyhow::bail!("--port and --memory apply to the embedded warehouse; with DATABASE_URL set, pgdw never starts a server");
            }
            let mut conn = target::connect_url(url).await?;
            outln!(
                "using the server at {} (DATABASE_URL); pgdw does not start or stop it",
                target::redact_url(url)
            );
            requirements::install(&mut conn).await?
        }
        Target::Embedded { data_dir } => {
            let opts = Options {
                data_dir: data_dir.clone(),
                port: args.port,
                memory: args.memory,
                bindir: None,
            };
            let (mut cluster, created) = Cluster::open_or_init(&opts)?;
            if created {
                outln!(
                    "created a new warehouse cluster in {}",
                    cluster.data_dir().display()
                );
            }
            match cluster.start(Duration::from_secs(args.timeout))? {
                StartOutcome::Started => {
                    outln!("started PostgreSQL on 127.0.0.1:{}", cluster.port())
                }
                StartOutcome::AlreadyRunning => {
                    outln!("already running on 127.0.0.1:{}", cluster.port())
                }
            }
            if cluster.is_standby() {
                // Read-only until promoted: what it runs is what the primary installed.
                let mut conn =
                    target::connect_embedded(&cluster, &cluster.state().database).await?;
                let report = requirements::inspect(&mut conn).await?;
                outln!("a hot standby: read-only, replaying the primary (pgdw standby promote makes it the warehouse)");
                print_extensions(&report);
                return Ok(ExitCode::SUCCESS);
            }
            let mut admin = target::connect_embedded(&cluster, "postgres").await?;
            if requirements::ensure_database(&mut admin, &cluster.state().database).await? {
                outln!("created database {}", cluster.state().database);
            }
            let mut conn = target::connect_embedded(&cluster, &cluster.state().database).await?;
            let report = requirements::install(&mut conn).await?;
            outln!("connect with: pgdw psql   (or: eval \"$(pgdw env)\")");
            report
        }
    };
    print_extensions(&report);
    if report.problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        anyhow::bail!(
            "the warehouse database is missing what pgdw needs:\n  - {}",
            report.problems.join("\n  - ")
        )
    }
}

fn print_extensions(report: &Report) {
    let list: Vec<String> = report
        .extensions
        .iter()
        .filter_map(|e| e.installed.as_ref().map(|v| format!("{} {}", e.name, v)))
        .collect();
    outln!("extensions in {}: {}", report.database, list.join(", "));
}
