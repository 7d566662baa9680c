//! `pgdw demo`: the whole system on this machine. The embedded warehouse, a generated
//! control-plane database, the Clerk emulator and a real Prometheus with 30 days of backfilled
//! per-instance metrics and live samples scraped from an exporter; the example project
//! applied; every job run once; the seeds' questions answered. Then the control plane and
//! Clerk keep changing (the live generator) and pg_cron keeps refreshing until Ctrl-C; with
//! `--check`, the answers are compared with the generator's ground truth, before and after
//! live changes, and the command exits.

mod check;
mod progress;

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clerk_emulator::{Dataset, Emulator, Spec};
use sqlx::{Connection, PgConnection, Row};

use crate::cli::{DemoArgs, UpArgs};
use crate::controlplane::{self, Generated, Live};
use crate::instance_metrics;
use crate::target::{self, Target};
use pgdw_cluster::prometheus::Prometheus;
use progress::Progress;

const CLERK_KEY: &str = "sk_test_pgdw_demo";
const STEPS: usize = 8;

/// The example project, built into the binary so the demo runs from anywhere.
macro_rules! project_files {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../../../../examples/customer-warehouse/", $path)))),*]
    };
}
const PROJECT: &[(&str, &str)] = project_files![
    "pgdw.toml",
    "migrations/20260101000001_sources.sql",
    "migrations/20260101000002_control_plane.sql",
    "migrations/20260101000003_warehouse.sql",
    "migrations/20260101000004_jobs.sql",
    "migrations/20260101000005_answers.sql",
    "migrations/20260101000006_instance_metrics.sql",
    "migrations/20260101000007_dashboards.sql",
    "migrations/20260101000008_organization_profile.sql",
    "migrations/20260101000009_rollups.sql",
    "migrations/20260101000010_database_health.sql",
    "migrations/20260101000011_metric_loads.sql",
    "dashboards/customers.toml",
    "dashboards/database.toml",
    "dashboards/operations.toml",
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
    let cluster = crate::target::running_cluster(data_dir)?;
    let project = home.join("customer-warehouse");
    for (name, text) in PROJECT {
        let path = project.join(name);
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(&path, text)?;
    }
    if start_afresh(&cluster).await? {
        super::up::run(target, &up).await?;
    }

    step(2, "generating the control-plane database");
    let now_ms = crate::clock::unix_ms();
    let data = Dataset::generate(&Spec {
        seed: args.seed,
        users: args.users,
        organizations: (args.users / 5).max(1),
        memberships: args.users * 3 / 2,
        invitations: args.users / 10,
        end_ms: now_ms - 86_400_000,
        days: 120,
    });
    let mut wh = target::connect_embedded(&cluster, &cluster.state().database).await?;
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
    let mut generated = controlplane::generate(&mut cp, &data, args.seed, 3).await?;
    outln!(
        "      {} organizations, {} instances, {} archived events",
        data.organizations.len(),
        generated.instances.len(),
        generated.messages
    );

    step(3, "starting the Clerk emulator");
    let emulator = Emulator::new(
        data.clone(),
        CLERK_KEY,
        Some((100, Duration::from_secs(10))),
    );
    let (clerk_port, clerk) = serve(clerk_emulator::app(emulator.clone())).await?;
    outln!(
        "      http://127.0.0.1:{clerk_port}/v1, {} users",
        data.users.len()
    );

    step(
        4,
        "backfilling and starting Prometheus, scraping the instances' exporter",
    );
    let live_instances: instance_metrics::LiveInstances =
        Arc::new(Mutex::new(generated.instances.clone()));
    let (exporter_port, exporter) =
        serve(instance_metrics::exporter(live_instances.clone())).await?;
    let spinner = Progress::spinner(&format!(
        "{} days of cpu, memory and storage for {} instances at 5 minutes",
        args.days,
        generated.instances.len()
    ));
    let prom_dir = home.join("prometheus");
    let history = generated.instances.clone();
    let days = args.days as i64;
    let prometheus = tokio::task::spawn_blocking(move || {
        let om = instance_metrics::backfill(&history, now_ms / 1000 - 60, days, 300);
        let scrape = format!("127.0.0.1:{exporter_port}");
        Prometheus::start(&prom_dir, &om, None, Some(&scrape))
    })
    .await??;
    spinner.finish();
    outln!(
        "      {} (exporter http://127.0.0.1:{exporter_port}/metrics)",
        prometheus.url()
    );

    step(5, "applying examples/customer-warehouse");
    // The project's pgdw.toml takes addresses and the key from `env:` references.
    let mut loaded = crate::project::Project::load(&project)?;
    loaded.env = [
        (
            "CONTROL_PLANE_HOST",
            cluster.socket_dir().display().to_string(),
        ),
        ("CONTROL_PLANE_PORT", cluster.port().to_string()),
        ("CONTROL_PLANE_DB", "control_plane".to_string()),
        (
            "CONTROL_PLANE_URL",
            format!(
                "postgres://{}:{}@127.0.0.1:{}/control_plane",
                cluster.state().superuser,
                cluster.state().password,
                cluster.port()
            ),
        ),
        ("CLERK_API_URL", format!("http://127.0.0.1:{clerk_port}/v1")),
        ("CLERK_SECRET_KEY", CLERK_KEY.to_string()),
        ("PROMETHEUS_URL", prometheus.url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    super::migrate::apply(target, &loaded).await?;
    // The control plane is in this cluster, so `migrate` let the copy finish before the
    // migrations (see replicate::copied): every table is copied by now.
    let (tables, copying): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE sync_state NOT IN ('ready', 'synchronized')) FROM pgdw.replication_tables",
    )
    .fetch_one(&mut wh)
    .await?;
    anyhow::ensure!(
        tables > 0 && copying == 0,
        "the control plane's replication is not streaming ({copying} of {tables} tables still copying); `pgdw status` shows why"
    );
    outln!("      control plane replicated: {tables} tables copied, now streaming");

    // Workers for the queue: the organizations' materialized columns.
    let (stop_workers, workers_stop) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn(crate::worker::run(
        target.warehouse_options().await?,
        crate::worker::Options {
            concurrency: 4,
            ..Default::default()
        },
        workers_stop,
        Arc::new(crate::worker::Stats::default()),
    ));
    outln!("      pgdw worker: 4 tasks at once (materialized columns and rollups)");

    step(6, "running every job once");
    run_jobs(&mut wh).await?;

    step(7, "answers");
    if check::caught_up(&mut wh, Instant::now(), Duration::from_secs(60))
        .await?
        .is_none()
    {
        outln!("      (the workers are still computing rollups; some answers may lag)");
    }
    print_answers(&mut wh).await?;

    step(8, "serving the dashboards and evaluating the alerts");
    let (hook_port, hook) = serve(webhook_receiver()).await?;
    loaded.env.insert(
        "PGDW_ALERT_WEBHOOK".into(),
        format!("http://127.0.0.1:{hook_port}/alerts"),
    );
    let listen = if std::net::TcpListener::bind(args.listen).is_ok() {
        args.listen
    } else {
        // Taken (another demo?): any free port.
        std::net::SocketAddr::from(([127, 0, 0, 1], 0))
    };
    let dashboards = super::serve::options(target, &loaded, listen, None).await?;
    let web = crate::serve::start(dashboards).await?;
    outln!("      {}d/customers", web.url);
    outln!("      {}d/operations", web.url);
    outln!("      {}d/database", web.url);

    let organizations: Vec<String> = data.organizations.iter().map(|o| o.id.clone()).collect();
    let mut live = Live::new(args.seed, &generated);
    let code = if args.check {
        let mut problems = check::answers(&mut wh, &emulator, &generated).await?;
        problems.extend(check::profiles(&mut wh, &generated).await?);
        // Live changes, then every job again: each refresh has work, and is still right.
        // Each tick's commit on the control plane to its rows in the warehouse, timed.
        let mut ticks = controlplane::Tick::default();
        let mut arrivals = Vec::new();
        let mut derived = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            let t = live_tick(
                &mut live,
                &mut cp,
                &mut generated,
                &organizations,
                &emulator,
            )
            .await?;
            ticks.created += t.created;
            ticks.changed += t.changed;
            ticks.deleted += t.deleted;
            let arrived =
                check::arrival(&mut wh, generated.messages, start, check::LIVE_LIMIT).await?;
            match arrived {
                Some(took) => arrivals.push(format!("{} ms", took.as_millis())),
                None => problems.push(format!(
                    "a live change was not in the warehouse {} s after its commit",
                    check::LIVE_LIMIT.as_secs()
                )),
            }
            // The rollup-backed panels: the same change through the workers.
            match check::caught_up(&mut wh, start, check::LIVE_LIMIT).await? {
                Some(took) => derived.push(format!("{} ms", took.as_millis())),
                None => problems.push(format!(
                    "the rollups and materialized columns had not caught up {} s after a live change",
                    check::LIVE_LIMIT.as_secs()
                )),
            }
        }
        *live_instances.lock().unwrap() = generated.instances.clone();
        outln!(
            "\nlive changes: {} new instances, {} state changes, {} deletions, 3 sign-ups; \
             in the warehouse after {} (commit to row, limit {} s), in the rollups after {}; every job again",
            ticks.created,
            ticks.changed,
            ticks.deleted,
            arrivals.join(", "),
            check::LIVE_LIMIT.as_secs(),
            derived.join(", ")
        );
        run_jobs(&mut wh).await?;
        if check::caught_up(&mut wh, Instant::now(), Duration::from_secs(60))
            .await?
            .is_none()
        {
            problems.push("the workers had not caught up a minute after the jobs ran".into());
        }
        problems.extend(check::answers(&mut wh, &emulator, &generated).await?);
        problems.extend(check::profiles(&mut wh, &generated).await?);
        problems.extend(check::dashboards(&web.url).await?);
        if problems.is_empty() {
            outln!("\ncheck: every answer matches the generator's ground truth, before and after live changes");
            ExitCode::SUCCESS
        } else {
            for p in &problems {
                eprintln!("check failed: {p}");
            }
            ExitCode::FAILURE
        }
    } else {
        outln!(
            "\nLive: every {} s the control plane and Clerk change (sign-ups, instances, state changes, deletions);\n\
             pg_cron refreshes on schedule (`pgdw status` shows it). Ctrl-C stops everything.",
            args.tick
        );
        let mut every = tokio::time::interval(Duration::from_secs(args.tick.max(1)));
        every.tick().await;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = every.tick() => {
                    let start = Instant::now();
                    let t = live_tick(&mut live, &mut cp, &mut generated, &organizations, &emulator).await?;
                    *live_instances.lock().unwrap() = generated.instances.clone();
                    let arrived = match check::arrival(&mut wh, generated.messages, start, Duration::from_secs(args.tick.max(1))).await? {
                        Some(took) => format!("in the warehouse after {} ms", took.as_millis()),
                        None => "not yet in the warehouse (`pgdw status` shows the replication)".to_string(),
                    };
                    let rolled = match check::caught_up(&mut wh, start, Duration::from_secs(args.tick.max(1))).await? {
                        Some(took) => format!("in the rollups after {} ms", took.as_millis()),
                        None => "the rollups still computing (`pgdw status` shows their lag)".to_string(),
                    };
                    outln!(
                        "live: +{} instance, {} state changes, {} deletions, 1 sign-up ({} instances); {arrived}, {rolled}",
                        t.created, t.changed, t.deleted, generated.instances.len()
                    );
                }
            }
        }
        ExitCode::SUCCESS
    };
    web.stop();
    stop_workers.send(true).ok();
    workers.await??;
    hook.abort();
    clerk.abort();
    exporter.abort();
    drop(prometheus);
    wh.close().await.ok();
    cp.close().await.ok();
    if !args.check || args.down {
        cluster.stop(Duration::from_secs(30))?;
        outln!("stopped the warehouse, Prometheus, the exporter and the Clerk emulator");
    }
    Ok(code)
}

/// Every run generates its sources anew (new instance ids, a new Prometheus history), so a
/// warehouse left by an earlier run would mix two worlds (and its metric watermarks would skip
/// the new history). The demo's database holds nothing but the demo: it starts afresh, and
/// the caller installs pgdw into the new database. Returns whether there was one to drop.
async fn start_afresh(cluster: &pgdw_cluster::Cluster) -> anyhow::Result<bool> {
    let database = cluster.state().database.clone();
    let mut wh = target::connect_embedded(cluster, &database).await?;
    let used: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(&mut wh)
            .await?;
    if !used {
        return Ok(false);
    }
    outln!(
        "      a previous demo's warehouse: starting it afresh (its sources are generated anew)"
    );
    // Its subscription holds a slot in control_plane, and DROP DATABASE refuses a database
    // with a subscription (here) or a slot (there).
    crate::replicate::remove_all(&mut wh).await?;
    wh.close().await.ok();
    let mut admin = target::connect_embedded(cluster, "postgres").await?;
    sqlx::raw_sql(&format!(
        "DROP DATABASE {} WITH (FORCE)",
        crate::quote::ident(&database)
    ))
    .execute(&mut admin)
    .await
    .with_context(|| format!("dropping the previous demo's database {database}"))?;
    Ok(true)
}

/// Serve `app` on a free port of 127.0.0.1.
async fn serve(
    app: axum::Router,
) -> anyhow::Result<(u16, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    Ok((
        port,
        tokio::spawn(async move { axum::serve(listener, app).await }),
    ))
}

/// Where the demo's alerts go: printed as they arrive.
fn webhook_receiver() -> axum::Router {
    axum::Router::new().route(
        "/alerts",
        axum::routing::post(|body: String| async move {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            outln!(
                "webhook: alert {} {} -> {}: {}",
                v["alert"].as_str().unwrap_or("?"),
                v["from_state"].as_str().unwrap_or("new"),
                v["to_state"].as_str().unwrap_or("?"),
                v["detail"].as_str().unwrap_or("")
            );
            "ok"
        }),
    )
}

/// One live change of the sources: a Clerk sign-up and a control-plane tick.
async fn live_tick(
    live: &mut Live,
    cp: &mut PgConnection,
    generated: &mut Generated,
    organizations: &[String],
    emulator: &Emulator,
) -> anyhow::Result<controlplane::Tick> {
    let now = crate::clock::unix_ms();
    emulator.with_data(|d| d.add_user(now));
    live.tick(cp, generated, organizations, now).await
}

fn step(n: usize, what: &str) {
    outln!("[{n}/{STEPS}] {what}");
}

async fn run_jobs(conn: &mut PgConnection) -> anyhow::Result<()> {
    let jobs: Vec<(String, String)> = sqlx::query_as(
        "SELECT jobname, command FROM cron.job WHERE jobname <> 'pgdw-partman-maintenance' ORDER BY jobname",
    )
    .fetch_all(&mut *conn)
    .await?;
    let bar = Progress::bar(jobs.len());
    for (i, (name, command)) in jobs.iter().enumerate() {
        bar.set_message(name);
        let start = Instant::now();
        let before: i64 =
            sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM pgdw.runs WHERE job = $1")
                .bind(name)
                .fetch_one(&mut *conn)
                .await?;
        sqlx::raw_sql(command).execute(&mut *conn).await?;
        // Most jobs run in the command itself; a metric load's tick queues a task for the
        // workers, whose run is recorded when it ends.
        let row = loop {
            let row = sqlx::query(
                "SELECT status, coalesce(rows_inserted, 0) AS i, coalesce(rows_updated, 0) AS u,
                        coalesce(rows_deleted, 0) AS d, error
                   FROM pgdw.runs WHERE job = $1 AND id > $2 AND status <> 'running' ORDER BY id DESC LIMIT 1",
            )
            .bind(name)
            .bind(before)
            .fetch_optional(&mut *conn)
            .await?;
            match row {
                Some(row) => break row,
                None if start.elapsed() > Duration::from_secs(300) => {
                    bar.finish();
                    bail!(
                        "job {name} did not finish within 5 minutes (see pgdw.runs and pgdw.tasks)"
                    );
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let status: String = row.get("status");
        bar.println(format!(
            "      [{}/{}] {name:<22} {status:<9} +{} ~{} -{} in {:.1} s",
            i + 1,
            jobs.len(),
            row.get::<i64, _>("i"),
            row.get::<i64, _>("u"),
            row.get::<i64, _>("d"),
            start.elapsed().as_secs_f64()
        ));
        bar.inc();
        if status != "succeeded" {
            bar.finish();
            bail!(
                "job {name} failed: {}",
                row.get::<Option<String>, _>("error").unwrap_or_default()
            );
        }
    }
    bar.finish();
    Ok(())
}

/// A titled table with its columns' names as a header (the query's aliases say what each
/// number is).
async fn table(conn: &mut PgConnection, title: &str, sql: &str) -> anyhow::Result<()> {
    outln!("\n{title}");
    let rows = sqlx::query(sql).fetch_all(&mut *conn).await?;
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .map(|c| format!("{c:<28}"))
            .collect::<String>()
            .trim_end()
            .to_string()
    };
    if let Some(first) = rows.first() {
        outln!(
            "  {}",
            line(
                first
                    .columns()
                    .iter()
                    .map(|c| sqlx::Column::name(c).to_string())
                    .collect()
            )
        );
    }
    for r in rows {
        outln!(
            "  {}",
            line(
                (0..r.len())
                    .map(|i| r.get::<Option<String>, _>(i).unwrap_or_default())
                    .collect()
            )
        );
    }
    Ok(())
}

async fn print_answers(conn: &mut PgConnection) -> anyhow::Result<()> {
    table(
        conn,
        "How many Postgres instances have we deployed? (by state)",
        "SELECT state, instances::text AS instances FROM instances_by_state s ORDER BY s.instances DESC, s.state",
    )
    .await?;
    table(conn, "Who are our most active customers? (by cpu usage, core-hours over the metrics kept)",
          "SELECT name AS customer, round(cpu_core_hours)::text AS core_hours FROM most_active_customers_by_usage u ORDER BY u.cpu_core_hours DESC, u.name LIMIT 5").await?;
    table(conn, "Who are our most active customers? (by control-plane events)",
          "SELECT name AS customer, events::text AS events FROM most_active_customers_by_events e ORDER BY e.events DESC, e.name LIMIT 5").await?;
    table(conn, "How many sign-ups per week? (last 8 weeks)",
          "SELECT to_char(week, 'YYYY-MM-DD') AS week_of, signups::text AS signups, in_an_organization::text AS in_an_organization FROM signups_per_week ORDER BY week DESC LIMIT 8").await
}

#[cfg(test)]
mod tests {
    /// The demo runs the example as it is in the repository: every file of its migrations and
    /// dashboards is built in (a new migration left out would be missing from the demo only).
    #[test]
    fn the_built_in_project_is_the_whole_example() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/customer-warehouse");
        let mut on_disk = vec!["pgdw.toml".to_string()];
        for dir in ["migrations", "dashboards"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                on_disk.push(format!("{dir}/{name}"));
            }
        }
        on_disk.sort();
        let mut built_in: Vec<String> = super::PROJECT.iter().map(|(p, _)| p.to_string()).collect();
        built_in.sort();
        assert_eq!(built_in, on_disk);
    }
}
