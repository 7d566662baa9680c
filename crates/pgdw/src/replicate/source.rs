//! The source side of a replica: what it must allow (checked before anything changes), its
//! tables' definitions, the publication and the slot, and samples of how far the warehouse
//! has come (the slot, the walsender's lag).

use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};

use super::config::{Replica, Table};
use crate::quote::{ident, literal};

/// A column as the source declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `format_type`: the type as SQL text (`timestamp with time zone`, `numeric(10,2)`).
    pub ty: String,
    pub not_null: bool,
}

/// A source table's definition: columns in order and its primary key.
#[derive(Debug, Clone)]
pub struct Definition {
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
}

/// The outcome of the checks: errors stop everything, warnings are said.
#[derive(Debug, Default)]
pub struct Checks {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

pub async fn connect(r: &Replica) -> anyhow::Result<PgConnection> {
    let opts = PgConnectOptions::from_str(&r.source)
        .map_err(|_| {
            anyhow::anyhow!(
                "[replicate.{}] source is not a valid PostgreSQL URL",
                r.name
            )
        })?
        .application_name("pgdw replicate");
    // Bounded: `pgdw status` must answer even when a source's host drops packets.
    let connecting = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        PgConnection::connect_with(&opts),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "[replicate.{}] the source {} did not answer within 10 s",
            r.name,
            crate::target::redact_url(&r.source)
        )
    })?;
    connecting.map_err(|e| {
        anyhow::anyhow!(
            "[replicate.{}] connecting to the source {}: {}",
            r.name,
            crate::target::redact_url(&r.source),
            crate::target::redact(&e.to_string(), &r.source)
        )
    })
}

/// What the source must allow for `r`, each problem with its fix. `new_slot`: pgdw would
/// create the slot (so one must be free).
pub async fn check(src: &mut PgConnection, r: &Replica, new_slot: bool) -> anyhow::Result<Checks> {
    let mut c = Checks::default();
    let row = sqlx::query(
        "SELECT current_setting('wal_level') AS wal_level,
                current_setting('max_replication_slots')::int AS max_slots,
                (SELECT count(*) FROM pg_replication_slots)::int AS slots,
                current_setting('max_wal_senders')::int AS max_senders,
                (SELECT count(*) FROM pg_stat_replication)::int AS senders,
                current_setting('max_slot_wal_keep_size') AS keep,
                (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS can_replicate,
                current_user::text AS who",
    )
    .fetch_one(&mut *src)
    .await
    .context("reading the source's settings")?;
    let wal_level: String = row.get("wal_level");
    if wal_level != "logical" {
        c.errors.push(format!(
            "the source has wal_level = {wal_level}: set wal_level = logical there (ALTER SYSTEM SET wal_level = logical) and restart it"
        ));
    }
    let (max_slots, slots): (i32, i32) = (row.get("max_slots"), row.get("slots"));
    // The subscription's slot, and a temporary one per table being copied.
    let needed = if new_slot { 2 } else { 0 };
    if max_slots - slots < needed {
        c.errors.push(format!(
            "the source has {slots} of max_replication_slots = {max_slots} in use; pgdw needs {needed} free \
             (one for the subscription, one for copying a table): raise max_replication_slots there and restart it"
        ));
    }
    let (max_senders, senders): (i32, i32) = (row.get("max_senders"), row.get("senders"));
    if new_slot && max_senders - senders < 2 {
        c.errors.push(format!(
            "the source has {senders} of max_wal_senders = {max_senders} in use; pgdw needs 2 free: raise max_wal_senders there and restart it"
        ));
    }
    let can: bool = row.get::<Option<bool>, _>("can_replicate").unwrap_or(false);
    if !can {
        let who: String = row.get("who");
        c.errors.push(format!(
            "the source role {who} may not replicate: ALTER ROLE {} REPLICATION (as a superuser of the source)",
            ident(&who)
        ));
    }
    let keep: String = row.get("keep");
    if keep == "-1" {
        c.warnings.push(
            "the source has max_slot_wal_keep_size = -1: while the warehouse is down, its slot keeps every WAL \
             segment and can fill the source's disk; set a bound there, e.g. ALTER SYSTEM SET max_slot_wal_keep_size = '10GB' \
             (pgdw shows a slot that lost WAL as LOST and `pgdw migrate` copies afresh)"
                .into(),
        );
    }
    for t in &r.tables {
        let row = sqlx::query(
            "SELECT c.relkind::text AS kind, c.relreplident::text AS ident,
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
                    has_table_privilege(c.oid, 'SELECT') AS can_select
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2",
        )
        .bind(&t.schema)
        .bind(&t.name)
        .fetch_optional(&mut *src)
        .await?;
        let Some(row) = row else {
            c.errors.push(format!("the source has no table {t}"));
            continue;
        };
        let kind: String = row.get("kind");
        if kind != "r" && kind != "p" {
            c.errors.push(format!(
                "{t} on the source is not a table (a view or foreign table cannot be published)"
            ));
            continue;
        }
        let identity: String = row.get("ident");
        let has_pk: bool = row.get("has_pk");
        if identity == "n" || (identity == "d" && !has_pk) {
            c.errors.push(format!(
                "{t} has no primary key or replica identity, so its updates and deletes could not be applied: \
                 add a primary key, or ALTER TABLE {} REPLICA IDENTITY FULL on the source",
                t.sql()
            ));
        }
        if !row.get::<bool, _>("can_select") {
            c.errors.push(format!(
                "the source role may not read {t}: GRANT SELECT ON {} TO the role in the source URL",
                t.sql()
            ));
        }
    }
    Ok(c)
}

/// The definition of `t` on the source.
pub async fn definition(src: &mut PgConnection, t: &Table) -> anyhow::Result<Definition> {
    let rows = sqlx::query(
        "SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS ty, a.attnotnull AS not_null,
                coalesce(a.attnum = ANY (i.indkey), false) AS in_pk,
                array_position(i.indkey::int2[], a.attnum) AS pk_pos
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
          WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
          ORDER BY a.attnum",
    )
    .bind(&t.schema)
    .bind(&t.name)
    .fetch_all(&mut *src)
    .await
    .with_context(|| format!("reading the definition of {t} on the source"))?;
    let mut pk: Vec<(i32, String)> = Vec::new();
    let columns = rows
        .iter()
        .map(|r| {
            let name: String = r.get("name");
            if let Some(pos) = r.get::<Option<i32>, _>("pk_pos") {
                pk.push((pos, name.clone()));
            }
            Column {
                name,
                ty: r.get("ty"),
                not_null: r.get("not_null"),
            }
        })
        .collect();
    pk.sort();
    Ok(Definition {
        columns,
        primary_key: pk.into_iter().map(|(_, n)| n).collect(),
    })
}

/// Tables in the publication now (None: no publication).
pub async fn published(src: &mut PgConnection, r: &Replica) -> anyhow::Result<Option<Vec<Table>>> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
            .bind(r.object_name())
            .fetch_one(&mut *src)
            .await?;
    if !exists {
        return Ok(None);
    }
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2",
    )
    .bind(r.object_name())
    .fetch_all(&mut *src)
    .await?;
    Ok(Some(
        rows.into_iter()
            .map(|(schema, name)| Table { schema, name })
            .collect(),
    ))
}

/// Make the publication hold exactly `r.tables`; returns the tables added and removed.
pub async fn publish(
    src: &mut PgConnection,
    r: &Replica,
) -> anyhow::Result<(Vec<Table>, Vec<Table>)> {
    let name = ident(&r.object_name());
    let list = |ts: &[Table]| ts.iter().map(Table::sql).collect::<Vec<_>>().join(", ");
    match published(src, r).await? {
        None => {
            sqlx::raw_sql(&format!(
                "CREATE PUBLICATION {name} FOR TABLE {}",
                list(&r.tables)
            ))
            .execute(&mut *src)
            .await
            .context("creating the publication on the source")?;
            Ok((r.tables.clone(), Vec::new()))
        }
        Some(now) => {
            let added: Vec<Table> = r
                .tables
                .iter()
                .filter(|t| !now.contains(t))
                .cloned()
                .collect();
            let removed: Vec<Table> = now
                .iter()
                .filter(|t| !r.tables.contains(t))
                .cloned()
                .collect();
            if !added.is_empty() {
                sqlx::raw_sql(&format!(
                    "ALTER PUBLICATION {name} ADD TABLE {}",
                    list(&added)
                ))
                .execute(&mut *src)
                .await
                .context("adding tables to the publication on the source")?;
            }
            if !removed.is_empty() {
                sqlx::raw_sql(&format!(
                    "ALTER PUBLICATION {name} DROP TABLE {}",
                    list(&removed)
                ))
                .execute(&mut *src)
                .await
                .context("removing tables from the publication on the source")?;
            }
            Ok((added, removed))
        }
    }
}

/// The slot's wal_status (None: no slot).
pub async fn slot_status(src: &mut PgConnection, slot: &str) -> anyhow::Result<Option<String>> {
    Ok(sqlx::query_scalar::<_, Option<String>>(
        "SELECT coalesce(wal_status, 'unknown') FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut *src)
    .await?
    .flatten())
}

pub async fn create_slot(src: &mut PgConnection, slot: &str) -> anyhow::Result<()> {
    sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
        .bind(slot)
        .execute(&mut *src)
        .await
        .with_context(|| format!("creating the replication slot {slot} on the source"))?;
    Ok(())
}

/// Drop the slot, ending a walsender that still holds it (the subscription is gone or
/// disabled by then); succeeds when there is no such slot.
pub async fn drop_slot(src: &mut PgConnection, slot: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        sqlx::query("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL")
            .bind(slot)
            .execute(&mut *src)
            .await?;
        // A terminated walsender releases the slot a moment later.
        let dropped = sqlx::query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1")
            .bind(slot)
            .execute(&mut *src)
            .await
            .is_ok();
        if dropped && slot_status(src, slot).await?.is_none() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "the slot {slot} on the source stayed in use; drop it there: SELECT pg_drop_replication_slot({})",
                literal(slot)
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Drop the publication (nothing when there is none).
pub async fn unpublish(src: &mut PgConnection, publication: &str) -> anyhow::Result<()> {
    sqlx::raw_sql(&format!(
        "DROP PUBLICATION IF EXISTS {}",
        ident(publication)
    ))
    .execute(&mut *src)
    .await
    .context("dropping the publication on the source")?;
    Ok(())
}

/// The source's side now, for `pgdw.record_source_sample`: its WAL position, the slot's
/// confirmed position and the WAL it retains (bytes from 0/0), and its wal_status.
pub struct Sample {
    pub current: i64,
    pub confirmed: i64,
    pub retained: i64,
    pub wal_status: String,
}

pub async fn sample(src: &mut PgConnection, slot: &str) -> anyhow::Result<Option<Sample>> {
    let row = sqlx::query(
        "SELECT (pg_current_wal_lsn() - '0/0')::bigint AS current,
                (coalesce(confirmed_flush_lsn, '0/0') - '0/0')::bigint AS confirmed,
                (pg_current_wal_lsn() - coalesce(restart_lsn, pg_current_wal_lsn()))::bigint AS retained,
                coalesce(wal_status, 'unknown') AS wal_status
           FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut *src)
    .await?;
    Ok(row.map(|r| Sample {
        current: r.get("current"),
        confirmed: r.get("confirmed"),
        retained: r.get("retained"),
        wal_status: r.get("wal_status"),
    }))
}
