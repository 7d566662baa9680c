//! `pgdw demo`: the whole system on this machine. The embedded warehouse, a generated
//! control-plane database, the Clerk emulator and a real Prometheus with backfilled
//! per-instance metrics; the example project applied; every job run once; the seeds' questions
//! answered. Then it keeps running (pg_cron refreshes on schedule) until Ctrl-C, or with
//! `--check` compares the answers with the generator's ground truth and exits.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clerk_emulator::{Dataset, Emulator, Spec};
use sqlx::{Connection, PgConnection, Row};

use crate::cli::{DemoArgs, UpArgs};
use crate::controlplane::{self, Generated};
use crate::target::{self, Target};
use pgdw_cluster::prometheus::Prometheus;

const CLERK_KEY: &str = "sk_test_pgdw_demo";

/// The example project, built into the binary so the demo runs from anywhere.
const PROJECT: &[(&str, &str)] = &[
    (
        "pgdw.toml",
        include_str!("../../../../examples/customer-warehouse/pgdw.toml"),
    ),
    (
        "migrations/20260101000001_sources.sql",
        include_str!(
            "../../../../examples/customer-warehouse/migrations/20260101000001_sources.sql"
        ),
    ),
    (
        "migrations/20260101000002_warehouse.sql",
        include_str!(
            "../../../../examples/customer-warehouse/migrations/20260101000002_warehouse.sql"
        ),
    ),
    (
        "migrations/20260101000003_jobs.sql",
        include_str!("../../../../examples/customer-warehouse/migrations/20260101000003_jobs.sql"),
    ),
    (
        "migrations/20260101000004_answers.sql",
        include_str!(
            "../../../../examples/customer-warehouse/migrations/20260101000004_answers.sql"
        ),
    ),
];

pub async fn run(target: &Target, args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let Target::Embedded { data_dir } = target else {
        bail!("pgdw demo runs its own embedded warehouse; unset DATABASE_URL");
    };
    let home = data_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    step(1, "starting the embedded warehouse");
    let up = UpArgs {
        port: None,
        memory: args.memory,
        timeout: 60,
    };
    super::up::run(target, &up).await?;
    let cluster = super::running_cluster(data_dir)?;

    step(2, "generating the control-plane database");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let data = Dataset::generate(&Spec {
        seed: args.seed,
        users: args.users,
        organizations: (args.users / 5).max(1),
        memberships: args.users * 3 / 2,
        invitations: args.users / 10,
        end_ms: now_ms - 86_400_000,
        days: 120,
    });
    let mut admin = target::connect_embedded(&cluster, "postgres").await?;
    // Separate statements: a multi-statement string runs as one transaction block.
    for sql in [
        "DROP DATABASE IF EXISTS control_plane WITH (FORCE)",
        "CREATE DATABASE control_plane",
    ] {
        sqlx::raw_sql(sql)
            .execute(&mut admin)
            .await
            .context("recreating database control_plane")?;
    }
    let mut cp = target::connect_embedded(&cluster, "control_plane").await?;
    let generated = controlplane::generate(&mut cp, &data, args.seed, 3).await?;
    println!(
        "      {} organizations, {} instances, {} archived events",
        data.organizations.len(),
        generated.instances.len(),
        generated.messages
    );

    step(3, "starting the Clerk emulator");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let clerk_port = listener.local_addr()?.port();
    let emulator = Emulator::new(
        data.clone(),
        CLERK_KEY,
        Some((100, Duration::from_secs(10))),
    );
    let app = clerk_emulator::app(emulator);
    let served = tokio::spawn(async move { axum::serve(listener, app).await });
    println!(
        "      http://127.0.0.1:{clerk_port}/v1, {} users",
        data.users.len()
    );

    step(4, "backfilling and starting Prometheus");
    let metrics = backfill(&generated, now_ms / 1000);
    let prom_dir = home.join("prometheus");
    let prometheus =
        tokio::task::spawn_blocking(move || Prometheus::start(&prom_dir, &metrics, None)).await??;
    println!("      {}", prometheus.url());

    step(5, "applying examples/customer-warehouse");
    let project = home.join("customer-warehouse");
    for (name, text) in PROJECT {
        let path = project.join(name);
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(&path, text)?;
    }
    // The project's pgdw.toml takes addresses and the key from `env:` references.
    let mut loaded = crate::project::Project::load(&project)?;
    loaded.env = [
        (
            "CONTROL_PLANE_HOST",
            cluster.socket_dir().display().to_string(),
        ),
        ("CONTROL_PLANE_PORT", cluster.port().to_string()),
        ("CONTROL_PLANE_DB", "control_plane".to_string()),
        ("CLERK_API_URL", format!("http://127.0.0.1:{clerk_port}/v1")),
        ("CLERK_SECRET_KEY", CLERK_KEY.to_string()),
        ("PROMETHEUS_URL", prometheus.url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    super::migrate::apply(target, loaded).await?;

    step(6, "running every job once");
    let mut wh = target::connect_embedded(&cluster, &cluster.state().database).await?;
    run_jobs(&mut wh).await?;

    step(7, "answers");
    print_answers(&mut wh).await?;

    let code = if args.check {
        let problems = check(&mut wh, &data, &generated).await?;
        if problems.is_empty() {
            println!("\ncheck: every answer matches the generator's ground truth");
            ExitCode::SUCCESS
        } else {
            for p in &problems {
                eprintln!("check failed: {p}");
            }
            ExitCode::FAILURE
        }
    } else {
        println!("\nThe warehouse keeps refreshing on schedule (pgdw status shows it). Ctrl-C stops everything.");
        tokio::signal::ctrl_c().await?;
        ExitCode::SUCCESS
    };
    served.abort();
    drop(prometheus);
    wh.close().await.ok();
    if !args.check || args.down {
        cluster.stop(Duration::from_secs(30))?;
        println!("stopped the warehouse, Prometheus and the Clerk emulator");
    }
    Ok(code)
}

fn step(n: usize, what: &str) {
    println!("[{n}/7] {what}");
}

/// Two days of cpu usage per instance at 5 minutes, ending four hours ago (promtool cannot
/// backfill the head block).
fn backfill(generated: &Generated, now: i64) -> String {
    let end = (now / 300) * 300 - 4 * 3600;
    let mut om = String::from("# HELP instance_cpu_usage CPU used by the instance, in cores\n# TYPE instance_cpu_usage gauge\n");
    for (n, inst) in generated.instances.iter().enumerate() {
        for k in (0..576).rev() {
            let t = end - k * 300;
            let v = ((n % 7) + 1) as f64 * (1.0 + 0.3 * ((t / 3600) % 24) as f64 / 24.0);
            om.push_str(&format!(
                "instance_cpu_usage{{instance_id=\"{}\",organization_id=\"{}\"}} {v:.3} {t}\n",
                inst.instance_id, inst.organization_id
            ));
        }
    }
    om.push_str("# EOF\n");
    om
}

async fn run_jobs(conn: &mut PgConnection) -> anyhow::Result<()> {
    let jobs: Vec<(String, String)> = sqlx::query_as(
        "SELECT jobname, command FROM cron.job WHERE jobname <> 'pgdw-partman-maintenance' ORDER BY jobname",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (i, (name, command)) in jobs.iter().enumerate() {
        let start = Instant::now();
        sqlx::raw_sql(command).execute(&mut *conn).await?;
        let row = sqlx::query(
            "SELECT status, coalesce(rows_inserted, 0) AS i, coalesce(rows_updated, 0) AS u,
                    coalesce(rows_deleted, 0) AS d, error
               FROM pgdw.runs WHERE job = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
        let status: String = row.get("status");
        println!(
            "      [{}/{}] {name:<22} {status:<9} +{} ~{} -{} in {:.1} s",
            i + 1,
            jobs.len(),
            row.get::<i64, _>("i"),
            row.get::<i64, _>("u"),
            row.get::<i64, _>("d"),
            start.elapsed().as_secs_f64()
        );
        if status != "succeeded" {
            bail!(
                "job {name} failed: {}",
                row.get::<Option<String>, _>("error").unwrap_or_default()
            );
        }
    }
    Ok(())
}

async fn table(conn: &mut PgConnection, title: &str, sql: &str) -> anyhow::Result<()> {
    println!("\n{title}");
    let rows = sqlx::query(sql).fetch_all(&mut *conn).await?;
    for r in rows {
        let cells: Vec<String> = (0..r.len())
            .map(|i| r.get::<Option<String>, _>(i).unwrap_or_default())
            .collect();
        println!(
            "  {}",
            cells
                .iter()
                .map(|c| format!("{c:<28}"))
                .collect::<String>()
                .trim_end()
        );
    }
    Ok(())
}

async fn print_answers(conn: &mut PgConnection) -> anyhow::Result<()> {
    table(
        conn,
        "How many Postgres instances have we deployed? (by state)",
        "SELECT state, instances::text FROM instances_by_state ORDER BY instances DESC, state",
    )
    .await?;
    table(conn, "Who are our most active customers? (by cpu usage, last 2 days)",
          "SELECT name, round(cpu_usage)::text FROM most_active_customers_by_usage ORDER BY cpu_usage DESC LIMIT 5").await?;
    table(conn, "Who are our most active customers? (by control-plane events)",
          "SELECT name, events::text FROM most_active_customers_by_events ORDER BY events DESC, name LIMIT 5").await?;
    table(conn, "How many sign-ups per week? (last 8 weeks)",
          "SELECT to_char(week, 'YYYY-MM-DD'), signups::text, in_an_organization::text FROM signups_per_week ORDER BY week DESC LIMIT 8").await
}

/// The answers against the generator's ground truth; each mismatch described.
async fn check(
    conn: &mut PgConnection,
    data: &Dataset,
    generated: &Generated,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut truth: BTreeMap<String, i64> = BTreeMap::new();
    for i in &generated.instances {
        *truth.entry(i.state.to_string()).or_default() += 1;
    }
    let got: BTreeMap<String, i64> =
        sqlx::query_as("SELECT state, instances FROM instances_by_state")
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    if got != truth {
        problems.push(format!(
            "instances by state: warehouse {got:?}, generator {truth:?}"
        ));
    }
    let signups: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(signups), 0)::bigint FROM signups_per_week")
            .fetch_one(&mut *conn)
            .await?;
    if signups as usize != data.users.len() {
        problems.push(format!(
            "sign-ups: warehouse {signups}, Clerk {}",
            data.users.len()
        ));
    }
    let events: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(events), 0)::bigint FROM most_active_customers_by_events",
    )
    .fetch_one(&mut *conn)
    .await?;
    if events as usize != generated.messages {
        problems.push(format!(
            "events: warehouse {events}, control plane {}",
            generated.messages
        ));
    }
    let series: i64 = sqlx::query_scalar("SELECT count(*) FROM metric_labels")
        .fetch_one(&mut *conn)
        .await?;
    if series as usize != generated.instances.len() {
        problems.push(format!(
            "metric series: warehouse {series}, instances {}",
            generated.instances.len()
        ));
    }
    let top_events: Option<String> = sqlx::query_scalar(
        "SELECT organization_id FROM most_active_customers_by_events ORDER BY events DESC, organization_id LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let mut per_org: BTreeMap<&str, usize> = BTreeMap::new();
    for i in &generated.instances {
        // Each instance's life has as many events as states.
        *per_org.entry(i.organization_id.as_str()).or_default() += match i.state {
            "Up" => 2,
            _ => 3,
        };
    }
    let expected_top = per_org
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(o, _)| o.to_string());
    if top_events != expected_top {
        problems.push(format!(
            "most active by events: warehouse {top_events:?}, generator {expected_top:?}"
        ));
    }
    Ok(problems)
}
