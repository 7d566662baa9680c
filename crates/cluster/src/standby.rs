//! Standbys of an embedded cluster, as files and processes: a base backup taken with
//! `pg_basebackup` over the primary's private socket, the settings that make it stream from
//! its primary through a physical slot (the `pgdw` crate creates the slot beforehand, in SQL),
//! `pg_ctl promote`, and the fencing that keeps an old primary from writing again once its
//! standby took over.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::error::{ClusterError, IoContext};
use crate::state::{StandbyRef, State};
use crate::{conf, free_port, place, Cluster, SERVER_LOG};

/// The file whose presence makes PostgreSQL start as a standby (removed by promotion).
pub const SIGNAL: &str = "standby.signal";
/// The physical slot of the standby named `name` on its primary.
pub fn slot_name(name: &str) -> String {
    format!("pgdw_standby_{name}")
}

/// What became of a standby's name: lower-case letters, digits and `_` (a slot's alphabet),
/// from the last component of its data directory when none is given.
pub fn standby_name(given: Option<&str>, dir: &Path) -> Result<String, ClusterError> {
    let raw = match given {
        Some(n) => n.to_string(),
        None => dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let name: String = raw
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let name = name.trim_matches('_').to_string();
    // A slot name holds at most 63 bytes; the prefix takes 13.
    if name.is_empty() || name.len() > 50 {
        return Err(ClusterError::UnwritableSetting {
            value: PathBuf::from(raw),
            reason: "a standby's name is 1 to 50 letters, digits or _ (give one with --name)"
                .into(),
        });
    }
    Ok(name)
}

impl Cluster {
    /// Whether this cluster starts as a standby.
    pub fn is_standby(&self) -> bool {
        self.data_dir.join(SIGNAL).exists()
    }

    /// Let replication connections in over the private socket (trust there, as for every
    /// other connection; a password over TCP). Clusters made before standbys existed lack the
    /// lines. Returns whether pg_hba.conf changed: the server must then reload it.
    pub fn allow_replication(&self) -> Result<bool, ClusterError> {
        let path = self.data_dir.join("pg_hba.conf");
        let hba = fs::read_to_string(&path).context(|| format!("reading {}", path.display()))?;
        let has = |kind: &str| {
            hba.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.first() == Some(&kind) && f.get(1) == Some(&"replication")
            })
        };
        let mut add = String::new();
        if !has("local") {
            add.push_str("local replication all trust\n");
        }
        if !has("host") {
            add.push_str("host  replication all 127.0.0.1/32 scram-sha-256\n");
        }
        if add.is_empty() {
            return Ok(false);
        }
        let mut text = hba;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# Added by pgdw for standbys: streaming replication, as above.\n");
        text.push_str(&add);
        fs::write(&path, text).context(|| format!("writing {}", path.display()))?;
        Ok(true)
    }

    /// Take a base backup of this running cluster into `requested` (missing or empty) and set
    /// it up as a standby named `name`, streaming from this cluster through the physical slot
    /// `slot` (which must exist), on `port` or a free one. The standby is not started; this
    /// cluster remembers it. With `progress`, pg_basebackup's progress goes to stderr.
    pub fn make_standby(
        &mut self,
        requested: &Path,
        name: &str,
        slot: &str,
        port: Option<u16>,
        sync: bool,
        progress: bool,
    ) -> Result<Cluster, ClusterError> {
        let requested = std::path::absolute(requested)
            .context(|| format!("resolving {}", requested.display()))?;
        if Cluster::exists(&place::resolve(&requested)?) {
            return Err(ClusterError::UnwritableSetting {
                value: requested,
                reason: "it is not empty: a standby is made into a new or empty directory".into(),
            });
        }
        conf::check_data_dir(&requested)?;
        let chosen = port.is_none();
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        let dir = place::place_new(&requested, &self.user)?;
        fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .context(|| format!("protecting {}", dir.display()))?;
        self.user.own(&dir)?;
        let result = self.base_backup(&dir, name, slot, port, progress);
        if result.is_err() {
            let _ = place::remove(&requested);
        }
        result?;
        self.state.standbys.retain(|s| s.name != name);
        self.state.standbys.push(StandbyRef {
            name: name.into(),
            data_dir: requested.display().to_string(),
            sync,
        });
        self.state.save(&self.data_dir)?;
        let mut standby = Cluster::open_existing(&requested, Some(self.bindir.clone()))?
            .ok_or_else(|| ClusterError::NotADataDir(requested.clone()))?;
        standby.port_chosen = chosen;
        Ok(standby)
    }

    fn base_backup(
        &self,
        dir: &Path,
        name: &str,
        slot: &str,
        port: u16,
        progress: bool,
    ) -> Result<(), ClusterError> {
        let mut cmd = self.user.command(&self.bindir.join("pg_basebackup"));
        cmd.arg("-D")
            .arg(dir)
            .arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &self.state.port.to_string()])
            .args(["-U", &self.state.superuser])
            .args(["-X", "stream", "-S", slot, "-c", "fast", "--no-password"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if progress {
            cmd.arg("-P");
        } else {
            cmd.stderr(Stdio::piped());
        }
        let out = cmd
            .spawn()
            .and_then(|c| c.wait_with_output())
            .context(|| "running pg_basebackup".into())?;
        if !out.status.success() {
            return Err(ClusterError::CommandFailed {
                what: "pg_basebackup".into(),
                status: out.status.to_string(),
                log: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        // The primary's log came along; the standby starts its own.
        let _ = fs::remove_file(dir.join(SERVER_LOG));
        let conninfo = format!(
            "host={} port={} user={} application_name={}",
            conninfo_value(&self.socket_dir().display().to_string()),
            self.state.port,
            conninfo_value(&self.state.superuser),
            name
        );
        let auto = dir.join("postgresql.auto.conf");
        let mut text = fs::read_to_string(&auto).unwrap_or_default();
        text.push_str(&format!(
            "# Written by pgdw standby create: where this standby streams from.\n\
             primary_conninfo = {}\nprimary_slot_name = {}\n",
            conf::quote(&conninfo)?,
            conf::quote(slot)?
        ));
        fs::write(&auto, text).context(|| format!("writing {}", auto.display()))?;
        fs::write(dir.join(SIGNAL), "").context(|| format!("writing {SIGNAL}"))?;
        let state = State {
            port,
            standbys: Vec::new(),
            standby_name: Some(name.into()),
            standby_of: Some(self.data_dir.display().to_string()),
            promoted_from: None,
            ..self.state.clone()
        };
        state.save(dir)?;
        for written in ["postgresql.auto.conf", SIGNAL, crate::state::STATE_FILE] {
            self.user.own(&dir.join(written))?;
        }
        Ok(())
    }

    /// Forget the standby `name` (after its slot was dropped).
    pub fn forget_standby(&mut self, name: &str) -> Result<(), ClusterError> {
        self.state.standbys.retain(|s| s.name != name);
        self.state.save(&self.data_dir)
    }

    /// Promote this standby (running): it stops replaying and becomes a primary. Its old
    /// primary is fenced from then on: `start` refuses it (see [`Cluster::check_not_superseded`]).
    pub fn promote(&mut self, timeout: Duration) -> Result<(), ClusterError> {
        if !self.is_standby() {
            return Err(ClusterError::NotAStandby(self.data_dir.clone()));
        }
        let out = self
            .user
            .command(&self.bindir.join("pg_ctl"))
            .args(["promote", "-w", "-t", &timeout.as_secs().max(1).to_string()])
            .arg("-D")
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .output()
            .context(|| "running pg_ctl promote".into())?;
        if !out.status.success() {
            return Err(ClusterError::CommandFailed {
                what: "pg_ctl promote".into(),
                status: out.status.to_string(),
                log: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        self.state.promoted_from = self.state.standby_of.take();
        self.state.save(&self.data_dir)
    }

    /// A primary whose standby was promoted must not start: two writers would each take
    /// changes the other never sees. pgdw knows its own standbys' directories, so it can tell.
    pub fn check_not_superseded(&self) -> Result<(), ClusterError> {
        for s in &self.state.standbys {
            let Ok(dir) = place::resolve(Path::new(&s.data_dir)) else {
                continue;
            };
            let promoted = State::load(&dir)
                .ok()
                .flatten()
                .and_then(|st| st.promoted_from)
                .is_some_and(|from| Path::new(&from) == self.data_dir);
            if promoted && !dir.join(SIGNAL).exists() {
                return Err(ClusterError::Superseded {
                    standby: s.name.clone(),
                    dir: PathBuf::from(&s.data_dir),
                });
            }
        }
        Ok(())
    }
}

/// A libpq connection-string value: quoted when it holds what would end it.
fn conninfo_value(v: &str) -> String {
    if !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return v.to_string();
    }
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_a_slots_alphabet() {
        assert_eq!(
            standby_name(None, Path::new("/tmp/Standby-1")).unwrap(),
            "standby_1"
        );
        assert_eq!(standby_name(Some("b"), Path::new("/x/y")).unwrap(), "b");
        assert!(standby_name(Some("--"), Path::new("/x")).is_err());
    }

    #[test]
    fn conninfo_values_with_spaces_and_quotes_are_quoted() {
        assert_eq!(conninfo_value("/tmp/a"), "/tmp/a");
        assert_eq!(conninfo_value("/tmp/it's a"), r"'/tmp/it\'s a'");
    }
}
