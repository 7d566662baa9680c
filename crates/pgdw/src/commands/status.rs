use std::process::ExitCode;

use serde::Serialize;

use crate::cli::StatusArgs;
use crate::requirements::{self, Report};
use crate::target::{self, Target};

/// Exit code when the embedded warehouse is not running (as `pg_ctl status`).
const NOT_RUNNING: u8 = 3;

#[derive(Serialize)]
struct Status {
    running: bool,
    mode: &'static str,
    pid: Option<i32>,
    port: Option<u16>,
    data_dir: Option<String>,
    data_dir_bytes: Option<u64>,
    server: Option<String>,
    report: Option<Report>,
    freshness: Option<crate::jobs::freshness::Freshness>,
    replication: Option<Vec<crate::replicate::Status>>,
    queue: Option<crate::worker::status::QueueStatus>,
    /// "primary" or "standby" (absent when not running).
    role: Option<&'static str>,
    /// On a primary: its standbys; on a standby: itself, as it sees its primary.
    standbys: Option<Vec<crate::standby::Standby>>,
}

/// The replication section: each source sampled now, then read from `pgdw.replication`.
async fn replication(
    conn: &mut sqlx::PgConnection,
) -> anyhow::Result<Vec<crate::replicate::Status>> {
    // A source that cannot be sampled is the section's problem, not the status's. A standby
    // shows what its primary sampled (it cannot write).
    let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut *conn)
        .await?;
    if !standby {
        if let Err(e) = crate::replicate::watch(conn).await {
            eprintln!("warning: replication: {e:#}");
        }
    }
    crate::replicate::status(conn).await
}

pub async fn run(target: &Target, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let status = match target {
        Target::External { url } => {
            let mut conn = target.connect().await?;
            let report = requirements::inspect(&mut conn).await?;
            let freshness = Some(crate::jobs::freshness::read(&mut conn).await?);
            let (role, standbys) = crate::standby::status(&mut conn).await?;
            Status {
                role: Some(role),
                standbys: Some(standbys),
                queue: crate::worker::status::read(&mut conn).await?,
                replication: Some(replication(&mut conn).await?),
                freshness,
                running: true,
                mode: "external",
                pid: None,
                port: url::Url::parse(url).ok().and_then(|u| u.port()),
                data_dir: None,
                data_dir_bytes: None,
                server: Some(format!("PostgreSQL {}", report.server_version)),
                report: Some(report),
            }
        }
        Target::Embedded { data_dir } => {
            let cluster = crate::target::existing_cluster(data_dir)?;
            let pid = cluster.running_pid();
            let (report, freshness, replicated, queue, standbys) = match pid {
                Some(_) => {
                    let mut conn =
                        target::connect_embedded(&cluster, &cluster.state().database).await?;
                    (
                        Some(requirements::inspect(&mut conn).await?),
                        Some(crate::jobs::freshness::read(&mut conn).await?),
                        Some(replication(&mut conn).await?),
                        crate::worker::status::read(&mut conn).await?,
                        Some(crate::standby::status(&mut conn).await?),
                    )
                }
                None => (None, None, None, None, None),
            };
            let (role, standbys) = match standbys {
                Some((r, s)) => (Some(r), Some(s)),
                None => (None, None),
            };
            Status {
                role,
                standbys,
                queue,
                replication: replicated,
                freshness,
                running: pid.is_some(),
                mode: "embedded",
                pid,
                port: Some(cluster.port()),
                data_dir: Some(cluster.data_dir().display().to_string()),
                data_dir_bytes: Some(cluster.disk_usage()),
                server: Some(cluster.server_version()),
                report,
            }
        }
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_text(&status);
    }
    Ok(if status.running {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NOT_RUNNING)
    })
}

fn print_text(s: &Status) {
    match (s.running, s.pid) {
        (true, Some(pid)) => outln!("warehouse: running (pid {pid}, {} mode)", s.mode),
        (true, None) => outln!("warehouse: reachable ({} mode)", s.mode),
        _ => outln!(
            "warehouse: not running ({} mode); start it with `pgdw up`",
            s.mode
        ),
    }
    if let Some(port) = s.port {
        outln!("  port:           {port}");
    }
    if let Some(server) = &s.server {
        outln!("  server:         {server}");
    }
    if let (Some(dir), Some(bytes)) = (&s.data_dir, s.data_dir_bytes) {
        outln!("  data directory: {dir} ({})", human_bytes(bytes));
    }
    if let Some(report) = &s.report {
        outln!("  database:       {}", report.database);
        outln!("  extensions:");
        for e in &report.extensions {
            match (&e.installed, &e.available) {
                (Some(v), _) => outln!("    {:<20} {v}", e.name),
                (None, Some(v)) => {
                    outln!("    {:<20} not created (version {v} available)", e.name)
                }
                (None, None) => outln!("    {:<20} MISSING", e.name),
            }
        }
        for p in &report.problems {
            outln!("  problem: {p}");
        }
    }
    if let (Some(role), Some(list)) = (s.role, &s.standbys) {
        crate::standby::print(role, list);
    }
    if let Some(f) = &s.freshness {
        crate::jobs::freshness::print(f);
    }
    if let Some(r) = &s.replication {
        crate::replicate::print(r);
    }
    if let Some(q) = &s.queue {
        crate::worker::status::print(q);
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}
