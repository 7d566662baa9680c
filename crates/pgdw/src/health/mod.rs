//! `pgdw doctor`: the database's health, from `pgdw.doctor()` (`health.sql` beside this file), which holds
//! every check so that dashboards and alert rules read the same findings.

use serde::Serialize;
use sqlx::{PgConnection, Row};

/// One finding. These field names are the JSON output's, and stable (docs/doctor.md).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The check that made it: `blocked_session`, `unused_index`, ...
    pub check: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// What it is about: a table, an index, a query, a pid, a slot, a setting.
    pub object: String,
    /// What was measured, in words.
    pub figure: String,
    /// The measured number, where one says it (seconds, bytes, percent, ...).
    pub value: Option<f64>,
    /// What to do: the statement or setting to change ("none" for information only).
    pub advice: String,
}

impl Finding {
    /// Warnings and critical findings make `pgdw doctor` exit 1.
    pub fn is_problem(&self) -> bool {
        self.severity != "info"
    }
}

/// Thresholds of the checks (`pgdw doctor`'s options).
#[derive(Debug, Clone)]
pub struct Thresholds {
    pub idle_in_transaction: std::time::Duration,
    pub long_query: std::time::Duration,
    pub min_index_bytes: u64,
}

pub async fn run(conn: &mut PgConnection, t: &Thresholds) -> anyhow::Result<Vec<Finding>> {
    crate::runtime::installed(conn).await?.require()?;
    let rows = sqlx::query(
        "SELECT check_name, severity, object, figure, value, advice
           FROM pgdw.doctor(make_interval(secs => $1), make_interval(secs => $2), $3)",
    )
    .bind(t.idle_in_transaction.as_secs_f64())
    .bind(t.long_query.as_secs_f64())
    .bind(t.min_index_bytes as i64)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Finding {
            check: r.get("check_name"),
            severity: r.get("severity"),
            object: r.get("object"),
            figure: r.get("figure"),
            value: r.get("value"),
            advice: r.get("advice"),
        })
        .collect())
}

/// Most severe first, then by check, as they came within one.
pub fn print(findings: &[Finding]) {
    let rank = |s: &str| match s {
        "critical" => 0,
        "warning" => 1,
        _ => 2,
    };
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| rank(&f.severity));
    for f in sorted {
        outln!(
            "{:<8} {:<26} {}",
            f.severity.to_uppercase(),
            f.check,
            f.object
        );
        outln!("         {}", f.figure);
        if f.advice != "none" {
            outln!("         advice: {}", f.advice);
        }
    }
    let count = |s: &str| findings.iter().filter(|f| f.severity == s).count();
    outln!(
        "\n{} critical, {} warnings, {} for information",
        count("critical"),
        count("warning"),
        count("info")
    );
}
