use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::PgConnection;

use crate::project::{self, Project};
use crate::requirements;
use crate::secrets::{self, Kind};
use crate::target::Target;

/// `pgdw init DIR`.
pub fn init(dir: &Path) -> anyhow::Result<ExitCode> {
    project::init(dir)?;
    outln!(
        "created a pgdw project in {}: pgdw.toml, migrations/, dashboards/",
        dir.display()
    );
    outln!("apply it with: pgdw migrate --project {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// `pgdw migrate`: the runtime, the project's migrations through sqlx's migrator, then the
/// secrets as user-mapping options.
pub async fn run(target: &Target, dir: &Path) -> anyhow::Result<ExitCode> {
    apply(target, &Project::load(dir)?).await
}

/// `run` for a loaded project (whose `env` may carry values of its own).
pub async fn apply(target: &Target, project: &Project) -> anyhow::Result<ExitCode> {
    // Read the secrets first: a missing variable stops everything before anything changes.
    let secrets = project.secrets()?;
    let server_options = project.server_options()?;
    let replicas = project.replicas()?;
    let mut conn = target.connect().await?;
    let report = requirements::install(&mut conn).await?;
    if !report.problems.is_empty() {
        anyhow::bail!(
            "the warehouse database is missing what pgdw needs:\n  - {}",
            report.problems.join("\n  - ")
        );
    }
    // Replicas before migrations: the project's views and jobs are built on them.
    let replicated = crate::replicate::apply(&mut conn, &replicas).await?;
    for w in &replicated.warnings {
        eprintln!("warning: {w}");
    }
    for line in &replicated.done {
        outln!("{line}");
    }
    let migrator = Migrator::new(project.migrations())
        .await
        .with_context(|| format!("reading {}", project.migrations().display()))?;
    let before = applied(&mut conn).await;
    migrator
        .run(&mut conn)
        .await
        .map_err(|e| explain(e, project))?;
    let after = applied(&mut conn).await;
    let new: Vec<&String> = after.iter().filter(|v| !before.contains(v)).collect();
    if new.is_empty() {
        outln!("migrations: up to date ({} applied)", after.len());
    } else {
        for m in &new {
            outln!("applied {m}");
        }
    }
    for (server, option, value) in &server_options {
        secrets::set(&mut conn, Kind::Server, server, option, value).await?;
        outln!("set {option} = {value} on server {server}");
    }
    for (server, option, value) in &secrets {
        secrets::set(&mut conn, Kind::UserMapping, server, option, value).await?;
        outln!("set {option} on the user mapping of server {server} (value not shown)");
    }
    Ok(ExitCode::SUCCESS)
}

/// `pgdw replicate resync NAME`: a fresh copy of one section's tables.
pub async fn resync(target: &Target, dir: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let project = Project::load(dir)?;
    let replicas = project.replicas()?;
    let Some(r) = replicas.iter().find(|r| r.name == name) else {
        anyhow::bail!(
            "{} has no [replicate.{name}] (it has: {})",
            dir.join(crate::project::CONFIG).display(),
            replicas
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let mut conn = target.connect().await?;
    let out = crate::replicate::resync(&mut conn, r).await?;
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    for line in &out.done {
        outln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `version description` of every applied migration (none when sqlx's table does not exist).
async fn applied(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT version || ' ' || description FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(conn)
    .await
    .unwrap_or_default()
}

fn file_of(project: &Project, version: i64) -> String {
    std::fs::read_dir(project.migrations())
        .ok()
        .and_then(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.split('_').next().and_then(|v| v.parse::<i64>().ok()) == Some(version))
        })
        .unwrap_or_else(|| format!("version {version}"))
}

fn explain(e: MigrateError, project: &Project) -> anyhow::Error {
    match e {
        MigrateError::VersionMismatch(v) => anyhow!(
            "migration {} was changed after it was applied (its checksum differs); applied migrations are history: \
             restore the file and put the change in a new migration",
            file_of(project, v)
        ),
        MigrateError::VersionMissing(v) => anyhow!(
            "migration {v} was applied to this warehouse but its file is missing from {}",
            project.migrations().display()
        ),
        MigrateError::Dirty(v) => anyhow!("migration {v} failed part-way before; fix it by hand, then delete its row from _sqlx_migrations"),
        MigrateError::ExecuteMigration(err, v) => {
            anyhow!("migration {} failed and was rolled back: {err}", file_of(project, v))
        }
        other => anyhow!(other).context("applying migrations"),
    }
}
