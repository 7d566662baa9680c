//! Where a cluster's files live.
//!
//! Usually exactly where the user asked (`--data-dir`, default `.pgdw/data`). But when pgdw runs
//! as root the server runs as the `postgres` OS user, which cannot enter a private directory
//! such as root's home (mode 0700): initdb would fail with "Permission denied". Then the
//! cluster's files go to a directory of their own under [`RELOCATED_ROOT`], and the requested
//! path becomes a symbolic link to it, so the place is remembered on disk and `ls -l` shows it.
//! Every later command resolves the link and hands the server only the real path.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{ClusterError, IoContext};
use crate::os_user::ServerUser;

/// Where relocated clusters live: a place the `postgres` user can always reach.
pub const RELOCATED_ROOT: &str = "/var/lib/pgdw/clusters";

/// The real data directory for the requested one: the target of its link, or itself.
pub fn resolve(requested: &Path) -> Result<PathBuf, ClusterError> {
    let abs =
        std::path::absolute(requested).context(|| format!("resolving {}", requested.display()))?;
    match fs::read_link(&abs) {
        Ok(target) => Ok(abs.parent().unwrap_or(Path::new("/")).join(target)),
        Err(_) => Ok(abs),
    }
}

/// Whether `requested` is a link pgdw made to a relocated cluster.
pub fn is_relocated(requested: &Path) -> bool {
    fs::symlink_metadata(requested)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

/// Choose where a new cluster's files go. When the server user can reach `requested`'s parent,
/// that is `requested` itself; otherwise a fresh directory under [`RELOCATED_ROOT`], linked from
/// `requested`. Returns the real directory (not yet created when it is `requested`).
pub fn place_new(requested: &Path, user: &ServerUser) -> Result<PathBuf, ClusterError> {
    let abs =
        std::path::absolute(requested).context(|| format!("resolving {}", requested.display()))?;
    let parent = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    fs::create_dir_all(&parent).context(|| format!("creating {}", parent.display()))?;
    let ServerUser::Switched { uid, gid, name } = user else {
        return Ok(abs);
    };
    if can_enter(&parent, *uid, *gid)? {
        return Ok(abs);
    }
    let root = Path::new(RELOCATED_ROOT);
    fs::create_dir_all(root).context(|| format!("creating {}", root.display()))?;
    let real = root.join(format!("{:016x}", rand::random::<u64>()));
    fs::create_dir(&real).context(|| format!("creating {}", real.display()))?;
    std::os::unix::fs::symlink(&real, &abs)
        .context(|| format!("linking {} to {}", abs.display(), real.display()))?;
    eprintln!(
        "pgdw: the server's OS user `{name}` cannot enter {} (a parent directory is private), \
         so the cluster's files live in {} and {} links there",
        parent.display(),
        real.display(),
        abs.display()
    );
    Ok(real)
}

/// Remove a cluster's files: the real directory and, when relocated, the link to it.
pub fn remove(requested: &Path) -> io::Result<()> {
    let real = resolve(requested).map_err(io::Error::other)?;
    let result = fs::remove_dir_all(&real);
    if is_relocated(requested) {
        fs::remove_file(requested)?;
    }
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether the user `uid`/`gid` can search `dir` and every directory above it. Asked of the
/// kernel itself (`test -x` run as that user), so ACLs and supplementary groups count.
fn can_enter(dir: &Path, uid: u32, gid: u32) -> Result<bool, ClusterError> {
    let status = Command::new("test")
        .arg("-x")
        .arg(dir)
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context(|| {
            format!(
                "checking whether the postgres user can enter {}",
                dir.display()
            )
        })?;
    Ok(status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_directory_resolves_to_itself_and_a_link_to_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("data");
        assert_eq!(resolve(&plain).unwrap(), plain);
        assert!(!is_relocated(&plain));
        let real = dir.path().join("elsewhere");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, &plain).unwrap();
        assert_eq!(resolve(&plain).unwrap(), real);
        assert!(is_relocated(&plain));
        remove(&plain).unwrap();
        assert!(!real.exists() && !is_relocated(&plain));
    }

    #[test]
    fn the_current_user_keeps_the_requested_place() {
        let dir = tempfile::tempdir().unwrap();
        let want = dir.path().join("x/data");
        assert_eq!(place_new(&want, &ServerUser::Current).unwrap(), want);
        assert!(want.parent().unwrap().is_dir());
    }
}
