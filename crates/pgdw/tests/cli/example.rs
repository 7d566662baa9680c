//! examples/customer-warehouse end to end on its polling path (the project without its
//! `[replicate.control_plane]` section, for sources that cannot grant REPLICATION; `pgdw demo
//! --check` runs it replicated): a generated control plane, the Clerk emulator with the same
//! organizations, a real Prometheus with per-instance metrics; `pgdw migrate`, every job
//! once, and the seeds' questions answered as the generator's ground truth says.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use clerk_emulator::{Dataset, Emulator, Spec};
use pgdw_testkit::prometheus::Prometheus;
use pgdw_testkit::transcript;

use super::support::{ok, query, warehouse, PGDW};

const KEY: &str = "sk_test_example_warehouse";

#[test]
fn the_example_warehouse_answers_the_seeds_questions() {
    let w = warehouse();
    query(&w, "CREATE DATABASE control_plane");
    let cluster = w.cluster().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let data = Dataset::generate(&Spec {
        end_ms: now_ms - 86_400_000,
        days: 120,
        ..Spec::default()
    });
    let generated = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut c = pgdw::target::connect_embedded(&cluster, "control_plane")
            .await
            .unwrap();
        pgdw::controlplane::generate(&mut c, &data, 11, 3)
            .await
            .unwrap()
    });
    let emulator = Emulator::new(data.clone(), KEY, None);
    let clerk_port = clerk_emulator::spawn(emulator.clone());

    // Two days of cpu, memory and storage per instance at 5 minutes, as the demo's history.
    let om = pgdw::instance_metrics::backfill(&generated.instances, now_ms / 1000 - 60, 2, 300);
    let prom = Prometheus::start(&om);

    let copy = tempfile::tempdir().unwrap();
    let project = pgdw_testkit::example::polling_copy(copy.path());
    let out = Command::new(PGDW)
        .env_remove("DATABASE_URL")
        .env("PGDW_DATA_DIR", w.data_dir())
        .env("CONTROL_PLANE_HOST", cluster.socket_dir())
        .env("CONTROL_PLANE_PORT", cluster.port().to_string())
        .env("CONTROL_PLANE_DB", "control_plane")
        .env("CLERK_API_URL", format!("http://127.0.0.1:{clerk_port}/v1"))
        .env("CLERK_SECRET_KEY", KEY)
        .env("PROMETHEUS_URL", prom.url())
        .args(["migrate", "--project"])
        .arg(&project)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", transcript(&out));
    assert_eq!(
        query(&w, "SELECT count(*) FROM pg_subscription"),
        "0",
        "nothing replicated"
    );

    // Every scheduled job once, as pg_cron would run it.
    let jobs = query(&w, "SELECT string_agg(command, E'\\n' ORDER BY jobname) FROM cron.job WHERE jobname <> 'pgdw-partman-maintenance'");
    for command in jobs.lines() {
        query(&w, command);
    }
    assert_eq!(
        query(&w, "SELECT string_agg(job || ': ' || coalesce(error, ''), '; ') FROM pgdw.runs WHERE status <> 'succeeded'"),
        "",
        "every job succeeded"
    );

    // The control plane's tables, polled under their own names.
    assert_eq!(
        query(&w, "SELECT string_agg(jobname, ',' ORDER BY jobname) FROM cron.job WHERE jobname IN ('organizations', 'instances', 'instance-state', 'saas-queue-archive')"),
        "instance-state,instances,organizations,saas-queue-archive"
    );
    assert_eq!(
        query(&w, "SELECT count(*) FROM organizations"),
        data.organizations.len().to_string()
    );

    // Each organization's profile and each instance's state: materialized columns (migrations
    // 8 and 9); the rollups (migration 9). A worker computes them all.
    let _worker = super::materialize::worker(&w);
    super::support::converges(&w, "SELECT pgdw.derived_backlog()", "0");
    assert_eq!(
        query(&w, "SELECT string_agg(name::text || '=' || pgdw.rollup_verify(name), ',' ORDER BY name::text)
                     FROM pgdw.rollups WHERE name::text NOT LIKE 'metric%'"),
        "instance_states=0,org_events_daily=0,signups_weekly=0"
    );
    // Every sample is in an hour, every hour in a day.
    let sums = query(
        &w,
        "SELECT (SELECT coalesce(sum(samples), 0) FROM metric_hourly) || ' ' || (SELECT count(*) FROM metric_values) || ' '
             || (SELECT coalesce(sum(hours), 0) FROM metric_daily) || ' ' || (SELECT count(*) FROM metric_hourly)",
    );
    let n: Vec<&str> = sums.split(' ').collect();
    let diag = if n[0] == n[1] && n[2] == n[3] {
        String::new()
    } else {
        query(&w, "SELECT string_agg(format('%s gen=%s full=%s applied=%s last=%s', name, gen, full_since, applied_at, last_run), E'\n') FROM pgdw.rollups") + &query(&w, "SELECT string_agg(format('%s %s %s %s', id, state, payload, error), E'\n') FROM pgdw.task_history WHERE kind = 'rollup'")
    };
    assert!(
        n[0] == n[1] && n[2] == n[3],
        "samples, in hours; hours, in days: {sums}\n{diag}"
    );
    assert_eq!(
        query(&w, "SELECT sum(live_instances) || ' ' || count(*) FILTER (WHERE plan_tier IS NULL) FROM organizations"),
        format!("{} 0", generated.instances.len())
    );

    // How many instances are deployed, by state.
    let mut truth: BTreeMap<&str, usize> = BTreeMap::new();
    for i in &generated.instances {
        *truth.entry(i.state).or_default() += 1;
    }
    let expected: Vec<String> = truth.iter().map(|(s, n)| format!("{s}|{n}")).collect();
    assert_eq!(
        query(
            &w,
            "SELECT state, instances FROM instances_by_state ORDER BY state"
        ),
        expected.join("\n")
    );
    assert_eq!(
        query(&w, "SELECT max(total) FROM instances_deployed_per_day"),
        generated.instances.len().to_string()
    );

    // Who is the most active customer, by events: every archived event counted once, and the
    // top customer is the one with the most instances' events (three messages per life step).
    assert_eq!(
        query(&w, "SELECT count(*) FROM saas_queue_archive"),
        generated.messages.to_string()
    );
    assert_eq!(
        query(
            &w,
            "SELECT sum(events) FROM most_active_customers_by_events"
        ),
        generated.messages.to_string()
    );
    // By usage: every organization with instances has metrics, one label set per instance.
    let orgs_with_instances: std::collections::BTreeSet<&str> = generated
        .instances
        .iter()
        .map(|i| i.organization_id.as_str())
        .collect();
    assert_eq!(
        query(
            &w,
            "SELECT count(*) FROM most_active_customers_by_usage WHERE cpu_core_hours > 0"
        ),
        orgs_with_instances.len().to_string()
    );
    assert_eq!(
        query(&w, "SELECT count(*) FROM metric_labels"),
        (3 * generated.instances.len()).to_string(),
        "cpu, memory and storage series per instance"
    );
    assert_eq!(
        query(&w, "SELECT count(*) FROM instance_usage_now WHERE cpu_cores > 0 AND memory_bytes > 0 AND storage_bytes > 0"),
        generated.instances.len().to_string()
    );
    assert_eq!(
        query(&w, "SELECT count(*) FROM metric_values_default"),
        "0",
        "the backfill found its partitions"
    );

    // Sign-ups per week: every Clerk user, once.
    assert_eq!(
        query(&w, "SELECT sum(signups) FROM signups_per_week"),
        data.users.len().to_string()
    );

    // Clerk failing in the middle of a refresh: the previous copy stays, the failure is recorded.
    query(&w, "ALTER SERVER clerk_server OPTIONS (ADD max_wait '1s')");
    emulator.set_faults(clerk_emulator::Faults {
        fail: 1000,
        ..Default::default()
    });
    let users_job = query(
        &w,
        "SELECT command FROM cron.job WHERE jobname = 'clerk-users'",
    );
    query(&w, &users_job);
    assert_eq!(
        query(&w, "SELECT count(*) FROM clerk_users"),
        data.users.len().to_string()
    );
    let failed = query(&w, "SELECT status || ': ' || error FROM pgdw.runs WHERE job = 'clerk-users' ORDER BY id DESC LIMIT 1");
    assert!(
        failed.starts_with("failed: clerk_fdw: gave up on Clerk after waiting"),
        "{failed}"
    );
    let status = ok(&w, &["status"]);
    assert!(
        status.contains("clerk-users") && status.contains("[FAILING]"),
        "{status}"
    );
    emulator.set_faults(clerk_emulator::Faults::default());

    // A second round of every job changes nothing: incremental and idempotent.
    let before = query(&w, "SELECT count(*) FROM pgdw.runs");
    for command in jobs.lines() {
        query(&w, command);
    }
    assert_eq!(
        query(&w, &format!("SELECT coalesce(sum(rows_inserted + rows_updated + rows_deleted), 0) FROM (SELECT * FROM pgdw.runs ORDER BY id OFFSET {before}) r")),
        "0"
    );
}
