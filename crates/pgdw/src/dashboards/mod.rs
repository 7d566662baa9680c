//! Dashboards as files: `dashboards/*.toml` in a project. Each has panels (a title, SQL or a
//! built-in source, a kind of chart), variables (the time range always; others such as an
//! organization, with choices from SQL) and a refresh interval. Loading validates everything
//! a file can get wrong, naming the file and the panel.

pub mod query;

use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// How a panel is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// First column a time, then one column per series; or (time, series name, value) rows.
    Timeseries,
    /// First column a category, then one column per series.
    Bar,
    Table,
    /// The first column of the first row.
    Number,
}

/// Panels computed by pgdw itself from the data behind `pgdw status` and the alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Builtin {
    Jobs,
    Partitions,
    Alerts,
    Replication,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    pub title: String,
    pub kind: Kind,
    /// The query; `$from`, `$to` (timestamptz), `$bucket` (interval) and each variable
    /// (`$organization`, text or NULL for all) are bound as parameters, never spliced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<Builtin>,
    /// statement_timeout for this panel, such as "2s" (default 5s).
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Half (1) or full (2) width.
    #[serde(default = "one")]
    pub width: u8,
    /// Unit shown with values: "cores", "bytes", "%" or any text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

fn default_timeout() -> String {
    "5s".into()
}
fn one() -> u8 {
    1
}

/// A variable other than the time range: its values offered from SQL (value, label) rows.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    pub name: String,
    pub label: Option<String>,
    pub sql: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    /// The file's stem: the dashboard's address.
    #[serde(skip_deserializing)]
    pub name: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Auto-refresh interval, such as "1m" ("off" for none).
    #[serde(default = "default_refresh")]
    pub refresh: String,
    /// The default time range, ending now: "1h", "24h", "7d", "30d".
    #[serde(default = "default_range")]
    pub range: String,
    #[serde(default)]
    pub variables: Vec<Variable>,
    pub panels: Vec<Panel>,
}

fn default_refresh() -> String {
    "1m".into()
}
fn default_range() -> String {
    "7d".into()
}

/// Milliseconds in a duration (`500ms`, `5s`, `2m`, `1h`, `7d`, `1h30m`): pgdw's one duration
/// syntax, shared with the wrappers' options.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    pgdw_fdw_api::duration::parse_ms(text).ok()
}

impl Dashboard {
    fn validate(&self) -> anyhow::Result<()> {
        if self.panels.is_empty() {
            bail!("it has no panels");
        }
        if self.refresh != "off" && parse_duration_ms(&self.refresh).is_none() {
            bail!(
                "refresh = {:?} is not a duration like \"30s\" or \"1m\" (or \"off\")",
                self.refresh
            );
        }
        if parse_duration_ms(&self.range).is_none() {
            bail!(
                "range = {:?} is not a duration like \"24h\" or \"7d\"",
                self.range
            );
        }
        for v in &self.variables {
            if !query::is_name(&v.name) || query::RESERVED.contains(&v.name.as_str()) {
                bail!(
                    "variable {:?} needs a lower-case name other than {:?}",
                    v.name,
                    query::RESERVED
                );
            }
        }
        for p in &self.panels {
            let what = || format!("panel {:?}", p.title);
            match (&p.sql, &p.builtin) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => bail!(
                    "{} needs either sql or builtin, not both or neither",
                    what()
                ),
            }
            if parse_duration_ms(&p.timeout).is_none() {
                bail!(
                    "{}: timeout = {:?} is not a duration like \"2s\"",
                    what(),
                    p.timeout
                );
            }
            if !(1..=2).contains(&p.width) {
                bail!("{}: width is 1 (half) or 2 (full)", what());
            }
        }
        Ok(())
    }

    pub fn panel(&self, id: usize) -> Option<&Panel> {
        self.panels.get(id)
    }
}

/// Every `*.toml` in `dir`, by name; a missing directory is no dashboards.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<Dashboard>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        out.push(parse(&path, &text)?);
    }
    Ok(out)
}

/// One dashboard file; `path` names it (its stem is the dashboard's name) in errors.
pub fn parse(path: &Path, text: &str) -> anyhow::Result<Dashboard> {
    let mut d: Dashboard = toml::from_str(text)
        .with_context(|| format!("{} is not a valid dashboard", path.display()))?;
    d.name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    d.validate()
        .with_context(|| format!("{} is not a valid dashboard", path.display()))?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> anyhow::Result<Dashboard> {
        parse(Path::new("dashboards/x.toml"), text)
    }

    #[test]
    fn a_dashboard_parses_with_defaults() {
        let d =
            p("title = \"T\"\n[[panels]]\ntitle = \"n\"\nkind = \"number\"\nsql = \"SELECT 1\"\n")
                .unwrap();
        assert_eq!(d.name, "x");
        assert_eq!((d.refresh.as_str(), d.range.as_str()), ("1m", "7d"));
        assert_eq!(d.panels[0].timeout, "5s");
    }

    #[test]
    fn mistakes_are_named() {
        let e = |t: &str| format!("{:#}", p(t).unwrap_err());
        assert!(e("title = \"T\"\npanels = []").contains("it has no panels"));
        assert!(
            e("title = \"T\"\n[[panels]]\ntitle = \"a\"\nkind = \"pie\"\nsql = \"SELECT 1\"")
                .contains("unknown variant `pie`")
        );
        assert!(
            e("title = \"T\"\n[[panels]]\ntitle = \"a\"\nkind = \"bar\"")
                .contains("panel \"a\" needs either sql or builtin")
        );
        assert!(e("title = \"T\"\n[[panels]]\ntitle = \"a\"\nkind = \"bar\"\nsql = \"x\"\ntimeout = \"soon\"")
            .contains("timeout = \"soon\""));
        assert!(e("title = \"T\"\n[[variables]]\nname = \"from\"\nsql = \"x\"\n[[panels]]\ntitle = \"a\"\nkind = \"bar\"\nsql = \"x\"")
            .contains("variable \"from\""));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("7d"), Some(604_800_000));
        assert_eq!(parse_duration_ms("7 days"), None);
        assert_eq!(parse_duration_ms("0s"), None);
    }
}
