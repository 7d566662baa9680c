//! `pgdw.json`: what pgdw remembers about a cluster it created (port, role, password).
//!
//! It lives inside the data directory with mode 0600, so only the cluster's owner reads it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{ClusterError, IoContext};

pub const STATE_FILE: &str = "pgdw.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub port: u16,
    pub superuser: String,
    pub database: String,
    pub password: String,
    /// On a primary: the standbys made of it with `pgdw standby create`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standbys: Vec<StandbyRef>,
    /// On a standby: its name (its `application_name` on the primary, its slot's suffix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_name: Option<String>,
    /// On a standby: its primary's data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_of: Option<String>,
    /// Set when this cluster was a standby and was promoted: the data directory it took over
    /// from, which must never write again (fencing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<String>,
}

/// A standby as its primary remembers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StandbyRef {
    pub name: String,
    pub data_dir: String,
    pub sync: bool,
}

impl State {
    pub fn new(port: u16, database: &str) -> Self {
        State {
            port,
            superuser: "postgres".into(),
            database: database.into(),
            password: generate_password(),
            standbys: Vec::new(),
            standby_name: None,
            standby_of: None,
            promoted_from: None,
        }
    }

    pub fn load(data_dir: &Path) -> Result<Option<Self>, ClusterError> {
        let path = data_dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| ClusterError::BadState { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, data_dir: &Path) -> Result<(), ClusterError> {
        let path = data_dir.join(STATE_FILE);
        let tmp = data_dir.join(format!("{STATE_FILE}.tmp"));
        let body = serde_json::to_vec_pretty(self).expect("state serializes");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&body)
            .context(|| format!("writing {}", tmp.display()))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .context(|| format!("protecting {}", tmp.display()))?;
        fs::rename(&tmp, &path).context(|| format!("writing {}", path.display()))
    }
}

fn generate_password() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::new(5555, "warehouse");
        assert_eq!(s.password.len(), 32);
        s.save(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(STATE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(State::load(dir.path()).unwrap(), Some(s));
    }

    #[test]
    fn passwords_differ() {
        assert_ne!(generate_password(), generate_password());
    }
}
