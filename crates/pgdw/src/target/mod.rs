//! Which server a command talks to: the embedded cluster, or the one named by `DATABASE_URL`
//! (which may name several hosts: `hosts`).

pub mod hosts;

use std::path::PathBuf;

use anyhow::Context;
use pgdw_cluster::Cluster;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;

use crate::cli::TargetArgs;

pub enum Target {
    Embedded { data_dir: PathBuf },
    External { url: String },
}

impl Target {
    pub fn from_args(args: &TargetArgs) -> Target {
        match args
            .database_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        {
            Some(url) => Target::External {
                url: url.to_string(),
            },
            None => Target::Embedded {
                data_dir: args.data_dir.clone(),
            },
        }
    }
}

impl Target {
    /// Options for the warehouse database: the embedded cluster's socket (it must be
    /// running) or `DATABASE_URL`. The one place that choice is made for a connection.
    pub async fn warehouse_options(&self) -> anyhow::Result<PgConnectOptions> {
        match self {
            Target::External { url } => Ok(hosts::resolve(url).await?.application_name("pgdw")),
            Target::Embedded { data_dir } => {
                let cluster = running_cluster(data_dir)?;
                Ok(embedded_options(&cluster, &cluster.state().database))
            }
        }
    }

    /// The URL a long-running pool follows through a failover: `DATABASE_URL` when it names
    /// several hosts (see [`hosts::follow`]).
    pub fn failover_url(&self) -> Option<String> {
        match self {
            Target::External { url } => hosts::split(url)
                .filter(|(h, _)| h.len() > 1)
                .map(|_| url.clone()),
            Target::Embedded { .. } => None,
        }
    }

    /// A connection to the warehouse database (see [`Target::warehouse_options`]).
    pub async fn connect(&self) -> anyhow::Result<PgConnection> {
        match self {
            Target::External { url } => connect_url(url).await,
            Target::Embedded { data_dir } => {
                let cluster = running_cluster(data_dir)?;
                connect_embedded(&cluster, &cluster.state().database).await
            }
        }
    }
}

/// The embedded cluster at `data_dir`, or a friendly error when there is none yet.
pub fn existing_cluster(data_dir: &std::path::Path) -> anyhow::Result<Cluster> {
    Cluster::open_existing(data_dir, None)?.ok_or_else(|| {
        anyhow::anyhow!(
            "there is no warehouse in {}; create one with `pgdw up`",
            data_dir.display()
        )
    })
}

/// The embedded cluster at `data_dir`, insisting that it runs.
pub fn running_cluster(data_dir: &std::path::Path) -> anyhow::Result<Cluster> {
    let cluster = existing_cluster(data_dir)?;
    if cluster.running_pid().is_none() {
        anyhow::bail!(
            "the warehouse in {} is not running; start it with `pgdw up`",
            data_dir.display()
        );
    }
    Ok(cluster)
}

/// Options for a connection over the cluster's private unix socket (trust auth, no password).
pub fn embedded_options(cluster: &Cluster, database: &str) -> PgConnectOptions {
    PgConnectOptions::new()
        .socket(cluster.socket_dir())
        .port(cluster.port())
        .username(&cluster.state().superuser)
        .database(database)
        .application_name("pgdw")
}

pub async fn connect_embedded(cluster: &Cluster, database: &str) -> anyhow::Result<PgConnection> {
    PgConnection::connect_with(&embedded_options(cluster, database))
        .await
        .with_context(|| {
            format!(
                "connecting to database {database} over {}",
                cluster.socket_dir().display()
            )
        })
}

pub async fn connect_url(url: &str) -> anyhow::Result<PgConnection> {
    let opts = Target::External {
        url: url.to_string(),
    }
    .warehouse_options()
    .await?;
    PgConnection::connect_with(&opts)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {}: {}", redact_url(url), e))
}

/// The URL with its password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("********"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<DATABASE_URL>".into(),
    }
}

/// The URL without its password (in the authority or as a `password` parameter), and the
/// password, decoded, for `PGPASSWORD`.
pub fn split_password(url: &str) -> (String, Option<String>) {
    let Ok(mut u) = url::Url::parse(url) else {
        return (url.to_string(), None);
    };
    let mut password = u.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    let _ = u.set_password(None);
    let mut kept = Vec::new();
    for (k, v) in u.query_pairs() {
        if k == "password" {
            password = Some(v.into_owned());
        } else {
            kept.push((k.into_owned(), v.into_owned()));
        }
    }
    if kept.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(kept);
    }
    (u.to_string(), password)
}

/// `message` without the password of `url` (as written, percent-encoded, or decoded).
pub(crate) fn redact(message: &str, url: &str) -> String {
    let raw = url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
        .unwrap_or_default();
    let decoded = split_password(url).1.unwrap_or_default();
    // The one masking rule, the wrappers' (pgdw_fdw_api::mask).
    pgdw_fdw_api::mask(message, &[&raw, &decoded])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_split_from_urls_decoded() {
        assert_eq!(
            split_password("postgres://u:p%40ss@db:5432/w?sslmode=require"),
            (
                "postgres://u@db:5432/w?sslmode=require".to_string(),
                Some("p@ss".to_string())
            )
        );
        assert_eq!(
            split_password("postgres://u@db/w?password=x&application_name=a"),
            (
                "postgres://u@db/w?application_name=a".to_string(),
                Some("x".to_string())
            )
        );
        assert_eq!(
            split_password("postgres://u@db/w"),
            ("postgres://u@db/w".to_string(), None)
        );
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://u:s3cret@db:5432/w"),
            "postgres://u:********@db:5432/w"
        );
        assert_eq!(redact_url("postgres://u@db/w"), "postgres://u@db/w");
    }
}
