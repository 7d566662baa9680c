//! Running PostgreSQL programs as the right OS user.
//!
//! PostgreSQL refuses to run as root. When pgdw itself runs as root, every server-side
//! program (initdb, pg_ctl, postgres) is started as the `postgres` OS user instead, and the
//! data directory is handed to that user.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::Once;

use nix::unistd::{chown, Uid, User};

use crate::error::{ClusterError, IoContext};

/// Who runs the server processes.
#[derive(Debug, Clone)]
pub enum ServerUser {
    /// The current (non-root) user.
    Current,
    /// pgdw runs as root: the server runs as this user.
    Switched { name: String, uid: u32, gid: u32 },
}

static ANNOUNCE: Once = Once::new();

impl ServerUser {
    pub fn detect() -> Result<Self, ClusterError> {
        if !Uid::effective().is_root() {
            return Ok(ServerUser::Current);
        }
        let user = User::from_name("postgres")
            .ok()
            .flatten()
            .ok_or(ClusterError::NoPostgresUser)?;
        Ok(ServerUser::Switched {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }

    /// Say once per process that the server runs as another user, so the ownership of the
    /// data directory is no surprise.
    pub fn announce(&self) {
        if let ServerUser::Switched { name, .. } = self {
            ANNOUNCE.call_once(|| {
                eprintln!("pgdw: running as root; PostgreSQL refuses that, so the server runs as OS user `{name}`");
            });
        }
    }

    /// A command for a server-side program, run as the server user.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        // A working directory the server user can always enter.
        cmd.current_dir("/");
        if let ServerUser::Switched { uid, gid, name } = self {
            cmd.uid(*uid).gid(*gid);
            cmd.env("HOME", "/var/lib/postgresql").env("USER", name);
        }
        cmd
    }

    /// Give `path` (recursively) to the server user.
    pub fn own(&self, path: &Path) -> Result<(), ClusterError> {
        let ServerUser::Switched { uid, gid, .. } = self else {
            return Ok(());
        };
        let (uid, gid) = (
            Some(Uid::from_raw(*uid)),
            Some(nix::unistd::Gid::from_raw(*gid)),
        );
        let mut stack = vec![path.to_path_buf()];
        while let Some(p) = stack.pop() {
            chown(&p, uid, gid)
                .map_err(std::io::Error::from)
                .context(|| format!("giving {} to the postgres user", p.display()))?;
            if p.is_dir() && !p.is_symlink() {
                for entry in std::fs::read_dir(&p).context(|| format!("reading {}", p.display()))? {
                    stack.push(entry.context(|| format!("reading {}", p.display()))?.path());
                }
            }
        }
        Ok(())
    }
}
