//! `[replicate.NAME]` in pgdw.toml, read and checked before anything connects.

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

/// One section as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// A libpq URL, usually `env:CONTROL_PLANE_URL`.
    pub source: String,
    /// `schema.table` (or `table`, in public) names on the source.
    pub tables: Vec<String>,
    /// Above this lag, status says LAGGING and the built-in alert fires (default 30s).
    #[serde(default)]
    pub max_lag: Option<String>,
}

/// A table on both sides: the warehouse keeps the source's schema and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Table {
    pub schema: String,
    pub name: String,
}

impl Table {
    /// `"schema"."name"`, quoted for SQL.
    pub fn sql(&self) -> String {
        format!(
            "{}.{}",
            crate::quote::ident(&self.schema),
            crate::quote::ident(&self.name)
        )
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// A section, checked: its name, resolved source URL, tables and lag limit.
#[derive(Debug, Clone)]
pub struct Replica {
    pub name: String,
    pub source: String,
    pub tables: Vec<Table>,
    pub max_lag: Duration,
}

impl Replica {
    /// A section pgdw set up earlier, reached through its subscription's own connection
    /// (for watching and teardown, which need no table list).
    pub fn subscribed(name: &str, conninfo: String) -> Replica {
        Replica {
            name: name.to_string(),
            source: conninfo,
            tables: Vec::new(),
            max_lag: Duration::from_secs(30),
        }
    }

    /// The publication, the slot and the subscription all carry this name.
    pub fn object_name(&self) -> String {
        object_name(&self.name)
    }
}

/// The name of section `name`'s publication, slot and subscription: `pgdw_NAME`, as
/// `pgdw.subscription_name` says it in SQL (a test holds the two together).
pub fn object_name(name: &str) -> String {
    format!("pgdw_{name}")
}

/// A section's name becomes part of object names on both servers: lower-case letters, digits
/// and `_`, starting with a letter, short enough for `pgdw_` in front within 63 bytes.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 58;
    if !ok {
        bail!(
            "[replicate.{name}]: the name becomes the publication, slot and subscription pgdw_{name}; \
             use lower-case letters, digits and _ (at most 58), starting with a letter"
        );
    }
    Ok(())
}

/// `schema.table` or `table` (in public), as the source names it (no quoting needed or taken).
pub fn parse_table(section: &str, text: &str) -> anyhow::Result<Table> {
    let (schema, name) = match text.split_once('.') {
        Some((s, n)) => (s, n),
        None => ("public", text),
    };
    let valid = |s: &str| !s.is_empty() && !s.contains('.') && !s.contains('"') && s.len() <= 63;
    if !valid(schema) || !valid(name) {
        bail!("[replicate.{section}] tables: {text:?} is not a table name; write \"schema.table\", e.g. \"public.organizations\"");
    }
    Ok(Table {
        schema: schema.to_string(),
        name: name.to_string(),
    })
}

/// Check a section and resolve its source with `resolve` (`env:VAR` from the environment).
pub fn replica(
    name: &str,
    section: &Section,
    resolve: impl Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<Replica> {
    check_name(name)?;
    if section.tables.is_empty() {
        bail!("[replicate.{name}] lists no tables");
    }
    let mut tables = Vec::new();
    for t in &section.tables {
        let table = parse_table(name, t)?;
        if tables.contains(&table) {
            bail!("[replicate.{name}] lists {table} twice");
        }
        tables.push(table);
    }
    let max_lag = match &section.max_lag {
        None => Duration::from_secs(30),
        Some(text) => pgdw_fdw_api::duration::parse(text)
            .map_err(|e| anyhow::anyhow!("[replicate.{name}] max_lag: {e}"))?,
    };
    let source =
        resolve(&section.source).map_err(|e| anyhow::anyhow!("[replicate.{name}] source: {e}"))?;
    if url::Url::parse(&source).map(|u| u.scheme().starts_with("postgres")) != Ok(true) {
        bail!("[replicate.{name}] source is not a postgres:// URL (for example env:CONTROL_PLANE_URL holding postgres://user:password@host:5432/db)");
    }
    Ok(Replica {
        name: name.to_string(),
        source,
        tables,
        max_lag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(tables: &[&str]) -> Section {
        Section {
            source: "postgres://u:p@h/db".into(),
            tables: tables.iter().map(|s| s.to_string()).collect(),
            max_lag: Some("10s".into()),
        }
    }

    #[test]
    fn sections_are_checked_before_anything_connects() {
        let ok = |s: &str| Ok(s.to_string());
        let r = replica(
            "control_plane",
            &section(&["public.orgs", "pgmq.a_q", "plain"]),
            ok,
        )
        .unwrap();
        assert_eq!(r.object_name(), "pgdw_control_plane");
        assert_eq!(r.tables[2].to_string(), "public.plain");
        assert_eq!(r.max_lag, Duration::from_secs(10));
        for bad in ["Control", "1cp", "cp-x", ""] {
            assert!(replica(bad, &section(&["t"]), ok).is_err(), "{bad}");
        }
        assert!(replica("cp", &section(&[]), ok)
            .unwrap_err()
            .to_string()
            .contains("no tables"));
        assert!(replica("cp", &section(&["a.b.c"]), ok).is_err());
        assert!(replica("cp", &section(&["t", "public.t"]), ok)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let mut s = section(&["t"]);
        s.source = "mysql://x".into();
        assert!(replica("cp", &s, ok)
            .unwrap_err()
            .to_string()
            .contains("postgres:// URL"));
    }
}
