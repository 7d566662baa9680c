//! One policy for every child process pgdw starts (PostgreSQL through pg_ctl, Prometheus, and
//! the tests' helpers): readiness is polled with a bounded wait, and a stop is a polite signal
//! first (SIGTERM: the program flushes and exits), then SIGKILL after a grace period, the child
//! always reaped. PostgreSQL's own equivalents are pg_ctl's `-w -t` start and its fast, then
//! immediate, stop modes (see `Cluster::stop`).
//!
//! The pid-reuse race: a pid is signalled only while its `Child` is unreaped, so it cannot
//! name another process yet. A pid read from a file (the postmaster's) is checked against
//! /proc first (`Cluster::running_pid`).

use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(50);

/// The server processes running in `data_dir` (their working directory: PostgreSQL's
/// processes chdir into their data directory), the postmaster among them while it lives.
/// Once it is gone, these are its orphans: a backend busy in a CPU-bound statement notices its
/// postmaster's death only when it next waits, and while it lives it holds the old shared
/// memory, which makes the next start fail ("pre-existing shared memory block ... is still in
/// use"). Zombies (exited, not yet reaped) hold nothing.
pub fn server_processes(data_dir: &std::path::Path) -> Vec<i32> {
    let Ok(want) = data_dir.canonicalize() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            comm.trim() == "postgres"
                && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == want)
        })
        .collect()
}

/// End the orphaned backends of `data_dir` (see [`orphaned_backends`]): up to `grace` for them
/// to finish on their own, then SIGKILL, then up to `grace` again for them to be gone. Returns
/// the pids ended, and whether any is still there.
pub fn end_orphaned_backends(data_dir: &std::path::Path, grace: Duration) -> (Vec<i32>, bool) {
    let found = server_processes(data_dir);
    if found.is_empty() {
        return (found, false);
    }
    if !wait_for(grace, || server_processes(data_dir).is_empty()) {
        for pid in server_processes(data_dir) {
            // Checked against /proc just now: a postgres process of this data directory.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let left = !wait_for(grace, || server_processes(data_dir).is_empty());
    (found, left)
}

/// Poll `ready` until it holds (true) or `limit` passes (false).
pub fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ready() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Stop `child`: SIGTERM, up to `grace` for it to exit, then SIGKILL. Returns whether it
/// exited on its own.
pub fn stop(child: &mut Child, grace: Duration) -> bool {
    if let Ok(Some(_)) = child.try_wait() {
        return true;
    }
    // The child is not reaped yet, so its pid is still its own.
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    if wait_for(grace, || matches!(child.try_wait(), Ok(Some(_)))) {
        return true;
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_polite_child_stops_on_sigterm_and_a_stubborn_one_is_killed() {
        let mut polite = Command::new("sleep").arg("60").spawn().unwrap();
        assert!(stop(&mut polite, Duration::from_secs(10)));
        let mut stubborn = Command::new("sh")
            .args([
                "-c",
                "trap '' TERM; echo ignoring; while :; do sleep 1; done",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Signalled only once it ignores SIGTERM.
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(stubborn.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line, "ignoring\n");
        assert!(!stop(&mut stubborn, Duration::from_millis(300)));
        assert!(matches!(stubborn.try_wait(), Ok(Some(_))), "reaped");
    }

    #[test]
    fn waits_are_bounded() {
        assert!(wait_for(Duration::from_secs(1), || true));
        let mut n = 0;
        assert!(wait_for(Duration::from_secs(10), || {
            n += 1;
            n == 3
        }));
        assert!(!wait_for(Duration::ZERO, || false));
    }
}
