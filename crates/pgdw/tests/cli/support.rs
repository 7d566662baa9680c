//! What the command's tests share: running `pgdw` as a user would, a fresh warehouse, workers,
//! and waiting for a condition.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use pgdw_testkit::{transcript, wait_for, TempWarehouse};

pub const PGDW: &str = env!("CARGO_BIN_EXE_pgdw");

/// Run pgdw and insist that it succeeded.
pub fn ok(w: &TempWarehouse, args: &[&str]) -> String {
    let out = w.pgdw(PGDW.as_ref(), args);
    assert!(
        out.status.success(),
        "pgdw {args:?} failed\n{}",
        transcript(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Run pgdw and insist that it failed; returns stderr.
pub fn fails(w: &TempWarehouse, args: &[&str]) -> (Output, String) {
    let out = w.pgdw(PGDW.as_ref(), args);
    assert!(
        !out.status.success(),
        "pgdw {args:?} should have failed\n{}",
        transcript(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, err)
}

/// One value from a query, through `pgdw psql`.
pub fn query(w: &TempWarehouse, sql: &str) -> String {
    ok(w, &["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .trim()
        .to_string()
}

/// One value from a query run as `role` (logged in as it, over the socket): Ok(stdout) or
/// Err(stderr).
pub fn query_as(w: &TempWarehouse, role: &str, sql: &str) -> Result<String, String> {
    let out = w.pgdw(
        PGDW.as_ref(),
        &[
            "psql",
            "-XAtq",
            "-U",
            role,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The warehouse's machine dies: every process of the server at once (SIGKILL). Killing only
/// the postmaster is another fault: its backends live on until they next wait, and an apply
/// worker among them goes on applying and confirming changes without the synchronous standby
/// (PostgreSQL cancels the wait once the postmaster is gone); docs/standby.md says so.
pub fn machine_dies(w: &TempWarehouse) {
    use nix::sys::signal::{kill, Signal};
    let dir = pgdw_cluster::place::resolve(&w.data_dir()).unwrap();
    // Frozen first, all of them, then killed: killed one by one, a process still running
    // would see its postmaster gone meanwhile, which no machine's death lets it see.
    // The second look finds what was forked during the first (the postmaster is stopped then).
    let signal_all = |signal| {
        for pid in pgdw_cluster::process::server_processes(&dir) {
            let _ = kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    };
    signal_all(Signal::SIGSTOP);
    signal_all(Signal::SIGSTOP);
    signal_all(Signal::SIGKILL);
    assert!(pgdw_testkit::wait_for(
        std::time::Duration::from_secs(10),
        || { pgdw_cluster::process::server_processes(&dir).is_empty() }
    ));
}

/// A warehouse after `pgdw up`: the runtime installed, nothing else.
pub fn warehouse() -> TempWarehouse {
    let w = TempWarehouse::new();
    ok(&w, &["up"]);
    w
}

/// Wait (bounded) until `sql` answers `want`.
pub fn converges(w: &TempWarehouse, sql: &str, want: &str) {
    let mut got = String::new();
    let same = wait_for(Duration::from_secs(60), || {
        got = query(w, sql);
        got == want
    });
    assert!(same, "{sql}: want {want}, got {got}");
}

/// A `pgdw worker` process, killed (SIGKILL) on drop unless it was stopped.
pub struct Worker(Option<Child>);

impl Worker {
    pub fn start(w: &TempWarehouse, args: &[&str]) -> Worker {
        let mut cmd = Command::new(PGDW);
        cmd.env_remove("DATABASE_URL")
            .env("PGDW_DATA_DIR", w.data_dir());
        Worker::spawn(cmd, args)
    }

    /// A worker of the warehouse at `url` (DATABASE_URL).
    pub fn at_url(url: &str, args: &[&str]) -> Worker {
        let mut cmd = Command::new(PGDW);
        cmd.env("DATABASE_URL", url);
        Worker::spawn(cmd, args)
    }

    fn spawn(mut cmd: Command, args: &[&str]) -> Worker {
        let child = cmd
            .arg("worker")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Worker(Some(child))
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.0.as_ref().unwrap().id() as i32)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).unwrap();
    }

    /// What the process writes to stderr from now on, as it comes.
    pub fn follow_stderr(&mut self) -> std::sync::Arc<std::sync::Mutex<String>> {
        use std::io::Read;
        let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut stderr = self.0.as_mut().unwrap().stderr.take().unwrap();
        let into = said.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        said
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.0.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// Ask it to stop (SIGTERM) and wait until it has; it must exit successfully. Its output.
    pub fn stop(self) -> std::process::Output {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let out = self.wait();
        assert!(out.status.success(), "{}", pgdw_testkit::transcript(&out));
        out
    }

    /// Wait for the process to exit; its exit status and its output.
    pub fn wait(mut self) -> std::process::Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}
