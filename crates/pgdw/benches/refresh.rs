//! Refreshing ingested_clusters from a control plane of N instances with 1% of rows changed:
//! pgdw.sync (incremental, watermark) against the seeds' delete-everything-and-insert, in one
//! run: wall time and WAL bytes (pg_current_wal_lsn difference). Prints figures.
//!
//!     cargo bench -p pgdw --bench refresh [-- INSTANCES]      (default 1,000,000)

use std::time::Instant;

use pgdw_testkit::TempWarehouse;

fn main() {
    let n: i64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let w = TempWarehouse::new();
    let up = w.pgdw(env!("CARGO_BIN_EXE_pgdw").as_ref(), &["up"]);
    assert!(up.status.success(), "{}", pgdw_testkit::transcript(&up));
    let c = w.cluster().unwrap();
    let sql =
        |db: &str, q: &str| -> String { w.psql_db(db, q).unwrap_or_else(|e| panic!("{q}: {e}")) };
    eprintln!("generating a control plane of {n} instances...");
    sql("warehouse", "CREATE DATABASE control_plane");
    sql(
        "control_plane",
        &format!(
            "CREATE TABLE instance_vw (organization_id text, instance_id text PRIMARY KEY, instance_name text,
               entity_type text, created_at timestamptz, desired_spec jsonb, state text, environment text,
               updated_at timestamptz NOT NULL);
             INSERT INTO instance_vw SELECT 'org_' || (i % 5000), 'inst_' || i, 'db-' || i, 'Standard',
               now() - interval '30 days', '{{\"cpu\": \"1\", \"memory\": \"2Gi\"}}', 'Up', 'prod', now() - interval '1 day'
               FROM generate_series(1, {n}) i;
             CREATE INDEX ON instance_vw (updated_at); ANALYZE instance_vw;"
        ),
    );
    sql(
        "warehouse",
        &format!(
            "CREATE SERVER cp FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '{}', port '{}', dbname 'control_plane', fetch_size '10000');
             CREATE USER MAPPING FOR CURRENT_USER SERVER cp;
             CREATE FOREIGN TABLE instance_vw_f (organization_id text, instance_id text, instance_name text,
               entity_type text, created_at timestamptz, desired_spec jsonb, state text, environment text,
               updated_at timestamptz) SERVER cp OPTIONS (table_name 'instance_vw');
             CREATE TABLE seeds_clusters (ingested_at timestamptz, organization_id text, instance_id text, instance_name text,
               entity_type text, created_at timestamptz, desired_spec jsonb, state text, environment text);
             CREATE TABLE ingested_clusters (organization_id text, instance_id text PRIMARY KEY, instance_name text,
               entity_type text, created_at timestamptz, desired_spec jsonb, state text, environment text, updated_at timestamptz)
               WITH (fillfactor = 90);
             CREATE FUNCTION refresh_clusters() RETURNS void LANGUAGE plpgsql AS $$
             BEGIN
               delete from seeds_clusters;
               insert into seeds_clusters (select now(), organization_id, instance_id, instance_name, entity_type,
                                                  created_at, desired_spec, state, environment from instance_vw_f);
             END $$;",
            c.socket_dir().display(),
            c.port()
        ),
    );
    eprintln!("initial loads...");
    sql("warehouse", "SELECT refresh_clusters()");
    sql("warehouse", "SELECT * FROM pgdw.sync('ingested_clusters', 'instance_vw_f', '{instance_id}', 'updated_at')");
    // 1% of instances change before each round.
    sql("control_plane", &format!("UPDATE instance_vw SET state = 'Stopped', updated_at = clock_timestamp() WHERE instance_id IN (SELECT 'inst_' || i FROM generate_series(1, {n}, 100) i)"));

    // Autovacuum of one measurement's dead rows would write WAL during the other's window.
    sql("warehouse", "ALTER TABLE seeds_clusters SET (autovacuum_enabled = false); ALTER TABLE ingested_clusters SET (autovacuum_enabled = false)");
    // `after_checkpoint`: the first change of each page after a checkpoint logs the whole page
    // (full_page_writes), the worst case; without, the steady state between checkpoints.
    let measure = |label: &str, q: &str, after_checkpoint: bool| -> (f64, i64) {
        if after_checkpoint {
            sql("warehouse", "CHECKPOINT");
        }
        let lsn0 = sql("warehouse", "SELECT pg_current_wal_lsn()");
        let t = Instant::now();
        sql("warehouse", q);
        let secs = t.elapsed().as_secs_f64();
        let bytes: i64 = sql(
            "warehouse",
            &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn0}')::bigint"),
        )
        .parse()
        .unwrap();
        eprintln!("{label}: {secs:.2} s, {bytes} WAL bytes");
        (secs, bytes)
    };
    let incremental = "SELECT * FROM pgdw.sync('ingested_clusters', 'instance_vw_f', '{instance_id}', 'updated_at', deletes => false)";
    let change = format!(
        "UPDATE instance_vw SET state = CASE state WHEN 'Up' THEN 'Stopped' ELSE 'Up' END, updated_at = clock_timestamp()
          WHERE instance_id IN (SELECT 'inst_' || i FROM generate_series(1, {n}, 100) i)"
    );
    println!(
        "refresh: {n} instances, 1% changed per round (every 100th instance), deletes pass off"
    );
    for after_checkpoint in [false, true] {
        let (inc_s, inc_wal) = measure("pgdw.sync (incremental)", incremental, after_checkpoint);
        let (full_s, full_wal) = measure(
            "delete + insert (the seeds)",
            "SELECT refresh_clusters()",
            after_checkpoint,
        );
        let when = if after_checkpoint {
            "right after a checkpoint"
        } else {
            "between checkpoints"
        };
        println!("  {when}:");
        println!("    delete + insert (seeds): {full_s:>7.2} s  {full_wal:>12} WAL bytes");
        println!("    pgdw.sync incremental:   {inc_s:>7.2} s  {inc_wal:>12} WAL bytes");
        println!(
            "    ratio: {:.1}x less time, {:.1}x less WAL (target >= 20x each)",
            full_s / inc_s,
            full_wal as f64 / inc_wal as f64
        );
        sql("control_plane", &change);
    }
}
