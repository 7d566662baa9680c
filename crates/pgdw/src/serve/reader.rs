//! The read-only role panels and alert rules run as: `pgdw_reader`, which may read the tables
//! and views of schemas public and pgdw (not the foreign tables of other schemas, which would
//! reach the sources, nor the catalogs' secrets), read-only by default. It logs in over the embedded
//! cluster's private socket, or with a fresh random password over the network (set as a
//! bound parameter through [`secrets::set`], never in statement text), or
//! a URL of the user's own (`PGDW_READER_URL`).

use std::str::FromStr;

use anyhow::Context;
use rand::distributions::{Alphanumeric, DistString};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

use crate::secrets::{self, Kind};

pub const ROLE: &str = "pgdw_reader";

/// Where the reader's connection comes from.
pub enum Reader {
    /// The embedded cluster: the same socket as the owner, as `pgdw_reader`.
    Socket,
    /// The owner's server with a new password for `pgdw_reader`.
    Password,
    /// A URL given by the user; pgdw creates no role.
    Url(String),
    /// A hot standby of the embedded warehouse (its data directory), over its socket as
    /// `pgdw_reader`: the role is made on the primary and replicated.
    Standby(std::path::PathBuf),
}

/// Ensure the role exists with its settings; with `password`, give it a new random one.
pub async fn ensure_role(owner: &PgPool, password: bool) -> anyhow::Result<Option<String>> {
    let setup = [
        format!("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN CREATE ROLE {ROLE} LOGIN; END IF; END $$"),
        // Not pg_read_all_data: that reads system catalogs too (pg_authid's password hashes,
        // pg_user_mapping's secrets). Only the warehouse's own schemas, tables and views.
        format!("REVOKE pg_read_all_data FROM {ROLE}"),
        format!("GRANT USAGE ON SCHEMA public, pgdw, dw TO {ROLE}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA public, pgdw, dw TO {ROLE}"),
        format!("ALTER DEFAULT PRIVILEGES IN SCHEMA public, pgdw, dw GRANT SELECT ON TABLES TO {ROLE}"),
        // The health functions see every session and statement (normalized texts only).
        format!("GRANT EXECUTE ON FUNCTION pgdw.doctor(interval, interval, bigint, bigint, bigint), pgdw.health_statements(), pgdw.health_activity() TO {ROLE}"),
        format!("ALTER ROLE {ROLE} SET default_transaction_read_only = on"),
        format!("ALTER ROLE {ROLE} SET statement_timeout = '30s'"),
    ];
    for sql in &setup {
        sqlx::raw_sql(sql).execute(owner).await.with_context(|| {
            format!(
                "setting up the read-only role {ROLE} (`{sql}`); a user who may not do this can \
                 create a read-only role and pass its URL as PGDW_READER_URL"
            )
        })?;
    }
    if !password {
        return Ok(None);
    }
    let secret = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
    let mut conn = owner.acquire().await?;
    secrets::set(&mut conn, Kind::RolePassword, ROLE, "", &secret)
        .await
        .map_err(|e| e.context(format!("setting a password for {ROLE}")))?;
    Ok(Some(secret))
}

/// Connection options for the reader, given the owner's.
pub async fn options(
    owner: &PgPool,
    owner_options: &PgConnectOptions,
    reader: &Reader,
) -> anyhow::Result<PgConnectOptions> {
    Ok(match reader {
        Reader::Url(url) => PgConnectOptions::from_str(url)
            .map_err(|_| anyhow::anyhow!("PGDW_READER_URL is not a valid PostgreSQL URL"))?,
        Reader::Socket => {
            ensure_role(owner, false).await?;
            owner_options.clone().username(ROLE)
        }
        Reader::Password => {
            let secret = ensure_role(owner, true).await?.unwrap_or_default();
            owner_options.clone().username(ROLE).password(&secret)
        }
        Reader::Standby(dir) => {
            ensure_role(owner, false).await?;
            let standby = crate::target::running_cluster(dir)?;
            // The role exists on the standby once it replayed past its creation.
            let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
                .fetch_one(owner)
                .await?;
            let mut conn =
                crate::target::connect_embedded(&standby, &standby.state().database).await?;
            crate::standby::wait_replayed(&mut conn, &lsn).await?;
            crate::target::embedded_options(&standby, &standby.state().database).username(ROLE)
        }
    }
    .application_name("pgdw serve (panels)"))
}
