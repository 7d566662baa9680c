//! A warehouse project: `pgdw.toml`, `migrations/` (sqlx's format) and `dashboards/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

pub const CONFIG: &str = "pgdw.toml";

/// `pgdw.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub warehouse: Warehouse,
    /// Per foreign server, user-mapping options and where their values come from:
    /// `[secrets.clerk_server] api_key = "env:CLERK_SECRET_KEY"`.
    #[serde(default)]
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Per foreign server, options that differ between environments (addresses, ports):
    /// `[servers.clerk_server] api_url = "env:CLERK_API_URL"` or a literal value.
    #[serde(default)]
    pub servers: BTreeMap<String, BTreeMap<String, String>>,
    /// Alert rules and where their state changes go (`pgdw serve` evaluates them).
    #[serde(default)]
    pub alerts: crate::alerts::Config,
    /// Sources replicated into the warehouse: `[replicate.control_plane] source = "env:..."`.
    #[serde(default)]
    pub replicate: BTreeMap<String, crate::replicate::Section>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Warehouse {
    /// Data directory of the embedded cluster, relative to the project.
    pub data_dir: Option<PathBuf>,
}

pub struct Project {
    pub dir: PathBuf,
    pub config: Config,
    /// Values that win over the process environment for `env:` references (the demo's).
    pub env: BTreeMap<String, String>,
}

impl Project {
    pub fn load(dir: &Path) -> anyhow::Result<Project> {
        let path = dir.join(CONFIG);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (create a project with `pgdw init DIR`)",
                path.display()
            )
        })?;
        let config: Config =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        Ok(Project {
            dir: dir.to_path_buf(),
            config,
            env: BTreeMap::new(),
        })
    }

    fn var(&self, name: &str) -> Option<String> {
        self.env
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    }

    /// A configured value: `env:VAR` from the environment, anything else as written.
    pub fn resolve(&self, value: &str) -> anyhow::Result<String> {
        match value.strip_prefix("env:") {
            Some(var) => self
                .var(var)
                .with_context(|| format!("${var} is not set (pgdw.toml refers to it)")),
            None => Ok(value.to_string()),
        }
    }

    pub fn dashboards(&self) -> PathBuf {
        self.dir.join("dashboards")
    }

    pub fn migrations(&self) -> PathBuf {
        self.dir.join("migrations")
    }

    /// Server options as (server, option, value); `env:VAR` values come from the environment.
    pub fn server_options(&self) -> anyhow::Result<Vec<(String, String, String)>> {
        let mut out = Vec::new();
        for (server, options) in &self.config.servers {
            for (option, source) in options {
                let value = match source.strip_prefix("env:") {
                    Some(var) => self.var(var).with_context(|| {
                        format!(
                            "server option {server}.{option} comes from ${var}, which is not set"
                        )
                    })?,
                    None => source.clone(),
                };
                out.push((server.clone(), option.clone(), value));
            }
        }
        Ok(out)
    }

    /// The `[replicate.NAME]` sections, checked, with their sources resolved.
    pub fn replicas(&self) -> anyhow::Result<Vec<crate::replicate::Replica>> {
        self.config
            .replicate
            .iter()
            .map(|(name, section)| {
                crate::replicate::config::replica(name, section, |v| self.resolve(v))
            })
            .collect()
    }

    /// The secrets as (server, option, value), each value read from its environment variable.
    pub fn secrets(&self) -> anyhow::Result<Vec<(String, String, String)>> {
        let mut out = Vec::new();
        for (server, options) in &self.config.secrets {
            for (option, source) in options {
                let Some(var) = source.strip_prefix("env:") else {
                    bail!(
                        "secret {server}.{option} in {CONFIG} must name an environment variable, like \"env:CLERK_SECRET_KEY\"; secrets are never written in files"
                    );
                };
                let value = self.var(var).with_context(|| {
                    format!("secret {server}.{option} comes from ${var}, which is not set")
                })?;
                out.push((server.clone(), option.clone(), value));
            }
        }
        Ok(out)
    }
}

/// `pgdw init DIR`: a project skeleton with a first migration.
pub fn init(dir: &Path) -> anyhow::Result<()> {
    if dir.join(CONFIG).exists() {
        bail!(
            "{} already has a {CONFIG}; nothing was changed",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join("migrations"))?;
    std::fs::create_dir_all(dir.join("dashboards"))?;
    std::fs::write(
        dir.join(CONFIG),
        r#"# A pgdw warehouse project. `pgdw migrate` applies migrations/ to the warehouse.

[warehouse]
# The embedded cluster's data directory, relative to this file. DATABASE_URL overrides it.
# data_dir = ".pgdw/data"

# Secrets reach Postgres as user-mapping options when migrations are applied; they are read
# from environment variables and never written in migration files.
# [secrets.clerk_server]
# api_key = "env:CLERK_SECRET_KEY"

# Alerts, evaluated by `pgdw serve`: a rule fires while its SQL returns rows.
# [alerts]
# webhook = "env:PGDW_ALERT_WEBHOOK"
# every = "1m"
# [[alerts.rules]]
# name = "failing-refresh"
# sql = "SELECT format('%s: %s', job, last_error) FROM pgdw.job_freshness WHERE failing"
"#,
    )?;
    std::fs::write(
        dir.join("migrations/00000000000001_sources.sql"),
        r#"-- Migrations follow sqlx's format: <version>_<description>.sql, applied once, in order,
-- each in a transaction. Never edit one that was applied: add a new one.

-- Example: a schedule through pgdw's runtime (pg_cron 1.4 takes cron syntax; pgdw.schedule
-- also takes intervals).
-- SELECT pgdw.schedule('refresh-clusters', '5 minutes', 'CALL pgdw.run(''refresh-clusters'', ''SELECT * FROM pgdw.sync(''''ingested_clusters'''', ''''f.instance_vw'''', ''''{instance_id}'''')'')');
SELECT 1;
"#,
    )?;
    std::fs::write(
        dir.join("dashboards/warehouse.toml"),
        r#"# A dashboard: `pgdw serve` shows every dashboards/*.toml. Panels are SQL (run read-only,
# with $from, $to, $bucket and the variables bound as parameters) or built-in.
title = "Warehouse"
description = "What ran and how fresh it is."
refresh = "30s"
range = "24h"

[[panels]]
title = "Jobs"
kind = "table"
builtin = "jobs"

[[panels]]
title = "Runs per hour"
kind = "timeseries"
sql = """
SELECT date_trunc('hour', started_at) AS time,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed
  FROM pgdw.runs WHERE started_at BETWEEN $from AND $to GROUP BY 1 ORDER BY 1
"""
"#,
    )?;
    Ok(())
}
