//! Values written into `pgdw.conf`, quoted the way PostgreSQL's configuration parser reads them.
//!
//! Inside single quotes the parser takes `''` or `\'` for a quote and processes backslash
//! escapes; a raw newline ends the line and cannot be in a value at all. List settings such as
//! `unix_socket_directories` are then split on commas, where a double-quoted element may hold
//! commas and `""` stands for a double quote.

use std::path::{Path, PathBuf};

use crate::error::ClusterError;

/// `'value'` for a configuration file; refuses what no quoting can carry.
pub fn quote(value: &str) -> Result<String, ClusterError> {
    if let Some(c) = value.chars().find(|c| matches!(c, '\n' | '\r' | '\0')) {
        return Err(ClusterError::UnwritableSetting {
            value: PathBuf::from(value),
            reason: format!("it contains the control character {c:?}"),
        });
    }
    Ok(format!(
        "'{}'",
        value.replace('\\', "\\\\").replace('\'', "''")
    ))
}

/// Whether the server's programs can be given `dir` at all. pg_ctl hands the data directory
/// and log file to `/bin/sh` inside double quotes without escaping them, where `"`, `$`, a
/// backquote and a backslash keep a meaning; libpq splits a socket directory on commas; and
/// nothing can carry a line break.
pub fn check_data_dir(dir: &Path) -> Result<(), ClusterError> {
    let Some(text) = dir.to_str() else {
        return Err(ClusterError::UnwritableSetting {
            value: dir.to_path_buf(),
            reason: "it is not valid UTF-8".into(),
        });
    };
    if let Some(c) = text.chars().find(|c| matches!(c, '"' | '$' | '`' | '\\')) {
        return Err(ClusterError::UnwritableSetting {
            value: dir.to_path_buf(),
            reason: format!(
                "pg_ctl passes it to the shell in double quotes, where {c:?} is special"
            ),
        });
    }
    if text.contains(',') {
        return Err(ClusterError::UnwritableSetting {
            value: dir.to_path_buf(),
            reason: "the unix socket lives there, and libpq reads a comma in a socket directory as a list of hosts".into(),
        });
    }
    socket_directories(dir).map(|_| ())
}

/// `unix_socket_directories` naming exactly `dir`, whatever commas, quotes or spaces it holds.
pub fn socket_directories(dir: &Path) -> Result<String, ClusterError> {
    let Some(text) = dir.to_str() else {
        return Err(ClusterError::UnwritableSetting {
            value: dir.to_path_buf(),
            reason: "it is not valid UTF-8".into(),
        });
    };
    quote(&format!("\"{}\"", text.replace('"', "\"\"")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_backslashes_and_quotes() {
        assert_eq!(quote("plain").unwrap(), "'plain'");
        assert_eq!(quote("it's").unwrap(), "'it''s'");
        assert_eq!(quote(r"a\b").unwrap(), r"'a\\b'");
    }

    #[test]
    fn refuses_newlines() {
        let err = quote("a\nb").unwrap_err().to_string();
        assert!(err.contains("control character"), "{err}");
    }

    #[test]
    fn data_directories_the_shell_would_misread_are_refused() {
        assert!(check_data_dir(Path::new("/tmp/it's odd")).is_ok());
        for bad in [
            "/tmp/a,b",
            "/tmp/a\"b",
            "/tmp/$HOME",
            "/tmp/a`b`",
            "/tmp/a\\b",
            "/tmp/a\nb",
        ] {
            let err = check_data_dir(Path::new(bad)).unwrap_err().to_string();
            assert!(
                err.contains("choose a --data-dir without it"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn socket_directories_are_one_quoted_element() {
        assert_eq!(
            socket_directories(Path::new("/tmp/a,b \"c\"")).unwrap(),
            r#"'"/tmp/a,b ""c"""'"#
        );
    }
}
