//! docs/bi-tools.md as a BI tool would follow it: its read-only role, created by its own SQL;
//! the warehouse reflected with SQLAlchemy 1.4's PostgreSQL dialect (what Superset uses, from
//! the virtual environment scripts/setup.sh creates); every dataset the document names listed
//! and readable, nothing listed unreadable; and its Grafana queries run with the macros
//! expanded as Grafana does.

use std::path::Path;
use std::process::{Command, Stdio};

use pgdw_testkit::{transcript, TempWarehouse};

use super::support::{query, warehouse, PGDW};

const DOC: &str = include_str!("../../../../docs/bi-tools.md");

/// The ```sql blocks of the document's section `heading`.
fn sql_blocks(heading: &str) -> Vec<String> {
    let section = DOC.split(heading).nth(1).expect("the section exists");
    let section = section.split("\n## ").next().unwrap();
    section
        .split("```sql\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect()
}

/// The example's warehouse (its polling variant: migrations only declare the sources).
fn example_warehouse() -> TempWarehouse {
    let w = warehouse();
    pgdw_testkit::example::migrate_unreachable(&w, PGDW.as_ref());
    w
}

fn python() -> std::path::PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bi-venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: scripts/setup.sh creates it",
        venv.display()
    );
    venv
}

fn role_url(w: &TempWarehouse, role: &str) -> String {
    format!(
        "postgresql://{role}:choose-one@127.0.0.1:{}/warehouse",
        w.cluster().unwrap().port()
    )
}

/// Run `script` with the virtual environment's Python, `args` after it; its stdout.
fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", transcript(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn superset_sees_what_the_bi_role_can_read_and_nothing_else() {
    let w = example_warehouse();
    let login = &sql_blocks("## 1. A read-only login")[0];
    query(&w, login);
    let reflect = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bi/reflect.py"),
    )
    .unwrap();
    let seen: serde_json::Value =
        serde_json::from_str(&run_python(&reflect, &[&role_url(&w, "superset")])).unwrap();
    assert!(
        seen["sqlalchemy"].as_str().unwrap().starts_with("1.4."),
        "{seen}"
    );
    let schemas = seen["schemas"].as_object().unwrap();
    let names: Vec<&str> = schemas.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["cron", "dw", "f", "information_schema", "partman", "public"],
        "the schemas the document says the role sees"
    );
    // Every dataset the document names: listed, readable (and named in the document).
    for (schema, name) in [
        ("public", "ingested_clusters"),
        ("public", "instances_by_state"),
        ("public", "most_active_customers_by_events"),
        ("public", "signups_per_week"),
        ("public", "instance_metrics_hourly"),
        ("public", "metric_values"),
        ("public", "organizations"),
        ("dw", "runs"),
        ("dw", "job_freshness"),
        ("dw", "alert_events"),
        ("dw", "alert_state"),
        ("dw", "replication"),
        ("dw", "replication_tables"),
    ] {
        assert!(
            DOC.contains(&format!("`{name}`")),
            "the document names {name}"
        );
        let o = &schemas[schema][name];
        assert!(o.is_object(), "{schema}.{name} is not listed");
        assert!(o["error"].is_null(), "{schema}.{name}: {}", o["error"]);
    }
    // Nothing listed is unreadable, but in PostgreSQL's own information_schema, whose internal
    // `_pg_foreign_*` views are for superusers (and which every role sees).
    for (schema, objects) in schemas.iter().filter(|(s, _)| *s != "information_schema") {
        for (name, o) in objects.as_object().unwrap() {
            assert!(
                o["error"].is_null(),
                "{schema}.{name} is listed but cannot be read: {}",
                o["error"]
            );
        }
    }
    assert!(
        schemas["f"].as_object().unwrap().is_empty(),
        "foreign tables are not listed"
    );
    // Columns and keys as the tool reflects them.
    assert_eq!(
        schemas["public"]["organizations"]["primary_key"],
        serde_json::json!(["organization_id"])
    );
    assert!(schemas["public"]["organizations"]["columns"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("live_instances")));
    // And the foreign tables stay unreadable to it.
    let denied = run_python(
        "import sys, sqlalchemy as sa
try:
    sa.create_engine(sys.argv[1]).connect().execute(sa.text('SELECT * FROM f.organizations'))
    print('read')
except sa.exc.DBAPIError as e:
    print(str(e.orig).splitlines()[0])",
        &[&role_url(&w, "superset")],
    );
    assert_eq!(denied.trim(), "permission denied for schema f");
}

/// Grafana's macros, expanded as its PostgreSQL data source does for the range [from, to]
/// (epoch seconds; `iso` the same two as Grafana's UTC text).
fn grafana(sql: &str, (from, to): (i64, i64), iso: &(String, String)) -> String {
    let mut out = sql.to_string();
    while let Some(at) = out.find("$__") {
        let open = out[at..].find('(').unwrap() + at;
        let close = out[open..].find(')').unwrap() + open;
        let name = &out[at + 3..open];
        let args: Vec<&str> = out[open + 1..close].split(',').map(str::trim).collect();
        let with = match name {
            "timeFilter" => format!("{} BETWEEN '{}' AND '{}'", args[0], iso.0, iso.1),
            "unixEpochFilter" => format!("{0} >= {from} AND {0} <= {to}", args[0]),
            "unixEpochGroupAlias" => {
                let secs = match args[1].trim_matches('\'') {
                    "1h" => 3600,
                    "5m" => 300,
                    "1d" => 86400,
                    other => panic!("interval {other}"),
                };
                format!("floor({}/{secs})*{secs} AS \"time\"", args[0])
            }
            other => panic!("the test does not expand $__{other}"),
        };
        out.replace_range(at..=close, &with);
    }
    out
}

#[test]
fn the_grafana_queries_run_as_documented() {
    let w = example_warehouse();
    query(
        &w,
        &sql_blocks("## 1. A read-only login")[0].replace("superset", "grafana"),
    );
    // A day of two instances' cpu, every minute, and its hourly rollup.
    query(
        &w,
        "INSERT INTO metric_labels (name, labels) VALUES
           ('instance_cpu_usage', '{\"instance_id\": \"i1\", \"organization_id\": \"o1\"}'),
           ('instance_cpu_usage', '{\"instance_id\": \"i2\", \"organization_id\": \"o2\"}');
         INSERT INTO metric_values SELECT l.id, t, 1 + l.id % 2
           FROM metric_labels l, generate_series(extract(epoch FROM now())::bigint / 60 * 60 - 86400,
                                                 extract(epoch FROM now())::bigint / 60 * 60 - 60, 60) t",
    );
    // The hourly and daily rollups (kept by pgdw worker), brought up to date here.
    query(&w, "CALL pgdw.rollup_run('metric_hourly')");
    query(&w, "CALL pgdw.rollup_run('metric_daily')");
    let now: i64 = query(&w, "SELECT extract(epoch FROM now())::bigint")
        .parse()
        .unwrap();
    let (from, to) = (now / 3600 * 3600 - 6 * 3600, now / 3600 * 3600 - 1);
    let utc = |t: i64| {
        query(
            &w,
            &format!("SELECT to_char(to_timestamp({t}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"),
        )
    };
    let iso = (utc(from), utc(to));
    let blocks = sql_blocks("## 4. Grafana");
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    let run = |sql: &str| {
        run_python(
            "import sys, json, sqlalchemy as sa
rows = sa.create_engine(sys.argv[1]).connect().execute(sa.text(sys.argv[2])).fetchall()
print(json.dumps([[str(v) for v in r] for r in rows]))",
            &[&role_url(&w, "grafana"), &grafana(sql, (from, to), &iso)],
        )
    };
    // The hourly series: two instances, six full hours each, within the range.
    let hourly: Vec<Vec<String>> = serde_json::from_str(&run(&blocks[0])).unwrap();
    assert_eq!(hourly.len(), 12, "{hourly:?}");
    // The raw samples grouped per hour and organization: the same six hours, each the mean of
    // its minutes (a constant per organization here).
    let raw: Vec<Vec<String>> = serde_json::from_str(&run(&blocks[1])).unwrap();
    assert_eq!(raw.len(), 12, "{raw:?}");
    assert!(raw
        .iter()
        .all(|r| r[0].parse::<f64>().unwrap() as i64 % 3600 == 0));
    let freshness: Vec<Vec<String>> = serde_json::from_str(&run(&blocks[2])).unwrap();
    assert!(
        freshness.iter().any(|r| r[0] == "metrics-cpu"),
        "{freshness:?}"
    );
}
