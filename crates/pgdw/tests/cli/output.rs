//! Printing: pgdw piped into `head` or a closed pager stops quietly, as `ls` and `rg` do.

use std::process::{Command, Stdio};

use pgdw_testkit::TempWarehouse;

use super::support::PGDW;

/// Run pgdw with stdout a pipe whose reader is already gone (`pgdw ... | head -0`).
fn into_closed_pipe(w: &TempWarehouse, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(PGDW)
        .env_remove("DATABASE_URL")
        .env("PGDW_DATA_DIR", w.data_dir())
        .env("PGDW_MEMORY", "1GB")
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn every_printing_command_stops_quietly_when_its_reader_goes_away() {
    let w = TempWarehouse::new();
    let project = w.root().join("project");
    let project = project.to_str().unwrap();
    let mut commands: Vec<Vec<&str>> = vec![vec!["up"]];
    commands.extend([
        vec!["status"],
        vec!["status", "--json"],
        vec!["env"],
        vec!["init", project],
        vec!["migrate", "--project", project],
        vec!["down"],
    ]);
    for args in commands {
        let out = into_closed_pipe(&w, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "pgdw {args:?}: {stderr}"
        );
        assert!(
            out.status.success(),
            "pgdw {args:?}: {:?} {stderr}",
            out.status
        );
    }
    // Each did its work although nobody listened.
    assert!(std::path::Path::new(project).join("pgdw.toml").exists());
    let status = w.pgdw(PGDW.as_ref(), &["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("not running"));
}
