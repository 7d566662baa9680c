//! Logical replication that pgdw sets up, watches and heals: `[replicate.NAME]` in pgdw.toml
//! becomes a publication and a slot on the source and a subscription in the warehouse (all
//! `pgdw_NAME`), with the source's tables copied into tables of the same schema and name.
//! PostgreSQL's own apply worker does the streaming (restarts, origin tracking); pgdw does the
//! operating: checks before anything changes, schema changes, lost slots, teardown that leaves
//! no slot behind, and the source's side sampled into the warehouse (`pgdw.replication`).

pub mod config;
mod source;

use anyhow::{bail, Context};
use serde::Serialize;
use sqlx::{Connection, PgConnection, Row};

pub use config::{Replica, Section, Table};
use source::Definition;

use crate::quote::{ident, literal};

/// What `apply` did and what deserves a look, line by line.
#[derive(Debug, Default)]
pub struct Outcome {
    pub done: Vec<String>,
    pub warnings: Vec<String>,
}

/// `pgdw migrate`: make the sources and the warehouse match the sections; sections that are
/// gone lose their subscription and its slot on the source. Every check of every section runs
/// before anything changes.
pub async fn apply(wh: &mut PgConnection, replicas: &[Replica]) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let mut planned = Vec::new();
    let mut errors = Vec::new();
    for r in replicas {
        let mut src = source::connect(r).await?;
        let slot = source::slot_status(&mut src, &r.object_name()).await?;
        let checks = source::check(&mut src, r, slot.is_none()).await?;
        errors.extend(
            checks
                .errors
                .iter()
                .map(|e| format!("[replicate.{}] {e}", r.name)),
        );
        out.warnings.extend(
            checks
                .warnings
                .iter()
                .map(|w| format!("[replicate.{}] {w}", r.name)),
        );
        errors.extend(collisions(wh, r).await?);
        planned.push((r, src, slot));
    }
    if !errors.is_empty() {
        let warnings = if out.warnings.is_empty() {
            String::new()
        } else {
            format!("\nand, to look at:\n  - {}", out.warnings.join("\n  - "))
        };
        bail!(
            "replication cannot be set up; nothing was changed:\n  - {}{warnings}",
            errors.join("\n  - ")
        );
    }
    for (r, mut src, slot) in planned {
        set_up(wh, &mut src, r, slot, false, &mut out).await?;
    }
    remove_others(wh, replicas, &mut out).await?;
    Ok(out)
}

/// Tables `r` would create in the warehouse that exist there already and are not pgdw's
/// replicas of this section: never overwritten.
async fn collisions(wh: &mut PgConnection, r: &Replica) -> anyhow::Result<Vec<String>> {
    let mut errors = Vec::new();
    for t in &r.tables {
        let row = sqlx::query(
            "SELECT to_regclass($1) IS NOT NULL AS present,
                    (SELECT subscription FROM pgdw.replicas WHERE table_schema = $2 AND table_name = $3) AS owner",
        )
        .bind(t.sql())
        .bind(&t.schema)
        .bind(&t.name)
        .fetch_one(&mut *wh)
        .await?;
        let present: bool = row.get("present");
        let owner: Option<String> = row.get("owner");
        match owner {
            Some(o) if o != r.name => errors.push(format!(
                "[replicate.{}] {t} is already the replica of [replicate.{o}]",
                r.name
            )),
            None if present => errors.push(format!(
                "[replicate.{}] the warehouse has a table {t} that pgdw did not create; replicas keep their source's \
                 names, so rename or drop it first (ALTER TABLE {} RENAME TO ...)",
                r.name,
                t.sql()
            )),
            _ => {}
        }
    }
    Ok(errors)
}

/// `pgdw replicate resync NAME`: start the section again from a fresh copy of every table
/// (after a gap, or to be sure), through the same checks as `apply`.
pub async fn resync(wh: &mut PgConnection, r: &Replica) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let mut src = source::connect(r).await?;
    let slot = source::slot_status(&mut src, &r.object_name()).await?;
    let checks = source::check(&mut src, r, slot.is_none()).await?;
    let mut errors: Vec<String> = checks.errors;
    errors.extend(collisions(wh, r).await?);
    if !errors.is_empty() {
        bail!(
            "[replicate.{}] cannot be copied afresh; nothing was changed:\n  - {}",
            r.name,
            errors.join("\n  - ")
        );
    }
    out.warnings = checks.warnings;
    set_up(wh, &mut src, r, slot, true, &mut out).await?;
    Ok(out)
}

async fn set_up(
    wh: &mut PgConnection,
    src: &mut PgConnection,
    r: &Replica,
    slot: Option<String>,
    again: bool,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let name = r.object_name();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)")
            .bind(&name)
            .fetch_one(&mut *wh)
            .await?;
    let mut fresh = !exists;
    let lost = slot.as_deref() == Some("lost");
    if lost || (again && exists) {
        // A lost slot: the source removed WAL the subscription had not read, and continuing
        // would leave a silent gap. Start again from a fresh copy.
        out.done.push(if lost {
            format!(
                "[replicate.{}] the slot {name} lost WAL on the source (max_slot_wal_keep_size): copying every table afresh",
                r.name
            )
        } else {
            format!("[replicate.{}] copying every table afresh", r.name)
        });
        drop_subscription(wh, &name).await?;
        source::drop_slot(src, &name).await?;
        fresh = true;
    }
    // The warehouse's tables first: the subscription needs them to exist.
    let mut tx = wh.begin().await?;
    for t in &r.tables {
        let def = source::definition(src, t).await?;
        ensure_table(&mut tx, r, t, &def, fresh, out).await?;
    }
    tx.commit().await?;
    let (added, removed) = source::publish(src, r).await?;
    if source::slot_status(src, &name).await?.is_none() {
        source::create_slot(src, &name).await?;
    }
    let password = crate::target::split_password(&r.source)
        .1
        .unwrap_or_default();
    let result = crate::secrets::call_hidden(
        wh,
        "SELECT pgdw.create_subscription($1, $2, make_interval(secs => $3::float8))",
        &[&r.name, &r.source, &r.max_lag.as_secs_f64().to_string()],
        &[&r.source, &password],
    )
    .await?
    .unwrap_or_default();
    match result.as_str() {
        "created" => out.done.push(format!(
            "[replicate.{}] subscription {name} created: copying {} tables, then streaming",
            r.name,
            r.tables.len()
        )),
        "reconnected" => out.done.push(format!(
            "[replicate.{}] subscription {name} uses the new source URL",
            r.name
        )),
        _ => {}
    }
    if result != "created" && (!added.is_empty() || !removed.is_empty()) {
        // Outside a transaction block, as PostgreSQL requires; copies only the added tables.
        sqlx::raw_sql(&format!(
            "ALTER SUBSCRIPTION {} REFRESH PUBLICATION",
            ident(&name)
        ))
        .execute(&mut *wh)
        .await
        .context("refreshing the subscription's tables")?;
        for t in &added {
            out.done.push(format!(
                "[replicate.{}] replicating {t}: copying it, then streaming",
                r.name
            ));
        }
    }
    if (result == "created" || !added.is_empty()) && same_cluster(wh, src).await? {
        // A source in the warehouse's own cluster: each table's copy creates a slot there,
        // which waits for every transaction in the cluster to end, and a migration's
        // transaction that touches a replica waits for the copy: they would wait for each
        // other. The copies finish first.
        copied(wh, &name, &mut *out).await?;
    }
    for t in &removed {
        sqlx::query("UPDATE pgdw.replicas SET replicating = false WHERE table_schema = $1 AND table_name = $2")
            .bind(&t.schema)
            .bind(&t.name)
            .execute(&mut *wh)
            .await?;
        out.done.push(format!(
            "[replicate.{}] stopped replicating {t}; its copy in the warehouse stays as it was (DROP TABLE {} when it is no longer needed)",
            r.name,
            t.sql()
        ));
    }
    Ok(())
}

/// Whether the source is the warehouse's own cluster (the same system identifier).
async fn same_cluster(wh: &mut PgConnection, src: &mut PgConnection) -> anyhow::Result<bool> {
    let id = "SELECT system_identifier::text FROM pg_control_system()";
    let here: String = sqlx::query_scalar(id).fetch_one(&mut *wh).await?;
    let there: String = sqlx::query_scalar(id).fetch_one(&mut *src).await?;
    Ok(here == there)
}

/// Wait (at most 10 minutes) until every table of subscription `name` is copied.
async fn copied(wh: &mut PgConnection, name: &str, out: &mut Outcome) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
              WHERE s.subname = $1 AND r.srsubstate NOT IN ('r', 's')",
        )
        .bind(name)
        .fetch_one(&mut *wh)
        .await?;
        if waiting == 0 {
            out.done.push(format!(
                "subscription {name}: copied in {:.1} s (a source in this same cluster is copied before migrations run)",
                start.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if start.elapsed() > std::time::Duration::from_secs(600) {
            bail!("subscription {name}: {waiting} tables still copying after 10 minutes; `pgdw status` shows why");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Create `t` in the warehouse as its source defines it, or add the columns it lacks. A table
/// that (re)starts from a copy is emptied first: the copy must not meet old rows.
async fn ensure_table(
    wh: &mut PgConnection,
    r: &Replica,
    t: &Table,
    def: &Definition,
    fresh: bool,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let row = sqlx::query(
        "SELECT replicating FROM pgdw.replicas WHERE table_schema = $1 AND table_name = $2",
    )
    .bind(&t.schema)
    .bind(&t.name)
    .fetch_optional(&mut *wh)
    .await?;
    match row {
        None => {
            let mut cols: Vec<String> = def
                .columns
                .iter()
                .map(|c| {
                    format!(
                        "{} {}{}",
                        ident(&c.name),
                        c.ty,
                        if c.not_null { " NOT NULL" } else { "" }
                    )
                })
                .collect();
            if !def.primary_key.is_empty() {
                cols.push(format!(
                    "PRIMARY KEY ({})",
                    def.primary_key
                        .iter()
                        .map(|c| ident(c))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            sqlx::raw_sql(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE {} ({})",
                ident(&t.schema),
                t.sql(),
                cols.join(", ")
            ))
            .execute(&mut *wh)
            .await
            .with_context(|| {
                format!(
                    "creating {t} in the warehouse (a type the source defines must exist here too)"
                )
            })?;
            sqlx::query("INSERT INTO pgdw.replicas (table_schema, table_name, subscription) VALUES ($1, $2, $3)")
                .bind(&t.schema)
                .bind(&t.name)
                .bind(&r.name)
                .execute(&mut *wh)
                .await?;
            out.done.push(format!(
                "[replicate.{}] created {t} in the warehouse",
                r.name
            ));
        }
        Some(row) => {
            let replicating: bool = row.get(0);
            if fresh || !replicating {
                sqlx::raw_sql(&format!("TRUNCATE {}", t.sql()))
                    .execute(&mut *wh)
                    .await?;
                sqlx::query("UPDATE pgdw.replicas SET replicating = true, subscription = $3 WHERE table_schema = $1 AND table_name = $2")
                    .bind(&t.schema)
                    .bind(&t.name)
                    .bind(&r.name)
                    .execute(&mut *wh)
                    .await?;
            }
            for line in reconcile_columns(wh, t, def).await? {
                out.done.push(format!("[replicate.{}] {line}", r.name));
            }
        }
    }
    Ok(())
}

/// Add the columns the source has and the copy lacks (additive changes keep streaming);
/// report what cannot be changed safely by itself, with the statement to run.
async fn reconcile_columns(
    wh: &mut PgConnection,
    t: &Table,
    def: &Definition,
) -> anyhow::Result<Vec<String>> {
    let here: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
          WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
    )
    .bind(t.sql())
    .fetch_all(&mut *wh)
    .await?;
    let mut lines = Vec::new();
    for c in &def.columns {
        // Owned before any await: a closure's borrow held across one makes the future !Send.
        let found: Option<String> = here
            .iter()
            .find(|(n, _)| n == &c.name)
            .map(|(_, ty)| ty.clone());
        match found {
            None => {
                // Nullable here even when the source says NOT NULL: rows already copied have no
                // value for it, and the source enforces it for new ones.
                let sql = format!("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}", t.sql(), ident(&c.name), c.ty);
                sqlx::query(&sql)
                    .execute(&mut *wh)
                    .await
                    .with_context(|| format!("adding column {} to {t}", c.name))?;
                lines.push(format!("added column {} {} to {t}, as on the source", c.name, c.ty));
            }
            Some(ty) if ty != c.ty => lines.push(format!(
                "column {}.{} is {ty} here but {} on the source: change it with ALTER TABLE {} ALTER COLUMN {} TYPE {}",
                t,
                c.name,
                c.ty,
                t.sql(),
                ident(&c.name),
                c.ty
            )),
            _ => {}
        }
    }
    Ok(lines)
}

/// Drop a subscription without touching its slot (done separately, on the source).
async fn drop_subscription(wh: &mut PgConnection, name: &str) -> anyhow::Result<()> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)")
            .bind(name)
            .fetch_one(&mut *wh)
            .await?;
    if exists {
        let n = ident(name);
        sqlx::raw_sql(&format!(
            "ALTER SUBSCRIPTION {n} DISABLE; ALTER SUBSCRIPTION {n} SET (slot_name = NONE); DROP SUBSCRIPTION {n}"
        ))
        .execute(&mut *wh)
        .await
        .with_context(|| format!("dropping subscription {name}"))?;
    }
    Ok(())
}

/// Sections removed from pgdw.toml: their subscription goes, and with it its slot on the
/// source (an orphaned slot retains WAL forever), verified gone; the copies stay.
async fn remove_others(
    wh: &mut PgConnection,
    keep: &[Replica],
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let known: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pgdw.subscriptions ORDER BY name")
            .fetch_all(&mut *wh)
            .await?;
    for name in known
        .into_iter()
        .filter(|n| !keep.iter().any(|r| &r.name == n))
    {
        let sub = config::object_name(&name);
        // The source's address is the subscription's own (readable by a superuser only).
        let conninfo: Option<String> =
            sqlx::query_scalar("SELECT subconninfo FROM pg_subscription WHERE subname = $1")
                .bind(&sub)
                .fetch_optional(&mut *wh)
                .await
                .ok()
                .flatten();
        // DROP SUBSCRIPTION also drops the slot on the source, and fails if it cannot.
        sqlx::raw_sql(&format!("DROP SUBSCRIPTION IF EXISTS {}", ident(&sub)))
            .execute(&mut *wh)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "[replicate.{name}] was removed, but its subscription could not drop its slot on the source ({e}); \
                     if the source is gone for good: ALTER SUBSCRIPTION {sub} DISABLE; ALTER SUBSCRIPTION {sub} SET (slot_name = NONE); \
                     DROP SUBSCRIPTION {sub}; and on the source, if it comes back: SELECT pg_drop_replication_slot({})",
                    literal(&sub)
                )
            })?;
        if let Some(conninfo) = conninfo {
            let r = Replica::subscribed(&name, conninfo);
            if let Ok(mut src) = source::connect(&r).await {
                source::drop_slot(&mut src, &sub).await?;
                source::unpublish(&mut src, &sub).await?;
            }
        }
        sqlx::raw_sql(&format!(
            "UPDATE pgdw.replicas SET replicating = false WHERE subscription = {0};
             DELETE FROM pgdw.replication_source WHERE subscription = {0};
             DELETE FROM pgdw.replication_lsns WHERE subscription = {0};
             DELETE FROM pgdw.subscriptions WHERE name = {0};",
            literal(&name)
        ))
        .execute(&mut *wh)
        .await?;
        out.done.push(format!(
            "[replicate.{name}] removed: subscription {sub} and its slot on the source dropped; its tables stay in the warehouse as they were"
        ));
    }
    Ok(())
}

/// Every section's subscription and slot dropped, as if pgdw.toml had none (`pgdw demo`, before
/// it generates its control plane afresh); the copies stay and start again from a fresh copy.
pub async fn remove_all(wh: &mut PgConnection) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    if configured(wh).await? {
        remove_others(wh, &[], &mut out).await?;
    }
    Ok(out)
}

/// Whether the warehouse replicates anything (false before the runtime is installed).
pub async fn configured(wh: &mut PgConnection) -> anyhow::Result<bool> {
    Ok(crate::runtime::installed(wh).await?.readable()
        && sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pgdw.subscriptions)")
            .fetch_one(&mut *wh)
            .await?)
}

/// The running `pgdw serve` (and `pgdw status`): sample each source's side into the
/// warehouse, and add columns a source gained before the apply worker needs them (or, if it
/// stopped on one, so that it resumes by itself). Works from the warehouse alone: the source's
/// address is the subscription's own. Returns what it changed.
pub async fn watch(wh: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    // Nothing to watch, and nothing read that needs a superuser (pg_subscription's connection).
    if !configured(wh).await? {
        return Ok(Vec::new());
    }
    let subs: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT s.name, (SELECT subconninfo FROM pg_subscription WHERE subname = pgdw.subscription_name(s.name))
           FROM pgdw.subscriptions s ORDER BY 1",
    )
    .fetch_all(&mut *wh)
    .await
    .context("reading the subscriptions (their connections need a superuser)")?;
    let mut changed = Vec::new();
    for (name, conninfo) in subs {
        if let Err(e) = watch_one(wh, &name, conninfo, &mut changed).await {
            sqlx::query("SELECT pgdw.record_source_sample($1, NULL, NULL, NULL, NULL, $2)")
                .bind(&name)
                .bind(format!("{e:#}"))
                .execute(&mut *wh)
                .await?;
        }
    }
    Ok(changed)
}

async fn watch_one(
    wh: &mut PgConnection,
    name: &str,
    conninfo: Option<String>,
    changed: &mut Vec<String>,
) -> anyhow::Result<()> {
    let Some(conninfo) = conninfo else {
        bail!(
            "the subscription {} is missing from the warehouse: run `pgdw migrate`",
            config::object_name(name)
        );
    };
    let r = Replica::subscribed(name, conninfo);
    let mut src = source::connect(&r).await?;
    let sample = source::sample(&mut src, &r.object_name()).await?;
    let problem = sample.is_none().then(|| {
        format!(
            "the slot {} does not exist on the source: run `pgdw migrate`",
            r.object_name()
        )
    });
    sqlx::query("SELECT pgdw.record_source_sample($1, $2, $3, $4, $5, $6)")
        .bind(name)
        .bind(sample.as_ref().map(|s| s.current))
        .bind(sample.as_ref().map(|s| s.confirmed))
        .bind(sample.as_ref().map(|s| s.retained))
        .bind(sample.as_ref().map(|s| s.wal_status.clone()))
        .bind(problem)
        .execute(&mut *wh)
        .await?;
    let replicating: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema, table_name FROM pgdw.replicas WHERE subscription = $1 AND replicating",
    )
    .bind(name)
    .fetch_all(&mut *wh)
    .await?;
    for (schema, table) in replicating {
        let t = Table {
            schema,
            name: table,
        };
        let def = source::definition(&mut src, &t).await?;
        if def.columns.is_empty() {
            continue; // dropped on the source: status shows the apply errors
        }
        for line in reconcile_columns(wh, &t, &def).await? {
            changed.push(format!("[replicate.{name}] {line}"));
        }
    }
    Ok(())
}

/// One subscription as status shows it.
#[derive(Debug, Serialize)]
pub struct Status {
    pub name: String,
    pub state: String,
    pub enabled: Option<bool>,
    pub applying: Option<bool>,
    pub tables: Vec<(String, String)>,
    pub lag_bytes: Option<i64>,
    pub lag_secs: Option<f64>,
    pub max_lag_secs: f64,
    pub retained_bytes: Option<i64>,
    pub wal_status: Option<String>,
    pub apply_errors: Option<i64>,
    pub sync_errors: Option<i64>,
    pub problem: Option<String>,
}

/// Every subscription pgdw manages, from `pgdw.replication` (empty before any).
pub async fn status(wh: &mut PgConnection) -> anyhow::Result<Vec<Status>> {
    if !crate::runtime::installed(wh).await?.readable() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT name, state, enabled, applying, lag_bytes, extract(epoch FROM lag)::float8 AS lag_secs,
                extract(epoch FROM max_lag)::float8 AS max_lag_secs, retained_bytes, wal_status,
                apply_error_count, sync_error_count, problem
           FROM pgdw.replication ORDER BY name",
    )
    .fetch_all(&mut *wh)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let name: String = r.get("name");
        let tables: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_schema || '.' || table_name, sync_state FROM pgdw.replication_tables WHERE name = $1 ORDER BY 1",
        )
        .bind(&name)
        .fetch_all(&mut *wh)
        .await?;
        out.push(Status {
            state: r.get("state"),
            enabled: r.get("enabled"),
            applying: r.get("applying"),
            tables,
            lag_bytes: r.get("lag_bytes"),
            lag_secs: r.get("lag_secs"),
            max_lag_secs: r.get("max_lag_secs"),
            retained_bytes: r.get("retained_bytes"),
            wal_status: r.get("wal_status"),
            apply_errors: r.get("apply_error_count"),
            sync_errors: r.get("sync_error_count"),
            problem: r.get("problem"),
            name,
        });
    }
    Ok(out)
}

/// The built-in alert rule every project with replication gets.
pub fn alert_rule() -> crate::alerts::Rule {
    crate::alerts::Rule {
        name: "replication".into(),
        description: "A replicated source lags beyond max_lag, stopped, or its slot is at risk".into(),
        sql: "SELECT format('%s: %s (lag %s, slot %s)', name, state, date_trunc('second', lag), coalesce(wal_status, 'unknown'))
                FROM pgdw.replication
               WHERE state IN ('LAGGING', 'STOPPED', 'DISABLED', 'LOST', 'MISSING')
                  OR wal_status NOT IN ('reserved')"
            .into(),
    }
}

/// The text block of `pgdw status`.
pub fn print(list: &[Status]) {
    if list.is_empty() {
        return;
    }
    outln!("  replication:");
    for s in list {
        let lag = s
            .lag_secs
            .map(|l| format!("{l:.1} s"))
            .unwrap_or_else(|| "unknown".into());
        outln!(
            "    {:<28} [{}] lag {lag} ({} bytes, max {} s), slot {} retaining {} bytes, errors: {} apply, {} sync",
            s.name,
            s.state,
            s.lag_bytes.unwrap_or(0),
            s.max_lag_secs,
            s.wal_status.as_deref().unwrap_or("unknown"),
            s.retained_bytes.unwrap_or(0),
            s.apply_errors.unwrap_or(0),
            s.sync_errors.unwrap_or(0)
        );
        for (t, state) in &s.tables {
            outln!("      {t:<40} {state}");
        }
        if let Some(p) = &s.problem {
            outln!("      problem: {p}");
        }
    }
}
