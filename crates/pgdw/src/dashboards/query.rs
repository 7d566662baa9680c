//! Running a panel's SQL: `$variables` become bound parameters (never spliced text), the
//! query runs read-only with the panel's statement_timeout, and its rows come back as JSON
//! with column names in order (computed by Postgres: `row_to_json` keeps column order).

use std::time::Instant;

use serde::Serialize;
use sqlx::{PgPool, Row};

/// Variables every dashboard has. The `_epoch` and `_seconds` forms are plain numbers, cheap
/// to compare with bigint epoch columns (and usable for partition pruning and indexes), where
/// `extract(epoch FROM $from)` would be computed again for every row.
pub const RESERVED: [&str; 6] = [
    "from",
    "to",
    "bucket",
    "from_epoch",
    "to_epoch",
    "bucket_seconds",
];

pub fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some('a'..='z' | '_'))
        && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Values for one run: the time range (epoch ms) and the other variables (None: all).
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    pub from_ms: i64,
    pub to_ms: i64,
    pub vars: Vec<(String, Option<String>)>,
}

impl Bindings {
    /// A time bucket that keeps a chart near a few hundred points.
    pub fn bucket(&self) -> &'static str {
        self.bucket_and_seconds().0
    }

    fn bucket_and_seconds(&self) -> (&'static str, i64) {
        let hours = (self.to_ms - self.from_ms) / 3_600_000;
        match hours {
            ..=6 => ("1 minute", 60),
            7..=48 => ("5 minutes", 300),
            49..=240 => ("1 hour", 3600),
            _ => ("6 hours", 21_600),
        }
    }
}

/// `sql` with the reserved variables and the named ones as `$1`, `$2`, ...: text in
/// quotes, comments and dollar-quoted bodies is left alone; an unknown `$name` is an error.
pub fn placeholders(sql: &str, vars: &[&str]) -> Result<String, String> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 32);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                let start = i;
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.push_str(&sql[start..i]);
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let start = i;
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                out.push_str(&sql[start..i]);
            }
            b'$' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                let name = &sql[start..j];
                if b.get(j) == Some(&b'$') {
                    // A dollar quote: copy through its closing tag.
                    let tag = &sql[i..=j];
                    let body_end = sql[j + 1..]
                        .find(tag)
                        .map(|k| j + 1 + k + tag.len())
                        .unwrap_or(b.len());
                    out.push_str(&sql[i..body_end]);
                    i = body_end;
                    continue;
                }
                let replacement = match name {
                    "from" => Some("to_timestamp($1::float8 / 1000)".to_string()),
                    "to" => Some("to_timestamp($2::float8 / 1000)".to_string()),
                    "bucket" => Some("($3::text::interval)".to_string()),
                    "from_epoch" => Some("(floor($1::float8 / 1000)::bigint)".to_string()),
                    "to_epoch" => Some("(floor($2::float8 / 1000)::bigint)".to_string()),
                    "bucket_seconds" => Some("($4::int8)".to_string()),
                    _ => vars
                        .iter()
                        .position(|v| *v == name)
                        .map(|k| format!("(${}::text)", k + 5)),
                };
                match replacement {
                    Some(r) => out.push_str(&r),
                    None if name.is_empty() || name.bytes().all(|c| c.is_ascii_digit()) => {
                        out.push_str(&sql[i..j])
                    }
                    None => {
                        return Err(format!(
                            "unknown variable ${name} (known: $from, $to, $bucket, $from_epoch, $to_epoch, $bucket_seconds{})",
                            vars.iter().map(|v| format!(", ${v}")).collect::<String>()
                        ))
                    }
                }
                i = j;
            }
            _ => {
                let ch = sql[i..].chars().next().unwrap();
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    Ok(out)
}

/// A panel's rows.
#[derive(Debug, Clone, Serialize)]
pub struct PanelData {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    pub elapsed_ms: f64,
}

/// Why a panel has no data: Postgres' message and SQLSTATE, or ours.
#[derive(Debug, Clone, Serialize)]
pub struct PanelError {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
}

impl PanelError {
    fn ours(error: impl Into<String>) -> PanelError {
        PanelError {
            error: error.into(),
            sqlstate: None,
        }
    }
}

impl From<sqlx::Error> for PanelError {
    fn from(e: sqlx::Error) -> PanelError {
        match &e {
            sqlx::Error::Database(db) => PanelError {
                error: db.message().to_string(),
                sqlstate: db.code().map(|c| c.into_owned()),
            },
            _ => PanelError::ours(e.to_string()),
        }
    }
}

/// Run `sql` on the read-only pool with `timeout_ms` as statement_timeout. `label` says who
/// runs it ("panel: customers/Instances by state", "alert: stale-tables"): a comment at the
/// top of the statement, which pg_stat_statements keeps, so `pgdw doctor` can name it.
pub async fn run(
    pool: &PgPool,
    label: &str,
    sql: &str,
    bindings: &Bindings,
    timeout_ms: u64,
) -> Result<PanelData, PanelError> {
    let names: Vec<&str> = bindings.vars.iter().map(|(n, _)| n.as_str()).collect();
    let body = placeholders(sql.trim().trim_end_matches(';'), &names).map_err(PanelError::ours)?;
    // Postgres computes the JSON: column names in order, values typed (numbers stay numbers,
    // times become ISO 8601 text).
    let wrapped = format!(
        "{}
         WITH q AS MATERIALIZED (SELECT row_to_json(p) AS r FROM (\n{body}\n) p)
         SELECT (SELECT json_agg(k) FROM json_object_keys((SELECT r FROM q LIMIT 1)) k)::text,
                (SELECT coalesce(json_agg((SELECT json_agg(e.value) FROM json_each(q.r) e)), '[]') FROM q)::text",
        crate::quote::comment(&format!("pgdw {label}"))
    );
    let start = Instant::now();
    // Read-only by statement, not only by the role's default, which a panel could change
    // for later transactions on its pooled connection with set_config().
    let mut tx = pool.begin_with("BEGIN READ ONLY").await?;
    // set_config, not SET: a bound parameter (and raw_sql's future is not Send enough for
    // axum's handlers). Custom plans: a panel is planned with its range's values, so that
    // constants fold and partitions are pruned at plan time; a generic plan of a cached
    // statement would not know that a month of data is asked for, or a minute.
    sqlx::query(
        "SELECT set_config('statement_timeout', $1, true), set_config('plan_cache_mode', 'force_custom_plan', true)",
    )
        .bind(timeout_ms.to_string())
        .execute(&mut *tx)
        .await?;
    let (bucket, bucket_seconds) = bindings.bucket_and_seconds();
    let mut q = sqlx::query(&wrapped)
        .bind(bindings.from_ms as f64)
        .bind(bindings.to_ms as f64)
        .bind(bucket)
        .bind(bucket_seconds);
    for (_, v) in &bindings.vars {
        q = q.bind(v.clone());
    }
    let row = q.fetch_one(&mut *tx).await?;
    tx.rollback().await?;
    let columns: Option<String> = row.get(0);
    let rows: String = row.get(1);
    Ok(PanelData {
        columns: columns
            .map(|c| serde_json::from_str(&c).unwrap_or_default())
            .unwrap_or_default(),
        rows: serde_json::from_str(&rows).map_err(|e| PanelError::ours(e.to_string()))?,
        elapsed_ms: start.elapsed().as_secs_f64() * 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_become_parameters() {
        let s = placeholders(
            "SELECT '$from', $x$ $to $x$, $1 -- $nope\nFROM t WHERE a > $from AND o = $organization AND b < $to AND g = $bucket",
            &["organization"],
        )
        .unwrap();
        assert_eq!(
            s,
            "SELECT '$from', $x$ $to $x$, $1 -- $nope\nFROM t WHERE a > to_timestamp($1::float8 / 1000) AND o = ($5::text) AND b < to_timestamp($2::float8 / 1000) AND g = ($3::text::interval)"
        );
    }

    #[test]
    fn an_unknown_variable_is_named() {
        let e = placeholders("SELECT $org", &["organization"]).unwrap_err();
        assert_eq!(
            e,
            "unknown variable $org (known: $from, $to, $bucket, $from_epoch, $to_epoch, $bucket_seconds, $organization)"
        );
    }

    #[test]
    fn buckets_follow_the_range() {
        let b = |h: i64| {
            Bindings {
                from_ms: 0,
                to_ms: h * 3_600_000,
                vars: vec![],
            }
            .bucket()
        };
        assert_eq!(
            (b(1), b(24), b(24 * 7), b(24 * 30)),
            ("1 minute", "5 minutes", "1 hour", "6 hours")
        );
    }
}
