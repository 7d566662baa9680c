use std::collections::BTreeMap;

use crate::{ErrorKind, FdwError};

/// Where an option may be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catalog {
    Wrapper,
    Server,
    UserMapping,
    Table,
}

impl Catalog {
    pub fn sql_name(self) -> &'static str {
        match self {
            Catalog::Wrapper => "FOREIGN DATA WRAPPER",
            Catalog::Server => "SERVER",
            Catalog::UserMapping => "USER MAPPING",
            Catalog::Table => "FOREIGN TABLE",
        }
    }
}

/// One option a wrapper accepts.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub name: &'static str,
    pub catalogs: &'static [Catalog],
    /// Secrets are masked in every error, and should be set on user mappings, whose options
    /// Postgres hides from other users.
    pub secret: bool,
    /// Checks a value; the error says what a valid one looks like.
    pub check: fn(&str) -> Result<(), String>,
}

impl OptionSpec {
    pub fn any(_: &str) -> Result<(), String> {
        Ok(())
    }
}

/// Check one object's options at CREATE/ALTER time: every name known in that catalog, every
/// value well-formed.
pub fn validate(
    specs: &[OptionSpec],
    catalog: Catalog,
    given: &[(String, String)],
) -> Result<(), FdwError> {
    for (name, value) in given {
        let Some(spec) = specs
            .iter()
            .find(|s| s.name == name && s.catalogs.contains(&catalog))
        else {
            // A secret elsewhere than on a user mapping would sit in a catalog every user can
            // read (pg_foreign_server, pg_foreign_table); say so rather than just "invalid".
            if specs.iter().any(|s| s.name == name && s.secret) {
                return Err(FdwError::new(
                    ErrorKind::InvalidOptionName,
                    format!("option \"{name}\" is a secret and belongs on a user mapping only"),
                )
                .with_detail(format!(
                    "a {}'s options are readable by every user of the database; a user mapping's only by its user",
                    catalog.sql_name()
                ))
                .with_hint(format!(
                    "CREATE USER MAPPING FOR CURRENT_USER SERVER <server> OPTIONS ({name} '...')"
                )));
            }
            let valid: Vec<&str> = specs
                .iter()
                .filter(|s| s.catalogs.contains(&catalog))
                .map(|s| s.name)
                .collect();
            let elsewhere: Vec<&str> = specs
                .iter()
                .filter(|s| s.name == name)
                .flat_map(|s| s.catalogs.iter().map(|c| c.sql_name()))
                .collect();
            let hint = if !elsewhere.is_empty() {
                format!("\"{name}\" belongs on: {}", elsewhere.join(", "))
            } else if valid.is_empty() {
                format!("There are no valid options on a {}.", catalog.sql_name())
            } else {
                format!(
                    "Valid options on a {} are: {}",
                    catalog.sql_name(),
                    valid.join(", ")
                )
            };
            return Err(FdwError::new(
                ErrorKind::InvalidOptionName,
                format!("invalid option \"{name}\""),
            )
            .with_hint(hint));
        };
        if let Err(why) = (spec.check)(value) {
            let shown = if spec.secret {
                "********"
            } else {
                value.as_str()
            };
            return Err(FdwError::new(
                ErrorKind::InvalidOptionValue,
                format!("invalid value for option \"{name}\": \"{shown}\""),
            )
            .with_hint(why));
        }
    }
    Ok(())
}

/// The options in force for one scan: wrapper, then server, then table, then user mapping,
/// each overriding the one before (so a secret on the user mapping wins over the server's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    values: BTreeMap<String, String>,
    secrets: Vec<String>,
}

/// Where a scan's options come from. [`Options::for_scan`] merges them in the one order that
/// decides which wins, for the FDW core's scans and for pgdw's metric loads alike.
pub struct ScanLayers<'a> {
    pub wrapper: &'a [(String, String)],
    pub server: &'a [(String, String)],
    pub table: &'a [(String, String)],
    pub user_mapping: &'a [(String, String)],
    /// The session's `SET <wrapper>.<option>` of the wrapper's session options (see
    /// [`session_setting`]).
    pub session: &'a [(String, String)],
}

/// The setting a session sets session option `option` of wrapper `wrapper` with
/// (`prometheus_fdw.step`).
pub fn session_setting(wrapper: &str, option: &str) -> String {
    format!("{wrapper}.{option}")
}

impl Options {
    /// Every option in force for a scan: the wrapper's, the server's, the table's, the user
    /// mapping's, then the session's, later ones winning.
    pub fn for_scan(specs: &[OptionSpec], l: ScanLayers) -> Self {
        Self::merge(
            specs,
            &[l.wrapper, l.server, l.table, l.user_mapping, l.session],
        )
    }

    /// Merge option lists, later ones winning.
    pub fn merge(specs: &[OptionSpec], layers: &[&[(String, String)]]) -> Self {
        let mut values = BTreeMap::new();
        for layer in layers {
            for (k, v) in layer.iter() {
                values.insert(k.clone(), v.clone());
            }
        }
        let mut secrets: Vec<String> = Vec::new();
        for layer in layers {
            for (k, v) in layer.iter() {
                if specs.iter().any(|s| s.secret && s.name == k) && !v.is_empty() {
                    secrets.push(v.clone());
                }
            }
        }
        Options { values, secrets }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A required option, or an error naming it and where it goes.
    pub fn require(&self, name: &str, example: &str) -> Result<&str, FdwError> {
        self.get(name).ok_or_else(|| {
            FdwError::new(
                ErrorKind::MissingOption,
                format!("option \"{name}\" is required"),
            )
            .with_hint(format!("add it, e.g. OPTIONS (ADD {name} '{example}')"))
        })
    }

    /// Every secret value in force, for masking errors.
    pub fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[OptionSpec] = &[
        OptionSpec {
            name: "base_url",
            catalogs: &[Catalog::Server],
            secret: false,
            check: OptionSpec::any,
        },
        OptionSpec {
            name: "api_key",
            catalogs: &[Catalog::Server, Catalog::UserMapping],
            secret: true,
            check: |v| {
                if v.starts_with("sk_") {
                    Ok(())
                } else {
                    Err("Clerk keys start with sk_".into())
                }
            },
        },
    ];

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn unknown_options_list_the_valid_ones() {
        let err = validate(SPECS, Catalog::Server, &[kv("base_ur", "x")]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidOptionName);
        assert_eq!(err.message, "invalid option \"base_ur\"");
        assert_eq!(
            err.hint.unwrap(),
            "Valid options on a SERVER are: base_url, api_key"
        );
    }

    #[test]
    fn an_option_in_the_wrong_place_says_where_it_belongs() {
        let err = validate(SPECS, Catalog::Table, &[kv("base_url", "x")]).unwrap_err();
        assert_eq!(err.hint.unwrap(), "\"base_url\" belongs on: SERVER");
    }

    #[test]
    fn a_secret_outside_a_user_mapping_is_refused_with_the_way_to_set_it() {
        const ONLY_MAPPING: &[OptionSpec] = &[OptionSpec {
            name: "api_key",
            catalogs: &[Catalog::UserMapping],
            secret: true,
            check: OptionSpec::any,
        }];
        let err = validate(ONLY_MAPPING, Catalog::Server, &[kv("api_key", "sk_oops")]).unwrap_err();
        assert!(
            err.message.contains("belongs on a user mapping only"),
            "{}",
            err.message
        );
        assert!(err.hint.as_deref().unwrap().contains("CREATE USER MAPPING"));
        assert!(!format!("{err:?}").contains("sk_oops"));
    }

    #[test]
    fn bad_secret_values_are_not_echoed() {
        let err =
            validate(SPECS, Catalog::UserMapping, &[kv("api_key", "oops-secret")]).unwrap_err();
        assert!(!err.message.contains("oops-secret"));
        assert_eq!(err.hint.unwrap(), "Clerk keys start with sk_");
    }

    #[test]
    fn user_mapping_wins_and_secrets_are_collected() {
        let server = [kv("api_key", "sk_server"), kv("base_url", "u")];
        let mapping = [kv("api_key", "sk_mine")];
        let o = Options::merge(SPECS, &[&server, &mapping]);
        assert_eq!(o.get("api_key"), Some("sk_mine"));
        assert_eq!(o.get("base_url"), Some("u"));
        assert_eq!(o.secrets(), vec!["sk_server", "sk_mine"]);
    }

    #[test]
    fn a_scan_takes_the_table_over_the_server_and_the_session_over_everything() {
        let p = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let o = Options::for_scan(
            SPECS,
            ScanLayers {
                wrapper: &p("step", "1m"),
                server: &p("step", "2m"),
                table: &p("step", "3m"),
                user_mapping: &p("api_key", "sk_1"),
                session: &[],
            },
        );
        assert_eq!(o.get("step"), Some("3m"));
        assert_eq!(o.secrets(), vec!["sk_1"]);
        let o = Options::for_scan(
            SPECS,
            ScanLayers {
                wrapper: &[],
                server: &p("step", "2m"),
                table: &p("step", "3m"),
                user_mapping: &[],
                session: &p("step", "5m"),
            },
        );
        assert_eq!(o.get("step"), Some("5m"));
        assert_eq!(
            session_setting("prometheus_fdw", "step"),
            "prometheus_fdw.step"
        );
    }
}
