//! `pgdw standby`: hot standbys of the embedded warehouse on loopback, streaming, watched,
//! serving readers, promoted when the primary dies, removed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgdw_testkit::prometheus::{History, Prometheus};
use pgdw_testkit::{transcript, wait_for, TempWarehouse};

use super::replicate::{Fixture, ALL_ORGS};
use super::support::{fails, machine_dies, ok, query, Worker};

fn create(primary: &TempWarehouse, standby: &TempWarehouse, extra: &[&str]) -> String {
    let dir = standby.data_dir();
    let mut args = vec!["standby", "create", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok(primary, &args)
}

fn status(w: &TempWarehouse) -> serde_json::Value {
    let out = w.pgdw(super::support::PGDW.as_ref(), &["status", "--json"]);
    assert!(out.status.success(), "{}", transcript(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The whole failover: a synchronous standby of a warehouse that replicates a source and runs
/// a worker; the primary SIGKILLed while both the source and the warehouse take writes; the
/// standby promoted. Every commit the primary acknowledged is there, every source row once,
/// the worker (on a two-host DATABASE_URL) and pg_cron carry on, the old primary cannot start.
#[test]
fn a_synchronous_standby_takes_over_with_every_acknowledged_commit() {
    let f = Fixture::streaming();
    // 20 days of 40 series at a minute: a metric load of some seconds, in chunks.
    let history = History::new("failover_load", 20, 40, 60);
    let prom = Prometheus::with_history(&history);
    let samples = history.series * (history.points() + 5);
    query(
        &f.wh,
        &format!(
            "CREATE SERVER prom FOREIGN DATA WRAPPER prometheus_fdw OPTIONS (base_url '{}');
             CREATE FOREIGN TABLE metrics (metric_name text, metric_labels jsonb, metric_time bigint, metric_value float8)
               SERVER prom OPTIONS (object 'metrics', step '1m');
             CREATE SCHEMA m;
             CREATE TABLE m.labels (id bigserial PRIMARY KEY, name text NOT NULL, labels jsonb NOT NULL, UNIQUE (name, labels));
             CREATE TABLE m.samples (label_id bigint NOT NULL REFERENCES m.labels (id), time bigint NOT NULL,
                                     value float8 NOT NULL, UNIQUE (label_id, time)) PARTITION BY RANGE (time);
             SELECT pgdw.partition_daily('m.samples', 'time', retention => '30 days');
             SELECT pgdw.load_metrics('m', 'metrics', 'failover_load', 'm.samples', 'm.labels', since => '21 days');
             UPDATE cron.job SET active = false WHERE jobname = 'm';",
            prom.url()
        ),
    );
    query(
        &f.wh,
        "CREATE TABLE acked (id bigint PRIMARY KEY);
         CREATE TABLE venue (id bigint PRIMARY KEY, name text, name_key text, materialized_at timestamptz);
         CREATE FUNCTION venue_key(v venue) RETURNS TABLE (name_key text) LANGUAGE sql AS $$ SELECT lower(v.name) $$;
         SELECT pgdw.materialize('venue', 'venue_key', depends_on => '{name}');
         CREATE TABLE ticks (at timestamptz);
         SELECT cron.schedule('tick', '* * * * *', 'INSERT INTO ticks VALUES (now())');",
    );
    let standby = TempWarehouse::new();
    let said = create(&f.wh, &standby, &["--sync"]);
    assert!(said.contains("synchronous"), "{said}");

    let st = status(&f.wh);
    assert_eq!(st["role"], "primary");
    assert_eq!(st["standbys"][0]["state"], "streaming", "{st}");
    assert_eq!(st["standbys"][0]["sync"], true, "{st}");
    assert!(st["standbys"][0]["replay_lag_bytes"].is_i64(), "{st}");
    assert_eq!(status(&standby)["role"], "standby");
    query(&f.wh, "INSERT INTO acked VALUES (0)");
    assert!(wait_for(Duration::from_secs(30), || query(
        &standby,
        "SELECT count(*) FROM acked"
    ) == "1"));

    // A worker that reaches whichever of the two is the read-write one.
    let primary_cluster = f.wh.cluster().unwrap();
    let password = &primary_cluster.state().password;
    let url = format!(
        "postgres://postgres:{password}@127.0.0.1:{},127.0.0.1:{}/warehouse?target_session_attrs=read-write",
        primary_cluster.port(),
        standby.cluster().unwrap().port()
    );
    let mut worker = Worker::at_url(&url, &["--lease", "5s", "--poll", "200ms"]);
    let worker_said = worker.follow_stderr();
    query(&f.wh, "INSERT INTO venue VALUES (1, 'Before', NULL, NULL)");
    assert!(wait_for(Duration::from_secs(30), || query(
        &f.wh,
        "SELECT name_key FROM venue WHERE id = 1"
    ) == "before"));

    // Writers: the source's app and the warehouse itself, each keeping what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
    let warehouse_writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let mut client = f.wh.client_db("warehouse");
        std::thread::spawn(move || {
            for id in 1i64.. {
                if stop.load(Ordering::Relaxed)
                    || client
                        .execute("INSERT INTO acked VALUES ($1)", &[&id])
                        .is_err()
                {
                    break;
                }
                acked.lock().unwrap().push(id);
            }
        })
    };
    let source_writer = {
        let stop = stop.clone();
        let mut client = f.source.client_db("warehouse");
        std::thread::spawn(move || {
            for id in 1000i32.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                client
                    .execute(
                        "INSERT INTO organizations VALUES ($1, $2, 'pro')",
                        &[&id, &format!("org {id}")],
                    )
                    .unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // The worker loading metrics when the primary dies.
    query(&f.wh, "SELECT pgdw.enqueue('metrics', '{\"job\": \"m\"}')");
    assert!(wait_for(Duration::from_secs(60), || query(
        &f.wh,
        "SELECT count(*) > 0 FROM m.samples"
    ) == "t"));
    assert!(wait_for(Duration::from_secs(30), || acked
        .lock()
        .unwrap()
        .len()
        > 200));
    assert!(wait_for(Duration::from_secs(30), || query(
        &f.wh,
        "SELECT count(*) > 100 FROM organizations WHERE id >= 1000"
    ) == "t"));

    let died = Instant::now();
    machine_dies(&f.wh);
    warehouse_writer.join().unwrap();
    ok(&standby, &["standby", "promote"]);
    let mut client = standby.client_db("warehouse");
    client
        .execute("INSERT INTO venue VALUES (2, 'After', NULL, NULL)", &[])
        .unwrap();
    let failover = died.elapsed();
    let promoted_at = query(&standby, "SELECT now()");
    eprintln!(
        "failover: {:.2} s from the primary's death to the first write on the new one",
        failover.as_secs_f64()
    );
    stop.store(true, Ordering::Relaxed);
    source_writer.join().unwrap();
    // Fencing: the old primary refuses to start as a second writer.
    let out = f.wh.pgdw(super::support::PGDW.as_ref(), &["up"]);
    assert!(!out.status.success());
    assert!(
        transcript(&out).contains("was promoted"),
        "{}",
        transcript(&out)
    );

    // Every acknowledged warehouse commit survived.
    let acked = acked.lock().unwrap().clone();
    let missing = query(
        &standby,
        &format!(
            "SELECT count(*) FROM unnest('{{{}}}'::bigint[]) a(id) WHERE NOT EXISTS (SELECT 1 FROM acked WHERE acked.id = a.id)",
            acked.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        ),
    );
    assert_eq!(missing, "0", "acknowledged commits lost at failover");
    // The source's rows: each exactly once, the stream going on from the source's slot.
    let promoted = Fixture { wh: standby, ..f };
    promoted.converges(ALL_ORGS);
    // The worker followed the failover; pg_cron runs its jobs on the new primary.
    assert!(
        wait_for(Duration::from_secs(60), || query(
            &promoted.wh,
            "SELECT name_key FROM venue WHERE id = 2"
        ) == "after"),
        "the worker did not reach the new primary: {}",
        worker_said.lock().unwrap()
    );
    assert!(worker.running());
    // The metric load: what the dead primary's task committed is there with its watermark;
    // the rest is loaded by the next run, every sample once.
    query(
        &promoted.wh,
        "SELECT pgdw.enqueue('metrics', '{\"job\": \"m\"}')",
    );
    assert!(
        wait_for(Duration::from_secs(120), || query(
            &promoted.wh,
            "SELECT count(*) FROM m.samples"
        ) == samples.to_string()),
        "{} of {samples} samples",
        query(&promoted.wh, "SELECT count(*) FROM m.samples")
    );
    assert!(
        wait_for(Duration::from_secs(90), || {
            query(
            &promoted.wh,
            &format!("SELECT count(*) > 0 FROM cron.job_run_details WHERE status = 'succeeded' AND start_time > '{promoted_at}'")
        ) == "t"
        }),
        "pg_cron ran nothing on the new primary"
    );
    assert_eq!(status(&promoted.wh)["role"], "primary");
    worker.stop();
}

/// An asynchronous standby: watched by status, doctor and the built-in alert; stopped, it is
/// a finding and the alert fires; back, it clears; removed, its slot is gone.
#[test]
fn a_standby_is_watched_alerted_and_removed() {
    let primary = TempWarehouse::new();
    ok(&primary, &["up"]);
    let standby = TempWarehouse::new();
    create(&primary, &standby, &[]);
    assert_eq!(status(&primary)["standbys"][0]["sync"], false);
    let project = tempfile::tempdir().unwrap();
    ok(&primary, &["init", project.path().to_str().unwrap()]);
    let cluster = primary.cluster().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let running = rt
        .block_on(pgdw::serve::start(pgdw::serve::Options {
            alert_every: Duration::from_millis(500),
            ..pgdw::serve::Options::local(
                pgdw::target::embedded_options(&cluster, "warehouse"),
                pgdw::serve::reader::Reader::Socket,
                project.path().join("dashboards"),
            )
        }))
        .unwrap();
    let alert = || {
        query(
            &primary,
            "SELECT coalesce((SELECT state FROM pgdw.alert_state WHERE alert = 'standby'), 'none')",
        )
    };
    assert!(wait_for(Duration::from_secs(30), || alert() == "ok"));

    ok(&standby, &["down"]);
    assert!(
        wait_for(Duration::from_secs(30), || alert() == "firing"),
        "{}",
        alert()
    );
    let doctor = primary.pgdw(super::support::PGDW.as_ref(), &["doctor", "--json"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.contains("\"standby\"") && text.contains("disconnected"),
        "{text}"
    );
    ok(&standby, &["up"]);
    assert!(wait_for(Duration::from_secs(30), || alert() == "ok"));
    running.stop();

    let said = ok(
        &primary,
        &["standby", "remove", standby.data_dir().to_str().unwrap()],
    );
    assert!(said.contains("slot pgdw_standby_"), "{said}");
    assert_eq!(
        query(&primary, "SELECT count(*) FROM pg_replication_slots"),
        "0"
    );
    assert_eq!(status(&primary)["standbys"], serde_json::json!([]));
    assert!(standby.cluster().unwrap().running_pid().is_none());
    // Made again under the same name after the removal; a second one by that name refused.
    let again = TempWarehouse::new();
    let dir = again.data_dir();
    let (_, err) = fails(
        &primary,
        &[
            "standby",
            "create",
            dir.to_str().unwrap(),
            "--name",
            "unused",
            "--port",
            &cluster.port().to_string(),
        ],
    );
    assert!(err.contains("already in use"), "{err}");
    assert_eq!(
        query(&primary, "SELECT count(*) FROM pg_replication_slots"),
        "0",
        "a failed create leaves no slot"
    );
}

/// `pgdw serve --reader-data-dir STANDBY`: the panels run on the standby, not the primary.
#[test]
fn panels_are_answered_by_the_standby() {
    let primary = TempWarehouse::new();
    ok(&primary, &["up"]);
    query(
        &primary,
        "CREATE TABLE sales AS SELECT g AS id, g * 10 AS amount FROM generate_series(1, 1000) g",
    );
    let standby = TempWarehouse::new();
    create(&primary, &standby, &[]);
    let dashboards = tempfile::tempdir().unwrap();
    std::fs::write(
        dashboards.path().join("sales.toml"),
        "title = \"Sales\"\n[[panels]]\ntitle = \"Total\"\nkind = \"number\"\nsql = \"SELECT sum(amount) AS standby_marker_total FROM sales\"\n",
    )
    .unwrap();
    let cluster = primary.cluster().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let running = rt
        .block_on(pgdw::serve::start(pgdw::serve::Options::local(
            pgdw::target::embedded_options(&cluster, "warehouse"),
            pgdw::serve::reader::Reader::Standby(standby.data_dir()),
            dashboards.path().to_path_buf(),
        )))
        .unwrap();
    let url = format!("{}api/dashboards/sales/panels/0", running.url);
    let panel: serde_json::Value =
        serde_json::from_str(&ureq::get(&url).call().unwrap().into_string().unwrap()).unwrap();
    assert_eq!(
        panel["rows"][0][0].to_string().trim_matches('"'),
        "5005000",
        "{panel}"
    );
    let seen = "SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%standby_marker_total%' AND query NOT LIKE '%pg_stat_statements%'";
    assert_eq!(query(&primary, seen), "0", "the primary ran the panel");
    assert_eq!(query(&standby, seen), "1", "the standby did not run it");
    running.stop();
}

/// An asynchronous standby promoted after its primary died: the source was told of changes
/// the old primary applied and the standby never received (here it was down meanwhile, as a
/// standby that lags is). Promotion says so per subscription with the repair, and the repair
/// (a fresh copy) makes the replica equal to the source again.
#[test]
fn an_asynchronous_failover_says_what_may_be_missing_and_resync_repairs_it() {
    let f = Fixture::streaming();
    let standby = TempWarehouse::new();
    create(&f.wh, &standby, &[]);
    let want = query(&f.source, ALL_ORGS);
    assert!(wait_for(Duration::from_secs(30), || query(
        &standby, ALL_ORGS
    ) == want));
    ok(&standby, &["down"]);
    query(
        &f.source,
        "INSERT INTO organizations SELECT g, 'org ' || g, 'team' FROM generate_series(2000, 2099) g",
    );
    let written = query(&f.source, "SELECT pg_current_wal_lsn()");
    f.converges(ALL_ORGS);
    // The old primary told the source it has them (its next feedback).
    assert!(wait_for(Duration::from_secs(60), || {
        query(
        &f.source,
        &format!("SELECT bool_and(confirmed_flush_lsn >= '{written}') FROM pg_replication_slots WHERE slot_type = 'logical'")
    ) == "t"
    }));
    machine_dies(&f.wh);
    ok(&standby, &["up"]);
    let out = standby.pgdw(super::support::PGDW.as_ref(), &["standby", "promote"]);
    assert!(out.status.success(), "{}", transcript(&out));
    let said = transcript(&out);
    assert!(
        said.contains("may be missing") && said.contains("pgdw replicate resync"),
        "{said}"
    );
    assert_eq!(
        query(
            &standby,
            "SELECT count(*) FROM organizations WHERE id >= 2000"
        ),
        "0",
        "the standby never had them"
    );
    let promoted = Fixture { wh: standby, ..f };
    promoted.resync();
    query(
        &promoted.source,
        "UPDATE organizations SET plan = 'after' WHERE id = 2000",
    );
    promoted.converges(ALL_ORGS);
}
