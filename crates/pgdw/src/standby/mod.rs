//! `pgdw standby`: a hot standby of the embedded warehouse, PostgreSQL's own streaming
//! replication. `create` makes its physical slot, has the cluster crate take the base backup
//! and start it, and (with `--sync`) names it in `synchronous_standby_names`; `promote` makes
//! it the warehouse; `remove` stops it and drops its slot. `standby.sql` reads their state.
//!
//! Why `--sync` also makes the subscriptions' apply synchronous: an apply worker reports to
//! the source as flushed what it committed locally, and the source then forgets it. With the
//! subscription's default `synchronous_commit = off`, that commit need not have reached the
//! standby; a failover would lose a change the source will never send again. With `on`, the
//! commit returns (and is reported) only once the synchronous standby has it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use pgdw_cluster::standby::{slot_name, standby_name};
use pgdw_cluster::Cluster;
use serde::Serialize;
use sqlx::{PgConnection, Row};

use crate::target::{self, Target};

/// How long a new standby gets to reach `streaming`, and a promotion to finish.
const READY: Duration = Duration::from_secs(120);

/// One standby as `pgdw status` and the dashboards show it.
#[derive(Debug, Serialize)]
pub struct Standby {
    pub name: String,
    pub state: String,
    pub sync: Option<bool>,
    pub replay_lag_bytes: Option<i64>,
    pub replay_lag_seconds: Option<f64>,
    pub retained_wal_bytes: Option<i64>,
    pub wal_status: Option<String>,
}

/// `"primary"` or `"standby"`, and the standbys (on a standby: itself, as it sees its primary).
pub async fn status(conn: &mut PgConnection) -> anyhow::Result<(&'static str, Vec<Standby>)> {
    let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut *conn)
        .await?;
    let mut list = Vec::new();
    if crate::runtime::installed(conn).await?.readable() {
        for r in sqlx::query("SELECT * FROM pgdw.standby_status")
            .fetch_all(&mut *conn)
            .await?
        {
            list.push(Standby {
                name: r.get::<Option<String>, _>("name").unwrap_or_default(),
                state: r.get("state"),
                sync: r.get("sync"),
                replay_lag_bytes: r.get("replay_lag_bytes"),
                replay_lag_seconds: r.get("replay_lag_seconds"),
                retained_wal_bytes: r.get("retained_wal_bytes"),
                wal_status: r.get("wal_status"),
            });
        }
    }
    Ok((if standby { "standby" } else { "primary" }, list))
}

/// The text block of `pgdw status`.
pub fn print(role: &str, list: &[Standby]) {
    outln!("  role:           {role}");
    if list.is_empty() {
        return;
    }
    outln!(
        "  {}:",
        if role == "standby" {
            "streaming from its primary"
        } else {
            "standbys"
        }
    );
    for s in list {
        outln!(
            "    {:<20} [{}]{} replay lag {} bytes ({}){}",
            s.name,
            s.state,
            match s.sync {
                Some(true) => " sync,",
                Some(false) => " async,",
                None => "",
            },
            s.replay_lag_bytes.unwrap_or(0),
            s.replay_lag_seconds
                .map(|l| format!("{l:.1} s"))
                .unwrap_or_else(|| "unknown".into()),
            s.retained_wal_bytes
                .map(|b| format!(", slot retains {b} bytes of WAL"))
                .unwrap_or_default()
        );
    }
}

/// The built-in alert rule of a warehouse with standbys: one disconnected, or replaying more
/// than 10 s or 64 MB behind.
pub fn alert_rule() -> crate::alerts::Rule {
    crate::alerts::Rule {
        name: "standby".into(),
        description: "A standby is disconnected or replays far behind".into(),
        sql: "SELECT format('standby %s: %s (replay lag %s bytes, %s s)', name, state, replay_lag_bytes, round(replay_lag_seconds::numeric, 1))
                FROM pgdw.standby_status
               WHERE state <> 'streaming' OR replay_lag_bytes > 64 * 1024 * 1024 OR replay_lag_seconds > 10"
            .into(),
    }
}

fn embedded(target: &Target, what: &str) -> anyhow::Result<PathBuf> {
    match target {
        Target::Embedded { data_dir } => Ok(data_dir.clone()),
        Target::External { .. } => bail!(
            "pgdw standby {what} manages embedded clusters; for a DATABASE_URL warehouse, make the \
             standby with pg_basebackup as docs/standby.md says (pgdw status and doctor then watch it)"
        ),
    }
}

/// `pgdw standby create DIR`: slot, base backup, start, streaming; then synchronous if asked.
pub async fn create(
    target: &Target,
    dir: &Path,
    name: Option<&str>,
    port: Option<u16>,
    sync: bool,
) -> anyhow::Result<()> {
    let mut primary = target::running_cluster(&embedded(target, "create")?)?;
    if primary.is_standby() {
        bail!(
            "{} is itself a standby; make standbys of the primary",
            primary.data_dir().display()
        );
    }
    let name = standby_name(name, dir)?;
    let slot = slot_name(&name);
    if let Some(p) = port {
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_err() {
            bail!("port {p} on 127.0.0.1 is already in use by another program; choose another with --port");
        }
    }
    let mut conn = target::connect_embedded(&primary, &primary.state().database).await?;
    let taken: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
    )
    .bind(&slot)
    .fetch_one(&mut conn)
    .await?;
    if taken || primary.state().standbys.iter().any(|s| s.name == name) {
        bail!(
            "a standby named {name} exists already (slot {slot}); remove it first \
             (pgdw standby remove ITS_DIR) or choose another --name"
        );
    }
    if primary.allow_replication()? {
        sqlx::query("SELECT pg_reload_conf()")
            .execute(&mut conn)
            .await?;
    }
    // Reserved now: WAL from here on is kept for the standby while the backup runs.
    sqlx::query("SELECT pg_create_physical_replication_slot($1, true)")
        .bind(&slot)
        .execute(&mut conn)
        .await
        .with_context(|| format!("creating the physical slot {slot}"))?;
    outln!(
        "taking a base backup of the warehouse into {}",
        dir.display()
    );
    let mut standby = match primary.make_standby(dir, &name, &slot, port, sync, true) {
        Ok(s) => s,
        Err(e) => {
            drop_slot(&mut conn, &slot).await?;
            return Err(e.into());
        }
    };
    if let Err(e) = standby.start(READY) {
        // Nothing half-made stays: the slot would keep WAL for a standby that never runs.
        let _ = standby.stop(Duration::from_secs(10));
        drop_slot(&mut conn, &slot).await?;
        primary.forget_standby(&name)?;
        let _ = pgdw_cluster::place::remove(&std::path::absolute(dir)?);
        return Err(e.into());
    }
    outln!(
        "started the standby {name} on 127.0.0.1:{}; waiting for it to stream",
        standby.port()
    );
    wait_until(&mut conn, &name, "state = 'streaming'").await?;
    if sync {
        set_synchronous(&mut conn, &primary).await?;
        wait_until(&mut conn, &name, "sync_state IN ('sync', 'quorum')").await?;
    }
    outln!(
        "standby {name} streaming ({}): pgdw --data-dir {} status",
        if sync {
            "synchronous: a commit returns once it has it"
        } else {
            "asynchronous"
        },
        dir.display()
    );
    Ok(())
}

async fn wait_until(conn: &mut PgConnection, name: &str, cond: &str) -> anyhow::Result<()> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND {cond})"
    );
    poll(
        conn,
        &sql,
        name,
        &format!("the standby {name} reached {cond}"),
    )
    .await
}

/// Run `sql` (one bound text parameter, a boolean result) until it says true, for up to
/// [`READY`]; otherwise fail saying `what` did not happen in time.
async fn poll(conn: &mut PgConnection, sql: &str, param: &str, what: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let ok: bool = sqlx::query_scalar(sql)
            .bind(param)
            .fetch_one(&mut *conn)
            .await?;
        if ok {
            return Ok(());
        }
        if start.elapsed() > READY {
            bail!(
                "not within {} s: {what} (the standby's server.log says why)",
                READY.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `synchronous_standby_names` from the synchronous standbys the primary remembers (any one of
/// them acknowledges a commit), and every subscription pgdw manages applying synchronously
/// (see the module's comment). Names are a slot's alphabet: safe inside the quotes.
async fn set_synchronous(conn: &mut PgConnection, primary: &Cluster) -> anyhow::Result<()> {
    let names: Vec<String> = primary
        .state()
        .standbys
        .iter()
        .filter(|s| s.sync)
        .map(|s| format!("\"{}\"", s.name))
        .collect();
    let value = if names.is_empty() {
        String::new()
    } else {
        format!("ANY 1 ({})", names.join(", "))
    };
    sqlx::raw_sql(&format!(
        "ALTER SYSTEM SET synchronous_standby_names = '{value}'"
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&mut *conn)
        .await?;
    let subs: Vec<String> = sqlx::query_scalar(
        "SELECT subname::text FROM pg_subscription WHERE subname LIKE 'pgdw\\_%'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let commit = if names.is_empty() { "off" } else { "on" };
    for s in subs {
        sqlx::raw_sql(&format!(
            "ALTER SUBSCRIPTION {} SET (synchronous_commit = '{commit}')",
            crate::quote::ident(&s)
        ))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Wait (bounded) until this standby replayed the primary's WAL up to `lsn`.
pub async fn wait_replayed(standby: &mut PgConnection, lsn: &str) -> anyhow::Result<()> {
    poll(
        standby,
        "SELECT NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= $1::pg_lsn",
        lsn,
        &format!("the standby replayed up to {lsn}"),
    )
    .await
}

async fn drop_slot(conn: &mut PgConnection, slot: &str) -> anyhow::Result<()> {
    // Its walsender ends a moment after the standby stops: the slot is active until then.
    poll(
        conn,
        "SELECT NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active)",
        slot,
        &format!("the slot {slot} was released by its walsender"),
    )
    .await?;
    sqlx::query(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .execute(&mut *conn)
    .await
    .with_context(|| format!("dropping the slot {slot}"))?;
    Ok(())
}

/// `pgdw standby remove DIR`, on the primary: stop the standby, drop its slot, take it out of
/// `synchronous_standby_names`. Its data directory stays.
pub async fn remove(target: &Target, dir: &Path) -> anyhow::Result<()> {
    let mut primary = target::running_cluster(&embedded(target, "remove")?)?;
    let abs = std::path::absolute(dir)?;
    let name = match primary
        .state()
        .standbys
        .iter()
        .find(|s| Path::new(&s.data_dir) == abs)
    {
        Some(s) => s.name.clone(),
        None => standby_name(None, dir)?,
    };
    if let Ok(Some(standby)) = Cluster::open_existing(dir, None) {
        if standby.running_pid().is_some() {
            standby.stop(Duration::from_secs(30))?;
            outln!("stopped the standby {name}");
        }
    }
    let mut conn = target::connect_embedded(&primary, &primary.state().database).await?;
    let slot = slot_name(&name);
    drop_slot(&mut conn, &slot).await?;
    let was_sync = primary
        .state()
        .standbys
        .iter()
        .any(|s| s.name == name && s.sync);
    primary.forget_standby(&name)?;
    if was_sync {
        set_synchronous(&mut conn, &primary).await?;
    }
    outln!(
        "removed the standby {name}: its slot {slot} is dropped; its data directory {} stays (delete it when no longer needed)",
        dir.display()
    );
    Ok(())
}

/// A subscription's position on the source and here, read on the standby before it is
/// promoted (nothing moves either while the old primary is gone).
struct Positions {
    name: String,
    applied: Option<String>,
    confirmed: Option<String>,
}

/// `pgdw standby promote`, on the standby: it becomes the warehouse. A synchronous standby
/// has every acknowledged commit and every change the source was told was applied; an
/// asynchronous one may lack the last ones: said here, per subscription.
pub async fn promote(target: &Target) -> anyhow::Result<()> {
    let mut standby = target::running_cluster(&embedded(target, "promote")?)?;
    if !standby.is_standby() {
        bail!(
            "{} is not a standby (it has no standby.signal): it is a warehouse already",
            standby.data_dir().display()
        );
    }
    let sync = standby
        .state()
        .standby_of
        .as_deref()
        .and_then(|p| pgdw_cluster::place::resolve(Path::new(p)).ok())
        .and_then(|p| pgdw_cluster::State::load(&p).ok().flatten())
        .and_then(|st| {
            st.standbys
                .iter()
                .find(|s| Some(&s.name) == standby.state().standby_name.as_ref())
                .map(|s| s.sync)
        })
        .unwrap_or(false);
    let mut conn = target::connect_embedded(&standby, &standby.state().database).await?;
    let positions = if sync {
        Vec::new()
    } else {
        positions(&mut conn).await?
    };
    let start = Instant::now();
    standby.promote(READY)?;
    // This server's own standbys are not the old primary's: no commit may wait for them.
    // Each alone: ALTER SYSTEM refuses to run in the implicit transaction of a multi-statement query.
    for sql in [
        "ALTER SYSTEM RESET synchronous_standby_names",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::raw_sql(sql).execute(&mut conn).await?;
    }
    outln!(
        "promoted {} in {:.1} s: it is the warehouse now; {} must not start again as a primary \
         (pgdw refuses to)",
        standby.data_dir().display(),
        start.elapsed().as_secs_f64(),
        standby
            .state()
            .promoted_from
            .as_deref()
            .unwrap_or("the old primary")
    );
    for p in positions {
        if let (Some(applied), Some(confirmed)) = (&p.applied, &p.confirmed) {
            let behind: bool = sqlx::query_scalar("SELECT $1::pg_lsn < $2::pg_lsn")
                .bind(applied)
                .bind(confirmed)
                .fetch_one(&mut conn)
                .await?;
            if behind {
                eprintln!(
                    "warning: {}: the source was told the old primary had everything up to {confirmed}; this \
                     warehouse applied up to {applied}. This standby was asynchronous, so changes the source \
                     committed in between may be missing and will not be sent again: copy the section afresh \
                     (pgdw replicate resync NAME --project DIR)",
                    p.name
                );
            }
        }
    }
    Ok(())
}

async fn positions(conn: &mut PgConnection) -> anyhow::Result<Vec<Positions>> {
    let subs = sqlx::query(
        "SELECT s.subname::text AS name, s.subconninfo AS conninfo, s.subslotname::text AS slot,
                -- Nothing replayed here since the origin began (its initial copy only): 0/0.
                coalesce(pg_replication_origin_progress('pg_' || s.oid, false), '0/0')::text AS applied
           FROM pg_subscription s WHERE s.subname LIKE 'pgdw\\_%' AND s.subenabled",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::new();
    for s in subs {
        let name: String = s.get("name");
        let conninfo: String = s.get("conninfo");
        let slot: Option<String> = s.get("slot");
        let confirmed = match target::connect_url(&conninfo).await {
            Ok(mut src) => sqlx::query_scalar::<_, Option<String>>(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            )
            .bind(&slot)
            .fetch_optional(&mut src)
            .await
            .ok()
            .flatten()
            .flatten(),
            Err(e) => {
                eprintln!("warning: {name}: cannot read its source's slot: {e:#}");
                None
            }
        };
        out.push(Positions {
            name,
            applied: s.get("applied"),
            confirmed,
        });
    }
    Ok(out)
}
