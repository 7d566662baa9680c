//! ARCHITECTURE.md's dependency rules, held by the real dependency graph (`cargo metadata`):
//! a rule written down but not checked drifts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

struct Graph {
    /// package name -> its normal and build dependencies (package names), this workspace's
    /// and others'.
    deps: BTreeMap<String, BTreeSet<String>>,
    /// workspace package name -> its folder relative to the root.
    folders: BTreeMap<String, String>,
    /// workspace package name -> what its Cargo.toml names: normal and build dependencies
    /// (optional ones too), and dev-dependencies.
    declared: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>,
    root: PathBuf,
}

fn graph() -> Graph {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    let root = PathBuf::from(m["workspace_root"].as_str().unwrap());
    let name_of: BTreeMap<&str, &str> = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let members: BTreeSet<&str> = m["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let folders = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| members.contains(p["id"].as_str().unwrap()))
        .map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap());
            let folder = manifest
                .parent()
                .unwrap()
                .strip_prefix(&root)
                .unwrap()
                .to_owned();
            (
                p["name"].as_str().unwrap().to_string(),
                folder.display().to_string(),
            )
        })
        .collect();
    let declared = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| members.contains(p["id"].as_str().unwrap()))
        .map(|p| {
            let of = |dev: bool| -> BTreeSet<String> {
                p["dependencies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|d| (d["kind"] == "dev") == dev)
                    .map(|d| d["name"].as_str().unwrap().to_string())
                    .collect()
            };
            (
                p["name"].as_str().unwrap().to_string(),
                (of(false), of(true)),
            )
        })
        .collect();
    let mut deps = BTreeMap::new();
    for node in m["resolve"]["nodes"].as_array().unwrap() {
        let name = name_of[node["id"].as_str().unwrap()].to_string();
        let normal: BTreeSet<String> = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null() || k["kind"] == "build")
            })
            .map(|d| name_of[d["pkg"].as_str().unwrap()].to_string())
            .collect();
        deps.entry(name)
            .or_insert_with(BTreeSet::new)
            .extend(normal);
    }
    Graph {
        deps,
        folders,
        declared,
        root,
    }
}

impl Graph {
    /// Everything `package` links, directly or not.
    fn closure(&self, package: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![package.to_string()];
        while let Some(p) = stack.pop() {
            for d in self.deps.get(&p).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen
    }

    fn assert_never(&self, package: &str, forbidden: &str, why: &str) {
        assert!(
            !self.closure(package).contains(forbidden),
            "{package} must not depend on {forbidden} ({why})"
        );
    }
}

#[test]
fn the_dependency_rules_hold() {
    let g = graph();
    for plain in [
        "pgdw",
        "pgdw-wrappers",
        "pgdw-fdw-api",
        "pgdw-cluster",
        "pgdw-clerk-emulator",
    ] {
        g.assert_never(
            plain,
            "pgrx",
            "only the fdw core and the extensions link the server",
        );
    }
    g.assert_never("pgdw-fdw-core", "pgdw-wrappers", "the core knows no source");
    for ext in ["prometheus_fdw", "clerk_fdw", "pgdw_test_fdw"] {
        g.assert_never(ext, "pgdw", "an extension never links the command");
    }
    for sql in ["sqlx", "postgres", "tokio-postgres"] {
        g.assert_never(
            "pgdw-cluster",
            sql,
            "the cluster crate manages processes and files, never SQL",
        );
    }
    let wrapper: BTreeSet<String> = g.deps["pgdw-fdw-api"].clone();
    let allowed: BTreeSet<String> = ["serde", "serde_json", "thiserror"]
        .map(String::from)
        .into();
    assert!(
        wrapper.is_subset(&allowed),
        "pgdw-fdw-api is plain data: {wrapper:?}"
    );
}

/// Each crate's row of ARCHITECTURE.md's code map names exactly what its Cargo.toml depends
/// on, the workspace's crates by folder (`cluster`) and the others by name, each item perhaps
/// followed by a note in parentheses: a list that cannot drift. A crate with only test
/// dependencies (`fdw-tests`) is held to those.
#[test]
fn the_code_map_names_every_dependency_and_no_other() {
    let g = graph();
    let doc = std::fs::read_to_string(g.root.join("ARCHITECTURE.md")).unwrap();
    let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `")).collect();
    let short = |name: &str| -> String {
        match g.folders.get(name) {
            Some(folder) => folder.rsplit('/').next().unwrap().to_string(),
            None => name.to_string(),
        }
    };
    for (package, folder) in &g.folders {
        let row = rows
            .iter()
            .find(|r| {
                r.split('|')
                    .nth(1)
                    .is_some_and(|c| c.contains(&format!("`{folder}`")))
            })
            .unwrap_or_else(|| panic!("ARCHITECTURE.md's code map has no row for {folder}"));
        let named = named_in(row.rsplit('|').nth(1).unwrap());
        // A row may hold several crates (the two extensions): what any of them uses.
        let mut uses = BTreeSet::new();
        for (other, other_folder) in &g.folders {
            if row
                .split('|')
                .nth(1)
                .unwrap()
                .contains(&format!("`{other_folder}`"))
            {
                let (normal, dev) = &g.declared[other];
                uses.extend(
                    if normal.is_empty() { dev } else { normal }
                        .iter()
                        .map(|d| short(d)),
                );
            }
        }
        assert_eq!(
            named, uses,
            "{package}: the code map's row against Cargo.toml:\n{row}"
        );
    }
}

/// The crates a "may depend on" cell names: comma-separated items, parenthesized notes and
/// backticks dropped.
fn named_in(cell: &str) -> BTreeSet<String> {
    let mut items = Vec::new();
    let (mut depth, mut item) = (0, String::new());
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => items.push(std::mem::take(&mut item)),
            _ if depth == 0 => item.push(c),
            _ => {}
        }
    }
    items.push(item);
    items
        .iter()
        .map(|i| i.trim().trim_matches('`').to_string())
        .filter(|i| !i.is_empty())
        .collect()
}

/// Unit tests in a crate that links the server would never run (`cargo test` covers the
/// default members); such logic belongs in a plain crate.
#[test]
fn crates_outside_the_default_members_have_no_unit_tests() {
    let g = graph();
    let manifest = std::fs::read_to_string(g.root.join("Cargo.toml")).unwrap();
    let defaults = manifest
        .lines()
        .find(|l| l.starts_with("default-members"))
        .unwrap()
        .to_string();
    for folder in g.folders.values() {
        if defaults.contains(&format!("\"{folder}\"")) {
            continue;
        }
        let mut stack = vec![g.root.join(folder).join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    assert!(
                        !text.contains("#[test]"),
                        "{} has unit tests that no test run reaches",
                        path.display()
                    );
                }
            }
        }
    }
}
