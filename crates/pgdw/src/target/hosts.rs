//! Several hosts in one `DATABASE_URL`, as libpq takes them
//! (`postgres://u:p@h1:5432,h2:5433/warehouse?target_session_attrs=read-write`): sqlx connects
//! to one host only, so pgdw picks the host that fits `target_session_attrs` (libpq's rule:
//! the first in order that answers and fits) and, for long-running pools, looks again when
//! that host stops answering or turns read-only, which is how `pgdw worker` and `pgdw serve`
//! follow a failover without being reconfigured.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// How long one host gets to answer while hosts are tried.
const ANSWER: Duration = Duration::from_secs(5);
/// How often a following pool's host is looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The URL as one URL per host, and the `target_session_attrs` asked (`any` when none);
/// None when it names one host and no attributes (sqlx takes it as it is).
pub fn split(url: &str) -> Option<(Vec<String>, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostlist) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let mut attrs = None;
    let kept: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .filter(|kv| match kv.split_once('=') {
            Some(("target_session_attrs", v)) => {
                attrs = Some(v.to_string());
                false
            }
            _ => true,
        })
        .collect();
    let hosts: Vec<&str> = hostlist.split(',').collect();
    if hosts.len() < 2 && attrs.is_none() {
        return None;
    }
    let query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    Some((
        hosts
            .iter()
            .map(|h| format!("{scheme}://{userinfo}{h}{path}{query}"))
            .collect(),
        attrs.unwrap_or_else(|| "any".into()),
    ))
}

fn options(url: &str) -> anyhow::Result<PgConnectOptions> {
    PgConnectOptions::from_str(url).map_err(|e| {
        anyhow::anyhow!(
            "DATABASE_URL is not a valid PostgreSQL URL: {}",
            super::redact(&e.to_string(), url)
        )
    })
}

/// The options for `url`: with several hosts or `target_session_attrs`, those of the first
/// host that answers and fits.
pub async fn resolve(url: &str) -> anyhow::Result<PgConnectOptions> {
    let Some((candidates, attrs)) = split(url) else {
        return options(url);
    };
    let want_writer = match attrs.as_str() {
        "read-write" | "primary" => Some(true),
        "read-only" | "standby" => Some(false),
        "any" => None,
        other => anyhow::bail!(
            "DATABASE_URL: target_session_attrs={other} is not one pgdw knows (any, read-write, primary, read-only, standby)"
        ),
    };
    let mut why = Vec::new();
    for c in &candidates {
        let opts = options(c)?;
        let at = format!("{}:{}", opts.get_host(), opts.get_port());
        match tokio::time::timeout(ANSWER, writable(&opts)).await {
            Ok(Ok(w)) if want_writer.is_none_or(|want| want == w) => return Ok(opts),
            Ok(Ok(w)) => why.push(format!(
                "{at} is {}",
                if w {
                    "read-write"
                } else {
                    "read-only (a standby)"
                }
            )),
            Ok(Err(e)) => why.push(format!("{at}: {}", super::redact(&e.to_string(), c))),
            Err(_) => why.push(format!("{at}: no answer within {} s", ANSWER.as_secs())),
        }
    }
    anyhow::bail!(
        "no host of DATABASE_URL fits target_session_attrs={attrs}:\n  - {}",
        why.join("\n  - ")
    )
}

async fn writable(opts: &PgConnectOptions) -> Result<bool, sqlx::Error> {
    let mut conn = PgConnection::connect_with(opts).await?;
    let w = sqlx::query_scalar(
        "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'",
    )
    .fetch_one(&mut conn)
    .await;
    let _ = conn.close().await;
    w
}

/// Keep `pools` on the host of `url` that fits: every second, when the first pool's host does
/// not answer or is read-only, resolve again and point every pool's new connections there
/// (their broken ones are dropped at their next use). For a URL of one host, nothing to do.
pub fn follow(url: String, pools: Vec<PgPool>) -> Option<tokio::task::JoinHandle<()>> {
    let (hosts, _) = split(&url)?;
    if hosts.len() < 2 || pools.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(LOOK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let fits = tokio::time::timeout(
                ANSWER,
                sqlx::query_scalar::<_, bool>("SELECT NOT pg_is_in_recovery()")
                    .fetch_one(&pools[0]),
            )
            .await;
            if matches!(fits, Ok(Ok(true))) {
                continue;
            }
            let Ok(found) = resolve(&url).await else {
                continue;
            };
            let (host, port) = (found.get_host().to_string(), found.get_port());
            let current = pools[0].connect_options();
            if current.get_host() == host && current.get_port() == port {
                continue;
            }
            eprintln!("pgdw: the warehouse is now {host}:{port} (DATABASE_URL's read-write host)");
            for p in &pools {
                let moved = (*p.connect_options()).clone().host(&host).port(port);
                p.set_connect_options(moved);
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_hosts_become_one_url_each() {
        let (urls, attrs) = split(
            "postgres://u:p%40@h1:5432,h2:5433/warehouse?target_session_attrs=read-write&sslmode=disable",
        )
        .unwrap();
        assert_eq!(
            urls,
            [
                "postgres://u:p%40@h1:5432/warehouse?sslmode=disable",
                "postgres://u:p%40@h2:5433/warehouse?sslmode=disable"
            ]
        );
        assert_eq!(attrs, "read-write");
        assert!(split("postgres://u@h/w?sslmode=disable").is_none());
        let (urls, attrs) = split("postgres://h1,h2/w").unwrap();
        assert_eq!(urls, ["postgres://h1/w", "postgres://h2/w"]);
        assert_eq!(attrs, "any");
    }
}
